//! Connection strings and the [`MssqlProviderBuilder`].

use std::time::Duration;

use tierlock_core::held::Schedule;
use tierlock_core::options::{OptionError, nonzero};

use crate::error::MssqlError;
use crate::naming::Naming;
use crate::provider::MssqlProvider;
use crate::sql::FenceTable;

/// Parses a connection string into a tiberius [`Config`](tiberius::Config).
///
/// Two forms are accepted:
///
/// * ADO.NET (the default): `server=tcp:db.example.com,1433;database=app;user id=locker;
///   password=…;TrustServerCertificate=false`;
/// * JDBC, recognised by its (lowercase) `jdbc:` prefix: `jdbc:sqlserver://db.example.com:1433;
///   databaseName=app;user=locker;password=…`.
///
/// Keys are those tiberius understands (`server`, `database`/`initial catalog`, `user id`,
/// `password`, `encrypt`, `TrustServerCertificate`, `TrustServerCertificateCA`,
/// `application name`, …). TLS is always done with rustls. Applocks live in the *current
/// database* of the session, so every process that must exclude the others has to connect to
/// the same database.
///
/// # Errors
///
/// [`MssqlError::Config`] if the string does not parse.
///
/// ```
/// let config = tierlock_mssql::parse_connection_string(
///     "server=tcp:db.example.com,1433;database=app;user id=locker;password=secret",
/// )?;
/// assert_eq!(config.get_addr(), "db.example.com:1433");
///
/// let config = tierlock_mssql::parse_connection_string(
///     "jdbc:sqlserver://db.example.com:1444;databaseName=app;user=locker;password=secret",
/// )?;
/// assert_eq!(config.get_addr(), "db.example.com:1444");
/// # Ok::<(), tierlock_mssql::MssqlError>(())
/// ```
pub fn parse_connection_string(s: &str) -> Result<tiberius::Config, MssqlError> {
    let s = s.trim();
    let parsed = if s.starts_with("jdbc:") {
        tiberius::Config::from_jdbc_string(s)
    } else {
        tiberius::Config::from_ado_string(s)
    };
    parsed.map_err(|source| MssqlError::Config {
        source: Box::new(source),
    })
}

/// Settings of a provider other than the connection itself.
#[derive(Debug, Clone)]
pub(crate) struct Options {
    pub(crate) namespace: String,
    pub(crate) max_idle_connections: usize,
    pub(crate) idle_timeout: Option<Duration>,
    pub(crate) request_poll_interval: Option<Duration>,
    pub(crate) keepalive_interval: Option<Duration>,
    pub(crate) command_timeout: Duration,
    pub(crate) connect_timeout: Duration,
    pub(crate) tcp_keepalive: Option<Duration>,
    pub(crate) fencing: bool,
    pub(crate) fencing_table: String,
    pub(crate) naming: Naming,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            namespace: String::new(),
            max_idle_connections: 4,
            idle_timeout: Some(Duration::from_secs(60)),
            request_poll_interval: Some(Duration::from_millis(100)),
            keepalive_interval: Some(Duration::from_secs(120)),
            command_timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(15),
            tcp_keepalive: Some(Duration::from_secs(30)),
            fencing: false,
            fencing_table: crate::sql::DEFAULT_FENCE_TABLE.to_owned(),
            naming: Naming::Tierlock,
        }
    }
}

impl Options {
    /// When a held lock's monitor task talks to the server.
    pub(crate) fn schedule(&self) -> Schedule {
        Schedule::new(self.command_timeout)
            .request_poll_interval(self.request_poll_interval)
            .keepalive_interval(self.keepalive_interval)
    }
}

/// Configures a [`MssqlProvider`]. Start from [`MssqlProvider::builder`].
///
/// Every option has a default. Durations are never zero: an option that can be switched off
/// takes an `Option` (`None` is off; a plain `Duration` converts to `Some`), and
/// [`build`](Self::build) rejects a zero duration with [`MssqlError::Option`].
///
/// | option | default | |
/// |---|---|---|
/// | [`namespace`](Self::namespace) | `""` | prefix of every resource |
/// | [`max_idle_connections`](Self::max_idle_connections) | 4 | idle connections kept; 0 disables reuse |
/// | [`idle_timeout`](Self::idle_timeout) | 60 s | an idle connection unused longer is closed; `None`: kept until it closes |
/// | [`request_poll_interval`](Self::request_poll_interval) | 100 ms | a held lock probes for waiting sessions; `None`: never (no early hand-over) |
/// | [`keepalive_interval`](Self::keepalive_interval) | 2 min | `SELECT 1` on a held lock's silent connection; `None`: never |
/// | [`command_timeout`](Self::command_timeout) | 30 s | bound on each short statement, and margin on a lock wait |
/// | [`connect_timeout`](Self::connect_timeout) | 15 s | bound on opening a connection |
/// | [`tcp_keepalive`](Self::tcp_keepalive) | 30 s | TCP keepalive idle time; `None`: the system's |
/// | [`fencing`](Self::fencing) | off | a fencing token per acquisition, from a counter table |
/// | [`naming`](Self::naming) | [`Naming::Tierlock`] | how long names become resources; [`Naming::DistributedLock`] meets .NET processes |
///
/// ```
/// use std::time::Duration;
/// use tierlock_mssql::MssqlProvider;
///
/// let provider = MssqlProvider::builder("server=tcp:db.example.com,1433;user id=u;password=p")?
///     .namespace("billing:")
///     .max_idle_connections(8)
///     .request_poll_interval(Duration::from_millis(250))
///     .keepalive_interval(None)
///     .fencing(true)
///     .build()?;
/// assert_eq!(provider.resource_name("job"), "billing:job");
/// # Ok::<(), tierlock_mssql::MssqlError>(())
/// ```
#[derive(Debug)]
#[must_use]
pub struct MssqlProviderBuilder {
    config: tiberius::Config,
    options: Options,
}

impl MssqlProviderBuilder {
    /// A builder for a connection configured in code (for example with non-ASCII credentials,
    /// which connection strings cannot carry).
    ///
    /// ```
    /// use tierlock_mssql::{MssqlProviderBuilder, tiberius};
    ///
    /// let mut config = tiberius::Config::new();
    /// config.host("db.example.com");
    /// config.port(1433);
    /// config.database("app");
    /// config.authentication(tiberius::AuthMethod::sql_server("låser", "pässwörd"));
    /// let provider = MssqlProviderBuilder::from_config(config).namespace("billing:").build()?;
    /// # Ok::<(), tierlock_mssql::MssqlError>(())
    /// ```
    pub fn from_config(config: tiberius::Config) -> Self {
        MssqlProviderBuilder {
            config,
            options: Options::default(),
        }
    }

    /// A prefix put before every lock name, before the length rule (see the crate docs).
    /// Providers with different namespaces never exclude each other, even on one database.
    /// Include a separator (`"billing:"`): `"a"` + `"bc"` and `"ab"` + `"c"` are the same
    /// resource. Default: empty.
    ///
    /// ```
    /// use tierlock_mssql::MssqlProvider;
    ///
    /// let conn = "server=tcp:db.example.com,1433;user id=locker;password=secret";
    /// let provider = MssqlProvider::builder(conn)?.namespace("billing:").build()?;
    /// assert_eq!(provider.namespace(), "billing:");
    /// assert_eq!(provider.resource_name("nightly"), "billing:nightly");
    /// # Ok::<(), tierlock_mssql::MssqlError>(())
    /// ```
    pub fn namespace(mut self, namespace: impl Into<String>) -> Self {
        self.options.namespace = namespace.into();
        self
    }

    /// How many idle connections are kept for reuse (default 4; 0 disables reuse).
    ///
    /// ```
    /// use tierlock_mssql::MssqlProvider;
    ///
    /// let conn = "server=tcp:db.example.com,1433;user id=locker;password=secret";
    /// let provider = MssqlProvider::builder(conn)?
    ///     .max_idle_connections(16) // a busy service taking many locks at once
    ///     .build()?;
    /// assert_eq!(provider.idle_connections(), 0); // none opened before the first lock
    /// # Ok::<(), tierlock_mssql::MssqlError>(())
    /// ```
    pub fn max_idle_connections(mut self, max: usize) -> Self {
        self.options.max_idle_connections = max;
        self
    }

    /// An idle connection unused for longer than this is closed instead of reused
    /// (default 60 s), so a connection silently dropped by a firewall is rarely picked up.
    /// `None` keeps idle connections until they close. (A connection the server closed is
    /// never reused.)
    ///
    /// ```
    /// use std::time::Duration;
    /// use tierlock_mssql::MssqlProvider;
    ///
    /// let conn = "server=tcp:db.example.com,1433;user id=locker;password=secret";
    /// let provider = MssqlProvider::builder(conn)?
    ///     .idle_timeout(Duration::from_secs(10)) // the firewall drops idle flows after 30 s
    ///     .build()?;
    /// let keep = MssqlProvider::builder(conn)?.idle_timeout(None).build()?;
    /// # Ok::<(), tierlock_mssql::MssqlError>(())
    /// ```
    pub fn idle_timeout(mut self, timeout: impl Into<Option<Duration>>) -> Self {
        self.options.idle_timeout = timeout.into();
        self
    }

    /// How often a held lock checks, on its own connection, whether another session asked for
    /// it (default 100 ms). Each check is one round trip and also proves the connection alive.
    /// `None` switches the request signal off: holders then never hand over early, and only
    /// the keepalive runs.
    ///
    /// ```
    /// use std::time::Duration;
    /// use tierlock_mssql::MssqlProvider;
    ///
    /// let conn = "server=tcp:db.example.com,1433;user id=locker;password=secret";
    /// let provider = MssqlProvider::builder(conn)?
    ///     .request_poll_interval(Duration::from_millis(250)) // fewer probes
    ///     .build()?;
    /// let never_hands_over = MssqlProvider::builder(conn)?
    ///     .request_poll_interval(None)
    ///     .build()?;
    /// # Ok::<(), tierlock_mssql::MssqlError>(())
    /// ```
    pub fn request_poll_interval(mut self, interval: impl Into<Option<Duration>>) -> Self {
        self.options.request_poll_interval = interval.into();
        self
    }

    /// How long a held lock's connection may stay silent before `SELECT 1` runs on it
    /// (default 2 minutes): keeps idle-connection killers away and detects a dead connection.
    /// Request probes count as traffic, so with probing on it rarely runs. `None` switches the
    /// keepalive off.
    ///
    /// ```
    /// use std::time::Duration;
    /// use tierlock_mssql::MssqlProvider;
    ///
    /// let conn = "server=tcp:db.example.com,1433;user id=locker;password=secret";
    /// let provider = MssqlProvider::builder(conn)?
    ///     .keepalive_interval(Duration::from_secs(30))
    ///     .build()?;
    /// # Ok::<(), tierlock_mssql::MssqlError>(())
    /// ```
    pub fn keepalive_interval(mut self, interval: impl Into<Option<Duration>>) -> Self {
        self.options.keepalive_interval = interval.into();
        self
    }

    /// How long the client waits for the answer to a short statement (release, probe,
    /// keepalive, request mark, fencing upsert), and the margin added to a lock wait's own
    /// `@LockTimeout` before the client gives the connection up (default 30 s).
    ///
    /// ```
    /// use std::time::Duration;
    /// use tierlock_mssql::MssqlProvider;
    ///
    /// let conn = "server=tcp:db.example.com,1433;user id=locker;password=secret";
    /// let provider = MssqlProvider::builder(conn)?
    ///     .command_timeout(Duration::from_secs(5)) // give up on a silent server sooner
    ///     .build()?;
    /// # Ok::<(), tierlock_mssql::MssqlError>(())
    /// ```
    pub fn command_timeout(mut self, timeout: Duration) -> Self {
        self.options.command_timeout = timeout;
        self
    }

    /// The bound on opening a connection: TCP, TLS and login (default 15 s).
    ///
    /// ```
    /// use std::time::Duration;
    /// use tierlock_mssql::MssqlProvider;
    ///
    /// let conn = "server=tcp:db.example.com,1433;user id=locker;password=secret";
    /// let provider = MssqlProvider::builder(conn)?
    ///     .connect_timeout(Duration::from_secs(3))
    ///     .build()?;
    /// # Ok::<(), tierlock_mssql::MssqlError>(())
    /// ```
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.options.connect_timeout = timeout;
        self
    }

    /// TCP keepalive idle time on every connection (default 30 s, then probes every 10 s), so
    /// a wait without deadline notices a vanished server host. `None` leaves the system default.
    ///
    /// ```
    /// use std::time::Duration;
    /// use tierlock_mssql::MssqlProvider;
    ///
    /// let conn = "server=tcp:db.example.com,1433;user id=locker;password=secret";
    /// let provider = MssqlProvider::builder(conn)?
    ///     .tcp_keepalive(Duration::from_secs(10)) // notice a vanished host sooner
    ///     .build()?;
    /// let systems = MssqlProvider::builder(conn)?.tcp_keepalive(None).build()?;
    /// # Ok::<(), tierlock_mssql::MssqlError>(())
    /// ```
    pub fn tcp_keepalive(mut self, idle: impl Into<Option<Duration>>) -> Self {
        self.options.tcp_keepalive = idle.into();
        self
    }

    /// Gives every external acquisition a fencing token (default off): right after the lock is
    /// granted, one `MERGE … OUTPUT` on the counter table (see
    /// [`fencing_table`](Self::fencing_table)), in the same session, returns the resource's
    /// next number, which `guard.fencing_token()` then reports. The table is created on first
    /// use if the login may; see the crate documentation for the DDL and the grants to create
    /// it instead. If the statement fails, the lock is released and the acquisition fails with
    /// [`MssqlError::Fencing`].
    ///
    /// ```
    /// use tierlock_mssql::MssqlProvider;
    ///
    /// let conn = "server=tcp:db.example.com,1433;user id=locker;password=secret";
    /// let provider = MssqlProvider::builder(conn)?.fencing(true).build()?;
    /// assert!(provider.fencing());
    /// # Ok::<(), tierlock_mssql::MssqlError>(())
    /// ```
    pub fn fencing(mut self, on: bool) -> Self {
        self.options.fencing = on;
        self
    }

    /// The counter table of [`fencing`](Self::fencing) (default `dbo.tierlock_fence`): a table
    /// name, optionally schema-qualified, of ASCII letters, digits and `_` (put into SQL as
    /// written). Every process locking the same names must use the same table.
    ///
    /// ```
    /// use tierlock_mssql::{MssqlError, MssqlProvider};
    ///
    /// let conn = "server=tcp:db.example.com,1433;user id=locker;password=secret";
    /// let provider = MssqlProvider::builder(conn)?
    ///     .fencing(true)
    ///     .fencing_table("locks.fence")
    ///     .build()?;
    /// let bad = MssqlProvider::builder(conn)?.fencing_table("fence; DROP TABLE orders").build();
    /// assert!(matches!(bad, Err(MssqlError::Option { option: "fencing_table", .. })));
    /// # Ok::<(), MssqlError>(())
    /// ```
    pub fn fencing_table(mut self, table: impl Into<String>) -> Self {
        self.options.fencing_table = table.into();
        self
    }

    /// How `namespace + name` becomes the `@Resource` (default [`Naming::Tierlock`]). Both rules
    /// leave names of up to 255 UTF-16 code units unchanged; [`Naming::DistributedLock`] maps
    /// longer ones as .NET's DistributedLock does, so that Rust and .NET processes locking the
    /// same names exclude each other (see the crate documentation for what else must match).
    /// Every process locking the same names must use the same rule.
    ///
    /// ```
    /// use tierlock_mssql::{MssqlProvider, Naming};
    ///
    /// let provider = MssqlProvider::builder("server=tcp:h,1433")?
    ///     .naming(Naming::DistributedLock)
    ///     .build()?;
    /// let long = "x".repeat(300);
    /// assert_eq!(provider.resource_name(&long).encode_utf16().count(), 255);
    /// assert!(provider.resource_name(&long).starts_with(&"x".repeat(167)));
    /// # Ok::<(), tierlock_mssql::MssqlError>(())
    /// ```
    pub fn naming(mut self, naming: Naming) -> Self {
        self.options.naming = naming;
        self
    }

    /// Builds the provider. No connection is opened until the first acquisition.
    ///
    /// # Errors
    ///
    /// [`MssqlError::Option`] if a duration is zero or the fencing table is not a plain
    /// (optionally schema-qualified) name.
    ///
    /// ```
    /// use std::time::Duration;
    /// use tierlock_mssql::{MssqlError, MssqlProvider};
    ///
    /// let conn = "server=tcp:db.example.com,1433;user id=locker;password=secret";
    /// let provider = MssqlProvider::builder(conn)?.build()?; // no connection yet
    /// assert_eq!(provider.sessions_opened(), 0);
    /// let zero = MssqlProvider::builder(conn)?.keepalive_interval(Duration::ZERO).build();
    /// assert!(matches!(zero, Err(MssqlError::Option { option: "keepalive_interval", .. })));
    /// # Ok::<(), MssqlError>(())
    /// ```
    pub fn build(self) -> Result<MssqlProvider, MssqlError> {
        let o = &self.options;
        let option = |err: OptionError| MssqlError::Option {
            option: err.option,
            reason: err.reason,
        };
        nonzero("command_timeout", Some(o.command_timeout)).map_err(option)?;
        nonzero("connect_timeout", Some(o.connect_timeout)).map_err(option)?;
        nonzero("idle_timeout", o.idle_timeout).map_err(option)?;
        nonzero("request_poll_interval", o.request_poll_interval).map_err(option)?;
        nonzero("keepalive_interval", o.keepalive_interval).map_err(option)?;
        nonzero("tcp_keepalive", o.tcp_keepalive).map_err(option)?;
        let fence = FenceTable::parse(&o.fencing_table).map_err(option)?;
        let fence = o.fencing.then_some(fence);
        Ok(MssqlProvider::from_parts(self.config, self.options, fence))
    }

    /// Builds the provider and opens one connection, which proves the server reachable and
    /// the login valid and tells SQL Server from Babelfish
    /// ([`MssqlProvider::server_kind`]); the connection is kept for the first acquisition.
    ///
    /// # Errors
    ///
    /// As [`build`](Self::build); [`MssqlError::Connect`] if no connection can be opened.
    ///
    /// ```no_run
    /// use tierlock_mssql::{MssqlProvider, ServerKind};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), tierlock_mssql::MssqlError> {
    /// let conn = "server=tcp:db.example.com,1433;user id=locker;password=secret";
    /// // A wrong host or password fails here, not at the first lock.
    /// let provider = MssqlProvider::builder(conn)?.connect().await?;
    /// if provider.server_kind() == Some(ServerKind::Babelfish) {
    ///     println!("Babelfish: single attempts on a held lock report -999");
    /// }
    /// let locks = tierlock_core::LockManager::new(provider);
    /// # Ok(())
    /// # }
    /// ```
    pub async fn connect(self) -> Result<MssqlProvider, MssqlError> {
        let provider = self.build()?;
        provider.warm_up().await?;
        Ok(provider)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ado_and_jdbc_strings_parse() {
        let ado = parse_connection_string(
            "server=tcp:sql.internal,1499;database=locks;user id=u;password=p",
        )
        .unwrap();
        assert_eq!(ado.get_addr(), "sql.internal:1499");
        let jdbc =
            parse_connection_string("  jdbc:sqlserver://sql.internal:1500;user=u;password=p ")
                .unwrap();
        assert_eq!(jdbc.get_addr(), "sql.internal:1500");
    }

    #[test]
    fn bad_strings_are_config_errors() {
        for bad in [
            "server=tcp:host,notaport;user id=u;password=p",
            "jdbc:sqlserver://host:notaport;user=u",
            "server=tcp:host,1433;encrypt=maybe",
        ] {
            match parse_connection_string(bad) {
                Err(err @ MssqlError::Config { .. }) => {
                    assert!(
                        err.to_string()
                            .starts_with("invalid SQL Server connection string")
                    );
                    assert!(std::error::Error::source(&err).is_some(), "{bad}");
                }
                other => panic!("{bad}: expected a config error, got {other:?}"),
            }
        }
    }

    #[test]
    fn builder_debug_output_hides_the_password() {
        let builder = MssqlProviderBuilder::from_config(
            parse_connection_string("server=tcp:h,1433;user id=sa;password=hunter2").unwrap(),
        )
        .namespace("ns:");
        let debug = format!("{builder:?}");
        assert!(debug.contains("ns:"), "{debug}");
        assert!(!debug.contains("hunter2"), "{debug}");
    }

    #[test]
    fn zero_durations_are_rejected_and_none_switches_off() {
        let builder = || MssqlProviderBuilder::from_config(tiberius::Config::new());
        let cases: [(MssqlProviderBuilder, &str); 6] = [
            (builder().command_timeout(Duration::ZERO), "command_timeout"),
            (builder().connect_timeout(Duration::ZERO), "connect_timeout"),
            (builder().idle_timeout(Duration::ZERO), "idle_timeout"),
            (
                builder().keepalive_interval(Duration::ZERO),
                "keepalive_interval",
            ),
            (
                builder().request_poll_interval(Some(Duration::ZERO)),
                "request_poll_interval",
            ),
            (builder().tcp_keepalive(Duration::ZERO), "tcp_keepalive"),
        ];
        for (builder, expected) in cases {
            match builder.build() {
                Err(MssqlError::Option { option, .. }) => assert_eq!(option, expected),
                other => panic!("{expected}: {other:?}"),
            }
        }
        let off = builder()
            .request_poll_interval(None)
            .keepalive_interval(None)
            .idle_timeout(None)
            .tcp_keepalive(None);
        assert_eq!(
            off.options.schedule(),
            Schedule::new(Duration::from_secs(30))
        );
        assert!(off.build().is_ok());
    }

    #[test]
    fn a_bad_fencing_table_is_an_option_error() {
        let builder = || MssqlProviderBuilder::from_config(tiberius::Config::new()).fencing(true);
        match builder().fencing_table("[dbo].[t]").build() {
            Err(MssqlError::Option { option, .. }) => assert_eq!(option, "fencing_table"),
            other => panic!("{other:?}"),
        }
        assert!(builder().fencing_table("dbo.Fence").build().is_ok());
    }
}
