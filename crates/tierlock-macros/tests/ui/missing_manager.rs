#![allow(unused)]

use tierlock::{LockError, LockManager, locked};

#[locked("order:{id}")]
async fn name_only(locks: &LockManager, id: u64) -> Result<(), LockError> {
    Ok(())
}

#[locked]
async fn no_arguments(locks: &LockManager, id: u64) -> Result<(), LockError> {
    Ok(())
}

#[locked(locks)]
async fn manager_only(locks: &LockManager, id: u64) -> Result<(), LockError> {
    Ok(())
}

fn main() {}
