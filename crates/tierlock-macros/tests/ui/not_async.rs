#![allow(unused)]

use tierlock::{LockError, LockManager, locked};

#[locked(locks, "order:{id}")]
fn blocking(locks: &LockManager, id: u64) -> Result<(), LockError> {
    Ok(())
}

#[locked(locks, "order:{id}")]
async fn returns_nothing(locks: &LockManager, id: u64) {}

fn main() {}
