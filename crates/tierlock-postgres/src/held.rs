//! A held advisory lock, its background monitor, and the waiters' request marks.
//!
//! A [`PgLock`] owns the connection whose session holds the lock. A monitor task runs beside
//! it for as long as it is held and, on one connection shared with the lock:
//!
//! * every `request_poll_interval` asks `pg_locks` whether another session holds a shared lock
//!   on the name's request key, and stores the answer where
//!   [`is_requested`](ExternalLock::is_requested) reads it without blocking;
//! * sends `SELECT 1` when the connection has been silent for `keepalive_interval`;
//! * raises the [`LostSignal`] when the connection closes (server restart, backend terminated,
//!   network failure) or a check fails or times out.
//!
//! Release stops the monitor (letting a check in flight finish), runs `pg_advisory_unlock` and
//! returns the connection to the pool. Dropping a `PgLock` does the same on a background task
//! (registered in [`Releasing`], so that this provider's next acquisition of the key waits for
//! it); without a runtime, dropping closes the connection, which ends the session and frees the
//! lock on the server.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tierlock_core::provider::{BoxFuture, ExternalLock, LostSignal};
use tierlock_core::{BoxError, LockName};
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio::time::{Instant, MissedTickBehavior};

use crate::config::Settings;
use crate::conn::{Conn, Pool};
use crate::error::PostgresError;
use crate::key::split;
use crate::latch::Releasing;

/// An advisory lock held by this process (see the module documentation).
pub(crate) struct PgLock {
    name: LockName,
    key: i64,
    requested: Arc<AtomicBool>,
    lost: LostSignal,
    releasing: Arc<Releasing>,
    /// `None` once released.
    held: Option<Held>,
}

struct Held {
    /// Shared with the monitor; `None` once taken back for the unlock.
    conn: Option<Arc<Conn>>,
    pool: Arc<Pool>,
    stop: Arc<Notify>,
    monitor: JoinHandle<()>,
}

impl Drop for Held {
    fn drop(&mut self) {
        // However a hold ends (a release future dropped half-way included), the monitor must
        // not keep the connection, and with it the lock, alive.
        self.monitor.abort();
    }
}

impl PgLock {
    /// Wraps a connection whose session has just been granted `key`, and starts its monitor.
    pub(crate) fn new(
        conn: Conn,
        pool: Arc<Pool>,
        releasing: Arc<Releasing>,
        settings: &Settings,
        name: &LockName,
        (key, request_key): (i64, i64),
    ) -> PgLock {
        let conn = Arc::new(conn);
        let requested = Arc::new(AtomicBool::new(false));
        let lost = LostSignal::new();
        let stop = Arc::new(Notify::new());
        let monitor = tokio::spawn(watch(Monitor {
            conn: Arc::clone(&conn),
            request_key: split(request_key),
            requested: Arc::clone(&requested),
            lost: lost.clone(),
            stop: Arc::clone(&stop),
            poll: settings.request_poll_interval,
            keepalive: settings.keepalive_interval,
            command_timeout: settings.command_timeout,
        }));
        PgLock {
            name: name.clone(),
            key,
            requested,
            lost,
            releasing,
            held: Some(Held {
                conn: Some(conn),
                pool,
                stop,
                monitor,
            }),
        }
    }
}

/// Stops the monitor (letting a check in flight finish), unlocks, and returns the connection to
/// the pool. On any failure the connection is dropped, which closes the session.
async fn unlock(mut held: Held, name: &str, key: i64) -> Result<(), PostgresError> {
    held.stop.notify_one();
    // The monitor never panics and is only aborted when `held` is dropped, which it is not yet.
    let _ = (&mut held.monitor).await;
    let Some(Ok(conn)) = held.conn.take().map(Arc::try_unwrap) else {
        // Unreachable once the monitor has ended; dropping our handle still frees the lock.
        return Ok(());
    };
    let limit = held.pool.command_timeout();
    let unlock = conn.with_key::<bool>(&conn.stmts.unlock, key);
    let released = match tokio::time::timeout(limit, unlock).await {
        Ok(result) => result.map_err(PostgresError::query(name, "pg_advisory_unlock"))?,
        Err(_) => return Err(PostgresError::timeout(name, "pg_advisory_unlock", limit)),
    };
    if !released {
        return Err(PostgresError::NotHeld {
            name: name.to_owned(),
        });
    }
    held.pool.put(conn);
    Ok(())
}

impl Drop for PgLock {
    fn drop(&mut self) {
        let Some(held) = self.held.take() else {
            return; // Released.
        };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            // No runtime left: dropping `held` aborts the monitor and drops the connection,
            // which aborts its socket task; the server ends the session and frees the lock.
            return;
        };
        // Unlock in the background, keeping the connection; this provider's next acquisition
        // of the key waits for it (see `Releasing`). A failed unlock closes the connection.
        let latch = self.releasing.start(self.key);
        let (releasing, name, key) = (Arc::clone(&self.releasing), self.name.clone(), self.key);
        runtime.spawn(async move {
            let _ = unlock(held, name.as_str(), key).await;
            releasing.finish(key, &latch);
        });
    }
}

impl ExternalLock for PgLock {
    fn release(mut self: Box<Self>) -> BoxFuture<'static, Result<(), BoxError>> {
        let held = self.held.take();
        Box::pin(async move {
            match held {
                Some(held) => Ok(unlock(held, self.name.as_str(), self.key).await?),
                None => Ok(()),
            }
        })
    }

    /// Dropping starts the unlock at once, on a task of its own, and registers it so that this
    /// provider's next acquisition of the name waits for it; the manager need not spawn one.
    fn drop_releases(&self) -> bool {
        true
    }

    fn is_requested(&self) -> bool {
        self.requested.load(Ordering::Relaxed)
    }

    fn lost_signal(&self) -> Option<LostSignal> {
        Some(self.lost.clone())
    }
}

struct Monitor {
    conn: Arc<Conn>,
    request_key: (u32, u32),
    requested: Arc<AtomicBool>,
    lost: LostSignal,
    stop: Arc<Notify>,
    poll: Option<Duration>,
    keepalive: Option<Duration>,
    command_timeout: Duration,
}

/// Far enough away to stand for "never" in a `sleep_until`.
const NEVER: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

async fn watch(m: Monitor) {
    let start = Instant::now();
    let mut poll =
        tokio::time::interval_at(start + m.poll.unwrap_or(NEVER), m.poll.unwrap_or(NEVER));
    poll.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut last_traffic = start;
    loop {
        let keepalive_at = last_traffic + m.keepalive.unwrap_or(NEVER);
        let ok = tokio::select! {
            biased;
            () = m.stop.notified() => return,
            () = m.conn.closed.wait() => false,
            _ = poll.tick() => {
                let check = m.conn.with_split::<bool>(&m.conn.stmts.requested, m.request_key);
                match tokio::time::timeout(m.command_timeout, check).await {
                    Ok(Ok(requested)) => {
                        m.requested.store(requested, Ordering::Relaxed);
                        true
                    }
                    Ok(Err(_)) | Err(_) => false,
                }
            }
            () = tokio::time::sleep_until(keepalive_at) => {
                let ping = m.conn.client.simple_query("SELECT 1");
                matches!(tokio::time::timeout(m.command_timeout, ping).await, Ok(Ok(_)))
            }
        };
        if !ok {
            m.lost.trigger();
            return;
        }
        last_traffic = Instant::now();
    }
}

/// What keeps a request mark alive: a session holding a shared lock on the request key.
/// Dropping it unlocks on a background task and returns the connection to the pool, or closes
/// the connection if there is no runtime or the unlock fails.
pub(crate) struct Requester {
    conn: Option<Conn>,
    pool: Arc<Pool>,
    request_key: i64,
}

impl Requester {
    pub(crate) fn new(conn: Conn, pool: Arc<Pool>, request_key: i64) -> Requester {
        Requester {
            conn: Some(conn),
            pool,
            request_key,
        }
    }
}

impl Drop for Requester {
    fn drop(&mut self) {
        let Some(conn) = self.conn.take() else {
            return;
        };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return; // `conn` is dropped: the session ends and its shared lock goes with it.
        };
        let pool = Arc::clone(&self.pool);
        let key = self.request_key;
        runtime.spawn(async move {
            let unlock = conn.with_key::<bool>(&conn.stmts.unlock_shared, key);
            if let Ok(Ok(true)) = tokio::time::timeout(pool.command_timeout(), unlock).await {
                pool.put(conn);
            }
        });
    }
}
