//! A held lock ([`MssqlLock`]).
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
//! the handle instead tells the task to do the same in the background
//! ([`MssqlSession::abandon`]), registered in the provider's
//! [`Releases`](tierlock_core::held::Releases) so that the provider's next acquisition of the
//! name waits for it — and finds the connection back in the pool, instead of logging in again
//! (a [`LockManager`](tierlock_core::LockManager) releases a lock handed back to another
//! process this way). A failed release closes the connection, which frees the lock too; if the
//! runtime is gone the task was dropped with the connection, to the same effect.

use std::fmt;
use std::sync::Arc;

use parking_lot::Mutex;

use tierlock_core::held::{Abandon, Fault, Hold, Releasing, Session};
use tierlock_core::provider::{BoxFuture, ExternalLock, LostSignal};
use tierlock_core::{BoxError, LockName};

use crate::conn::{Conn, StmtError, query_ints};
use crate::error::MssqlError;
use crate::provider::Shared;
use crate::server::{ServerKind, is_not_held};
use crate::sql::{KEEPALIVE_SQL, PROBE_SQL, RELEASE_SQL};

/// An applock held by this process on its own SQL Server session.
///
/// Returned by [`MssqlProvider::lock`](crate::MssqlProvider::lock); a
/// [`LockManager`](tierlock_core::LockManager) holds it as a `Box<dyn ExternalLock>`.
/// Release it with [`release`](MssqlLock::release); dropping it releases it in the background
/// (and this provider's next acquisition of the name waits for that).
pub struct MssqlLock {
    shared: Arc<Shared>,
    name: LockName,
    resource: String,
    session_id: i32,
    token: Option<u64>,
    hold: Hold<MssqlSession>,
    early: EarlyRelease,
}

/// The connection of a held lock, as its monitor task uses it.
pub(crate) struct MssqlSession {
    pub(crate) conn: Conn,
    pub(crate) shared: Arc<Shared>,
    pub(crate) name: LockName,
    pub(crate) resource: String,
    pub(crate) request_resource: String,
    pub(crate) early: EarlyRelease,
}

/// The release of a lock that a manager is about to hand back to another process, registered
/// in the provider's releases as soon as the manager reads the request flag (see
/// [`ExternalLock::is_requested`] below), and finished once the session is back in the pool.
///
/// A manager reads the flag at a turn boundary, and when it is set hands the external lock back
/// and wakes its next local waiter *before* it drops (or releases) the handle. Registered only
/// then, the release could come too late for that waiter's acquisition, which would find the
/// pool empty and log in again.
#[derive(Clone, Default)]
pub(crate) struct EarlyRelease(Arc<Mutex<Option<Releasing>>>);

impl EarlyRelease {
    fn begin(&self, shared: &Shared, name: &LockName) {
        let mut slot = self.0.lock();
        if slot.is_none() {
            *slot = Some(shared.releases.begin(name.clone()));
        }
    }

    fn finish(&self) {
        drop(self.0.lock().take());
    }
}

impl MssqlSession {
    /// `sp_releaseapplock`, then the connection goes back to the pool. On failure the
    /// connection is closed, which frees the lock all the same — except after "not held" on SQL
    /// Server, where the session is clean and is pooled.
    async fn unlock(mut self) -> Result<(), MssqlError> {
        let released = unlock(
            &self.shared,
            &mut self.conn,
            &self.resource,
            self.name.as_str(),
        )
        .await;
        let clean = match &released {
            Ok(()) => true,
            Err(MssqlError::NotHeld { .. }) => self.shared.kind() == ServerKind::SqlServer,
            Err(_) => false,
        };
        if clean {
            self.shared.put(self.conn);
        }
        self.early.finish();
        released
    }
}

impl MssqlLock {
    /// Hands `session`, which holds the lock, to a new monitor task.
    pub(crate) fn start(session: MssqlSession, session_id: i32, token: Option<u64>) -> Self {
        let shared = Arc::clone(&session.shared);
        let (name, resource) = (session.name.clone(), session.resource.clone());
        let early = session.early.clone();
        let hold = Hold::start(session, shared.options.schedule())
            .settle_in(&shared.releases, name.clone());
        MssqlLock {
            shared,
            name,
            resource,
            session_id,
            token,
            hold,
            early,
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
    /// [`MssqlError::NotHeld`] if the session no longer held it; otherwise the statement's
    /// error, after which the connection is closed — which frees the lock all the same.
    pub async fn release(self) -> Result<(), MssqlError> {
        let releasing = self.shared.releases.begin(self.name.clone());
        self.release_registered(releasing).await
    }

    /// The release, registered in the provider's releases (`releasing`) before anything else,
    /// so that this provider's next acquisition of the name waits for the connection to be
    /// back in the pool.
    async fn release_registered(self, releasing: Releasing) -> Result<(), MssqlError> {
        let MssqlLock { name, hold, .. } = self;
        let released = match hold.take_back().await {
            Some(session) => session.unlock().await,
            None => Err(MssqlError::Lost {
                name: name.as_str().to_owned(),
            }),
        };
        drop(releasing);
        released
    }
}

/// `sp_releaseapplock` of `resource` on `conn`. On `Err` other than [`MssqlError::NotHeld`]
/// the caller drops the connection, which frees the lock anyway.
pub(crate) async fn unlock(
    shared: &Shared,
    conn: &mut Conn,
    resource: &str,
    name: &str,
) -> Result<(), MssqlError> {
    let not_held = || MssqlError::NotHeld {
        name: name.to_owned(),
    };
    match query_ints::<1>(conn, RELEASE_SQL, &[&resource], shared.short_bound()).await {
        Ok([0]) => Ok(()),
        Ok([-999]) => Err(not_held()),
        Ok([code]) => Err(MssqlError::ReleaseFailed {
            name: name.to_owned(),
            code,
        }),
        Err(err) if is_not_held(&err) => Err(not_held()),
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
    /// A dropped lock is released in the background and its connection reused (or closed, if
    /// the release fails: the server frees the lock with the session).
    fn abandon(self) -> BoxFuture<'static, ()> {
        Box::pin(async move {
            let _ = self.unlock().await;
        })
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
        // Registered now, not at the first poll: the manager hands the name to the next local
        // waiter before it awaits this.
        let releasing = self.shared.releases.begin(self.name.clone());
        Box::pin(async move { Ok(self.release_registered(releasing).await?) })
    }

    /// Dropping tells the monitor task to release in the background, registered so that this
    /// provider's next acquisition of the name waits for it: the manager need not spawn a task
    /// of its own.
    fn drop_releases(&self) -> bool {
        true
    }

    /// The cached flag. When it is set, the manager is about to hand the lock back: its
    /// release is registered now (see `EarlyRelease`). If the lock were kept after all, this
    /// provider's acquisitions of the name would wait for it (up to `command_timeout`) — while
    /// it is held here anyway.
    fn is_requested(&self) -> bool {
        let requested = MssqlLock::is_requested(self);
        if requested {
            self.early.begin(&self.shared, &self.name);
        }
        requested
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
