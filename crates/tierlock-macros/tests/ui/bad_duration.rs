#![allow(unused)]

use tierlock::{LockError, LockManager, locked};

#[locked(locks, "order:{id}", timeout = "5x")]
async fn unknown_unit(locks: &LockManager, id: u64) -> Result<(), LockError> {
    Ok(())
}

#[locked(locks, "order:{id}", timeout = "5")]
async fn no_unit(locks: &LockManager, id: u64) -> Result<(), LockError> {
    Ok(())
}

#[locked(locks, "order:{id}", timeout = "0.5ms")]
async fn too_fine(locks: &LockManager, id: u64) -> Result<(), LockError> {
    Ok(())
}

fn main() {}
