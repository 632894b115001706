//! `--url`: which server provider a URL names, and connecting to it.
//!
//! | form | provider |
//! |---|---|
//! | `postgres://…`, `postgresql://…` | PostgreSQL session advisory locks (cargo feature `postgres`) |
//! | `jdbc:sqlserver://host:1433;databaseName=…;user=…;password=…` | SQL Server applocks (feature `mssql`) |
//! | `mssql:` + an ADO.NET connection string, e.g. `mssql:server=tcp:host,1433;user id=…` | SQL Server applocks (feature `mssql`) |
//! | `sqlite:/path/to.db`, `sqlite:relative.db`, `sqlite:///path/to.db` | leases in an SQLite file on this host (feature `sqlite`) |
//! | `redis://[[user]:password@]host:6379/0`, `redis+unix:///path/redis.sock` | Redis keys, one server (feature `redis`); `--namespace NS` makes the key prefix `tierlock:NS:` |
//!
//! `sqlserver://` is not accepted: no SQL Server driver parses it, so the error names the two
//! forms that work. Classification is pure string work and does not depend on the cargo
//! features; a build without a provider reports that when it would connect.
//!
//! Connection strings carry passwords, so no message here ever contains the URL: errors name
//! the scheme at most, and the drivers' errors (connection refused, login failed) name the
//! server and the user, never the password.
//!
//! PostgreSQL TLS: `sslmode=require` in the URL's query connects with TLS through rustls and
//! checks the server certificate (and host name) against the system's root certificates
//! (`SSL_CERT_FILE` / `SSL_CERT_DIR` override them), i.e. it behaves like libpq's
//! `verify-full`. `sslmode=disable`/`prefer`, or none, connect in plain text; tokio-postgres
//! knows no other `sslmode` values (`verify-full` is refused as an invalid connection string).

use std::path::PathBuf;
use std::time::Duration;

use tierlock::LockManager;

/// A server provider and the connection string its driver takes.
#[derive(PartialEq, Eq)]
pub enum Target {
    /// A `postgres://` URL, scheme in lower case as tokio-postgres wants it.
    Postgres(String),
    /// An ADO.NET or `jdbc:sqlserver://` connection string for tiberius.
    Mssql(String),
    /// The path of an SQLite database file.
    Sqlite(PathBuf),
    /// A `redis://` (or `rediss://`, `redis+unix://`) URL, scheme in lower case.
    Redis(String),
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The connection string may hold a password: never print it.
        match self {
            Target::Postgres(_) => f.write_str("Postgres(..)"),
            Target::Mssql(_) => f.write_str("Mssql(..)"),
            Target::Sqlite(path) => f.debug_tuple("Sqlite").field(path).finish(),
            Target::Redis(_) => f.write_str("Redis(..)"),
        }
    }
}

/// Why a `--url` cannot be used. Never contains the URL itself (it may hold a password).
#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    /// The text has no `scheme:` prefix.
    #[error(
        "--url is not a URL (expected postgres://…, jdbc:sqlserver://…, mssql:<ADO.NET connection string> or redis://…)"
    )]
    NoScheme,
    /// `sqlserver://`, which no driver parses.
    #[error(
        "--url sqlserver://… is not supported; use jdbc:sqlserver://host:1433;databaseName=…;user=…;password=… \
         or mssql:server=tcp:host,1433;database=…;user id=…;password=…"
    )]
    SqlServerScheme,
    /// `sqlite://host/…`, or `sqlite:` without a path.
    #[error(
        "--url sqlite: needs the path of a database file on this host: sqlite:/path/to.db or sqlite:///path/to.db"
    )]
    SqlitePath,
    /// `--namespace` with an SQLite file.
    #[error("--namespace is not for sqlite: (use another database file)")]
    SqliteNamespace,
    /// `--ttl` with a server whose locks are not leases.
    #[error(
        "--ttl is for --dir (lease mode), --url sqlite:… and --url redis://…, not for {database}"
    )]
    TtlNotForServer {
        /// `PostgreSQL` or `SQL Server`.
        database: &'static str,
    },
    /// A scheme no provider handles.
    #[error(
        "--url has unknown scheme {scheme:?} (expected postgres://…, postgresql://…, jdbc:sqlserver://…, mssql:…, sqlite:… or redis://…)"
    )]
    UnknownScheme {
        /// The scheme, lower-cased.
        scheme: String,
    },
    /// The provider was left out of this build.
    #[cfg_attr(
        all(
            feature = "postgres",
            feature = "mssql",
            feature = "sqlite",
            feature = "redis"
        ),
        allow(dead_code)
    )]
    #[error("this build of tierlock has no {database} support (feature `{feature}`)")]
    NotBuilt {
        /// `PostgreSQL`, `SQL Server` or `Redis`.
        database: &'static str,
        /// The cargo feature of `tierlock-cli` that adds it.
        feature: &'static str,
    },
    /// The provider refused the connection string or could not connect.
    #[cfg_attr(
        not(any(
            feature = "postgres",
            feature = "mssql",
            feature = "sqlite",
            feature = "redis"
        )),
        allow(dead_code)
    )]
    #[error("cannot use {database}")]
    Provider {
        /// `PostgreSQL`, `SQL Server` or `Redis`.
        database: &'static str,
        /// The provider's error.
        #[source]
        source: tierlock::BoxError,
    },
}

/// Tells which provider `url` is for.
pub fn classify(url: &str) -> Result<Target, TargetError> {
    let url = url.trim();
    let (scheme, rest) = url.split_once(':').ok_or(TargetError::NoScheme)?;
    let valid_scheme = scheme.starts_with(|c: char| c.is_ascii_alphabetic())
        && scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
    if !valid_scheme {
        return Err(TargetError::NoScheme);
    }
    let scheme = scheme.to_ascii_lowercase();
    match scheme.as_str() {
        "postgres" | "postgresql" if rest.starts_with("//") => {
            Ok(Target::Postgres(format!("{scheme}:{rest}")))
        }
        "jdbc" => match rest.split_once("://") {
            Some((sub, tail)) if sub.eq_ignore_ascii_case("sqlserver") => {
                Ok(Target::Mssql(format!("jdbc:sqlserver://{tail}")))
            }
            _ => Err(TargetError::UnknownScheme {
                scheme: "jdbc".to_owned(),
            }),
        },
        "mssql" if !rest.starts_with("//") && !rest.trim().is_empty() => {
            Ok(Target::Mssql(rest.trim().to_owned()))
        }
        "sqlserver" | "mssql" => Err(TargetError::SqlServerScheme),
        "sqlite" => sqlite_path(rest).map(Target::Sqlite),
        "redis" | "rediss" | "redis+unix" if rest.starts_with("//") => {
            Ok(Target::Redis(format!("{scheme}:{rest}")))
        }
        _ => Err(TargetError::UnknownScheme { scheme }),
    }
}

/// The path in `sqlite:PATH` (`rest` is what follows the colon): `sqlite:/abs.db`,
/// `sqlite:rel.db`, or the URL form with an empty authority, `sqlite:///abs.db`. A host
/// (`sqlite://host/…`) is refused: SQLite databases are local files.
fn sqlite_path(rest: &str) -> Result<PathBuf, TargetError> {
    let path = match rest.strip_prefix("//") {
        Some(after) if after.starts_with('/') => after,
        Some(_) => return Err(TargetError::SqlitePath),
        None => rest,
    };
    if path.is_empty() {
        return Err(TargetError::SqlitePath);
    }
    Ok(PathBuf::from(path))
}

/// What `--url` providers take besides the target.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// `--namespace`: scopes the names on a server (not for SQLite).
    pub namespace: Option<String>,
    /// `--ttl`: the lease time to live (SQLite and Redis).
    pub ttl: Option<Duration>,
    /// `--verbose`: say on stderr where the lock lives.
    pub verbose: bool,
}

/// Makes a lock manager on the provider `target` names.
pub async fn connect(target: Target, options: &Options) -> Result<LockManager, TargetError> {
    let namespace = options.namespace.as_deref().unwrap_or("");
    let no_ttl = |database| match options.ttl {
        Some(_) => Err(TargetError::TtlNotForServer { database }),
        None => Ok(()),
    };
    match target {
        Target::Postgres(url) => {
            no_ttl("PostgreSQL")?;
            postgres(url, namespace).await
        }
        Target::Mssql(conn) => {
            no_ttl("SQL Server")?;
            mssql(&conn, namespace)
        }
        Target::Sqlite(path) => {
            if options.namespace.is_some() {
                return Err(TargetError::SqliteNamespace);
            }
            sqlite(&path, options.ttl, options.verbose)
        }
        Target::Redis(url) => redis(&url, namespace, options.ttl).await,
    }
}

#[cfg(feature = "sqlite")]
fn sqlite(
    path: &std::path::Path,
    ttl: Option<Duration>,
    verbose: bool,
) -> Result<LockManager, TargetError> {
    let mut builder = tierlock::SqliteProvider::builder(path);
    if let Some(ttl) = ttl {
        builder = builder.ttl(ttl);
    }
    let provider = builder.build().map_err(|err| TargetError::Provider {
        database: "SQLite",
        source: Box::new(err),
    })?;
    if verbose {
        eprintln!(
            "tierlock: {} is on {}\ntierlock: SQLite lease, ttl {:?}",
            provider.path().display(),
            provider.mount(),
            provider.ttl()
        );
    }
    Ok(LockManager::new(provider))
}

#[cfg(not(feature = "sqlite"))]
fn sqlite(
    _path: &std::path::Path,
    _ttl: Option<Duration>,
    _verbose: bool,
) -> Result<LockManager, TargetError> {
    Err(TargetError::NotBuilt {
        database: "SQLite",
        feature: "sqlite",
    })
}

#[cfg(feature = "postgres")]
async fn postgres(url: String, namespace: &str) -> Result<LockManager, TargetError> {
    let provider_error = |source: tierlock::BoxError| TargetError::Provider {
        database: "PostgreSQL",
        source,
    };
    let mut builder = tierlock::PostgresProvider::builder(url.as_str()).namespace(namespace);
    if requires_tls(&url) {
        builder = builder.tls(tls_config().map_err(provider_error)?);
    }
    let provider = builder
        .connect()
        .await
        .map_err(|err| provider_error(Box::new(err)))?;
    Ok(LockManager::new(provider))
}

#[cfg(not(feature = "postgres"))]
async fn postgres(_url: String, _namespace: &str) -> Result<LockManager, TargetError> {
    Err(TargetError::NotBuilt {
        database: "PostgreSQL",
        feature: "postgres",
    })
}

/// Whether the URL's query says `sslmode=require`.
#[cfg_attr(not(feature = "postgres"), allow(dead_code))]
fn requires_tls(url: &str) -> bool {
    let query = url.split_once('?').map_or("", |(_, query)| query);
    query
        .split('&')
        .any(|pair| pair.eq_ignore_ascii_case("sslmode=require"))
}

/// rustls with ring and the system's root certificates.
#[cfg(feature = "postgres")]
fn tls_config() -> Result<rustls::ClientConfig, tierlock::BoxError> {
    let mut roots = rustls::RootCertStore::empty();
    let found = rustls_native_certs::load_native_certs();
    let (added, _ignored) = roots.add_parsable_certificates(found.certs);
    if added == 0 {
        return Err(Box::new(NoRootCertificates));
    }
    // Several rustls crypto providers may be compiled in (ring here, aws-lc-rs for SQL
    // Server): name one explicitly.
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(config)
}

/// `sslmode=require` but no usable root certificate on this system.
#[cfg(feature = "postgres")]
#[derive(Debug, thiserror::Error)]
#[error("sslmode=require: no trusted root certificates found (set SSL_CERT_FILE to a PEM file)")]
struct NoRootCertificates;

#[cfg(feature = "mssql")]
fn mssql(conn: &str, namespace: &str) -> Result<LockManager, TargetError> {
    let provider = tierlock::MssqlProvider::builder(conn)
        .and_then(|builder| builder.namespace(namespace).build())
        .map_err(|err| TargetError::Provider {
            database: "SQL Server",
            source: Box::new(err),
        })?;
    Ok(LockManager::new(provider))
}

#[cfg(not(feature = "mssql"))]
fn mssql(_conn: &str, _namespace: &str) -> Result<LockManager, TargetError> {
    Err(TargetError::NotBuilt {
        database: "SQL Server",
        feature: "mssql",
    })
}

/// The key prefix for `--namespace`: `tierlock:NS:`, or the provider's default `tierlock:`.
#[cfg_attr(not(feature = "redis"), allow(dead_code))]
fn redis_key_prefix(namespace: &str) -> String {
    if namespace.is_empty() {
        "tierlock:".to_owned()
    } else {
        format!("tierlock:{namespace}:")
    }
}

#[cfg(feature = "redis")]
async fn redis(
    url: &str,
    namespace: &str,
    ttl: Option<Duration>,
) -> Result<LockManager, TargetError> {
    let mut builder = tierlock::RedisProvider::builder(url).key_prefix(redis_key_prefix(namespace));
    if let Some(ttl) = ttl {
        builder = builder.ttl(ttl);
    }
    let provider = builder
        .connect()
        .await
        .map_err(|err| TargetError::Provider {
            database: "Redis",
            source: Box::new(err),
        })?;
    Ok(LockManager::new(provider))
}

#[cfg(not(feature = "redis"))]
async fn redis(
    _url: &str,
    _namespace: &str,
    _ttl: Option<Duration>,
) -> Result<LockManager, TargetError> {
    Err(TargetError::NotBuilt {
        database: "Redis",
        feature: "redis",
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pg(url: &str) -> Target {
        Target::Postgres(url.to_owned())
    }

    fn ms(conn: &str) -> Target {
        Target::Mssql(conn.to_owned())
    }

    #[test]
    fn postgres_urls() {
        let url = "postgres://app:secret@db:5432/app";
        assert_eq!(classify(url).unwrap(), pg(url));
        let url = "postgresql://db/app?sslmode=require";
        assert_eq!(classify(url).unwrap(), pg(url));
        assert_eq!(
            classify(" POSTGRES://db/app ").unwrap(),
            pg("postgres://db/app")
        );
    }

    #[test]
    fn sql_server_forms() {
        let jdbc = "jdbc:sqlserver://db:1433;databaseName=app;user=u;password=p";
        assert_eq!(classify(jdbc).unwrap(), ms(jdbc));
        assert_eq!(
            classify("JDBC:SQLServer://db:1433;user=u").unwrap(),
            ms("jdbc:sqlserver://db:1433;user=u")
        );
        assert_eq!(
            classify("mssql:server=tcp:db,1433;user id=u;password=p").unwrap(),
            ms("server=tcp:db,1433;user id=u;password=p")
        );
    }

    #[test]
    fn redis_urls() {
        let url = "redis://:secret@cache:6379/0";
        assert_eq!(classify(url).unwrap(), Target::Redis(url.to_owned()));
        assert_eq!(
            classify("REDIS://cache/1").unwrap(),
            Target::Redis("redis://cache/1".to_owned())
        );
        let unix = "redis+unix:///run/redis.sock";
        assert_eq!(classify(unix).unwrap(), Target::Redis(unix.to_owned()));
        assert_eq!(format!("{:?}", classify(url).unwrap()), "Redis(..)");
        assert_eq!(redis_key_prefix(""), "tierlock:");
        assert_eq!(redis_key_prefix("billing"), "tierlock:billing:");
    }

    #[test]
    fn rejected_forms_never_echo_the_url() {
        let cases = [
            ("sqlserver://u:hunter2@db/app", "jdbc:sqlserver://"),
            ("mssql://u:hunter2@db/app", "jdbc:sqlserver://"),
            ("mssql:", "jdbc:sqlserver://"),
            ("mysql://u:hunter2@db/app", "unknown scheme \"mysql\""),
            (
                "jdbc:postgresql://db/app?password=hunter2",
                "unknown scheme \"jdbc\"",
            ),
            ("postgres:hunter2", "unknown scheme \"postgres\""),
            ("redis:hunter2@cache", "unknown scheme \"redis\""),
            ("u:hunter2@db", "unknown scheme \"u\""),
            ("hunter2", "not a URL"),
            ("/path/hunter2:x", "not a URL"),
            ("", "not a URL"),
        ];
        for (url, expected) in cases {
            let message = classify(url).unwrap_err().to_string();
            assert!(message.contains(expected), "{url}: {message}");
            assert!(!message.contains("hunter2"), "{url}: {message}");
        }
    }

    #[test]
    fn sqlite_paths() {
        let sqlite = |p: &str| Target::Sqlite(PathBuf::from(p));
        assert_eq!(
            classify("sqlite:/var/lib/app/locks.db").unwrap(),
            sqlite("/var/lib/app/locks.db")
        );
        assert_eq!(classify("SQLite:locks.db").unwrap(), sqlite("locks.db"));
        assert_eq!(classify("sqlite:///tmp/x.db").unwrap(), sqlite("/tmp/x.db"));
        assert_eq!(classify("sqlite:./a b.db").unwrap(), sqlite("./a b.db"));
        for bad in ["sqlite:", "sqlite://", "sqlite://host/x.db"] {
            let err = classify(bad).unwrap_err().to_string();
            assert!(err.contains("sqlite:/path/to.db"), "{bad}: {err}");
        }
        assert_eq!(
            format!("{:?}", classify("sqlite:/a.db").unwrap()),
            "Sqlite(\"/a.db\")"
        );
    }

    #[test]
    fn sqlite_takes_no_namespace_and_servers_no_ttl() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let options = Options {
            namespace: Some("ns".to_owned()),
            ..Options::default()
        };
        let err = runtime
            .block_on(connect(
                classify("sqlite:/nonexistent/x.db").unwrap(),
                &options,
            ))
            .unwrap_err();
        assert!(matches!(err, TargetError::SqliteNamespace), "{err}");
        let options = Options {
            ttl: Some(Duration::from_secs(1)),
            ..Options::default()
        };
        let err = runtime
            .block_on(connect(pg("postgres://db/app"), &options))
            .unwrap_err();
        assert!(matches!(err, TargetError::TtlNotForServer { .. }), "{err}");
    }

    #[test]
    fn debug_hides_the_connection_string() {
        let target = classify("postgres://u:hunter2@db/app").unwrap();
        assert_eq!(format!("{target:?}"), "Postgres(..)");
    }

    #[test]
    fn tls_only_when_required() {
        assert!(requires_tls("postgres://db/app?sslmode=require"));
        assert!(requires_tls(
            "postgres://db/app?application_name=x&sslmode=require"
        ));
        assert!(!requires_tls("postgres://db/app?sslmode=prefer"));
        assert!(!requires_tls("postgres://db/app"));
        assert!(!requires_tls("postgres://u:sslmode=require@db/app"));
    }

    #[cfg(not(feature = "postgres"))]
    #[test]
    fn postgres_left_out_is_said_plainly() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let err = runtime
            .block_on(connect(pg("postgres://db/app"), &Options::default()))
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "this build of tierlock has no PostgreSQL support (feature `postgres`)"
        );
    }

    #[cfg(not(feature = "mssql"))]
    #[test]
    fn mssql_left_out_is_said_plainly() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let err = runtime
            .block_on(connect(ms("server=tcp:db,1433"), &Options::default()))
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "this build of tierlock has no SQL Server support (feature `mssql`)"
        );
    }

    #[cfg(feature = "mssql")]
    #[test]
    fn mssql_provider_is_built_without_connecting() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let target = classify("mssql:server=tcp:db.invalid,1433;user id=u;password=p").unwrap();
        let options = Options {
            namespace: Some("ns".to_owned()),
            ..Options::default()
        };
        assert!(runtime.block_on(connect(target, &options)).is_ok());
    }
}
