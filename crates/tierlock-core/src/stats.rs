//! Counters and snapshots of a manager's state.

use std::sync::atomic::{AtomicU64, Ordering};

/// A snapshot of a [`LockManager`](crate::LockManager)'s state, from
/// [`LockManager::stats`](crate::LockManager::stats).
///
/// The counters only count slow-path events (the uncontended and re-entrant fast paths pay for
/// no shared counter); they start at zero when the manager is created.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// Names currently held or awaited (entries of the in-process tier).
    pub entries: usize,
    /// Names currently held.
    pub held: usize,
    /// Acquisitions currently queued behind another local owner.
    pub waiting: usize,
    /// Turn boundaries where the lock went straight to the next local waiter, keeping the
    /// external lock.
    pub local_handoffs: u64,
    /// External locks taken from the provider.
    pub external_acquisitions: u64,
    /// External locks given back to the provider.
    pub external_releases: u64,
    /// Turn boundaries where the external lock was released although local waiters remained,
    /// because another process had asked for it (or it was found lost).
    pub handbacks: u64,
    /// Acquisitions that ended in [`LockError::Timeout`](crate::LockError::Timeout), including
    /// `try_lock` calls that found the name held.
    pub timeouts: u64,
    /// Acquisitions that ended in [`LockError::Provider`](crate::LockError::Provider).
    pub provider_errors: u64,
}

/// On cache lines of their own: every hand-off writes one, and the manager's fields that every
/// acquisition reads (and the `Arc` count that every guard writes) should not share their line.
#[derive(Debug, Default)]
#[repr(align(128))]
pub(crate) struct Counters {
    pub(crate) local_handoffs: AtomicU64,
    pub(crate) external_acquisitions: AtomicU64,
    pub(crate) external_releases: AtomicU64,
    pub(crate) handbacks: AtomicU64,
    pub(crate) timeouts: AtomicU64,
    pub(crate) provider_errors: AtomicU64,
}

impl Counters {
    pub(crate) fn snapshot(&self, entries: usize, held: usize, waiting: usize) -> Stats {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        Stats {
            entries,
            held,
            waiting,
            local_handoffs: get(&self.local_handoffs),
            external_acquisitions: get(&self.external_acquisitions),
            external_releases: get(&self.external_releases),
            handbacks: get(&self.handbacks),
            timeouts: get(&self.timeouts),
            provider_errors: get(&self.provider_errors),
        }
    }
}
