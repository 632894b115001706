//! [`PostgresProviderBuilder`]: configuration of a [`PostgresProvider`].

use std::sync::Arc;
use std::time::Duration;

use tierlock_core::held::Schedule;
use tierlock_core::options::{OptionError, nonzero};

use crate::conn::Connections;
use crate::error::PostgresError;
use crate::fence::FenceTable;
use crate::provider::PostgresProvider;

/// Settings that the provider and its held locks share.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    pub namespace: String,
    pub schedule: Schedule,
    pub command_timeout: Duration,
    /// The counter table, if fencing is on.
    pub fencing: Option<FenceTable>,
}

/// Configures a [`PostgresProvider`]; made by [`PostgresProvider::builder`].
///
/// Every option has a default. Durations are never zero: an option that can be switched off
/// takes an `Option` (`None` is off; a plain `Duration` converts to `Some`), and
/// [`build`](Self::build) rejects a zero duration with [`PostgresError::Option`].
///
/// | option | default | |
/// |---|---|---|
/// | [`namespace`](Self::namespace) | `""` | scope of names (part of the key) |
/// | [`max_idle_connections`](Self::max_idle_connections) | 4 | idle connections kept; 0 disables reuse |
/// | [`idle_timeout`](Self::idle_timeout) | 60 s | an idle connection unused longer is closed; `None`: kept until it closes |
/// | [`request_poll_interval`](Self::request_poll_interval) | 50 ms | a held lock checks for waiting processes; `None`: never (no early hand-over) |
/// | [`keepalive_interval`](Self::keepalive_interval) | 2 min | `SELECT 1` on a held lock's silent connection; `None`: never |
/// | [`command_timeout`](Self::command_timeout) | 30 s | bound on each short command, and margin on a lock wait |
/// | [`connect_timeout`](Self::connect_timeout) | 15 s | bound on opening a connection |
/// | [`client_connection_check_interval`](Self::client_connection_check_interval) | 1 s | the server checks this often that a waiting client is alive (PostgreSQL ≥ 14); `None`: the server's setting |
/// | [`fencing`](Self::fencing) | off | a fencing token per acquisition, from a counter table |
///
/// ```no_run
/// use std::time::Duration;
/// use tierlock_postgres::PostgresProvider;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), tierlock_postgres::PostgresError> {
/// let provider = PostgresProvider::builder("postgres://app@db.internal/app")
///     .namespace("billing")
///     .max_idle_connections(8)
///     .request_poll_interval(Duration::from_millis(250))
///     .keepalive_interval(None)
///     .fencing(true)
///     .connect()
///     .await?;
/// let locks = tierlock_core::LockManager::new(provider);
/// # Ok(())
/// # }
/// ```
#[must_use]
pub struct PostgresProviderBuilder {
    url: String,
    namespace: String,
    max_idle_connections: usize,
    idle_timeout: Option<Duration>,
    request_poll_interval: Option<Duration>,
    keepalive_interval: Option<Duration>,
    command_timeout: Duration,
    connect_timeout: Duration,
    client_connection_check_interval: Option<Duration>,
    fencing: bool,
    fencing_table: String,
    #[cfg(feature = "rustls")]
    tls: Option<rustls::ClientConfig>,
}

impl std::fmt::Debug for PostgresProviderBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The URL may contain a password: leave it out.
        f.debug_struct("PostgresProviderBuilder")
            .field("namespace", &self.namespace)
            .field("max_idle_connections", &self.max_idle_connections)
            .field("idle_timeout", &self.idle_timeout)
            .field("request_poll_interval", &self.request_poll_interval)
            .field("keepalive_interval", &self.keepalive_interval)
            .field("command_timeout", &self.command_timeout)
            .field("connect_timeout", &self.connect_timeout)
            .field(
                "client_connection_check_interval",
                &self.client_connection_check_interval,
            )
            .field("fencing", &self.fencing)
            .field("fencing_table", &self.fencing_table)
            .finish_non_exhaustive()
    }
}

impl PostgresProviderBuilder {
    pub(crate) fn new(url: impl Into<String>) -> PostgresProviderBuilder {
        PostgresProviderBuilder {
            url: url.into(),
            namespace: String::new(),
            max_idle_connections: 4,
            idle_timeout: Some(Duration::from_secs(60)),
            request_poll_interval: Some(Duration::from_millis(50)),
            keepalive_interval: Some(Duration::from_secs(120)),
            command_timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(15),
            client_connection_check_interval: Some(Duration::from_secs(1)),
            fencing: false,
            fencing_table: crate::fence::DEFAULT_TABLE.to_owned(),
            #[cfg(feature = "rustls")]
            tls: None,
        }
    }

    /// The scope of lock names (default `""`): names are only exclusive among providers with
    /// the same namespace on the same database, so unrelated applications or test runs sharing
    /// a database can use independent namespaces. It is part of the key derivation (see
    /// [`lock_key`](crate::lock_key)).
    ///
    /// ```
    /// use tierlock_postgres::PostgresProvider;
    ///
    /// let url = "postgres://app@db.internal/app";
    /// let billing = PostgresProvider::builder(url).namespace("billing").build()?;
    /// let reports = PostgresProvider::builder(url).namespace("reports").build()?;
    /// assert_eq!(billing.namespace(), "billing");
    /// // The same name is a different advisory lock in another namespace.
    /// assert_ne!(billing.lock_key("nightly"), reports.lock_key("nightly"));
    /// # Ok::<(), tierlock_postgres::PostgresError>(())
    /// ```
    pub fn namespace(mut self, namespace: impl Into<String>) -> Self {
        self.namespace = namespace.into();
        self
    }

    /// How many idle connections are kept for reuse (default 4; 0 disables reuse). Held locks
    /// and waiting acquisitions each use a connection of their own on top of these.
    ///
    /// ```
    /// use tierlock_postgres::PostgresProvider;
    ///
    /// let url = "postgres://app@db.internal/app";
    /// let provider = PostgresProvider::builder(url)
    ///     .max_idle_connections(16) // a busy service taking many locks at once
    ///     .build()?;
    /// assert_eq!(provider.idle_connections(), 0); // none opened before the first lock
    /// # Ok::<(), tierlock_postgres::PostgresError>(())
    /// ```
    pub fn max_idle_connections(mut self, max: usize) -> Self {
        self.max_idle_connections = max;
        self
    }

    /// An idle connection unused for longer than this is closed instead of reused (default
    /// 60 s), so a connection silently dropped by a firewall is rarely picked up. `None` keeps
    /// idle connections until they close. (A connection the server closed is never reused.)
    ///
    /// ```
    /// use std::time::Duration;
    /// use tierlock_postgres::PostgresProvider;
    ///
    /// let url = "postgres://app@db.internal/app";
    /// let provider = PostgresProvider::builder(url)
    ///     .idle_timeout(Duration::from_secs(10)) // the firewall drops idle flows after 30 s
    ///     .build()?;
    /// let keep = PostgresProvider::builder(url).idle_timeout(None).build()?;
    /// # Ok::<(), tierlock_postgres::PostgresError>(())
    /// ```
    pub fn idle_timeout(mut self, timeout: impl Into<Option<Duration>>) -> Self {
        self.idle_timeout = timeout.into();
        self
    }

    /// How often a held lock checks whether another process is waiting for it (default
    /// 50 ms). Each check is one query on `pg_locks`. `None` switches checking off: a busy
    /// process then keeps a lock for as long as its own tasks want it.
    ///
    /// ```
    /// use std::time::Duration;
    /// use tierlock_postgres::PostgresProvider;
    ///
    /// let url = "postgres://app@db.internal/app";
    /// let provider = PostgresProvider::builder(url)
    ///     .request_poll_interval(Duration::from_millis(250)) // fewer pg_locks queries
    ///     .build()?;
    /// let never_hands_over = PostgresProvider::builder(url)
    ///     .request_poll_interval(None)
    ///     .build()?;
    /// # Ok::<(), tierlock_postgres::PostgresError>(())
    /// ```
    pub fn request_poll_interval(mut self, interval: impl Into<Option<Duration>>) -> Self {
        self.request_poll_interval = interval.into();
        self
    }

    /// How long a held lock's connection may stay silent before a `SELECT 1` is sent on it
    /// (default 2 minutes): keeps idle-connection killers (firewalls, `idle_session_timeout`)
    /// away and detects dead connections. Request checks count as traffic. `None` switches the
    /// keepalive off.
    ///
    /// ```
    /// use std::time::Duration;
    /// use tierlock_postgres::PostgresProvider;
    ///
    /// let url = "postgres://app@db.internal/app";
    /// let provider = PostgresProvider::builder(url)
    ///     .keepalive_interval(Duration::from_secs(30)) // idle_session_timeout is 1 min
    ///     .build()?;
    /// # Ok::<(), tierlock_postgres::PostgresError>(())
    /// ```
    pub fn keepalive_interval(mut self, interval: impl Into<Option<Duration>>) -> Self {
        self.keepalive_interval = interval.into();
        self
    }

    /// How long any short command (try-lock, unlock, checks, the fencing upsert) may take
    /// before the connection is considered dead and closed (default 30 s). A blocking wait for
    /// a lock gets its remaining budget on top of this.
    ///
    /// ```
    /// use std::time::Duration;
    /// use tierlock_postgres::PostgresProvider;
    ///
    /// let url = "postgres://app@db.internal/app";
    /// let provider = PostgresProvider::builder(url)
    ///     .command_timeout(Duration::from_secs(5)) // give up on a silent server sooner
    ///     .build()?;
    /// # Ok::<(), tierlock_postgres::PostgresError>(())
    /// ```
    pub fn command_timeout(mut self, timeout: Duration) -> Self {
        self.command_timeout = timeout;
        self
    }

    /// How long opening a connection (TCP, TLS, authentication, preparing the statements) may
    /// take (default 15 s).
    ///
    /// ```
    /// use std::time::Duration;
    /// use tierlock_postgres::PostgresProvider;
    ///
    /// let url = "postgres://app@db.internal/app";
    /// let provider = PostgresProvider::builder(url)
    ///     .connect_timeout(Duration::from_secs(3))
    ///     .build()?;
    /// # Ok::<(), tierlock_postgres::PostgresError>(())
    /// ```
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// How often the server checks, while a command of the provider's sessions runs, that the
    /// client is still connected (PostgreSQL's `client_connection_check_interval`, set on each
    /// session; default 1 s). A process killed while it waits in `pg_advisory_lock` then leaves
    /// the queue within this time, instead of staying queued until it is granted the lock (and
    /// holding it until the server notices). PostgreSQL 13 and older lack the setting: the
    /// provider leaves it alone there, and so does a server platform that cannot check (it
    /// refuses any value but 0). `None` leaves the server's setting.
    ///
    /// ```
    /// use std::time::Duration;
    /// use tierlock_postgres::PostgresProvider;
    ///
    /// let url = "postgres://app@db.internal/app";
    /// let provider = PostgresProvider::builder(url)
    ///     .client_connection_check_interval(Duration::from_millis(250)) // dead waiters go sooner
    ///     .build()?;
    /// let servers_setting = PostgresProvider::builder(url)
    ///     .client_connection_check_interval(None)
    ///     .build()?;
    /// # Ok::<(), tierlock_postgres::PostgresError>(())
    /// ```
    pub fn client_connection_check_interval(
        mut self,
        interval: impl Into<Option<Duration>>,
    ) -> Self {
        self.client_connection_check_interval = interval.into();
        self
    }

    /// Gives every external acquisition a fencing token (default off): right after the lock is
    /// granted, one upsert on the counter table (see [`fencing_table`](Self::fencing_table))
    /// returns the name's next number, which `guard.fencing_token()` then reports. The table
    /// is created on first use if the role may; see the crate documentation for the DDL and
    /// the grants to create it instead. If the upsert fails, the lock is released and the
    /// acquisition fails with [`PostgresError::Fencing`].
    ///
    /// ```
    /// use tierlock_postgres::PostgresProvider;
    ///
    /// let url = "postgres://app@db.internal/app";
    /// let provider = PostgresProvider::builder(url).fencing(true).build()?;
    /// assert!(provider.fencing());
    /// # Ok::<(), tierlock_postgres::PostgresError>(())
    /// ```
    pub fn fencing(mut self, on: bool) -> Self {
        self.fencing = on;
        self
    }

    /// The counter table of [`fencing`](Self::fencing) (default `public.tierlock_fence`): a
    /// table name, optionally schema-qualified, of ASCII letters, digits and `_` (it is put
    /// into SQL as written, so it is folded to lower case like any unquoted name). Every
    /// process locking the same names must use the same table.
    ///
    /// ```
    /// use tierlock_postgres::{PostgresError, PostgresProvider};
    ///
    /// let url = "postgres://app@db.internal/app";
    /// let provider = PostgresProvider::builder(url)
    ///     .fencing(true)
    ///     .fencing_table("locks.fence")
    ///     .build()?;
    /// let bad = PostgresProvider::builder(url)
    ///     .fencing_table("fence; DROP TABLE orders")
    ///     .build();
    /// assert!(matches!(bad, Err(PostgresError::Option { option: "fencing_table", .. })));
    /// # Ok::<(), PostgresError>(())
    /// ```
    pub fn fencing_table(mut self, table: impl Into<String>) -> Self {
        self.fencing_table = table.into();
        self
    }

    /// Connects with TLS through rustls using `config` (its root certificates decide which
    /// servers are trusted), whatever the URL's `sslmode` says, except `disable`. Without this,
    /// the URL decides: `sslmode=require` connects with TLS checked against the system's root
    /// certificates (`SSL_CERT_FILE` / `SSL_CERT_DIR` override them) and the server's name,
    /// like libpq's `verify-full`, with the *ring* crypto provider; `prefer` (the default) and
    /// `disable` connect in plain text. With a configuration, `prefer` uses TLS when the
    /// server offers it; use `sslmode=require` to insist.
    ///
    /// If your build compiles in more than one rustls crypto provider (for instance `ring` from
    /// this crate and `aws-lc-rs` from the SQL Server provider), `ClientConfig::builder()`
    /// panics; build the config with `ClientConfig::builder_with_provider` as below.
    ///
    /// ```no_run
    /// use std::sync::Arc;
    /// use tierlock_postgres::PostgresProvider;
    ///
    /// # fn roots() -> rustls::RootCertStore { rustls::RootCertStore::empty() }
    /// let ring = Arc::new(rustls::crypto::ring::default_provider());
    /// let tls = rustls::ClientConfig::builder_with_provider(ring)
    ///     .with_safe_default_protocol_versions()
    ///     .expect("ring supports TLS 1.2 and 1.3")
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
    /// [`PostgresError::Config`] if the URL or connection string cannot be parsed;
    /// [`PostgresError::Option`] if a duration is zero or the fencing table is not a plain
    /// (optionally schema-qualified) name; with `sslmode=require`,
    /// [`PostgresError::TlsNotBuilt`] if the `rustls` feature is off, and [`PostgresError::Tls`]
    /// if no [`tls`](Self::tls) configuration was given and the system has no root certificate.
    ///
    /// ```
    /// use std::time::Duration;
    /// use tierlock_postgres::{PostgresError, PostgresProvider};
    ///
    /// let zero = PostgresProvider::builder("postgres://localhost/app")
    ///     .request_poll_interval(Duration::ZERO) // "off" is `None`, not zero
    ///     .build();
    /// assert!(matches!(
    ///     zero,
    ///     Err(PostgresError::Option { option: "request_poll_interval", .. })
    /// ));
    /// ```
    pub fn build(self) -> Result<PostgresProvider, PostgresError> {
        let option = |err: OptionError| PostgresError::Option {
            option: err.option,
            reason: err.reason,
        };
        nonzero("command_timeout", Some(self.command_timeout)).map_err(option)?;
        nonzero("connect_timeout", Some(self.connect_timeout)).map_err(option)?;
        nonzero("idle_timeout", self.idle_timeout).map_err(option)?;
        nonzero("request_poll_interval", self.request_poll_interval).map_err(option)?;
        nonzero("keepalive_interval", self.keepalive_interval).map_err(option)?;
        nonzero(
            "client_connection_check_interval",
            self.client_connection_check_interval,
        )
        .map_err(option)?;
        let fence_table = FenceTable::parse(&self.fencing_table).map_err(option)?;
        let config: tokio_postgres::Config = self
            .url
            .parse()
            .map_err(|source| PostgresError::Config { source })?;
        #[cfg(feature = "rustls")]
        let connector = crate::tls::connector(self.tls, &config)?;
        #[cfg(not(feature = "rustls"))]
        let connector = crate::tls::connector(&config)?;
        let settings = Settings {
            namespace: self.namespace,
            schedule: Schedule::new(self.command_timeout)
                .request_poll_interval(self.request_poll_interval)
                .keepalive_interval(self.keepalive_interval),
            command_timeout: self.command_timeout,
            fencing: self.fencing.then_some(fence_table),
        };
        let connections = Connections::new(
            config,
            connector,
            (self.connect_timeout, self.client_connection_check_interval),
            self.max_idle_connections,
            self.idle_timeout,
        );
        Ok(PostgresProvider::from_parts(
            Arc::new(connections),
            Arc::new(settings),
        ))
    }

    /// Makes the provider and opens one connection to check the configuration; the connection
    /// is kept for the first lock.
    ///
    /// # Errors
    ///
    /// As [`build`](Self::build); [`PostgresError::Connect`] or
    /// [`PostgresError::ConnectTimeout`] if the server cannot be reached or refuses the login.
    ///
    /// ```no_run
    /// use std::time::Duration;
    /// use tierlock_postgres::PostgresProvider;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), tierlock_postgres::PostgresError> {
    /// // A wrong host or password fails here, not at the first lock.
    /// let provider = PostgresProvider::builder("postgres://app@db.internal/app")
    ///     .connect_timeout(Duration::from_secs(5))
    ///     .connect()
    ///     .await?;
    /// assert_eq!(provider.sessions_opened(), 1); // kept for the first lock
    /// let locks = tierlock_core::LockManager::new(provider);
    /// # Ok(())
    /// # }
    /// ```
    pub async fn connect(self) -> Result<PostgresProvider, PostgresError> {
        let provider = self.build()?;
        provider.warm_up().await?;
        Ok(provider)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn builder() -> PostgresProviderBuilder {
        PostgresProviderBuilder::new("postgres://u:hunter2@127.0.0.1:1/db")
    }

    #[test]
    fn zero_durations_are_rejected_and_none_switches_off() {
        let cases: [(PostgresProviderBuilder, &str); 6] = [
            (
                builder().client_connection_check_interval(Duration::ZERO),
                "client_connection_check_interval",
            ),
            (builder().command_timeout(Duration::ZERO), "command_timeout"),
            (builder().connect_timeout(Duration::ZERO), "connect_timeout"),
            (builder().idle_timeout(Duration::ZERO), "idle_timeout"),
            (
                builder().request_poll_interval(Duration::ZERO),
                "request_poll_interval",
            ),
            (
                builder().keepalive_interval(Some(Duration::ZERO)),
                "keepalive_interval",
            ),
        ];
        for (builder, expected) in cases {
            match builder.build() {
                Err(PostgresError::Option { option, .. }) => assert_eq!(option, expected),
                other => panic!("{expected}: {other:?}"),
            }
        }
        let off = builder()
            .request_poll_interval(None)
            .keepalive_interval(None)
            .idle_timeout(None)
            .build()
            .unwrap();
        assert_eq!(
            off.settings().schedule,
            Schedule::new(Duration::from_secs(30))
        );
    }

    #[test]
    fn a_bad_fencing_table_is_an_option_error() {
        match builder().fencing_table("fence; DROP TABLE x").build() {
            Err(PostgresError::Option { option, .. }) => assert_eq!(option, "fencing_table"),
            other => panic!("{other:?}"),
        }
        builder()
            .fencing(true)
            .fencing_table("locks.fence")
            .build()
            .unwrap();
    }

    #[test]
    fn debug_output_hides_the_url() {
        let debug = format!("{:?}", builder().namespace("ns"));
        assert!(debug.contains("ns"), "{debug}");
        assert!(!debug.contains("hunter2"), "{debug}");
    }
}
