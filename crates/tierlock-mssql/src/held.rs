//! A held lock ([`MssqlLock`]) and a waiter's request mark ([`RequestHold`]).
//!
//! The lifecycle is core's [`Hold`] (the one every session-based provider shares): the
//! connection of a held lock belongs to a monitor task. Every request poll interval the task
//! asks the server, on that connection, whether another session holds a request mark
//! (`APPLOCK_TEST` on the request resource) and stores the answer in an atomic flag, which
//! [`ExternalLock::is_requested`] reads without blocking. The probe doubles as a keepalive;
//! after `keepalive_interval` without one (probing switched off), the task runs `SELECT 1`. If
//! a round trip fails because the connection broke, or gets no answer within the command
//! timeout, the task closes the connection and fires the lost signal; an ordinary server error
//! leaves the lock and the flag as they were.
//!
//! Releasing asks the task for the connection back (between two round trips, never in the
//! middle of one), runs `sp_releaseapplock` and returns the connection to the pool. Dropping
//! the handle instead tells the task to close the connection ([`MssqlSession::abandon`]), which
//! ends the session and so frees the lock; if the runtime is gone the task was dropped with the
//! connection, to the same effect. (A [`LockManager`](tierlock_core::LockManager) does not
//! drop it: it releases it on a task of its own.)

use std::fmt;
use std::sync::Arc;

use tierlock_core::held::{Abandon, Fault, Hold, Session};
use tierlock_core::provider::{BoxFuture, ExternalLock, LostSignal};
use tierlock_core::{BoxError, LockName};

use crate::conn::{Conn, StmtError, query_ints};
use crate::error::MssqlError;
use crate::provider::{Shared, short_bound};
use crate::sql::{KEEPALIVE_SQL, PROBE_SQL, RELEASE_SQL};

/// An applock held by this process on its own SQL Server session.
///
/// Returned by [`MssqlProvider::lock`](crate::MssqlProvider::lock); a
/// [`LockManager`](tierlock_core::LockManager) holds it as a `Box<dyn ExternalLock>`.
/// Release it with [`release`](MssqlLock::release); dropping it closes its connection, which
/// frees the lock too (a little later, and without reusing the connection).
pub struct MssqlLock {
    shared: Arc<Shared>,
    name: LockName,
    resource: String,
    session_id: i32,
    token: Option<u64>,
    hold: Hold<MssqlSession>,
}

/// The connection of a held lock, as its monitor task uses it.
pub(crate) struct MssqlSession {
    pub(crate) conn: Conn,
    pub(crate) request_resource: String,
}

impl MssqlLock {
    /// Hands `conn`, which holds the lock on `resource`, to a new monitor task.
    pub(crate) fn start(
        shared: Arc<Shared>,
        name: LockName,
        resource: String,
        (session_id, token): (i32, Option<u64>),
        session: MssqlSession,
    ) -> Self {
        let hold = Hold::start(session, shared.options.schedule());
        MssqlLock {
            shared,
            name,
            resource,
            session_id,
            token,
            hold,
        }
    }

    /// The lock name.
    pub fn name(&self) -> &LockName {
        &self.name
    }

    /// The `@Resource` the lock is held on.
    pub fn resource(&self) -> &str {
        &self.resource
    }

    /// The SQL Server session id (`@@SPID`) that holds the lock, as shown by
    /// `sys.dm_tran_locks.request_session_id`.
    pub fn session_id(&self) -> i32 {
        self.session_id
    }

    /// The fencing token of this acquisition, if the provider was built with
    /// [`fencing(true)`](crate::MssqlProviderBuilder::fencing).
    pub fn fencing_token(&self) -> Option<u64> {
        self.token
    }

    /// Whether the last probe saw another session's request mark.
    pub fn is_requested(&self) -> bool {
        self.hold.is_requested()
    }

    /// The signal that fires when the holding connection breaks.
    pub fn lost_signal(&self) -> &LostSignal {
        self.hold.lost_signal()
    }

    /// Releases the lock with `sp_releaseapplock` and returns the connection to the pool.
    ///
    /// # Errors
    ///
    /// [`MssqlError::Lost`] if the connection had broken (the server freed the lock then);
    /// otherwise the statement's error, after which the connection is closed — which frees the
    /// lock all the same.
    pub async fn release(self) -> Result<(), MssqlError> {
        let MssqlLock {
            shared,
            name,
            resource,
            hold,
            ..
        } = self;
        let Some(MssqlSession { mut conn, .. }) = hold.take_back().await else {
            return Err(MssqlError::Lost {
                name: name.as_str().to_owned(),
            });
        };
        unlock(&shared, &mut conn, &resource, name.as_str()).await?;
        shared.pool.put(conn);
        Ok(())
    }
}

/// `sp_releaseapplock` of `resource` on `conn`. On `Err` the caller drops the connection,
/// which frees the lock anyway.
pub(crate) async fn unlock(
    shared: &Shared,
    conn: &mut Conn,
    resource: &str,
    name: &str,
) -> Result<(), MssqlError> {
    let bound = short_bound(shared);
    match query_ints::<1>(conn, RELEASE_SQL, &[&resource], bound).await {
        Ok([0]) => Ok(()),
        Ok([code]) => Err(MssqlError::ReleaseFailed {
            name: name.to_owned(),
            code,
        }),
        Err(err) => Err(err.into_error("sp_releaseapplock", name)),
    }
}

/// Round-trip failures as the monitor sees them: an ordinary server error leaves the session
/// (and its lock) intact.
fn fault(err: &StmtError) -> Fault {
    if err.connection_broken() {
        Fault::Broken
    } else {
        Fault::Transient
    }
}

impl Abandon for MssqlSession {
    /// A dropped lock's connection is closed: the server frees the lock with the session.
    fn abandon(self) -> BoxFuture<'static, ()> {
        drop(self);
        Box::pin(std::future::ready(()))
    }
}

impl Session for MssqlSession {
    fn check_requested(&mut self) -> BoxFuture<'_, Result<bool, Fault>> {
        Box::pin(async move {
            let params: [&dyn tiberius::ToSql; 1] = [&self.request_resource.as_str()];
            // The monitor bounds the round trip.
            match query_ints::<1>(&mut self.conn, PROBE_SQL, &params, None).await {
                // APPLOCK_TEST says 0 when another session's shared mark blocks an exclusive
                // lock.
                Ok([grantable]) => Ok(grantable == 0),
                Err(err) => Err(fault(&err)),
            }
        })
    }

    fn keep_alive(&mut self) -> BoxFuture<'_, Result<(), Fault>> {
        Box::pin(async move {
            match query_ints::<1>(&mut self.conn, KEEPALIVE_SQL, &[], None).await {
                Ok(_) => Ok(()),
                Err(err) => Err(fault(&err)),
            }
        })
    }
}

impl ExternalLock for MssqlLock {
    fn release(self: Box<Self>) -> BoxFuture<'static, Result<(), BoxError>> {
        Box::pin(async move { Ok(MssqlLock::release(*self).await?) })
    }

    fn is_requested(&self) -> bool {
        MssqlLock::is_requested(self)
    }

    fn lost_signal(&self) -> Option<LostSignal> {
        Some(MssqlLock::lost_signal(self).clone())
    }

    fn fencing_token(&self) -> Option<u64> {
        self.token
    }
}

impl fmt::Debug for MssqlLock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MssqlLock")
            .field("name", &self.name)
            .field("resource", &self.resource)
            .field("session_id", &self.session_id)
            .field("token", &self.token)
            .field("hold", &self.hold)
            .finish()
    }
}

/// A waiter's request mark: a `Shared` applock on the request resource, on its own connection.
/// Abandoning it releases the mark and returns the connection to the pool, or closes the
/// connection if that fails (see [`AbandonOnDrop`](tierlock_core::held::AbandonOnDrop), which
/// runs it when the mark is dropped).
pub(crate) struct RequestHold {
    pub(crate) shared: Arc<Shared>,
    pub(crate) resource: String,
    pub(crate) conn: Conn,
}

impl Abandon for RequestHold {
    fn abandon(mut self) -> BoxFuture<'static, ()> {
        Box::pin(async move {
            let bound = short_bound(&self.shared);
            let params: [&dyn tiberius::ToSql; 1] = [&self.resource.as_str()];
            let released = query_ints::<1>(&mut self.conn, RELEASE_SQL, &params, bound).await;
            if matches!(released, Ok([0])) {
                self.shared.pool.put(self.conn);
            }
        })
    }
}
