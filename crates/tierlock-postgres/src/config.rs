//! [`Builder`]: configuration of a [`PostgresProvider`].

use std::sync::Arc;
use std::time::Duration;

use crate::conn::{Connector, Pool};
use crate::error::PostgresError;
use crate::provider::PostgresProvider;

/// Settings that the provider and its held locks share.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    pub namespace: String,
    pub request_poll_interval: Option<Duration>,
    pub keepalive_interval: Option<Duration>,
    pub command_timeout: Duration,
}

/// Configures a [`PostgresProvider`]; made by [`PostgresProvider::builder`].
///
/// ```no_run
/// use std::time::Duration;
/// use tierlock_postgres::PostgresProvider;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), tierlock_postgres::PostgresError> {
/// let provider = PostgresProvider::builder("postgres://app@db.internal/app")
///     .namespace("billing")
///     .max_idle(8)
///     .keepalive_interval(Duration::from_secs(60))
///     .connect()
///     .await?;
/// let locks = tierlock_core::LockManager::new(provider);
/// # Ok(())
/// # }
/// ```
#[must_use]
pub struct Builder {
    url: String,
    namespace: String,
    max_idle: usize,
    request_poll_interval: Duration,
    keepalive_interval: Duration,
    command_timeout: Duration,
    #[cfg(feature = "rustls")]
    tls: Option<rustls::ClientConfig>,
}

impl std::fmt::Debug for Builder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The URL may contain a password: leave it out.
        f.debug_struct("Builder")
            .field("namespace", &self.namespace)
            .field("max_idle", &self.max_idle)
            .field("request_poll_interval", &self.request_poll_interval)
            .field("keepalive_interval", &self.keepalive_interval)
            .field("command_timeout", &self.command_timeout)
            .finish_non_exhaustive()
    }
}

impl Builder {
    pub(crate) fn new(url: impl Into<String>) -> Builder {
        Builder {
            url: url.into(),
            namespace: String::new(),
            max_idle: 4,
            request_poll_interval: Duration::from_millis(50),
            keepalive_interval: Duration::from_secs(120),
            command_timeout: Duration::from_secs(30),
            #[cfg(feature = "rustls")]
            tls: None,
        }
    }

    /// The scope of lock names (default `""`): names are only exclusive among providers with
    /// the same namespace on the same database, so unrelated applications or test runs sharing
    /// a database can use independent namespaces. It is part of the key derivation (see
    /// [`lock_key`](crate::lock_key)).
    pub fn namespace(mut self, namespace: impl Into<String>) -> Self {
        self.namespace = namespace.into();
        self
    }

    /// How many idle connections are kept for reuse (default 4). Held locks and waiting
    /// acquisitions each use a connection of their own on top of these.
    pub fn max_idle(mut self, max_idle: usize) -> Self {
        self.max_idle = max_idle;
        self
    }

    /// How often a held lock checks whether another process is waiting for it (default
    /// 50 ms). Each check is one query on `pg_locks`; `Duration::ZERO` turns checking off (then
    /// a busy process keeps a lock for as long as its own tasks want it).
    pub fn request_poll_interval(mut self, interval: Duration) -> Self {
        self.request_poll_interval = interval;
        self
    }

    /// How long a held lock's connection may stay silent before a `SELECT 1` is sent on it
    /// (default 2 minutes): keeps idle-connection killers (firewalls, `idle_session_timeout`)
    /// away and detects dead connections. Request checks count as traffic. `Duration::ZERO`
    /// turns the keepalive off.
    pub fn keepalive_interval(mut self, interval: Duration) -> Self {
        self.keepalive_interval = interval;
        self
    }

    /// How long opening a connection or any short command (try-lock, unlock, checks) may take
    /// before the connection is considered dead and closed (default 30 s). A blocking wait for
    /// a lock gets its remaining budget on top of this.
    pub fn command_timeout(mut self, timeout: Duration) -> Self {
        self.command_timeout = timeout;
        self
    }

    /// Connects with TLS through rustls using `config` (its root certificates decide which
    /// servers are trusted). Without this, connections are plain and a URL with
    /// `sslmode=require` fails to connect. With it, `sslmode=prefer` (the default) uses TLS
    /// when the server offers it; use `sslmode=require` to insist.
    ///
    /// If your build compiles in more than one rustls crypto provider (for instance `ring` from
    /// this crate and `aws-lc-rs` from the SQL Server provider), `ClientConfig::builder()`
    /// panics; build the config with `ClientConfig::builder_with_provider` instead.
    ///
    /// ```no_run
    /// use tierlock_postgres::PostgresProvider;
    ///
    /// # fn roots() -> rustls::RootCertStore { rustls::RootCertStore::empty() }
    /// let tls = rustls::ClientConfig::builder()
    ///     .with_root_certificates(roots())
    ///     .with_no_client_auth();
    /// let provider = PostgresProvider::builder("postgres://app@db.internal/app?sslmode=require")
    ///     .tls(tls)
    ///     .build()?;
    /// # Ok::<(), tierlock_postgres::PostgresError>(())
    /// ```
    #[cfg(feature = "rustls")]
    pub fn tls(mut self, config: rustls::ClientConfig) -> Self {
        self.tls = Some(config);
        self
    }

    /// Makes the provider without connecting yet (connections are opened on first use).
    ///
    /// # Errors
    ///
    /// [`PostgresError::Config`] if the URL or connection string cannot be parsed.
    pub fn build(self) -> Result<PostgresProvider, PostgresError> {
        let config: tokio_postgres::Config = self
            .url
            .parse()
            .map_err(|source| PostgresError::Config { source })?;
        #[cfg(feature = "rustls")]
        let connector = match self.tls {
            Some(tls) => Connector::Rustls(tokio_postgres_rustls::MakeRustlsConnect::new(tls)),
            None => Connector::Plain,
        };
        #[cfg(not(feature = "rustls"))]
        let connector = Connector::Plain;
        let nonzero = |d: Duration| (!d.is_zero()).then_some(d);
        let settings = Settings {
            namespace: self.namespace,
            request_poll_interval: nonzero(self.request_poll_interval),
            keepalive_interval: nonzero(self.keepalive_interval),
            command_timeout: self.command_timeout,
        };
        let pool = Pool::new(config, connector, self.command_timeout, self.max_idle);
        Ok(PostgresProvider::from_parts(
            Arc::new(pool),
            Arc::new(settings),
        ))
    }

    /// Makes the provider and opens one connection to check the configuration; the connection
    /// is kept for the first lock.
    ///
    /// # Errors
    ///
    /// [`PostgresError::Config`] for a bad URL; [`PostgresError::Connect`] or
    /// [`PostgresError::ConnectTimeout`] if the server cannot be reached or refuses the login.
    pub async fn connect(self) -> Result<PostgresProvider, PostgresError> {
        let provider = self.build()?;
        provider.warm_up().await?;
        Ok(provider)
    }
}
