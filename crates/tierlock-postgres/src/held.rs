//! A held advisory lock ([`PgLock`]).
//!
//! The lifecycle is core's [`Hold`] (the one every session-based provider shares): the
//! connection whose session holds the lock belongs to a monitor task, which
//!
//! * every `request_poll_interval` asks `pg_locks` whether another session holds a shared lock
//!   on the name's request key, and keeps the answer where
//!   [`is_requested`](ExternalLock::is_requested) reads it without blocking;
//! * sends `SELECT 1` when the connection has been silent for `keepalive_interval`;
//! * raises the [`LostSignal`] (and closes the connection) when the connection closes (server
//!   restart, backend terminated, network failure) or a check fails or times out.
//!
//! Release asks the task for the connection back between two round trips, runs
//! `pg_advisory_unlock` and returns the connection to the pool. Dropping a `PgLock` tells the
//! task to do the same in the background ([`PgSession::abandon`]), registered in the provider's
//! [`Releases`](tierlock_core::held::Releases) so that the provider's next acquisition of the
//! name waits for it; a failed unlock closes the connection, which frees the lock too. Without
//! a runtime, the task and the connection are gone already: the server ended the session and
//! freed the lock. A lock about to be handed back to another process is registered earlier
//! still, when the manager reads its request flag ([`EarlyRelease`]), and an explicit release
//! when it is called: either way the manager's next local waiter, which it wakes first, finds
//! the connection back in the pool instead of opening another.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tierlock_core::held::{Abandon, Fault, Hold, Releases, Releasing, Session};
use tierlock_core::provider::{BoxFuture, ExternalLock, LostSignal};
use tierlock_core::{BoxError, LockName};

use crate::conn::{Conn, Connections};
use crate::error::PostgresError;

/// An advisory lock held by this process (see the module documentation).
pub(crate) struct PgLock {
    name: LockName,
    token: Option<u64>,
    hold: Hold<PgSession>,
    releases: Arc<Releases>,
    early: EarlyRelease,
}

impl PgLock {
    pub(crate) fn new(
        name: LockName,
        token: Option<u64>,
        hold: Hold<PgSession>,
        (releases, early): (Arc<Releases>, EarlyRelease),
    ) -> PgLock {
        PgLock {
            name,
            token,
            hold,
            releases,
            early,
        }
    }
}

/// The release of a lock that a manager is about to hand back to another process, registered
/// in the provider's releases as soon as the manager reads the request flag (see
/// [`ExternalLock::is_requested`] below), and finished once the session is back in the pool.
///
/// A manager reads the flag at a turn boundary, and when it is set hands the external lock back
/// and wakes its next local waiter *before* it drops (or releases) the handle. Registered only
/// then, the release could come too late for that waiter's acquisition, which would find the
/// pool empty and open another connection.
#[derive(Clone, Default)]
pub(crate) struct EarlyRelease(Arc<Mutex<Option<Releasing>>>);

impl EarlyRelease {
    fn begin(&self, releases: &Arc<Releases>, name: &LockName) {
        let mut slot = self.0.lock();
        if slot.is_none() {
            *slot = Some(releases.begin(name.clone()));
        }
    }

    fn finish(&self) {
        drop(self.0.lock().take());
    }
}

/// The connection of a held lock, as its monitor task uses it.
pub(crate) struct PgSession {
    pub conn: Conn,
    pub connections: Arc<Connections>,
    pub name: LockName,
    pub key: i64,
    /// The request key, as `pg_locks` shows it.
    pub request_key: (u32, u32),
    pub command_timeout: Duration,
    pub early: EarlyRelease,
}

impl PgSession {
    /// `pg_advisory_unlock`, then the connection goes back to the pool. On any failure the
    /// connection is dropped, which closes the session and frees the lock all the same.
    pub(crate) async fn unlock(self) -> Result<(), PostgresError> {
        let early = self.early.clone();
        let unlocked = self.unlock_inner().await;
        early.finish();
        unlocked
    }

    async fn unlock_inner(self) -> Result<(), PostgresError> {
        let name = self.name.as_str();
        let limit = self.command_timeout;
        let unlock = self
            .conn
            .with_key::<bool>(&self.conn.stmts.unlock, self.key);
        let released = match tokio::time::timeout(limit, unlock).await {
            Ok(result) => result.map_err(PostgresError::query(name, "pg_advisory_unlock"))?,
            Err(_) => return Err(PostgresError::timeout(name, "pg_advisory_unlock", limit)),
        };
        if !released {
            return Err(PostgresError::NotHeld {
                name: name.to_owned(),
            });
        }
        self.connections.put(self.conn);
        Ok(())
    }
}

impl Abandon for PgSession {
    /// A dropped lock is unlocked in the background and its connection reused.
    fn abandon(self) -> BoxFuture<'static, ()> {
        Box::pin(async move {
            // On failure the connection is already dropped: the session ends, the lock goes.
            let _ = self.unlock().await;
        })
    }
}

impl Session for PgSession {
    fn check_requested(&mut self) -> BoxFuture<'_, Result<bool, Fault>> {
        Box::pin(async move {
            let stmt = &self.conn.stmts.requested;
            // Any failure of a check on an idle session means the session cannot be trusted.
            self.conn
                .with_split::<bool>(stmt, self.request_key)
                .await
                .map_err(|_| Fault::Broken)
        })
    }

    fn keep_alive(&mut self) -> BoxFuture<'_, Result<(), Fault>> {
        Box::pin(async move {
            match self.conn.client.simple_query("SELECT 1").await {
                Ok(_) => Ok(()),
                Err(_) => Err(Fault::Broken),
            }
        })
    }

    fn closed(&self) -> BoxFuture<'static, ()> {
        let closed = self.conn.closed.clone();
        Box::pin(async move { closed.wait().await })
    }
}

impl ExternalLock for PgLock {
    fn release(self: Box<Self>) -> BoxFuture<'static, Result<(), BoxError>> {
        let PgLock {
            name,
            hold,
            releases,
            ..
        } = *self;
        // Registered now, not at the first poll: the manager hands the name to the next local
        // waiter before it awaits this.
        let releasing = releases.begin(name.clone());
        Box::pin(async move {
            let released = match hold.take_back().await {
                Some(session) => Ok(session.unlock().await?),
                None => Err(Box::new(PostgresError::Lost {
                    name: name.to_string(),
                }) as BoxError),
            };
            drop(releasing);
            released
        })
    }

    /// Dropping tells the monitor task to unlock in the background, registered so that this
    /// provider's next acquisition of the name waits for it: the manager need not spawn a
    /// task of its own.
    fn drop_releases(&self) -> bool {
        true
    }

    /// The cached flag. When it is set, the manager is about to hand the lock back: its
    /// release is registered now (see `EarlyRelease`). If the lock were kept after all, this
    /// provider's acquisitions of the name would wait for it (up to `command_timeout`) — while
    /// it is held here anyway.
    fn is_requested(&self) -> bool {
        let requested = self.hold.is_requested();
        if requested {
            self.early.begin(&self.releases, &self.name);
        }
        requested
    }

    fn lost_signal(&self) -> Option<LostSignal> {
        Some(self.hold.lost_signal().clone())
    }

    fn fencing_token(&self) -> Option<u64> {
        self.token
    }
}

impl fmt::Debug for PgLock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PgLock")
            .field("name", &self.name)
            .field("token", &self.token)
            .field("hold", &self.hold)
            .finish()
    }
}
