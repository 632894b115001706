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
//! providers and the optional parts:
//!
//! | feature | what | crate |
//! |---|---|---|
//! | (always) | [`MemoryProvider`]: one process only | `tierlock-core` |
//! | `file` (default) | `FileProvider`: files in a directory, local or on a network share (`flock` where the mount forwards locks, a lease elsewhere) | `tierlock-file` |
//! | `postgres` (`postgres-rustls` for TLS) | `PostgresProvider`: PostgreSQL session advisory locks | `tierlock-postgres` |
//! | `mssql` | `MssqlProvider`: SQL Server session applocks (`sp_getapplock`) | `tierlock-mssql` |
//! | `sqlite` | `SqliteProvider`: leases with expiry and fencing tokens in an SQLite file, one host | `tierlock-sqlite` |
//! | `redis` | `RedisProvider`: keys on one Redis server, renewed by a watchdog, with fencing tokens | `tierlock-redis` |
//! | `macros` (default) | `locked`: the `#[locked(locks, "order:{id}")]` attribute, an `async fn` under a lock | `tierlock-macros` |
//! | `tracing` | a `DEBUG` span `tierlock.acquire` per acquisition (name, provider, outcome, time waited) and events at escalations, hand-offs, hand-backs, lost locks and provider errors; with no subscriber it costs one atomic load | `tracing` |
//! | `metrics` | counters, histograms and gauges through the `metrics` facade (install the recorder before creating managers); see `docs/observability.md` in the repository | `metrics` |
//!
//! Every provider is made the same way: `XxxProvider::builder(..)` returns an
//! `XxxProviderBuilder` (`FileProviderBuilder`, `PostgresProviderBuilder`,
//! `MssqlProviderBuilder`, `SqliteProviderBuilder`, `RedisProviderBuilder`) whose options share
//! one vocabulary (`namespace`,
//! `max_idle_connections`, `request_poll_interval`, `fencing`, …; `None` switches an interval
//! off, a zero duration is an error).
//!
//! Fencing tokens (`guard.fencing_token()`) come from the file, SQLite and Redis providers
//! always and from PostgreSQL and SQL Server with `.fencing(true)`; see `docs/fencing.md` in the
//! repository and the `fencing` example (feature `postgres`) for a resource that rejects writes
//! from a holder that lost its lock.
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
//!
//! # Connecting from a URL
//!
//! [`connect`] turns configuration into a manager, as `sqlx` and `redis` users expect:
//!
//! ```no_run
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), tierlock::ConnectError> {
//! let locks = tierlock::connect("postgres://app@db.internal/app?namespace=billing").await?;
//! # Ok(())
//! # }
//! ```
//!
//! [`ConnectOptions`] is the same with setters (`"…".parse::<ConnectOptions>()?.namespace(..)
//! .connect().await`); a setter overrides the URL's parameter.
//!
//! | form | provider (feature) | tierlock's parameters |
//! |---|---|---|
//! | `file:///srv/locks`, `file:/srv/locks`, `file://localhost/srv/locks`, `file:///C:/locks`; a bare path: `/srv/locks`, `./locks`, `..\locks`, `C:\locks`, `\\server\share\locks` | `FileProvider` (`file`, default) | `mode=flock\|lease`, `ttl=` (implies `mode=lease`), `fencing=true\|false` |
//! | `postgres://user:password@host:5432/db`, `postgresql://…` | `PostgresProvider` (`postgres`) | `namespace=`, `fencing=true\|false`; `sslmode=require` connects with TLS (`postgres-rustls`) |
//! | `jdbc:sqlserver://host:1433;databaseName=…;user=…;password=…`, `mssql:` + an ADO.NET string (`mssql:server=tcp:host,1433;user id=…`) | `MssqlProvider` (`mssql`) | none in the string: [`ConnectOptions::namespace`] and [`ConnectOptions::fencing`] |
//! | `sqlite:/var/lib/app/locks.db`, `sqlite:relative.db`, `sqlite:///var/lib/app/locks.db` | `SqliteProvider` (`sqlite`) | `ttl=` |
//! | `redis://[[user]:password@]host:6379/0`, `rediss://…`, `redis+unix:///run/redis.sock` | `RedisProvider` (`redis`) | `namespace=` (the key prefix becomes `tierlock:NS:`), `ttl=` |
//! | `memory:` | [`MemoryProvider`], this process only (always) | none |
//!
//! For example `file:///srv/locks?mode=lease&ttl=10s`, `sqlite:/var/lib/app/locks.db?ttl=5s`,
//! `postgres://locker@db/app?sslmode=require&namespace=billing&fencing=true`,
//! `redis://cache:6379/0?namespace=billing&ttl=30s`.
//!
//! - **Parameters.** `namespace=NS` scopes names on a server; `ttl=` is a lease's time to live
//!   in [`parse_duration`]'s syntax (`10s`, `500ms`, `1m30s`); `mode=` forces the file
//!   provider's mode instead of the one its mount suggests; `fencing=` turns fencing tokens on
//!   (PostgreSQL, SQL Server) or off (the file provider's flock mode). A parameter a provider
//!   does not take is an error, never ignored. tierlock takes its parameters out of the query
//!   before the driver sees the URL; the others go to the driver as written (tokio-postgres
//!   refuses those it does not know, the redis crate ignores them). Values are
//!   percent-decoded.
//! - **Builder-only.** Everything else the builders take — poll intervals, idle connections,
//!   timeouts, the fencing table, a file provider's permission bits, SQLite's busy timeout and
//!   durability, a custom Redis key prefix, a TLS configuration other than the system's roots —
//!   has no URL spelling: make the provider with `XxxProvider::builder(..)` and
//!   [`LockManager::new`].
//! - **Paths.** A bare path must be absolute or start with `./` or `../`: a bare word is
//!   neither a scheme nor a path and is refused. A drive letter (`C:\locks`, `C:/locks`) is a
//!   path, never a one-letter scheme. In `file:` and `sqlite:` URLs the path is percent-decoded
//!   and ends at the first `?` (write `%3F` and `%25` for `?` and `%`); a bare path is taken as
//!   written, with no query.
//! - **TLS.** `sslmode=require` (PostgreSQL) uses rustls with the *ring* provider and the
//!   system's root certificates (`SSL_CERT_FILE` / `SSL_CERT_DIR` override them) and checks the
//!   server's name, like libpq's `verify-full`; `sslmode=disable` / `prefer`, or none, connect
//!   in plain text. SQL Server follows the connection string's `encrypt`. The Redis client is
//!   built without TLS, so `rediss://` fails to connect.
//! - **Features.** A form whose provider is not compiled in parses, and [`connect`] fails with
//!   [`ConnectError::FeatureDisabled`] naming the cargo feature (`sslmode=require` without
//!   `postgres-rustls` too).
//! - **Passwords.** No error, message or `Debug` output of this API contains the URL: errors
//!   name the scheme or the parameter at most, and the drivers' errors the server and the user.

#![forbid(unsafe_code)]

mod connect;
mod duration;

pub use connect::{
    ConnectError, ConnectOptions, FileMode, ProviderKind, StatusError, connect, status,
};
pub use duration::{DurationError, parse_duration};

pub use tierlock_core::{
    BoxError, ExternalLock, HeldLock, InvalidNameReason, Latch, LockError, LockGuard, LockManager,
    LockName, LostSignal, MAX_NAME_LEN, MemoryProvider, Owner, Provider, RequestMark, Stats,
    WaitStrategy, provider, scope,
};

/// Runs an `async fn` under a named lock (cargo feature `macros`, on by default).
///
/// `#[locked(locks, "order:{id}", timeout = "5s")]` takes the lock `order:{id}` (formatted from
/// the function's parameters) from the manager `locks` before the body and releases it after,
/// on every way out; nested calls on the same name re-enter. See the macro's own documentation
/// below for the arguments, the errors and the default timeout.
///
/// ```
/// use tierlock::{LockError, LockManager, MemoryProvider, locked};
///
/// struct Orders {
///     locks: LockManager,
/// }
///
/// impl Orders {
///     #[locked(self.locks, "order:{id}", timeout = "5s")]
///     async fn pay(&self, id: u64) -> Result<&'static str, LockError> {
///         self.ship(id).await // locks "order:{id}" again: re-enters
///     }
///
///     #[locked(self.locks, "order:{id}")]
///     async fn ship(&self, id: u64) -> Result<&'static str, LockError> {
///         Ok("shipped")
///     }
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), LockError> {
/// let orders = Orders { locks: LockManager::new(MemoryProvider::new()) };
/// assert_eq!(orders.pay(7).await?, "shipped");
/// # Ok(())
/// # }
/// ```
#[cfg(feature = "macros")]
pub use tierlock_macros::locked;

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

/// The example of `docs/status.md` is compiled and run as a doctest.
#[cfg(all(doctest, feature = "file"))]
#[doc = include_str!("../../../docs/status.md")]
struct StatusDoctests;
