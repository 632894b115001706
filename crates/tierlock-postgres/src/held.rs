//! A held advisory lock ([`PgLock`]) and a waiter's request mark ([`RequestHold`]).
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
//! freed the lock.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use tierlock_core::held::{Abandon, Fault, Hold, Session};
use tierlock_core::provider::{BoxFuture, ExternalLock, LostSignal};
use tierlock_core::{BoxError, LockName};

use crate::conn::{Conn, Connections};
use crate::error::PostgresError;

/// An advisory lock held by this process (see the module documentation).
pub(crate) struct PgLock {
    name: LockName,
    token: Option<u64>,
    hold: Hold<PgSession>,
}

impl PgLock {
    pub(crate) fn new(name: LockName, token: Option<u64>, hold: Hold<PgSession>) -> PgLock {
        PgLock { name, token, hold }
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
}

impl PgSession {
    /// `pg_advisory_unlock`, then the connection goes back to the pool. On any failure the
    /// connection is dropped, which closes the session and frees the lock all the same.
    pub(crate) async fn unlock(self) -> Result<(), PostgresError> {
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
        let PgLock { name, hold, .. } = *self;
        Box::pin(async move {
            match hold.take_back().await {
                Some(session) => Ok(session.unlock().await?),
                None => Err(Box::new(PostgresError::Lost {
                    name: name.to_string(),
                }) as BoxError),
            }
        })
    }

    /// Dropping tells the monitor task to unlock in the background, registered so that this
    /// provider's next acquisition of the name waits for it: the manager need not spawn a
    /// task of its own.
    fn drop_releases(&self) -> bool {
        true
    }

    fn is_requested(&self) -> bool {
        self.hold.is_requested()
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

/// A waiter's request mark: a session holding a shared lock on the request key. Abandoning it
/// unlocks and returns the connection to the pool, or closes the connection if the unlock
/// fails (see [`AbandonOnDrop`](tierlock_core::held::AbandonOnDrop), which runs it when the
/// mark is dropped).
pub(crate) struct RequestHold {
    pub conn: Conn,
    pub connections: Arc<Connections>,
    pub request_key: i64,
    pub command_timeout: Duration,
}

impl Abandon for RequestHold {
    fn abandon(self) -> BoxFuture<'static, ()> {
        Box::pin(async move {
            let unlock = self
                .conn
                .with_key::<bool>(&self.conn.stmts.unlock_shared, self.request_key);
            if let Ok(Ok(true)) = tokio::time::timeout(self.command_timeout, unlock).await {
                self.connections.put(self.conn);
            }
        })
    }
}
