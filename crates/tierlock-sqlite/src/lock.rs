//! The handles the provider gives out: a held lease ([`SqliteLock`]) and a waiter's mark
//! ([`Waiting`]). Both end by *sending* a job to the database thread, which needs no runtime
//! and never blocks.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use tierlock_core::provider::BoxFuture;
use tierlock_core::{BoxError, ExternalLock, LostSignal};
use tokio::sync::oneshot;

use crate::worker::{Handle, Job, LeaseShared};

/// A lease held by this process. The database thread renews it until it is released.
#[derive(Debug)]
pub(crate) struct SqliteLock {
    id: u64,
    shared: Arc<LeaseShared>,
    handle: Arc<Handle>,
    /// The release job was sent.
    released: bool,
}

impl SqliteLock {
    pub(crate) fn new(id: u64, shared: Arc<LeaseShared>, handle: Arc<Handle>) -> SqliteLock {
        SqliteLock {
            id,
            shared,
            handle,
            released: false,
        }
    }
}

impl SqliteLock {
    /// The lease id, for a release the caller does itself (on the database thread); dropping
    /// the handle then sends nothing.
    pub(crate) fn disarm(mut self) -> u64 {
        self.released = true;
        self.id
    }
}

impl ExternalLock for SqliteLock {
    /// Deletes the lease's row; `SqliteError::LeaseLost` (and the lost signal) if another
    /// process had taken it over. The job is queued at once, so the release happens even if
    /// the returned future is dropped.
    fn release(mut self: Box<Self>) -> BoxFuture<'static, Result<(), BoxError>> {
        let (tx, rx) = oneshot::channel();
        let sent = self.handle.send(Job::Release {
            id: self.id,
            reply: Some(tx),
        });
        self.released = true;
        let handle = Arc::clone(&self.handle);
        Box::pin(async move {
            sent?;
            match rx.await {
                Ok(result) => Ok(result?),
                Err(_) => Err(handle.stopped().into()),
            }
        })
    }

    /// Dropping queues the release on the provider's database thread without waiting, and no
    /// runtime is needed; this provider's later jobs (an acquisition of the same name) run after
    /// it.
    fn drop_releases(&self) -> bool {
        true
    }

    /// The last request scan's finding. The first call of a hold starts the scans (every 50 ms
    /// at most, `ttl / 3` if shorter); until one ran it reports none.
    fn is_requested(&self) -> bool {
        if !self.shared.watch.swap(true, Ordering::AcqRel) {
            // Wakes the thread so it starts scanning now rather than at its next renewal.
            let _ = self.handle.send(Job::Watch);
        }
        self.shared.requested.load(Ordering::Acquire)
    }

    fn lost_signal(&self) -> Option<LostSignal> {
        Some(self.shared.lost.clone())
    }

    fn fencing_token(&self) -> Option<u64> {
        Some(self.shared.token)
    }
}

impl Drop for SqliteLock {
    fn drop(&mut self) {
        if !self.released {
            // A thread that is gone has triggered the lost signal already; nothing left to do.
            let _ = self.handle.send(Job::Release {
                id: self.id,
                reply: None,
            });
        }
    }
}

/// A waiter row of this process, refreshed by the database thread until dropped.
#[derive(Debug)]
pub(crate) struct Waiting {
    id: u64,
    handle: Arc<Handle>,
    armed: bool,
}

impl Waiting {
    pub(crate) fn new(id: u64, handle: Arc<Handle>) -> Waiting {
        Waiting {
            id,
            handle,
            armed: true,
        }
    }

    /// The mark id, for an unmark the caller does itself (on the database thread).
    pub(crate) fn disarm(mut self) -> u64 {
        self.armed = false;
        self.id
    }
}

impl Drop for Waiting {
    fn drop(&mut self) {
        if self.armed {
            // Left behind only if the thread is gone; the row then expires after `ttl`.
            let _ = self.handle.send(Job::Unmark { id: self.id });
        }
    }
}
