//! A lease held by this process: the handle given to the manager, and the monitor task that
//! renews the lease, watches for requests and raises the lost signal.
//!
//! The state file's current name lives behind one mutex, held across each rename of it (by the
//! monitor's renewal on a blocking thread, or by the release), so the two never race.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use tierlock_core::provider::BoxFuture;
use tierlock_core::{BoxError, ExternalLock, LockName, LostSignal};
use tokio::sync::Notify;

use super::request::Requests;
use super::state::{self, Held};
use crate::error::FileError;

/// The share of its `ttl` after the start of its last renewal at which a holder counts its
/// lease as lost if it could not renew meanwhile. A waiter breaks a lease only after watching
/// it unchanged for the whole `ttl` by its own clock; the tenth left over covers the difference
/// in rate between two hosts' clocks and the time to tell the code that holds the lock.
const EXPIRY_NUM: u32 = 9;
const EXPIRY_DEN: u32 = 10;

/// A held lease.
pub(crate) struct LeaseLock {
    shared: Arc<Shared>,
    monitor: tokio::task::JoinHandle<()>,
}

struct Shared {
    dir: PathBuf,
    name: LockName,
    ttl: Duration,
    token: u64,
    /// The current state file, or `None` once released.
    current: Mutex<Option<Held>>,
    lost: LostSignal,
    requested: AtomicBool,
    /// Set at the first `is_requested` of the hold: from then on the monitor scans for requests.
    watch_requests: AtomicBool,
    /// How often the monitor scans for requests once it watches (at most every `ttl / 3`).
    scan_every: Duration,
    wake: Notify,
}

/// What a renewal found.
enum Renewal {
    Renewed,
    /// The state file is not ours any more: another process broke the lease.
    Lost,
    /// Released meanwhile: nothing more to do.
    Released,
    /// An I/O error; retried until the lease expires.
    Failed,
}

impl Shared {
    /// Renames the state file to its next beat.
    fn renew(&self) -> Renewal {
        let mut current = self.current.lock();
        let Some(held) = current.as_ref() else {
            return Renewal::Released;
        };
        let next = held.next_beat();
        match state::swap(&self.dir, &held.file_name(), &next.file_name()) {
            Ok(true) => {
                *current = Some(next);
                Renewal::Renewed
            }
            Ok(false) => Renewal::Lost,
            Err(_) => Renewal::Failed,
        }
    }

    /// Frees the lease (renames the state file to `free.<token>`); idempotent.
    fn release(&self) -> Result<(), FileError> {
        let Some(held) = self.current.lock().take() else {
            return Ok(());
        };
        match state::swap(&self.dir, &held.file_name(), &state::free_name(held.token)) {
            Ok(true) => Ok(()),
            Ok(false) => {
                self.lost.trigger();
                Err(FileError::LeaseLost {
                    path: self.dir.clone(),
                    name: self.name.to_string(),
                })
            }
            Err(source) => Err(FileError::Lease {
                path: self.dir.clone(),
                name: self.name.to_string(),
                source,
            }),
        }
    }

    /// Lists the lease directory and updates the request flag.
    fn scan_requests(&self, requests: &mut Requests) {
        if let Ok(listing) = state::list(&self.dir) {
            let live = requests.update(&self.dir, listing.requests);
            self.requested.store(live, Ordering::Release);
        }
    }
}

impl LeaseLock {
    /// Takes charge of `held`, whose state file this process just created with a rename that
    /// started at `started`, and starts its monitor, which scans for requests every
    /// `scan_every` once asked to.
    pub(crate) fn start(
        dir: PathBuf,
        name: LockName,
        held: Held,
        started: Instant,
        scan_every: Duration,
    ) -> Self {
        let held_ttl = held.ttl;
        let shared = Arc::new(Shared {
            dir,
            name,
            ttl: held.ttl,
            token: held.token,
            current: Mutex::new(Some(held)),
            lost: LostSignal::new(),
            requested: AtomicBool::new(false),
            watch_requests: AtomicBool::new(false),
            scan_every: scan_every.min(held_ttl / 3),
            wake: Notify::new(),
        });
        let monitor = tokio::spawn(monitor(Arc::clone(&shared), started));
        LeaseLock { shared, monitor }
    }
}

/// Renews the lease every `ttl / 3`, scans for requests once asked to, and raises the lost
/// signal when the lease was broken or could not be renewed in time. All file system work runs
/// on blocking threads, so a hung share delays no runtime worker and no deadline.
async fn monitor(shared: Arc<Shared>, mut last_renewal: Instant) {
    let ttl = shared.ttl;
    let every = ttl / 3;
    let scan_every = shared.scan_every;
    let mut next_renewal = last_renewal + every;
    let mut next_scan = Instant::now();
    let requests = Arc::new(Mutex::new(Requests::default()));
    loop {
        let watching = shared.watch_requests.load(Ordering::Acquire);
        let wake_at = if watching {
            next_renewal.min(next_scan)
        } else {
            next_renewal
        };
        tokio::select! {
            () = tokio::time::sleep_until(wake_at.into()) => {}
            () = shared.wake.notified(), if !watching => continue,
        }
        let now = Instant::now();
        if now >= next_renewal {
            let expiry = last_renewal + ttl * EXPIRY_NUM / EXPIRY_DEN;
            let renewal = {
                let shared = Arc::clone(&shared);
                tokio::task::spawn_blocking(move || shared.renew())
            };
            match tokio::time::timeout_at(expiry.into(), renewal).await {
                Ok(Ok(Renewal::Renewed)) => {
                    last_renewal = now;
                    next_renewal = now + every;
                }
                Ok(Ok(Renewal::Released)) => return,
                Ok(Ok(Renewal::Failed) | Err(_)) if Instant::now() < expiry => {
                    // Try again soon, while the lease still stands.
                    next_renewal = Instant::now() + (ttl / 20).max(Duration::from_millis(1));
                }
                // Broken by another process, or not renewed in time (a hung share, or this
                // process was stopped): a waiter may take it over now, if it has not already.
                _ => {
                    shared.lost.trigger();
                    return;
                }
            }
        }
        if watching && now >= next_scan {
            let scan = {
                let (shared, requests) = (Arc::clone(&shared), Arc::clone(&requests));
                tokio::task::spawn_blocking(move || shared.scan_requests(&mut requests.lock()))
            };
            // A failed scan leaves the flag as it was; the next one tries again.
            let _ = scan.await;
            next_scan = Instant::now() + scan_every;
        }
    }
}

impl ExternalLock for LeaseLock {
    fn release(self: Box<Self>) -> BoxFuture<'static, Result<(), BoxError>> {
        self.monitor.abort();
        let result = self
            .shared
            .release()
            .map_err(|err| Box::new(err) as BoxError);
        Box::pin(std::future::ready(result))
    }

    /// Dropping renames the state file to `free` inline: one `rename` (a round trip on a
    /// share).
    fn drop_releases(&self) -> bool {
        true
    }

    /// The monitor's last finding. The first call of a hold starts the monitor scanning the
    /// lease directory for requests (every poll cap, 8 ms by default); until then it reports
    /// none.
    fn is_requested(&self) -> bool {
        if !self.shared.watch_requests.swap(true, Ordering::AcqRel) {
            self.shared.wake.notify_one();
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

impl Drop for LeaseLock {
    fn drop(&mut self) {
        self.monitor.abort();
        // Released already, or lost: either way nothing is left to do and nobody to tell.
        let _ = self.shared.release();
    }
}
