//! [`MssqlProvider`]: the provider's handle, what it shares with its locks, and the
//! [`Provider`] implementation (acquisition itself is in `acquire.rs`).

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use tierlock_core::held::Releases;
use tierlock_core::pool::IdlePool;
use tierlock_core::provider::{BoxFuture, ExternalLock, Provider, RequestMark, WaitStrategy};
use tierlock_core::{BoxError, LockName};

use crate::config::{MssqlProviderBuilder, Options, parse_connection_string};
use crate::conn::{Conn, StmtError, connect};
use crate::error::{ConnectError, MssqlError};
use crate::naming::Naming;
use crate::server::ServerKind;
use crate::sql::FenceTable;
use tierlock_core::announce::Announced;

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
    pub(crate) shared: Arc<Shared>,
}

/// What a provider and the locks it handed out share.
pub(crate) struct Shared {
    pub(crate) config: tiberius::Config,
    pub(crate) options: Options,
    pub(crate) pool: IdlePool<Conn>,
    /// The counter table, if fencing is on.
    pub(crate) fence: Option<FenceTable>,
    /// Told on the first connection.
    pub(crate) kind: OnceLock<ServerKind>,
    /// Dropped locks still being released in the background.
    pub(crate) releases: Arc<Releases>,
    /// Waits announced by `Provider::request`.
    pub(crate) announced: Arc<Announced>,
    /// Connections opened (logins) so far.
    opened: AtomicU64,
}

impl Shared {
    /// The server kind, once a connection told it; SQL Server until then.
    pub(crate) fn kind(&self) -> ServerKind {
        self.kind.get().copied().unwrap_or(ServerKind::SqlServer)
    }

    /// Opens a connection; the provider's first one also tells the server kind.
    pub(crate) async fn open(&self) -> Result<Conn, MssqlError> {
        let mut conn = connect(&self.config, &self.options).await?;
        self.opened.fetch_add(1, Ordering::Relaxed);
        if self.kind.get().is_none() {
            let bound = self.options.command_timeout;
            let kind =
                ServerKind::detect(&mut conn, bound)
                    .await
                    .map_err(|err| MssqlError::Connect {
                        addr: self.config.get_addr(),
                        source: match err {
                            StmtError::Timeout(after) => ConnectError::Timeout(after),
                            StmtError::Driver(err) => ConnectError::Detect(Box::new(err)),
                            StmtError::NoRow => ConnectError::Detect(Box::new(
                                tiberius::error::Error::Protocol("no result row".into()),
                            )),
                        },
                    })?;
            let _ = self.kind.set(kind);
        }
        Ok(conn)
    }

    /// Returns a clean connection to the pool, unless it was retired: then it is closed.
    pub(crate) fn put(&self, conn: Conn) {
        if !conn.retired {
            self.pool.put(conn);
        }
    }

    /// The client-side bound of a short statement.
    pub(crate) fn short_bound(&self) -> Option<Duration> {
        Some(self.options.command_timeout)
    }
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
    /// intervals, naming and fencing.
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
                kind: OnceLock::new(),
                releases: Releases::new(),
                announced: Arc::default(),
                opened: AtomicU64::new(0),
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

    /// The rule that maps names to resources (see [`MssqlProviderBuilder::naming`]).
    pub fn naming(&self) -> Naming {
        self.shared.options.naming
    }

    /// The kind of server, told on the provider's first connection; `None` before it (see
    /// [`MssqlProviderBuilder::connect`] to open it up front).
    pub fn server_kind(&self) -> Option<ServerKind> {
        self.shared.kind.get().copied()
    }

    /// The `@Resource` that holds the lock `name` (namespace applied, long names mapped by the
    /// [naming](Self::naming)): what to look for in `sys.dm_tran_locks`. On Babelfish the
    /// default naming keeps resources within 255 bytes; until the first connection told the
    /// server kind, this is the SQL Server form.
    ///
    /// ```
    /// let provider = tierlock_mssql::MssqlProvider::builder("server=tcp:h,1433")?
    ///     .namespace("app:")
    ///     .build()?;
    /// assert_eq!(provider.resource_name("Job"), "app:Job");
    /// # Ok::<(), tierlock_mssql::MssqlError>(())
    /// ```
    pub fn resource_name(&self, name: &str) -> String {
        let kind = self.shared.kind();
        self.naming().lock_resource(kind, self.namespace(), name)
    }

    /// The `@Resource` that waiters for `name` hold `Shared` to ask the holder for it.
    ///
    /// ```
    /// let provider = tierlock_mssql::MssqlProvider::new("server=tcp:h,1433")?;
    /// assert_eq!(provider.request_resource_name("job"), "job#tierlock-request");
    /// # Ok::<(), tierlock_mssql::MssqlError>(())
    /// ```
    pub fn request_resource_name(&self, name: &str) -> String {
        let kind = self.shared.kind();
        self.naming().request_resource(kind, self.namespace(), name)
    }

    /// Number of idle connections kept for reuse right now.
    pub fn idle_connections(&self) -> usize {
        self.shared.pool.len()
    }

    /// Number of connections (sessions, logins) this provider has opened so far.
    pub fn sessions_opened(&self) -> u64 {
        self.shared.opened.load(Ordering::Relaxed)
    }

    /// Opens a connection if none was opened yet, which tells the server kind; it goes to the
    /// pool for the next acquisition.
    pub(crate) async fn warm_up(&self) -> Result<ServerKind, MssqlError> {
        if let Some(kind) = self.server_kind() {
            return Ok(kind);
        }
        let conn = self.shared.open().await?;
        self.shared.put(conn);
        Ok(self.shared.kind())
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

    /// Announces a wait for `name`: the wait that follows marks the request on its own session,
    /// in the same batch (see the crate documentation). No I/O.
    fn request<'a>(
        &'a self,
        name: &'a LockName,
    ) -> BoxFuture<'a, Result<Option<RequestMark>, BoxError>> {
        let announcement = self.shared.announced.announce(name.as_str());
        Box::pin(std::future::ready(Ok(Some(RequestMark::new(announcement)))))
    }
}

impl fmt::Debug for MssqlProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the configuration itself: it holds credentials.
        f.debug_struct("MssqlProvider")
            .field("addr", &self.shared.config.get_addr())
            .field("namespace", &self.shared.options.namespace)
            .field("naming", &self.shared.options.naming)
            .field("server_kind", &self.server_kind())
            .field("fencing", &self.fencing())
            .field("idle_connections", &self.shared.pool.len())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert_eq!(provider.server_kind(), None);
        assert_eq!(provider.sessions_opened(), 0);
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
        assert_eq!(provider.sessions_opened(), 0);
    }

    #[tokio::test]
    async fn request_announces_without_io_until_the_mark_is_dropped() {
        let provider = MssqlProvider::new("server=tcp:127.0.0.1,1;user id=u;password=p").unwrap();
        let name = LockName::new("job").unwrap();
        let mark = provider.request(&name).await.unwrap().expect("a mark");
        assert!(provider.shared.announced.contains("job"));
        drop(mark);
        assert!(!provider.shared.announced.contains("job"));
        assert_eq!(provider.sessions_opened(), 0);
    }
}
