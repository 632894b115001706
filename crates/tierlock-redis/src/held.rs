//! A held lock ([`RedisLock`]) and its watchdog.
//!
//! The watchdog is a task beside each held lock. Every `ttl / 3` it renews the key (a
//! compare-and-extend on the holder's token, which also counts other processes' live waiter
//! marks), and from the first [`is_requested`](ExternalLock::is_requested) of the hold on —
//! that is, once this process has tasks queued behind the lock — it also probes for waiters
//! every `request_poll_interval`. The answers land in an atomic flag, so `is_requested` does no
//! I/O. The lock counts as **lost**, and its lost signal fires, when a renewal finds the key
//! gone or holding another token, or when no renewal succeeded within `9/10` of the `ttl` after
//! the start of the last successful one (the key may have expired: the server is unreachable,
//! frozen, or this process was stopped). The tenth left over covers the time to tell the code
//! that holds the lock.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use tierlock_core::provider::BoxFuture;
use tierlock_core::{BoxError, ExternalLock, LockName, LostSignal};
use tokio::sync::Notify;

use crate::error::RedisError;
use crate::keys::KeyNames;
use crate::marks::LocalCount;
use crate::provider::Shared;
use crate::scripts;

/// The share of the `ttl` after the start of the last successful renewal by which a holder
/// counts its lock as lost if it could not renew meanwhile.
const EXPIRY_NUM: u32 = 9;
const EXPIRY_DEN: u32 = 10;

/// A lock held by this process: the key `keys.lock` holds `owner`.
pub(crate) struct RedisLock {
    held: Arc<Held>,
    watchdog: tokio::task::JoinHandle<()>,
}

struct Held {
    shared: Arc<Shared>,
    name: LockName,
    keys: KeyNames,
    owner: String,
    fence: u64,
    lost: LostSignal,
    /// The watchdog's last finding: another process has a live mark.
    requested: AtomicBool,
    /// Set at the first `is_requested`: from then on the watchdog probes for marks.
    watch: AtomicBool,
    wake: Notify,
    /// Waiters of this provider (other managers on it) for the same name.
    local_waiters: LocalCount,
    /// Released (or being released): nothing more to do.
    released: AtomicBool,
}

impl RedisLock {
    /// Takes charge of a key this process just set with `owner`; `started` is when the
    /// command that set it was sent (the key lives at least until `started + ttl`).
    pub(crate) fn start(
        shared: Arc<Shared>,
        name: LockName,
        keys: KeyNames,
        owner: String,
        fence: u64,
        started: Instant,
    ) -> Self {
        let local_waiters = shared.marks.count(&keys.lock);
        let held = Arc::new(Held {
            shared,
            name,
            keys,
            owner,
            fence,
            lost: LostSignal::new(),
            requested: AtomicBool::new(false),
            watch: AtomicBool::new(false),
            wake: Notify::new(),
            local_waiters,
            released: AtomicBool::new(false),
        });
        let watchdog = tokio::spawn(watchdog(Arc::clone(&held), started));
        RedisLock { held, watchdog }
    }
}

/// What one renewal found.
enum Renewal {
    /// Renewed; the number of other processes' live marks.
    Renewed(i64),
    /// The key no longer holds our token.
    Lost,
    /// The command failed or got no answer; tried again while the lease may still stand.
    Failed,
}

impl Held {
    async fn renew(&self, until: Instant) -> Renewal {
        let shared = &self.shared;
        let Ok(Ok(mut conn)) = tokio::time::timeout_at(until.into(), shared.connector.get()).await
        else {
            return Renewal::Failed;
        };
        let mut invocation = scripts::RENEW.key(&self.keys.lock);
        invocation
            .key(&self.keys.waiters)
            .arg(&self.owner)
            .arg(shared.ttl_ms())
            .arg(&shared.mark_prefix);
        let renewal = invocation.invoke_async::<i64>(&mut conn.conn);
        match tokio::time::timeout_at(until.into(), renewal).await {
            Ok(Ok(-1)) => Renewal::Lost,
            Ok(Ok(others)) => Renewal::Renewed(others),
            Ok(Err(err)) => {
                shared.connector.failed(&conn, &err);
                Renewal::Failed
            }
            Err(_) => {
                shared.connector.broken(&conn);
                Renewal::Failed
            }
        }
    }

    /// Counts other processes' live marks; `None` if that failed.
    async fn probe(&self, until: Instant) -> Option<i64> {
        let shared = &self.shared;
        let mut conn = tokio::time::timeout_at(until.into(), shared.connector.get())
            .await
            .ok()?
            .ok()?;
        let mut invocation = scripts::PROBE.key(&self.keys.waiters);
        invocation.arg(&shared.mark_prefix);
        let probe = invocation.invoke_async::<i64>(&mut conn.conn);
        match tokio::time::timeout_at(until.into(), probe).await {
            Ok(Ok(others)) => Some(others),
            Ok(Err(err)) => {
                shared.connector.failed(&conn, &err);
                None
            }
            Err(_) => None,
        }
    }
}

/// Renews the key every `ttl / 3`, probes for waiters once asked to, and raises the lost signal.
async fn watchdog(held: Arc<Held>, mut last_renewal: Instant) {
    let ttl = held.shared.settings.ttl;
    let every = ttl / 3;
    let poll = held.shared.settings.request_poll_interval;
    let mut next_renewal = last_renewal + every;
    let mut next_probe = Instant::now();
    loop {
        let watching = held.watch.load(Ordering::Acquire);
        let wake_at = if watching {
            next_renewal.min(next_probe)
        } else {
            next_renewal
        };
        tokio::select! {
            () = tokio::time::sleep_until(wake_at.into()) => {}
            () = held.wake.notified(), if !watching => continue,
        }
        if held.released.load(Ordering::Acquire) {
            return;
        }
        let now = Instant::now();
        if now >= next_renewal {
            let expiry = last_renewal + ttl * EXPIRY_NUM / EXPIRY_DEN;
            match held.renew(expiry).await {
                Renewal::Renewed(others) => {
                    held.requested.store(others > 0, Ordering::Release);
                    last_renewal = now;
                    next_renewal = now + every;
                }
                Renewal::Failed if Instant::now() < expiry => {
                    // Try again soon, while the key still stands.
                    next_renewal = Instant::now() + (ttl / 20).max(Duration::from_millis(5));
                }
                // Taken over or expired, or not renewed in time: another process may hold it.
                Renewal::Failed | Renewal::Lost => {
                    if !held.released.load(Ordering::Acquire) {
                        held.lost.trigger();
                    }
                    return;
                }
            }
        }
        if watching && Instant::now() >= next_probe {
            if let Some(others) = held.probe(Instant::now() + poll.max(every / 2)).await {
                held.requested.store(others > 0, Ordering::Release);
            }
            next_probe = Instant::now() + poll;
        }
    }
}

impl RedisLock {
    /// The compare-and-delete; the caller has set `released`.
    async fn release_now(held: Arc<Held>) -> Result<(), RedisError> {
        let shared = &held.shared;
        match shared
            .release(&held.name, &held.keys, &held.owner, None)
            .await
        {
            Ok(true) => Ok(()),
            Ok(false) => {
                held.lost.trigger();
                Err(RedisError::Lost {
                    name: held.name.to_string(),
                })
            }
            Err(err) => Err(err),
        }
    }
}

impl ExternalLock for RedisLock {
    /// Compare-and-delete on the token (one round trip), which also wakes the waiters.
    fn release(self: Box<Self>) -> BoxFuture<'static, Result<(), BoxError>> {
        self.watchdog.abort();
        let held = Arc::clone(&self.held);
        // Set before `self` is dropped at the end of this call, so `Drop` leaves it to us.
        let first = !held.released.swap(true, Ordering::AcqRel);
        Box::pin(async move {
            if first {
                RedisLock::release_now(held).await?;
            }
            Ok(())
        })
    }

    /// Dropping starts the compare-and-delete on a background task, and the provider's next
    /// acquisition of the name waits for it (without a runtime, dropping releases synchronously
    /// on a connection of its own).
    fn drop_releases(&self) -> bool {
        true
    }

    /// The watchdog's last finding, or a waiter of this provider (another manager on it). The
    /// first call of a hold starts the watchdog probing every `request_poll_interval`; until
    /// its first probe only renewals (every `ttl / 3`) inform it.
    fn is_requested(&self) -> bool {
        let held = &self.held;
        if !held.watch.swap(true, Ordering::AcqRel) {
            held.wake.notify_one();
        }
        held.requested.load(Ordering::Acquire) || held.local_waiters.get() > 0
    }

    fn lost_signal(&self) -> Option<LostSignal> {
        Some(self.held.lost.clone())
    }

    fn fencing_token(&self) -> Option<u64> {
        Some(self.held.fence)
    }
}

impl Drop for RedisLock {
    fn drop(&mut self) {
        self.watchdog.abort();
        let held = &self.held;
        if !held.released.swap(true, Ordering::AcqRel) {
            held.shared
                .release_in_background(&held.name, &held.keys, &held.owner, None);
        }
    }
}

impl fmt::Debug for RedisLock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisLock")
            .field("name", &self.held.name)
            .field("key", &self.held.keys.lock)
            .field("fencing_token", &self.held.fence)
            .field("lost", &self.held.lost.is_lost())
            .finish_non_exhaustive()
    }
}
