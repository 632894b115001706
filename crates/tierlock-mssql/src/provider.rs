//! [`MssqlProvider`]: acquisition and request marks over pooled connections.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tierlock_core::held::AbandonOnDrop;
use tierlock_core::pool::IdlePool;
use tierlock_core::provider::{BoxFuture, ExternalLock, Provider, RequestMark, WaitStrategy};
use tierlock_core::{BoxError, LockName};

use crate::config::{MssqlProviderBuilder, Options, parse_connection_string};
use crate::conn::{Conn, StmtError, connect, execute, query_bigint, query_ints};
use crate::error::MssqlError;
use crate::held::{MssqlLock, MssqlSession, RequestHold, unlock};
use crate::names::{lock_resource, request_resource};
use crate::sql::{
    ACQUIRE_SQL, AppLockOutcome, FenceTable, INVALID_OBJECT_NAME, LockWait, OBJECT_EXISTS,
    REQUEST_LOCK_TIMEOUT_MS, REQUEST_SQL,
};

/// Locks shared through SQL Server application locks (`sp_getapplock`, session-owned).
///
/// Cloning shares the provider (its configuration and idle connections). Two providers on the
/// same database and namespace exclude each other, in one process or across hosts. See the
/// [crate documentation](crate) for how it works and how it fails.
///
/// ```no_run
/// use std::time::Duration;
/// use tierlock_core::LockManager;
/// use tierlock_mssql::MssqlProvider;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let provider = MssqlProvider::new(
///     "server=tcp:db.example.com,1433;database=app;user id=locker;password=secret",
/// )?;
/// let locks = LockManager::new(provider);
/// let guard = locks.lock("tenant:42:migrate", Duration::from_secs(60)).await?;
/// // ... only one process on any host runs this at a time ...
/// guard.release().await?;
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct MssqlProvider {
    shared: Arc<Shared>,
}

/// What a provider and the locks it handed out share.
pub(crate) struct Shared {
    pub(crate) config: tiberius::Config,
    pub(crate) options: Options,
    pub(crate) pool: IdlePool<Conn>,
    /// The counter table, if fencing is on.
    pub(crate) fence: Option<FenceTable>,
}

impl MssqlProvider {
    /// A provider with default settings for an ADO.NET or JDBC connection string (see
    /// [`parse_connection_string`]). No connection is opened until the first acquisition.
    ///
    /// # Errors
    ///
    /// [`MssqlError::Config`] if the string does not parse.
    ///
    /// ```
    /// let provider = tierlock_mssql::MssqlProvider::new(
    ///     "server=tcp:db.example.com,1433;user id=locker;password=secret",
    /// )?;
    /// # Ok::<(), tierlock_mssql::MssqlError>(())
    /// ```
    pub fn new(connection_string: &str) -> Result<Self, MssqlError> {
        Self::builder(connection_string)?.build()
    }

    /// A [`MssqlProviderBuilder`] for a connection string, to set the namespace, pool size,
    /// intervals and fencing.
    ///
    /// # Errors
    ///
    /// [`MssqlError::Config`] if the string does not parse.
    pub fn builder(connection_string: &str) -> Result<MssqlProviderBuilder, MssqlError> {
        Ok(MssqlProviderBuilder::from_config(parse_connection_string(
            connection_string,
        )?))
    }

    pub(crate) fn from_parts(
        config: tiberius::Config,
        options: Options,
        fence: Option<FenceTable>,
    ) -> Self {
        let pool = IdlePool::new(options.max_idle_connections, options.idle_timeout);
        MssqlProvider {
            shared: Arc::new(Shared {
                config,
                options,
                pool,
                fence,
            }),
        }
    }

    /// Whether acquisitions take fencing tokens (see [`MssqlProviderBuilder::fencing`]).
    pub fn fencing(&self) -> bool {
        self.shared.fence.is_some()
    }

    /// The namespace put before every lock name.
    pub fn namespace(&self) -> &str {
        &self.shared.options.namespace
    }

    /// The `@Resource` that holds the lock `name` (namespace applied, long names hashed): what
    /// to look for in `sys.dm_tran_locks`.
    ///
    /// ```
    /// let provider = tierlock_mssql::MssqlProvider::builder("server=tcp:h,1433")?
    ///     .namespace("app:")
    ///     .build()?;
    /// assert_eq!(provider.resource_name("Job"), "app:Job");
    /// # Ok::<(), tierlock_mssql::MssqlError>(())
    /// ```
    pub fn resource_name(&self, name: &str) -> String {
        lock_resource(self.namespace(), name)
    }

    /// The `@Resource` that waiters for `name` hold `Shared` to ask the holder for it.
    ///
    /// ```
    /// let provider = tierlock_mssql::MssqlProvider::new("server=tcp:h,1433")?;
    /// assert_eq!(provider.request_resource_name("job"), "job#tierlock-request");
    /// # Ok::<(), tierlock_mssql::MssqlError>(())
    /// ```
    pub fn request_resource_name(&self, name: &str) -> String {
        request_resource(self.namespace(), name)
    }

    /// Number of idle connections kept for reuse right now.
    pub fn idle_connections(&self) -> usize {
        self.shared.pool.len()
    }

    /// Takes the lock `name` on a dedicated connection, waiting on the server until `deadline`
    /// (`None`: without limit; a passed deadline: one attempt). `Ok(None)` means the lock is
    /// held elsewhere and was not obtained in time.
    ///
    /// This is what [`Provider::acquire`] does, with the concrete handle type; most code uses a
    /// [`LockManager`](tierlock_core::LockManager) instead.
    ///
    /// # Cancel safety
    ///
    /// Dropping the future closes the connection it was using, so a lock the server granted
    /// just then (and a fencing upsert in flight) is freed with the session.
    ///
    /// # Errors
    ///
    /// Connection failures, server errors, and `sp_getapplock` failures other than a timeout
    /// ([`MssqlError::Cancelled`], [`MssqlError::DeadlockVictim`],
    /// [`MssqlError::ParameterError`], [`MssqlError::Unexpected`]); with fencing on,
    /// [`MssqlError::Fencing`] (the lock was released).
    pub async fn lock(
        &self,
        name: &LockName,
        deadline: Option<Instant>,
    ) -> Result<Option<MssqlLock>, MssqlError> {
        let resource = self.resource_name(name.as_str());
        loop {
            let (mut conn, wait, [code, session_id]) = self
                .applock::<2>(name, ACQUIRE_SQL, &resource, || {
                    LockWait::until(deadline, Instant::now())
                })
                .await?;
            if outcome(AppLockOutcome::from_code(code), name)? {
                let token = match &self.shared.fence {
                    None => None,
                    Some(table) => {
                        match self.next_token(table, &mut conn, name, &resource).await {
                            Ok(token) => Some(token),
                            Err(err) => {
                                // Nothing may stay held: release (and pool the connection), or
                                // close the connection.
                                if unlock(&self.shared, &mut conn, &resource, name.as_str())
                                    .await
                                    .is_ok()
                                {
                                    self.shared.pool.put(conn);
                                }
                                return Err(err);
                            }
                        }
                    }
                };
                let session = MssqlSession {
                    conn,
                    request_resource: self.request_resource_name(name.as_str()),
                };
                return Ok(Some(MssqlLock::start(
                    Arc::clone(&self.shared),
                    name.clone(),
                    resource,
                    (session_id, token),
                    session,
                )));
            }
            self.shared.pool.put(conn);
            // Wait again if the budget was longer than `@LockTimeout` can express, or if the
            // server gave up before the deadline by its own clock.
            let early = deadline.is_some_and(|deadline| Instant::now() < deadline);
            if !(wait.clamped || early) {
                return Ok(None);
            }
        }
    }

    /// Marks interest in `name`: a `Shared` applock on its request resource, held on its own
    /// connection until the mark is dropped. `Ok(None)` if the mark could not be taken in
    /// [`REQUEST_LOCK_TIMEOUT_MS`].
    async fn request_mark(&self, name: &LockName) -> Result<Option<RequestMark>, MssqlError> {
        let resource = self.request_resource_name(name.as_str());
        let (conn, _, [code]) = self
            .applock::<1>(name, REQUEST_SQL, &resource, || LockWait {
                ms: REQUEST_LOCK_TIMEOUT_MS,
                clamped: false,
            })
            .await?;
        if outcome(AppLockOutcome::from_code(code), name)? {
            let hold = RequestHold {
                shared: Arc::clone(&self.shared),
                resource,
                conn,
            };
            Ok(Some(RequestMark::new(AbandonOnDrop::new(hold))))
        } else {
            self.shared.pool.put(conn);
            Ok(None)
        }
    }

    /// Advances the fencing counter of `resource` on `conn`, whose session has just been
    /// granted the lock, creating the table first if it does not exist.
    async fn next_token(
        &self,
        table: &FenceTable,
        conn: &mut Conn,
        name: &LockName,
        resource: &str,
    ) -> Result<u64, MssqlError> {
        let name = name.as_str();
        let fencing = |source| MssqlError::Fencing {
            name: name.to_owned(),
            table: table.name.clone(),
            source: Box::new(source),
        };
        let bound = short_bound(&self.shared);
        let advance =
            async |conn: &mut Conn| query_bigint(conn, &table.advance, &[&resource], bound).await;
        let token = match advance(conn).await {
            Err(StmtError::Driver(err)) if err.code() == Some(INVALID_OBJECT_NAME) => {
                let limit = self.shared.options.command_timeout;
                match execute(conn, &table.create, limit).await {
                    Ok(()) => {}
                    // Created by another session at the same moment.
                    Err(StmtError::Driver(err)) if err.code() == Some(OBJECT_EXISTS) => {}
                    Err(err) => {
                        return Err(fencing(err.into_error("creating the fencing table", name)));
                    }
                }
                advance(conn).await
            }
            other => other,
        }
        .map_err(|err| fencing(err.into_error("the fencing counter advance", name)))?;
        u64::try_from(token)
            .ok()
            .filter(|token| *token > 0)
            .ok_or_else(|| {
                fencing(MssqlError::InvalidToken {
                    name: name.to_owned(),
                    value: token,
                })
            })
    }

    /// Runs an `sp_getapplock` statement on a pooled (or new) connection. A reused connection
    /// that turns out broken is dropped and the statement runs once more on a new one: a
    /// broken connection's session is gone and holds nothing. `wait` is computed after the
    /// connection is ready, so connecting uses up part of the budget.
    async fn applock<const N: usize>(
        &self,
        name: &LockName,
        sql: &'static str,
        resource: &str,
        wait: impl Fn() -> LockWait,
    ) -> Result<(Conn, LockWait, [i32; N]), MssqlError> {
        let mut reuse = true;
        loop {
            let pooled = if reuse { self.shared.pool.take() } else { None };
            let reused = pooled.is_some();
            let mut conn = match pooled {
                Some(conn) => conn,
                None => connect(&self.shared.config, &self.shared.options).await?,
            };
            let wait = wait();
            let bound = wait.client_bound(self.shared.options.command_timeout);
            match query_ints::<N>(&mut conn, sql, &[&resource, &wait.ms], bound).await {
                Ok(row) => return Ok((conn, wait, row)),
                Err(err @ StmtError::Driver(_)) if reused && err.connection_broken() => {
                    drop(conn);
                    reuse = false;
                }
                // Should the server raise error 1205 instead of returning -3.
                Err(StmtError::Driver(err)) if err.is_deadlock() => {
                    return Err(MssqlError::DeadlockVictim {
                        name: name.as_str().to_owned(),
                    });
                }
                // Dropping the connection frees anything the statement might have taken.
                Err(err) => return Err(err.into_error("sp_getapplock", name.as_str())),
            }
        }
    }
}

/// `Ok(true)` granted, `Ok(false)` timed out, `Err` for the failure codes. The caller drops the
/// connection on `Err`, which frees anything an undocumented code might have left held.
fn outcome(outcome: AppLockOutcome, name: &LockName) -> Result<bool, MssqlError> {
    let name = || name.as_str().to_owned();
    match outcome {
        AppLockOutcome::Granted | AppLockOutcome::GrantedAfterWait => Ok(true),
        AppLockOutcome::TimedOut => Ok(false),
        AppLockOutcome::Cancelled => Err(MssqlError::Cancelled { name: name() }),
        AppLockOutcome::DeadlockVictim => Err(MssqlError::DeadlockVictim { name: name() }),
        AppLockOutcome::ParameterError => Err(MssqlError::ParameterError { name: name() }),
        AppLockOutcome::Unexpected(code) => Err(MssqlError::Unexpected { name: name(), code }),
    }
}

impl Provider for MssqlProvider {
    fn kind(&self) -> &'static str {
        "mssql"
    }

    fn wait_strategy(&self) -> WaitStrategy {
        WaitStrategy::Native
    }

    fn acquire<'a>(
        &'a self,
        name: &'a LockName,
        deadline: Option<Instant>,
    ) -> BoxFuture<'a, Result<Option<Box<dyn ExternalLock>>, BoxError>> {
        Box::pin(async move {
            let lock = self.lock(name, deadline).await?;
            Ok(lock.map(|lock| Box::new(lock) as Box<dyn ExternalLock>))
        })
    }

    fn request<'a>(
        &'a self,
        name: &'a LockName,
    ) -> BoxFuture<'a, Result<Option<RequestMark>, BoxError>> {
        Box::pin(async move { Ok(self.request_mark(name).await?) })
    }
}

impl fmt::Debug for MssqlProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the configuration itself: it holds credentials.
        f.debug_struct("MssqlProvider")
            .field("addr", &self.shared.config.get_addr())
            .field("namespace", &self.shared.options.namespace)
            .field("fencing", &self.fencing())
            .field("idle_connections", &self.shared.pool.len())
            .finish_non_exhaustive()
    }
}

/// The client-side bound of a short statement.
pub(crate) fn short_bound(shared: &Shared) -> Option<Duration> {
    Some(shared.options.command_timeout)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failure_codes_are_errors_naming_the_lock() {
        let name = LockName::new("order:7").unwrap();
        assert!(outcome(AppLockOutcome::Granted, &name).unwrap());
        assert!(outcome(AppLockOutcome::GrantedAfterWait, &name).unwrap());
        assert!(!outcome(AppLockOutcome::TimedOut, &name).unwrap());
        let errors = [
            (AppLockOutcome::Cancelled, "cancelled (return code -2)"),
            (
                AppLockOutcome::DeadlockVictim,
                "deadlock victim (return code -3)",
            ),
            (AppLockOutcome::ParameterError, "(return code -999)"),
            (AppLockOutcome::Unexpected(42), "undocumented code 42"),
        ];
        for (code, text) in errors {
            let err = outcome(code, &name).unwrap_err();
            let message = err.to_string();
            assert!(message.contains(text), "{message}");
            assert!(message.contains("\"order:7\""), "{message}");
        }
        assert!(matches!(
            outcome(AppLockOutcome::DeadlockVictim, &name),
            Err(MssqlError::DeadlockVictim { .. })
        ));
    }

    #[test]
    fn debug_output_hides_credentials() {
        let provider =
            MssqlProvider::new("server=tcp:db.example.com,1433;user id=sa;password=hunter2")
                .unwrap();
        let debug = format!("{provider:?}");
        assert!(debug.contains("db.example.com:1433"), "{debug}");
        assert!(!debug.contains("hunter2"), "{debug}");
        assert_eq!(provider.kind(), "mssql");
        assert_eq!(provider.wait_strategy(), WaitStrategy::Native);
    }

    #[tokio::test]
    async fn unreachable_server_is_a_connect_error_not_a_timeout() {
        // Port 1 on loopback: nothing listens there, the connection is refused at once.
        let provider = MssqlProvider::builder("server=tcp:127.0.0.1,1;user id=u;password=p")
            .unwrap()
            .connect_timeout(Duration::from_secs(10))
            .build()
            .unwrap();
        let name = LockName::new("job").unwrap();
        let err = provider.lock(&name, None).await.unwrap_err();
        match &err {
            MssqlError::Connect { addr, .. } => assert_eq!(addr, "127.0.0.1:1"),
            other => panic!("expected a connect error, got {other:?}"),
        }
        assert!(std::error::Error::source(&err).is_some());
        // Through the trait, the error keeps its type for downcasting.
        let boxed = provider
            .acquire(&name, Some(Instant::now()))
            .await
            .unwrap_err();
        assert!(boxed.downcast_ref::<MssqlError>().is_some());
        assert_eq!(provider.idle_connections(), 0);
    }
}
