//! Connection strings and the [`MssqlBuilder`].

use std::time::Duration;

use crate::error::MssqlError;
use crate::provider::MssqlProvider;

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
    pub(crate) max_idle: usize,
    pub(crate) idle_timeout: Duration,
    pub(crate) probe_interval: Option<Duration>,
    pub(crate) keepalive_interval: Duration,
    pub(crate) command_timeout: Duration,
    pub(crate) connect_timeout: Duration,
    pub(crate) tcp_keepalive: Option<Duration>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            namespace: String::new(),
            max_idle: 4,
            idle_timeout: Duration::from_secs(60),
            probe_interval: Some(Duration::from_millis(100)),
            keepalive_interval: Duration::from_secs(120),
            command_timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(15),
            tcp_keepalive: Some(Duration::from_secs(30)),
        }
    }
}

/// Configures a [`MssqlProvider`]. Start from [`MssqlProvider::builder`].
///
/// ```
/// use std::time::Duration;
/// use tierlock_mssql::MssqlProvider;
///
/// let provider = MssqlProvider::builder("server=tcp:db.example.com,1433;user id=u;password=p")?
///     .namespace("billing:")
///     .max_idle_connections(8)
///     .request_probe_interval(Some(Duration::from_millis(250)))
///     .build()?;
/// assert_eq!(provider.resource_name("job"), "billing:job");
/// # Ok::<(), tierlock_mssql::MssqlError>(())
/// ```
#[derive(Debug)]
pub struct MssqlBuilder {
    config: tiberius::Config,
    options: Options,
}

impl MssqlBuilder {
    /// A builder for a connection configured in code (for example with non-ASCII credentials,
    /// which connection strings cannot carry).
    pub fn from_config(config: tiberius::Config) -> Self {
        MssqlBuilder {
            config,
            options: Options::default(),
        }
    }

    /// A prefix put before every lock name, before the length rule (see the crate docs).
    /// Providers with different namespaces never exclude each other, even on one database.
    /// Include a separator (`"billing:"`): `"a"` + `"bc"` and `"ab"` + `"c"` are the same
    /// resource. Default: empty.
    pub fn namespace(mut self, namespace: impl Into<String>) -> Self {
        self.options.namespace = namespace.into();
        self
    }

    /// How many idle connections are kept for reuse (default 4; 0 disables reuse).
    pub fn max_idle_connections(mut self, max: usize) -> Self {
        self.options.max_idle = max;
        self
    }

    /// An idle connection unused for longer than this is closed instead of reused
    /// (default 60 s), so a connection silently dropped by a firewall is rarely picked up.
    pub fn idle_timeout(mut self, timeout: Duration) -> Self {
        self.options.idle_timeout = timeout;
        self
    }

    /// How often a held lock checks, on its own connection, whether another session asked for
    /// it (default 100 ms). Each check is one round trip and also proves the connection alive.
    /// `None` switches the request signal off: holders then never hand over early and a
    /// plain keepalive runs instead.
    pub fn request_probe_interval(mut self, interval: Option<Duration>) -> Self {
        self.options.probe_interval = interval;
        self
    }

    /// How often a held lock's connection runs `SELECT 1` when request probing is off
    /// (default 2 minutes): keeps idle-connection killers away and detects a dead connection.
    pub fn keepalive_interval(mut self, interval: Duration) -> Self {
        self.options.keepalive_interval = interval;
        self
    }

    /// How long the client waits for the answer to a short statement (release, probe,
    /// keepalive, request mark), and the margin added to a lock wait's own `@LockTimeout`
    /// before the client gives the connection up (default 30 s).
    pub fn command_timeout(mut self, timeout: Duration) -> Self {
        self.options.command_timeout = timeout;
        self
    }

    /// The bound on opening a connection: TCP, TLS and login (default 15 s).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.options.connect_timeout = timeout;
        self
    }

    /// TCP keepalive idle time on every connection (default 30 s, then probes every 10 s), so
    /// a wait without deadline notices a vanished server host. `None` leaves the system default.
    pub fn tcp_keepalive(mut self, idle: Option<Duration>) -> Self {
        self.options.tcp_keepalive = idle;
        self
    }

    /// Builds the provider. No connection is opened until the first acquisition.
    ///
    /// # Errors
    ///
    /// [`MssqlError::Option`] if an interval or timeout is zero.
    pub fn build(self) -> Result<MssqlProvider, MssqlError> {
        let o = &self.options;
        let zero = |option, d: Duration| {
            if d.is_zero() {
                Err(MssqlError::Option {
                    option,
                    reason: "must be greater than zero",
                })
            } else {
                Ok(())
            }
        };
        zero("command_timeout", o.command_timeout)?;
        zero("connect_timeout", o.connect_timeout)?;
        zero("keepalive_interval", o.keepalive_interval)?;
        if let Some(probe) = o.probe_interval {
            zero("request_probe_interval", probe)?;
        }
        if let Some(idle) = o.tcp_keepalive {
            zero("tcp_keepalive", idle)?;
        }
        Ok(MssqlProvider::from_parts(self.config, self.options))
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
        let builder = MssqlBuilder::from_config(
            parse_connection_string("server=tcp:h,1433;user id=sa;password=hunter2").unwrap(),
        )
        .namespace("ns:");
        let debug = format!("{builder:?}");
        assert!(debug.contains("ns:"), "{debug}");
        assert!(!debug.contains("hunter2"), "{debug}");
    }

    #[test]
    fn zero_durations_are_rejected() {
        let builder = || MssqlBuilder::from_config(tiberius::Config::new());
        let cases: [(MssqlBuilder, &str); 4] = [
            (builder().command_timeout(Duration::ZERO), "command_timeout"),
            (builder().connect_timeout(Duration::ZERO), "connect_timeout"),
            (
                builder().keepalive_interval(Duration::ZERO),
                "keepalive_interval",
            ),
            (
                builder().request_probe_interval(Some(Duration::ZERO)),
                "request_probe_interval",
            ),
        ];
        for (builder, expected) in cases {
            match builder.build() {
                Err(MssqlError::Option { option, .. }) => assert_eq!(option, expected),
                other => panic!("{expected}: {other:?}"),
            }
        }
        assert!(builder().request_probe_interval(None).build().is_ok());
    }
}
