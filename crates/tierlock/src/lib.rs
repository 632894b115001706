//! Named locks that work inside one process, across processes and across hosts, with the
//! ergonomics of a local mutex.
//!
//! One [`LockManager`] is created at start-up and shared by the whole application. Code anywhere
//! asks it for a lock by name. Inside the process, contention is settled by in-memory per-name
//! queues with task-scoped re-entrancy; only to exclude *other processes* does the manager
//! escalate to a [`Provider`] — a lock file, a database lock — and it keeps that external lock
//! while local waiters exist, handing it to another process at a turn boundary once that process
//! asks for it.
//!
//! This crate is the facade: it re-exports [`tierlock_core`] and, behind cargo features, the
//! providers:
//!
//! | feature | provider | crate |
//! |---|---|---|
//! | (always) | [`MemoryProvider`]: one process only | `tierlock-core` |
//! | `file` (default) | `FileProvider`: files in a directory, local or on a network share (`flock` where the mount forwards locks, a lease elsewhere) | `tierlock-file` |
//! | `postgres` (`postgres-rustls` for TLS) | `PostgresProvider`: PostgreSQL session advisory locks | `tierlock-postgres` |
//! | `mssql` | `MssqlProvider`: SQL Server session applocks (`sp_getapplock`) | `tierlock-mssql` |
//! | `sqlite` | `SqliteProvider`: leases with expiry and fencing tokens in an SQLite file, one host | `tierlock-sqlite` |
//! | `redis` | `RedisProvider`: keys on one Redis server, renewed by a watchdog, with fencing tokens | `tierlock-redis` |
//!
//! Every provider is made the same way: `XxxProvider::builder(..)` returns an
//! `XxxProviderBuilder` (`FileProviderBuilder`, `PostgresProviderBuilder`,
//! `MssqlProviderBuilder`, `SqliteProviderBuilder`, `RedisProviderBuilder`) whose options share
//! one vocabulary (`namespace`,
//! `max_idle_connections`, `request_poll_interval`, `fencing`, …; `None` switches an interval
//! off, a zero duration is an error).
//!
//! Fencing tokens (`guard.fencing_token()`) come from the file, SQLite and Redis providers
//! always and from PostgreSQL and SQL Server with `.fencing(true)`; see `docs/fencing.md` and the `fencing`
//! example (feature `postgres`) for a resource that rejects writes from a holder that lost its
//! lock.
//!
//! ```
//! use std::time::Duration;
//! use tierlock::{LockManager, MemoryProvider};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), tierlock::LockError> {
//! let locks = LockManager::new(MemoryProvider::new());
//! let guard = locks.lock("tenant:42:migrate", Duration::from_secs(60)).await?;
//! // ... the critical section; nested `lock("tenant:42:migrate", ..)` calls re-enter ...
//! guard.release().await?;
//! # Ok(())
//! # }
//! ```
//!
//! See `docs/semantics.md` in the repository for the owner rules and `docs/architecture.md` for
//! the two tiers.

#![deny(missing_docs)]
#![forbid(unsafe_code)]

mod duration;

pub use duration::{DurationError, parse_duration};

pub use tierlock_core::{
    BoxError, ExternalLock, InvalidNameReason, Latch, LockError, LockGuard, LockManager, LockName,
    LostSignal, MAX_NAME_LEN, MemoryProvider, Owner, Provider, RequestMark, Stats, WaitStrategy,
    provider, scope,
};

#[cfg(feature = "file")]
pub use tierlock_file::{
    DEFAULT_DIR_MODE, DEFAULT_FILE_MODE, FileError, FileLockMode, FileProvider,
    FileProviderBuilder, LeaseProblem, MODE_FILE, Mount, MountClass,
};

#[cfg(feature = "postgres")]
pub use tierlock_postgres::{
    PostgresError, PostgresProvider, PostgresProviderBuilder, lock_key as postgres_lock_key,
};

#[cfg(feature = "mssql")]
pub use tierlock_mssql::{MssqlError, MssqlProvider, MssqlProviderBuilder};

#[cfg(all(feature = "sqlite", not(feature = "file")))]
pub use tierlock_sqlite::{Mount, MountClass};
#[cfg(feature = "sqlite")]
pub use tierlock_sqlite::{SqliteError, SqliteProvider, SqliteProviderBuilder};

#[cfg(feature = "redis")]
pub use tierlock_redis::{
    KeyNames as RedisKeyNames, RedisError, RedisProvider, RedisProviderBuilder,
    key_names as redis_key_names,
};

/// The README's example is compiled and run as a doctest.
#[cfg(doctest)]
#[doc = include_str!("../../../README.md")]
struct ReadmeDoctests;
