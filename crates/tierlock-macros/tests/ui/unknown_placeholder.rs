#![allow(unused)]

use tierlock::{LockError, LockManager, locked};

#[locked(locks, "order:{idd}")]
async fn misspelt(locks: &LockManager, id: u64) -> Result<(), LockError> {
    Ok(())
}

#[locked(locks, "order:{}")]
async fn positional(locks: &LockManager, id: u64) -> Result<(), LockError> {
    Ok(())
}

struct Orders {
    locks: LockManager,
    id: u64,
}

impl Orders {
    #[locked(self.locks, "order:{self.id}")]
    async fn field(&self) -> Result<(), LockError> {
        Ok(())
    }
}

fn main() {}
