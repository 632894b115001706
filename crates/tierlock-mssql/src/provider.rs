//! [`MssqlProvider`]: acquisition and request marks over pooled connections.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tierlock_core::provider::{BoxFuture, ExternalLock, Provider, RequestMark, WaitStrategy};
use tierlock_core::{BoxError, LockName};

use crate::config::{MssqlBuilder, Options, parse_connection_string};
use crate::conn::{Client, Pool, StmtError, connect, query_ints};
use crate::error::MssqlError;
use crate::held::{MssqlLock, RequestHold};
use crate::names::{lock_resource, request_resource};
use crate::sql::{ACQUIRE_SQL, AppLockOutcome, LockWait, REQUEST_LOCK_TIMEOUT_MS, REQUEST_SQL};

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
    pub(crate) pool: Pool,
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

    /// A [`MssqlBuilder`] for a connection string, to set the namespace, pool size and
    /// intervals.
    ///
    /// # Errors
    ///
    /// [`MssqlError::Config`] if the string does not parse.
    pub fn builder(connection_string: &str) -> Result<MssqlBuilder, MssqlError> {
        Ok(MssqlBuilder::from_config(parse_connection_string(
            connection_string,
        )?))
    }

    pub(crate) fn from_parts(config: tiberius::Config, options: Options) -> Self {
        let pool = Pool::new(options.max_idle, options.idle_timeout);
        MssqlProvider {
            shared: Arc::new(Shared {
                config,
                options,
                pool,
            }),
        }
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
    /// just then is freed with the session.
    ///
    /// # Errors
    ///
    /// Connection failures, server errors, and `sp_getapplock` failures other than a timeout
    /// ([`MssqlError::Cancelled`], [`MssqlError::DeadlockVictim`],
    /// [`MssqlError::ParameterError`], [`MssqlError::Unexpected`]).
    pub async fn lock(
        &self,
        name: &LockName,
        deadline: Option<Instant>,
    ) -> Result<Option<MssqlLock>, MssqlError> {
        let resource = self.resource_name(name.as_str());
        loop {
            let (client, wait, [code, session_id]) = self
                .applock::<2>(name, ACQUIRE_SQL, &resource, || {
                    LockWait::until(deadline, Instant::now())
                })
                .await?;
            if outcome(AppLockOutcome::from_code(code), name)? {
                let request = self.request_resource_name(name.as_str());
                return Ok(Some(MssqlLock::start(
                    Arc::clone(&self.shared),
                    name.clone(),
                    resource,
                    request,
                    client,
                    session_id,
                )));
            }
            self.shared.pool.put(client);
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
        let (client, _, [code]) = self
            .applock::<1>(name, REQUEST_SQL, &resource, || LockWait {
                ms: REQUEST_LOCK_TIMEOUT_MS,
                clamped: false,
            })
            .await?;
        if outcome(AppLockOutcome::from_code(code), name)? {
            let hold = RequestHold::new(Arc::clone(&self.shared), resource, client);
            Ok(Some(RequestMark::new(hold)))
        } else {
            self.shared.pool.put(client);
            Ok(None)
        }
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
    ) -> Result<(Client, LockWait, [i32; N]), MssqlError> {
        let mut reuse = true;
        loop {
            let pooled = if reuse { self.shared.pool.take() } else { None };
            let reused = pooled.is_some();
            let mut client = match pooled {
                Some(client) => client,
                None => connect(&self.shared.config, &self.shared.options).await?,
            };
            let wait = wait();
            let bound = wait.client_bound(self.shared.options.command_timeout);
            match query_ints::<N>(&mut client, sql, &[&resource, &wait.ms], bound).await {
                Ok(row) => return Ok((client, wait, row)),
                Err(err @ StmtError::Driver(_)) if reused && err.connection_broken() => {
                    drop(client);
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
