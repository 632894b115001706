//! A held lock ([`MssqlLock`]) with its monitor task, and a waiter's request mark.
//!
//! The connection of a held lock belongs to a monitor task. Every probe interval the task asks
//! the server, on that connection, whether another session holds a request mark
//! (`APPLOCK_TEST` on the request resource) and stores the answer in an atomic flag, which
//! [`ExternalLock::is_requested`] reads without blocking. The probe doubles as a keepalive; with
//! probing switched off the task runs `SELECT 1` on the keepalive interval instead. If a round
//! trip fails because the connection broke, the task closes it and fires the lost signal.
//!
//! Releasing asks the task for the connection back (between two round trips, never in the
//! middle of one), runs `sp_releaseapplock` and returns the connection to the pool. Dropping the
//! handle instead tells the task to close the connection, which ends the session and so frees
//! the lock; if the runtime is gone the task is dropped with the connection, to the same effect.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tierlock_core::provider::{BoxFuture, ExternalLock, LostSignal};
use tierlock_core::{BoxError, LockName};
use tokio::sync::oneshot;
use tokio::time::MissedTickBehavior;

use crate::conn::{Client, query_ints};
use crate::error::MssqlError;
use crate::provider::{Shared, short_bound};
use crate::sql::{KEEPALIVE_SQL, PROBE_SQL, RELEASE_SQL};

/// Asks the monitor for the connection; it answers `None` if the connection was lost.
type ReleaseRequest = oneshot::Sender<Option<Client>>;

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
    requested: Arc<AtomicBool>,
    lost: LostSignal,
    monitor: Option<oneshot::Sender<ReleaseRequest>>,
}

impl MssqlLock {
    /// Hands `client`, which holds the lock on `resource`, to a new monitor task.
    pub(crate) fn start(
        shared: Arc<Shared>,
        name: LockName,
        resource: String,
        request_resource: String,
        client: Client,
        session_id: i32,
    ) -> Self {
        let requested = Arc::new(AtomicBool::new(false));
        let lost = LostSignal::new();
        let (tx, rx) = oneshot::channel();
        tokio::spawn(monitor(
            Arc::clone(&shared),
            client,
            rx,
            request_resource,
            Arc::clone(&requested),
            lost.clone(),
        ));
        MssqlLock {
            shared,
            name,
            resource,
            session_id,
            requested,
            lost,
            monitor: Some(tx),
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

    /// Whether the last probe saw another session's request mark.
    pub fn is_requested(&self) -> bool {
        self.requested.load(Ordering::Acquire)
    }

    /// The signal that fires when the holding connection breaks.
    pub fn lost_signal(&self) -> &LostSignal {
        &self.lost
    }

    /// Releases the lock with `sp_releaseapplock` and returns the connection to the pool.
    ///
    /// # Errors
    ///
    /// [`MssqlError::Lost`] if the connection had broken (the server freed the lock then);
    /// otherwise the statement's error, after which the connection is closed — which frees the
    /// lock all the same.
    pub async fn release(mut self) -> Result<(), MssqlError> {
        let name = || self.name.as_str().to_owned();
        let client = match self.monitor.take() {
            Some(monitor) => {
                let (reply, answer) = oneshot::channel();
                match monitor.send(reply) {
                    Ok(()) => answer.await.ok().flatten(),
                    Err(_) => None,
                }
            }
            None => None,
        };
        let Some(mut client) = client else {
            return Err(MssqlError::Lost { name: name() });
        };
        let bound = short_bound(&self.shared);
        match query_ints::<1>(&mut client, RELEASE_SQL, &[&self.resource.as_str()], bound).await {
            Ok([0]) => {
                self.shared.pool.put(client);
                Ok(())
            }
            Ok([code]) => Err(MssqlError::ReleaseFailed { name: name(), code }),
            Err(err) => Err(err.into_error("sp_releaseapplock", self.name.as_str())),
        }
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
        Some(self.lost.clone())
    }
}

impl fmt::Debug for MssqlLock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MssqlLock")
            .field("name", &self.name)
            .field("resource", &self.resource)
            .field("session_id", &self.session_id)
            .field("requested", &self.is_requested())
            .field("lost", &self.lost.is_lost())
            .finish()
    }
}

/// Owns a held lock's connection: probes or keeps it alive until asked for it back or told to
/// close it (the handle was dropped), and raises `lost` if it breaks.
async fn monitor(
    shared: Arc<Shared>,
    mut client: Client,
    mut handle: oneshot::Receiver<ReleaseRequest>,
    request_resource: String,
    requested: Arc<AtomicBool>,
    lost: LostSignal,
) {
    let options = &shared.options;
    let (period, probe) = match options.probe_interval {
        Some(interval) => (interval, true),
        None => (options.keepalive_interval, false),
    };
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            biased;
            request = &mut handle => {
                // Dropped handle: `client` goes out of scope here, closing the session.
                if let Ok(reply) = request {
                    let _ = reply.send(Some(client));
                }
                return;
            }
            _ = ticks.tick() => {}
        }
        let bound = short_bound(&shared);
        let result = if probe {
            let params: [&dyn tiberius::ToSql; 1] = [&request_resource.as_str()];
            query_ints::<1>(&mut client, PROBE_SQL, &params, bound).await
        } else {
            query_ints::<1>(&mut client, KEEPALIVE_SQL, &[], bound).await
        };
        match result {
            // APPLOCK_TEST says 0 when another session's shared mark blocks an exclusive lock.
            Ok([grantable]) if probe => requested.store(grantable == 0, Ordering::Release),
            Ok(_) => {}
            // An ordinary server error (e.g. a permission problem) leaves the session and its
            // lock intact; the request signal just stays as it was.
            Err(err) if !err.connection_broken() => {}
            Err(_) => {
                drop(client);
                lost.trigger();
                if let Ok(reply) = handle.await {
                    let _ = reply.send(None);
                }
                return;
            }
        }
    }
}

/// A waiter's request mark: a `Shared` applock on the request resource, on its own connection.
pub(crate) struct RequestHold {
    shared: Arc<Shared>,
    resource: String,
    client: Option<Client>,
}

impl RequestHold {
    pub(crate) fn new(shared: Arc<Shared>, resource: String, client: Client) -> Self {
        RequestHold {
            shared,
            resource,
            client: Some(client),
        }
    }
}

impl Drop for RequestHold {
    fn drop(&mut self) {
        let Some(mut client) = self.client.take() else {
            return;
        };
        // Without a runtime the connection is simply closed, which withdraws the mark.
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let shared = Arc::clone(&self.shared);
        let resource = std::mem::take(&mut self.resource);
        runtime.spawn(async move {
            let bound = short_bound(&shared);
            let released =
                query_ints::<1>(&mut client, RELEASE_SQL, &[&resource.as_str()], bound).await;
            if matches!(released, Ok([0])) {
                shared.pool.put(client);
            }
        });
    }
}
