//! Making the provider a [`ConnectOptions`] names, through its builder.

use tierlock_core::{LockManager, MemoryProvider};

use super::{ConnectError, ConnectOptions, ProviderKind, Target};

/// Builds (and for servers, connects) the provider; the options were checked.
pub(super) async fn open(options: ConnectOptions) -> Result<LockManager, ConnectError> {
    let ConnectOptions {
        target,
        namespace,
        ttl,
        mode,
        fencing,
    } = options;
    let namespace = namespace.unwrap_or_default();
    match target {
        Target::File(dir) => file::open(&dir, mode, ttl, fencing),
        Target::Postgres(url) => postgres::open(url, namespace, fencing).await,
        Target::Mssql(conn) => mssql::open(&conn, namespace, fencing),
        Target::Sqlite(path) => sqlite::open(&path, ttl),
        Target::Redis(url) => redis::open(url, &namespace, ttl).await,
        Target::Memory => Ok(LockManager::new(MemoryProvider::new())),
    }
}

/// Wraps a provider's error.
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
fn provider_error(
    provider: ProviderKind,
) -> impl FnOnce(Box<dyn std::error::Error + Send + Sync>) -> ConnectError {
    move |source| ConnectError::Provider { provider, source }
}

/// The error for a provider left out of this build.
#[cfg_attr(
    all(
        feature = "file",
        feature = "postgres-rustls",
        feature = "mssql",
        feature = "sqlite",
        feature = "redis"
    ),
    allow(dead_code)
)]
pub(super) fn not_built(what: &'static str, feature: &'static str) -> ConnectError {
    ConnectError::FeatureDisabled { what, feature }
}

#[cfg(feature = "file")]
mod file {
    use std::path::Path;
    use std::time::Duration;

    use tierlock_core::LockManager;
    use tierlock_file::{FileLockMode, FileProvider};

    use super::{ConnectError, ProviderKind, provider_error};
    use crate::connect::FileMode;

    pub(super) fn open(
        dir: &Path,
        mode: Option<FileMode>,
        ttl: Option<Duration>,
        fencing: Option<bool>,
    ) -> Result<LockManager, ConnectError> {
        let mut builder = FileProvider::builder(dir);
        builder = match (mode, ttl) {
            (Some(FileMode::Flock), _) => builder.mode(FileLockMode::Flock),
            (Some(FileMode::Lease), ttl) | (None, ttl @ Some(_)) => {
                builder.mode(FileLockMode::Lease {
                    ttl: ttl.unwrap_or(FileLockMode::DEFAULT_TTL),
                })
            }
            (None, None) => builder,
        };
        if let Some(on) = fencing {
            builder = builder.fencing(on);
        }
        let provider = builder
            .build()
            .map_err(|err| provider_error(ProviderKind::File)(Box::new(err)))?;
        Ok(LockManager::new(provider))
    }
}

#[cfg(not(feature = "file"))]
mod file {
    use std::path::Path;
    use std::time::Duration;

    use tierlock_core::LockManager;

    use super::{ConnectError, not_built};
    use crate::connect::FileMode;

    pub(super) fn open(
        _dir: &Path,
        _mode: Option<FileMode>,
        _ttl: Option<Duration>,
        _fencing: Option<bool>,
    ) -> Result<LockManager, ConnectError> {
        Err(not_built("file", "file"))
    }
}

#[cfg(feature = "postgres")]
pub(super) mod postgres {
    use tierlock_core::LockManager;
    use tierlock_postgres::{PostgresError, PostgresProvider};

    use super::{ConnectError, ProviderKind, not_built, provider_error};

    /// TLS or not is tierlock-postgres's choice, from the `sslmode` of the URL it parses.
    pub(super) async fn open(
        url: String,
        namespace: String,
        fencing: Option<bool>,
    ) -> Result<LockManager, ConnectError> {
        Ok(LockManager::new(provider(url, namespace, fencing).await?))
    }

    /// The provider `open` wraps (also what `status` asks). TLS or not is tierlock-postgres's
    /// choice, from the `sslmode` of the URL it parses.
    pub(in crate::connect) async fn provider(
        url: String,
        namespace: String,
        fencing: Option<bool>,
    ) -> Result<PostgresProvider, ConnectError> {
        let mut builder = PostgresProvider::builder(url).namespace(namespace);
        if let Some(on) = fencing {
            builder = builder.fencing(on);
        }
        builder.connect().await.map_err(|err| match err {
            PostgresError::TlsNotBuilt => {
                not_built("PostgreSQL TLS (sslmode=require)", "postgres-rustls")
            }
            err => provider_error(ProviderKind::Postgres)(Box::new(err)),
        })
    }
}

#[cfg(not(feature = "postgres"))]
mod postgres {
    use tierlock_core::LockManager;

    use super::{ConnectError, not_built};

    pub(super) async fn open(
        _url: String,
        _namespace: String,
        _fencing: Option<bool>,
    ) -> Result<LockManager, ConnectError> {
        Err(not_built("PostgreSQL", "postgres"))
    }
}

#[cfg(feature = "mssql")]
pub(super) mod mssql {
    use tierlock_core::LockManager;
    use tierlock_mssql::MssqlProvider;

    use super::{ConnectError, ProviderKind, provider_error};

    pub(super) fn open(
        conn: &str,
        namespace: String,
        fencing: Option<bool>,
    ) -> Result<LockManager, ConnectError> {
        Ok(LockManager::new(provider(conn, namespace, fencing)?))
    }

    /// The provider `open` wraps (also what `status` asks).
    pub(in crate::connect) fn provider(
        conn: &str,
        namespace: String,
        fencing: Option<bool>,
    ) -> Result<MssqlProvider, ConnectError> {
        MssqlProvider::builder(conn)
            .and_then(|builder| {
                let builder = builder.namespace(namespace);
                match fencing {
                    Some(on) => builder.fencing(on),
                    None => builder,
                }
                .build()
            })
            .map_err(|err| provider_error(ProviderKind::SqlServer)(Box::new(err)))
    }
}

#[cfg(not(feature = "mssql"))]
mod mssql {
    use tierlock_core::LockManager;

    use super::{ConnectError, not_built};

    pub(super) fn open(
        _conn: &str,
        _namespace: String,
        _fencing: Option<bool>,
    ) -> Result<LockManager, ConnectError> {
        Err(not_built("SQL Server", "mssql"))
    }
}

#[cfg(feature = "sqlite")]
mod sqlite {
    use std::path::Path;
    use std::time::Duration;

    use tierlock_core::LockManager;
    use tierlock_sqlite::SqliteProvider;

    use super::{ConnectError, ProviderKind, provider_error};

    pub(super) fn open(path: &Path, ttl: Option<Duration>) -> Result<LockManager, ConnectError> {
        let mut builder = SqliteProvider::builder(path);
        if let Some(ttl) = ttl {
            builder = builder.ttl(ttl);
        }
        let provider = builder
            .build()
            .map_err(|err| provider_error(ProviderKind::Sqlite)(Box::new(err)))?;
        Ok(LockManager::new(provider))
    }
}

#[cfg(not(feature = "sqlite"))]
mod sqlite {
    use std::path::Path;
    use std::time::Duration;

    use tierlock_core::LockManager;

    use super::{ConnectError, not_built};

    pub(super) fn open(_path: &Path, _ttl: Option<Duration>) -> Result<LockManager, ConnectError> {
        Err(not_built("SQLite", "sqlite"))
    }
}

/// The Redis key prefix for a namespace: `tierlock:NS:`, or the provider's default `tierlock:`.
#[cfg_attr(not(feature = "redis"), allow(dead_code))]
pub(super) fn redis_key_prefix(namespace: &str) -> String {
    if namespace.is_empty() {
        "tierlock:".to_owned()
    } else {
        format!("tierlock:{namespace}:")
    }
}

#[cfg(feature = "redis")]
pub(super) mod redis {
    use std::time::Duration;

    use tierlock_core::LockManager;
    use tierlock_redis::RedisProvider;

    use super::{ConnectError, ProviderKind, provider_error, redis_key_prefix};

    pub(super) async fn open(
        url: String,
        namespace: &str,
        ttl: Option<Duration>,
    ) -> Result<LockManager, ConnectError> {
        Ok(LockManager::new(provider(url, namespace, ttl).await?))
    }

    /// The provider `open` wraps (also what `status` asks).
    pub(in crate::connect) async fn provider(
        url: String,
        namespace: &str,
        ttl: Option<Duration>,
    ) -> Result<RedisProvider, ConnectError> {
        let mut builder = RedisProvider::builder(url).key_prefix(redis_key_prefix(namespace));
        if let Some(ttl) = ttl {
            builder = builder.ttl(ttl);
        }
        builder
            .connect()
            .await
            .map_err(|err| provider_error(ProviderKind::Redis)(Box::new(err)))
    }
}

#[cfg(not(feature = "redis"))]
mod redis {
    use std::time::Duration;

    use tierlock_core::LockManager;

    use super::{ConnectError, not_built};

    pub(super) async fn open(
        _url: String,
        _namespace: &str,
        _ttl: Option<Duration>,
    ) -> Result<LockManager, ConnectError> {
        Err(not_built("Redis", "redis"))
    }
}
