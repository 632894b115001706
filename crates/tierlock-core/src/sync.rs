//! The synchronization primitives of the in-process tier, from one place.
//!
//! Normal builds use `parking_lot`'s mutex and `std`'s atomics and `Arc`. Built with
//! `RUSTFLAGS="--cfg loom"`, the same names are `loom`'s model-checked types, so the loom models
//! (`table/models.rs`) explore every interleaving of the code that uses them: the shards of the
//! map ([`crate::shards`]), the waiter's grant state and waker slot, a hold's guard count and
//! the thread's record of its last hold ([`crate::table`]). The
//! shape is tokio's `src/loom`: the tier's code never names `parking_lot` or `std::sync`.
//!
//! Only the model tests run in a loom build: loom's types panic outside `loom::model`.

#[cfg(not(loom))]
pub(crate) use std::sync::Arc;
#[cfg(not(loom))]
pub(crate) use std::sync::atomic::{AtomicU8, AtomicU32, AtomicU64, Ordering};

#[cfg(not(loom))]
pub(crate) use parking_lot::{Mutex, MutexGuard};

#[cfg(loom)]
pub(crate) use loom::sync::Arc;
#[cfg(loom)]
pub(crate) use loom::sync::atomic::{AtomicU8, AtomicU32, AtomicU64, Ordering};

#[cfg(loom)]
pub(crate) use loom_mutex::{Mutex, MutexGuard};

/// loom's mutex with `parking_lot`'s signature: `lock` returns the guard (no poisoning).
#[cfg(loom)]
mod loom_mutex {
    pub(crate) use loom::sync::MutexGuard;

    #[derive(Debug)]
    pub(crate) struct Mutex<T>(loom::sync::Mutex<T>);

    impl<T> Mutex<T> {
        pub(crate) fn new(value: T) -> Self {
            Mutex(loom::sync::Mutex::new(value))
        }

        pub(crate) fn lock(&self) -> MutexGuard<'_, T> {
            self.0
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
        }
    }
}
