//! [`status`] and [`ConnectOptions::held_locks`]: the locks held right now on the backend a
//! URL names, by any process (what `tierlock status` prints).

use tierlock_core::{BoxError, HeldLock};

use super::{ConnectError, ConnectOptions, ProviderKind, Target};

/// The locks held right now on the backend `url` names, by any process:
/// `ConnectOptions::new(url)?.held_locks().await`. See [`ConnectOptions::held_locks`] for what
/// each backend reports.
///
/// ```
/// use std::time::Duration;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let tmp = tempfile::tempdir()?;
/// # let dir = tmp.path().display();
/// let url = format!("file://{dir}"); // e.g. "file:///srv/locks"
/// let locks = tierlock::connect(&url).await?;
/// let guard = locks.lock("nightly-export", Duration::from_secs(5)).await?;
///
/// for held in tierlock::status(&url).await? {
///     println!("{} held by {:?}, token {:?}", held.label(), held.holder, held.fencing_token);
/// }
/// # assert_eq!(tierlock::status(&url).await?[0].name.as_deref(), Some("nightly-export"));
/// guard.release().await?;
/// assert!(tierlock::status(&url).await?.is_empty());
/// # Ok(())
/// # }
/// ```
///
/// # Errors
///
/// Those of [`ConnectOptions::new`] and [`ConnectOptions::held_locks`].
pub async fn status(url: &str) -> Result<Vec<HeldLock>, StatusError> {
    ConnectOptions::new(url)?.held_locks().await
}

/// Why [`status`] or [`ConnectOptions::held_locks`] failed. Like [`ConnectError`], it never
/// contains the URL.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StatusError {
    /// The URL or the options were refused, or the provider could not be set up or reached.
    #[error(transparent)]
    Connect(#[from] ConnectError),
    /// The backend was reached but could not be asked (a permission, a query that failed);
    /// `source` is the provider's error (`FileError`, `PostgresError`, `MssqlError`,
    /// `SqliteError`, `RedisError`).
    #[error("cannot list the locks held on the {provider} provider")]
    Provider {
        /// The provider.
        provider: ProviderKind,
        /// Its error.
        #[source]
        source: BoxError,
    },
    /// The provider cannot tell which locks are held (`memory:` keeps them inside the process
    /// that holds them).
    #[error("cannot list the locks held on the {provider} provider: {reason}")]
    Unsupported {
        /// The provider.
        provider: ProviderKind,
        /// Why.
        reason: &'static str,
    },
}

/// Wraps a provider's listing error.
#[cfg_attr(
    not(any(
        feature = "file",
        feature = "postgres",
        feature = "mssql",
        feature = "sqlite",
        feature = "redis"
    )),
    allow(dead_code)
)]
fn listing_error<E: std::error::Error + Send + Sync + 'static>(
    provider: ProviderKind,
) -> impl FnOnce(E) -> StatusError {
    move |err| StatusError::Provider {
        provider,
        source: Box::new(err),
    }
}

impl ConnectOptions {
    /// The locks held right now on the backend these options name, by any process, sorted by
    /// key. Nothing is created and no lock is taken; what each backend can tell
    /// ([`HeldLock`]'s fields):
    ///
    /// | provider | key | name | holder | other |
    /// |---|---|---|---|---|
    /// | file, flock mode | the lock file | exact for names of ≤ 40 characters in `[A-Za-z0-9._-]`, else a hint (the file's prefix) | `pid N` (Linux) | fencing token; waiters (Linux) |
    /// | file, lease mode | the lease directory | as flock mode | `pid N on HOST` | fencing token; waiters |
    /// | SQL Server | `sys.dm_tran_locks`' `resource_description` (`0:[first 32 characters of the resource]:(hash)`) | exact when the resource is shown whole and starts with the namespace, else a hint | `session N` | waiters |
    /// | SQLite | the name | exact | `pid N on HOST` | time left; fencing token; waiters |
    /// | Redis | the lock key (`tierlock:{n:NAME}:lock`) | exact for names kept readable in keys, else — (a hash) | — (a random owner token) | time to live; fencing token; waiters |
    /// | PostgreSQL | the advisory key (`bigint`, decimal) | — (a hash) | `pid N (application) from ADDRESS` | fencing token (from the counter table, unless `fencing=false`); waiters |
    ///
    /// The file provider asks the kernel's lock table where it sees every holder and otherwise
    /// probes with a shared lock attempt: see `tierlock_file::status` (feature `file`) for what
    /// that can do to a concurrent zero-timeout acquisition. PostgreSQL lists every exclusive
    /// advisory lock on a `bigint` key in the database, whatever its namespace or application
    /// (see `PostgresProvider::held_locks`). Redis lists the keys under the namespace's prefix
    /// (`tierlock:` without one, `tierlock:NS:` with `namespace=NS`). SQL Server lists every
    /// exclusive applock of the database (the namespace only turns resources back into names)
    /// and needs `VIEW SERVER STATE`. Options that only matter when locking (`mode`,
    /// `ttl`, a PostgreSQL `namespace`) are ignored.
    ///
    /// # Errors
    ///
    /// [`StatusError::Connect`] for the errors of [`connect`](Self::connect) (a refused option,
    /// a provider not compiled in, a server that cannot be reached);
    /// [`StatusError::Provider`] if the backend cannot be asked;
    /// [`StatusError::Unsupported`] for `memory:`.
    pub async fn held_locks(self) -> Result<Vec<HeldLock>, StatusError> {
        self.check()?;
        let ConnectOptions {
            target,
            fencing,
            namespace,
            ..
        } = self;
        match target {
            Target::File(dir) => file::held_locks(&dir),
            Target::Postgres(url) => postgres::held_locks(url, fencing).await,
            Target::Sqlite(path) => sqlite::held_locks(&path),
            Target::Redis(url) => redis::held_locks(url, &namespace.unwrap_or_default()).await,
            Target::Memory => Err(StatusError::Unsupported {
                provider: ProviderKind::Memory,
                reason: "its locks live inside one process",
            }),
            Target::Mssql(conn) => mssql::held_locks(&conn, namespace.unwrap_or_default()).await,
        }
    }
}

#[cfg(feature = "file")]
mod file {
    use std::path::Path;

    use tierlock_core::HeldLock;

    use super::{ProviderKind, StatusError, listing_error};

    pub(super) fn held_locks(dir: &Path) -> Result<Vec<HeldLock>, StatusError> {
        tierlock_file::status::held_locks(dir).map_err(listing_error(ProviderKind::File))
    }
}

#[cfg(not(feature = "file"))]
mod file {
    use std::path::Path;

    use tierlock_core::HeldLock;

    use super::super::open::not_built;
    use super::StatusError;

    pub(super) fn held_locks(_dir: &Path) -> Result<Vec<HeldLock>, StatusError> {
        Err(not_built("file", "file").into())
    }
}

#[cfg(feature = "postgres")]
mod postgres {
    use tierlock_core::HeldLock;

    use super::{ProviderKind, StatusError, listing_error};

    pub(super) async fn held_locks(
        url: String,
        fencing: Option<bool>,
    ) -> Result<Vec<HeldLock>, StatusError> {
        // Tokens are read from the counter table when it exists: harmless, so on by default.
        let fencing = Some(fencing.unwrap_or(true));
        let provider = super::super::open::postgres::provider(url, String::new(), fencing).await?;
        provider
            .held_locks()
            .await
            .map_err(listing_error(ProviderKind::Postgres))
    }
}

#[cfg(not(feature = "postgres"))]
mod postgres {
    use tierlock_core::HeldLock;

    use super::super::open::not_built;
    use super::StatusError;

    pub(super) async fn held_locks(
        _url: String,
        _fencing: Option<bool>,
    ) -> Result<Vec<HeldLock>, StatusError> {
        Err(not_built("PostgreSQL", "postgres").into())
    }
}

#[cfg(feature = "redis")]
mod redis {
    use tierlock_core::HeldLock;

    use super::{ProviderKind, StatusError, listing_error};

    pub(super) async fn held_locks(
        url: String,
        namespace: &str,
    ) -> Result<Vec<HeldLock>, StatusError> {
        let provider = super::super::open::redis::provider(url, namespace, None).await?;
        provider
            .held_locks()
            .await
            .map_err(listing_error(ProviderKind::Redis))
    }
}

#[cfg(not(feature = "redis"))]
mod redis {
    use tierlock_core::HeldLock;

    use super::super::open::not_built;
    use super::StatusError;

    pub(super) async fn held_locks(
        _url: String,
        _namespace: &str,
    ) -> Result<Vec<HeldLock>, StatusError> {
        Err(not_built("Redis", "redis").into())
    }
}

#[cfg(feature = "sqlite")]
mod sqlite {
    use std::path::Path;

    use tierlock_core::HeldLock;

    use super::{ProviderKind, StatusError, listing_error};

    pub(super) fn held_locks(path: &Path) -> Result<Vec<HeldLock>, StatusError> {
        tierlock_sqlite::status::held_locks(path).map_err(listing_error(ProviderKind::Sqlite))
    }
}

#[cfg(not(feature = "sqlite"))]
mod sqlite {
    use std::path::Path;

    use tierlock_core::HeldLock;

    use super::super::open::not_built;
    use super::StatusError;

    pub(super) fn held_locks(_path: &Path) -> Result<Vec<HeldLock>, StatusError> {
        Err(not_built("SQLite", "sqlite").into())
    }
}

#[cfg(feature = "mssql")]
mod mssql {
    use tierlock_core::HeldLock;

    use super::{ProviderKind, StatusError, listing_error};

    pub(super) async fn held_locks(
        conn: &str,
        namespace: String,
    ) -> Result<Vec<HeldLock>, StatusError> {
        let provider = super::super::open::mssql::provider(conn, namespace, None)?;
        provider
            .held_locks()
            .await
            .map_err(listing_error(ProviderKind::SqlServer))
    }
}

#[cfg(not(feature = "mssql"))]
mod mssql {
    use tierlock_core::HeldLock;

    use super::super::open::not_built;
    use super::StatusError;

    pub(super) async fn held_locks(
        _conn: &str,
        _namespace: String,
    ) -> Result<Vec<HeldLock>, StatusError> {
        Err(not_built("SQL Server", "mssql").into())
    }
}
