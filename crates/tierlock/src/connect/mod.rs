//! [`connect`] and [`ConnectOptions`]: a [`LockManager`] from a URL (see the crate documentation
//! for the table of forms and parameters).

mod open;
mod status;
mod url;

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use tierlock_core::{BoxError, LockManager};

use crate::duration::DurationError;

pub use status::{StatusError, status};

/// Makes a [`LockManager`] on the provider that `url` names, with the options its query
/// carries: `ConnectOptions::new(url)?.connect().await`. See the
/// [table of forms](crate#connecting-from-a-url) for what `url` may be.
///
/// ```no_run
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), tierlock::ConnectError> {
/// let locks = tierlock::connect("postgres://app@db.internal/app?namespace=billing").await?;
/// let file_locks = tierlock::connect("file:///srv/locks?mode=lease&ttl=10s").await?;
/// # Ok(())
/// # }
/// ```
///
/// # Errors
///
/// Those of [`ConnectOptions::new`] and [`ConnectOptions::connect`]. No error ever contains
/// the URL or its password.
pub async fn connect(url: &str) -> Result<LockManager, ConnectError> {
    ConnectOptions::new(url)?.connect().await
}

/// Which provider a [`ConnectOptions`] makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ProviderKind {
    /// `FileProvider`: a directory (`file:`, a bare path).
    File,
    /// `PostgresProvider`: `postgres://`, `postgresql://`.
    Postgres,
    /// `MssqlProvider`: `jdbc:sqlserver://`, `mssql:`.
    SqlServer,
    /// `SqliteProvider`: `sqlite:`.
    Sqlite,
    /// `RedisProvider`: `redis://`, `rediss://`, `redis+unix://`.
    Redis,
    /// [`MemoryProvider`](crate::MemoryProvider): `memory:`.
    Memory,
}

impl ProviderKind {
    /// The cargo feature of the `tierlock` crate that compiles this provider in (`None` for
    /// memory, which is always there).
    ///
    /// ```
    /// use tierlock::ProviderKind;
    ///
    /// assert_eq!(ProviderKind::SqlServer.feature(), Some("mssql"));
    /// assert_eq!(ProviderKind::Memory.feature(), None);
    /// ```
    pub fn feature(self) -> Option<&'static str> {
        match self {
            ProviderKind::File => Some("file"),
            ProviderKind::Postgres => Some("postgres"),
            ProviderKind::SqlServer => Some("mssql"),
            ProviderKind::Sqlite => Some("sqlite"),
            ProviderKind::Redis => Some("redis"),
            ProviderKind::Memory => None,
        }
    }

    /// Whether this build has the provider (its [`feature`](Self::feature) is on).
    ///
    /// ```
    /// assert!(tierlock::ProviderKind::Memory.is_built());
    /// ```
    pub fn is_built(self) -> bool {
        match self {
            ProviderKind::File => cfg!(feature = "file"),
            ProviderKind::Postgres => cfg!(feature = "postgres"),
            ProviderKind::SqlServer => cfg!(feature = "mssql"),
            ProviderKind::Sqlite => cfg!(feature = "sqlite"),
            ProviderKind::Redis => cfg!(feature = "redis"),
            ProviderKind::Memory => true,
        }
    }
}

impl fmt::Display for ProviderKind {
    /// `file`, `PostgreSQL`, `SQL Server`, `SQLite`, `Redis` or `memory`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ProviderKind::File => "file",
            ProviderKind::Postgres => "PostgreSQL",
            ProviderKind::SqlServer => "SQL Server",
            ProviderKind::Sqlite => "SQLite",
            ProviderKind::Redis => "Redis",
            ProviderKind::Memory => "memory",
        })
    }
}

/// How the file provider keeps a lock (`mode=` in a `file:` URL,
/// [`ConnectOptions::file_lock_mode`]); without it, the mode is chosen from the directory's
/// mount. See `FileLockMode` (feature `file`) for what each means.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FileMode {
    /// `flock`: an OS file lock on the name's lock file.
    Flock,
    /// `lease`: a lease renewed by its holder (time to live from `ttl`, default 10 s).
    Lease,
}

impl FromStr for FileMode {
    type Err = ConnectError;

    /// `flock` or `lease`.
    ///
    /// ```
    /// use tierlock::FileMode;
    ///
    /// assert_eq!("lease".parse::<FileMode>()?, FileMode::Lease);
    /// assert!("nfs".parse::<FileMode>().is_err());
    /// # Ok::<(), tierlock::ConnectError>(())
    /// ```
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "flock" => Ok(FileMode::Flock),
            "lease" => Ok(FileMode::Lease),
            _ => Err(ConnectError::InvalidParameter {
                name: "mode",
                expected: "flock or lease",
                source: None,
            }),
        }
    }
}

/// Why [`connect`] or [`ConnectOptions`] failed.
///
/// No variant, message or `Debug` output contains the URL: connection strings hold passwords.
/// Messages name the scheme or the parameter at most; a driver's error (in
/// [`Provider`](ConnectError::Provider)'s source) names the server and the user, not the
/// password.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectError {
    /// Neither a URL with a scheme nor a path (a relative path starts with `./`).
    #[error(
        "not a lock URL or path (expected file:///dir, /dir, ./dir, postgres://…, jdbc:sqlserver://…, \
         mssql:<ADO.NET connection string>, sqlite:/path/to.db, redis://… or memory:)"
    )]
    NotAUrl,
    /// A scheme no provider handles.
    #[error(
        "unknown scheme {scheme:?} (expected file:, postgres://, postgresql://, jdbc:sqlserver://, \
         mssql:, sqlite:, redis:// or memory:)"
    )]
    UnknownScheme {
        /// The scheme, lower-cased.
        scheme: String,
    },
    /// `sqlserver://` (or `mssql://`), which no SQL Server driver parses.
    #[error(
        "sqlserver://… is not supported; use jdbc:sqlserver://host:1433;databaseName=…;user=…;password=… \
         or mssql:server=tcp:host,1433;database=…;user id=…;password=…"
    )]
    SqlServerScheme,
    /// The path of a `file:` or `sqlite:` URL cannot be used.
    #[error("{form} {problem}")]
    InvalidPath {
        /// `file:` or `sqlite:`.
        form: &'static str,
        /// What is wrong, and the form that works.
        problem: &'static str,
    },
    /// A query parameter that neither tierlock nor the provider takes (for providers without a
    /// driver of their own: file, SQLite, memory).
    #[error(
        "unknown URL parameter {name:?} for {provider} (tierlock's are namespace, ttl, mode, fencing)"
    )]
    UnknownParameter {
        /// The provider.
        provider: ProviderKind,
        /// The parameter's name.
        name: String,
    },
    /// One of tierlock's parameters given twice.
    #[error("URL parameter `{name}` is given twice")]
    DuplicateParameter {
        /// `namespace`, `ttl`, `mode` or `fencing`.
        name: &'static str,
    },
    /// One of tierlock's parameters with a value it does not take.
    #[error("invalid value for `{name}` (expected {expected})")]
    InvalidParameter {
        /// `namespace`, `ttl`, `mode` or `fencing`.
        name: &'static str,
        /// What it takes.
        expected: &'static str,
        /// Why a `ttl` is not a duration.
        #[source]
        source: Option<DurationError>,
    },
    /// An option the provider does not take (`namespace` on a directory, `ttl` on PostgreSQL…).
    #[error("{option} is not for {provider}{hint}")]
    OptionNotFor {
        /// `namespace`, `ttl`, `mode`, `fencing` or `fencing=false`.
        option: &'static str,
        /// The provider.
        provider: ProviderKind,
        /// What to do instead, starting with a space, or empty.
        hint: &'static str,
    },
    /// `ttl` with `mode=flock`: only leases have one.
    #[error("ttl is for lease mode, not mode=flock")]
    TtlWithFlock,
    /// The form needs a cargo feature this build does not have.
    #[error("this build of tierlock has no {what} support (cargo feature `{feature}`)")]
    FeatureDisabled {
        /// `PostgreSQL`, `PostgreSQL TLS (sslmode=require)`, `SQL Server`, `SQLite`, `Redis` or
        /// `file`.
        what: &'static str,
        /// The feature of the `tierlock` crate (`postgres`, `postgres-rustls`, `mssql`,
        /// `sqlite`, `redis`, `file`).
        feature: &'static str,
    },
    /// The provider refused its configuration or could not connect; `source` is its error
    /// (`FileError`, `PostgresError`, `MssqlError`, `SqliteError`, `RedisError`, or a TLS
    /// setup error).
    #[error("cannot set up the {provider} provider")]
    Provider {
        /// The provider.
        provider: ProviderKind,
        /// Its error.
        #[source]
        source: BoxError,
    },
}

/// What a lock URL names, after tierlock's own parameters were taken out.
#[derive(Clone, PartialEq, Eq)]
enum Target {
    /// A lock directory.
    File(PathBuf),
    /// A `postgres://` URL for tokio-postgres (whose `sslmode` tierlock-postgres reads).
    Postgres(String),
    /// An ADO.NET or `jdbc:sqlserver://` connection string for tiberius.
    Mssql(String),
    /// An SQLite database file.
    Sqlite(PathBuf),
    /// A `redis://` (`rediss://`, `redis+unix://`) URL for the redis crate.
    Redis(String),
    /// This process only.
    Memory,
}

impl Target {
    fn kind(&self) -> ProviderKind {
        match self {
            Target::File(_) => ProviderKind::File,
            Target::Postgres(_) => ProviderKind::Postgres,
            Target::Mssql(_) => ProviderKind::SqlServer,
            Target::Sqlite(_) => ProviderKind::Sqlite,
            Target::Redis(_) => ProviderKind::Redis,
            Target::Memory => ProviderKind::Memory,
        }
    }
}

impl fmt::Debug for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Connection strings may hold a password: never print them.
        match self {
            Target::File(path) => f.debug_tuple("File").field(path).finish(),
            Target::Postgres(_) => f.write_str("Postgres(..)"),
            Target::Mssql(_) => f.write_str("Mssql(..)"),
            Target::Sqlite(path) => f.debug_tuple("Sqlite").field(path).finish(),
            Target::Redis(_) => f.write_str("Redis(..)"),
            Target::Memory => f.write_str("Memory"),
        }
    }
}

/// A provider and its options, from a URL ([`new`](Self::new), [`FromStr`]) or a directory
/// ([`file`](Self::file)), adjusted by setters, then [`connect`](Self::connect)ed into a
/// [`LockManager`].
///
/// The URL's query carries tierlock's options (`namespace`, `ttl`, `mode`, `fencing`; see the
/// [table](crate#connecting-from-a-url)); they are taken out before the driver sees the URL. A
/// setter overrides the URL's value. Options a provider does not take are refused, by
/// [`new`](Self::new) for the URL's and by [`connect`](Self::connect) for the setters'. Every
/// other option of the providers' builders (poll intervals, idle connections, timeouts, the
/// fencing table, permission bits…) is builder-only: make the provider with its builder and
/// `LockManager::new` when you need them.
///
/// `Debug` shows the provider, the path of a directory or SQLite file and the options, never a
/// connection string.
///
/// ```no_run
/// use std::time::Duration;
/// use tierlock::ConnectOptions;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), tierlock::ConnectError> {
/// let url = std::env::var("LOCKS_URL").unwrap_or_else(|_| "./locks".to_owned());
/// let locks = url
///     .parse::<ConnectOptions>()?
///     .namespace("billing") // scopes the names on a database server
///     .connect()
///     .await?;
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
#[must_use]
pub struct ConnectOptions {
    target: Target,
    namespace: Option<String>,
    ttl: Option<Duration>,
    mode: Option<FileMode>,
    fencing: Option<bool>,
}

impl fmt::Debug for ConnectOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnectOptions")
            .field("target", &self.target)
            .field("namespace", &self.namespace)
            .field("ttl", &self.ttl)
            .field("mode", &self.mode)
            .field("fencing", &self.fencing)
            .finish()
    }
}

impl ConnectOptions {
    /// Parses a lock URL (see the [table](crate#connecting-from-a-url)): the provider, and the
    /// options in its query. Parsing is pure string work (nothing is opened) and does not
    /// depend on the cargo features: a form whose feature is off fails in
    /// [`connect`](Self::connect).
    ///
    /// ```
    /// use tierlock::{ConnectOptions, ProviderKind};
    ///
    /// let options = ConnectOptions::new("sqlite:/var/lib/app/locks.db?ttl=5s")?;
    /// assert_eq!(options.kind(), ProviderKind::Sqlite);
    /// assert_eq!(ConnectOptions::new(r"C:\locks")?.kind(), ProviderKind::File);
    /// assert!(ConnectOptions::new("postgres://db/app?ttl=5s").is_err()); // not a lease
    /// # Ok::<(), tierlock::ConnectError>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`ConnectError::NotAUrl`], [`UnknownScheme`](ConnectError::UnknownScheme),
    /// [`SqlServerScheme`](ConnectError::SqlServerScheme),
    /// [`InvalidPath`](ConnectError::InvalidPath),
    /// [`UnknownParameter`](ConnectError::UnknownParameter),
    /// [`DuplicateParameter`](ConnectError::DuplicateParameter),
    /// [`InvalidParameter`](ConnectError::InvalidParameter),
    /// [`OptionNotFor`](ConnectError::OptionNotFor) or
    /// [`TtlWithFlock`](ConnectError::TtlWithFlock).
    pub fn new(url: &str) -> Result<Self, ConnectError> {
        let parsed = url::parse(url)?;
        let options = ConnectOptions {
            target: parsed.target,
            namespace: parsed.params.namespace,
            ttl: parsed.params.ttl,
            mode: parsed.params.mode,
            fencing: parsed.params.fencing,
        };
        options.check()?;
        Ok(options)
    }

    /// The file provider on `dir`, taken as a path whatever it looks like (the CLI's `--dir`).
    ///
    /// ```
    /// use tierlock::{ConnectOptions, ProviderKind};
    ///
    /// let options = ConnectOptions::file("postgres:not-a-url");
    /// assert_eq!(options.kind(), ProviderKind::File);
    /// ```
    pub fn file(dir: impl Into<PathBuf>) -> Self {
        ConnectOptions {
            target: Target::File(dir.into()),
            namespace: None,
            ttl: None,
            mode: None,
            fencing: None,
        }
    }

    /// The provider these options make.
    ///
    /// ```
    /// use tierlock::{ConnectOptions, ProviderKind};
    ///
    /// assert_eq!(ConnectOptions::new("memory:")?.kind(), ProviderKind::Memory);
    /// # Ok::<(), tierlock::ConnectError>(())
    /// ```
    pub fn kind(&self) -> ProviderKind {
        self.target.kind()
    }

    /// Scopes the lock names on a server (PostgreSQL, SQL Server, Redis; URL: `namespace=`):
    /// only managers with the same namespace on the same database exclude each other. On Redis
    /// it makes the key prefix `tierlock:NS:`. Not for a directory, an SQLite file or memory.
    ///
    /// ```
    /// use tierlock::ConnectOptions;
    ///
    /// let options = ConnectOptions::new("redis://cache.internal:6379/0")?.namespace("billing");
    /// # Ok::<(), tierlock::ConnectError>(())
    /// ```
    pub fn namespace(mut self, namespace: impl Into<String>) -> Self {
        self.namespace = Some(namespace.into());
        self
    }

    /// The time to live of a lease (URL: `ttl=10s`): the file provider's lease mode (`ttl`
    /// alone means `mode=lease`), SQLite and Redis. A holder that dies keeps the name that long.
    ///
    /// ```
    /// use std::time::Duration;
    /// use tierlock::ConnectOptions;
    ///
    /// let options = ConnectOptions::file("/srv/locks").ttl(Duration::from_secs(30));
    /// ```
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = Some(ttl);
        self
    }

    /// Forces the file provider's locking mode (URL: `mode=flock` or `mode=lease`) instead of
    /// the one chosen from the directory's mount. File provider only.
    ///
    /// ```
    /// use tierlock::{ConnectOptions, FileMode};
    ///
    /// let options = ConnectOptions::file("/mnt/share/locks").file_lock_mode(FileMode::Lease);
    /// ```
    pub fn file_lock_mode(mut self, mode: FileMode) -> Self {
        self.mode = Some(mode);
        self
    }

    /// Fencing tokens (URL: `fencing=true` / `fencing=false`): on for PostgreSQL and SQL Server
    /// with `true` (default off); the file provider makes them by default and `false` saves
    /// flock mode their cost; SQLite and Redis always make them (`false` is refused), memory
    /// never (`true` is refused).
    ///
    /// ```
    /// use tierlock::ConnectOptions;
    ///
    /// let options = ConnectOptions::new("postgres://app@db.internal/app")?.fencing(true);
    /// # Ok::<(), tierlock::ConnectError>(())
    /// ```
    pub fn fencing(mut self, on: bool) -> Self {
        self.fencing = Some(on);
        self
    }

    /// Makes the provider and a [`LockManager`] on it. PostgreSQL and Redis open a connection
    /// to check the address and the login; a directory is created and checked, an SQLite file
    /// created with its schema; SQL Server connects on first use.
    ///
    /// ```no_run
    /// use tierlock::ConnectOptions;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), tierlock::ConnectError> {
    /// let locks = ConnectOptions::file("/srv/locks").connect().await?;
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// [`ConnectError::OptionNotFor`] or [`TtlWithFlock`](ConnectError::TtlWithFlock) for an
    /// option the provider does not take, [`FeatureDisabled`](ConnectError::FeatureDisabled)
    /// if the provider (or PostgreSQL's TLS) is not compiled in,
    /// [`Provider`](ConnectError::Provider) if it refuses its configuration or cannot connect.
    pub async fn connect(self) -> Result<LockManager, ConnectError> {
        self.check()?;
        open::open(self).await
    }

    /// Refuses options the provider does not take.
    fn check(&self) -> Result<(), ConnectError> {
        use ProviderKind as K;
        let kind = self.kind();
        let refuse = |option, hint| {
            Err(ConnectError::OptionNotFor {
                option,
                provider: kind,
                hint,
            })
        };
        if self.namespace.is_some() {
            match kind {
                K::File => return refuse("namespace", " (use another directory)"),
                K::Sqlite => return refuse("namespace", " (use another database file)"),
                K::Memory => return refuse("namespace", " (use another manager)"),
                _ => {}
            }
        }
        if self.ttl.is_some() && matches!(kind, K::Postgres | K::SqlServer | K::Memory) {
            return refuse(
                "ttl",
                " (its locks are not leases; ttl is for a directory in lease mode, SQLite and Redis)",
            );
        }
        if self.mode.is_some() && kind != K::File {
            return refuse("mode", " (mode is for a directory)");
        }
        if self.mode == Some(FileMode::Flock) && self.ttl.is_some() {
            return Err(ConnectError::TtlWithFlock);
        }
        match (kind, self.fencing) {
            (K::Sqlite | K::Redis, Some(false)) => {
                refuse("fencing=false", " (it always makes fencing tokens)")
            }
            (K::Memory, Some(true)) => refuse("fencing", " (it makes no fencing tokens)"),
            _ => Ok(()),
        }
    }
}

impl FromStr for ConnectOptions {
    type Err = ConnectError;

    /// [`ConnectOptions::new`].
    ///
    /// ```
    /// let options: tierlock::ConnectOptions = "file:///srv/locks?mode=lease&ttl=10s".parse()?;
    /// # Ok::<(), tierlock::ConnectError>(())
    /// ```
    fn from_str(url: &str) -> Result<Self, Self::Err> {
        ConnectOptions::new(url)
    }
}

#[cfg(test)]
mod tests;
