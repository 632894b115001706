//! The SQLite provider for [tierlock](https://docs.rs/tierlock): named locks for processes on
//! **one host**, kept as leases in an SQLite database file.
//!
//! # When to use it
//!
//! When processes on one host need what a lock file does not give: a lease with an expiry
//! (a holder that hangs loses the lock; see [`LockGuard::lost`]), a fencing token that
//! strictly increases across processes and restarts ([`LockGuard::fencing_token`]), and a
//! table a person can query to see who holds what:
//!
//! ```text
//! $ sqlite3 /var/lib/app/locks.db 'SELECT name, token, host, pid, expires, waiting FROM tierlock_holders'
//! job:nightly|412|web-1|48113|2025-06-02 03:00:12.841|1
//! ```
//!
//! Not for hosts sharing a network file system: SQLite's locking is unreliable there, and the
//! provider refuses such a database ([`SqliteError::UnsafeMount`]). Use PostgreSQL, SQL Server
//! or the file provider's lease mode across hosts.
//!
//! # How it works
//!
//! * **The database** (path given by the user) is created with its schema on first use, in WAL
//!   mode; its schema is versioned (`PRAGMA user_version`, `application_id`) and a file that is
//!   not an empty or tierlock database is refused unchanged ([`SqliteError::Foreign`],
//!   [`SqliteError::NotADatabase`], [`SqliteError::Corrupt`], [`SqliteError::SchemaVersion`]).
//! * **A lease** is a row of `tierlock_leases`: name, fencing token, owner (host, pid, a random
//!   id per acquisition), acquired/renewed/expiry times. Acquiring reads the row first (a
//!   polling waiter takes no write lock while the lease stands), then takes a free or expired
//!   lease in a `BEGIN IMMEDIATE` transaction. Releasing deletes the row.
//! * **Fencing tokens** come from one counter per database, bumped by every acquisition and
//!   take-over: they never go back, also after a release deletes a row and a later acquisition
//!   creates it again.
//! * **Renewal.** The holder extends its lease every `ttl / 3`. A renewal that finds the row gone
//!   or another owner's fires the lost signal; so does a holder that could not renew within
//!   9/10 of its `ttl` — before any other process may take the lease over.
//! * **Time.** Expiry is measured on the host's `CLOCK_MONOTONIC` (on Linux; tagged with the
//!   boot id), the clock every process of the host shares and the one the holder's own timers
//!   run on: a wall-clock step cannot expire a lease early. Rows also carry wall-clock times
//!   (`unixepoch('subsec')`) for people. See `docs/providers/sqlite.md` in the repository for the
//!   reasons.
//! * **Requests.** A waiting process keeps a row in `tierlock_waiters`; a holder that the
//!   manager asks about it reads that table every 50 ms in the background, so
//!   [`ExternalLock::is_requested`](tierlock_core::ExternalLock::is_requested) is an atomic
//!   load.
//! * **Threads.** rusqlite is synchronous: each provider has one database thread that owns its
//!   connection and runs all database work and timers; the async side only sends it jobs. No
//!   runtime worker ever blocks on the database.
//!
//! # Failure behaviour
//!
//! * A dropped acquisition never leaves a row that nobody renews: the database thread skips a
//!   job whose future is gone, stops a busy wait when it goes, and releases what a job
//!   committed after it went.
//! * A holder that dies (`kill -9`) keeps its lease until it expires: other processes get the
//!   lock within `ttl` (plus a poll). A stopped holder (SIGSTOP) past its `ttl` is taken over,
//!   and learns it lost the lock when it resumes.
//! * Another program holding the database's write lock for longer than the busy timeout makes
//!   operations fail with [`SqliteError::Busy`], never with a timeout or "held elsewhere".
//! * Dropping a held lock without releasing it, even after the runtime is gone, queues the
//!   release on the database thread.
//!
//! ```
//! use std::time::Duration;
//! use tierlock_core::LockManager;
//! use tierlock_sqlite::SqliteProvider;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let tmp = tempfile::tempdir()?;
//! # let db = tmp.path().join("locks.db");
//! let locks = LockManager::new(SqliteProvider::new(&db)?); // e.g. "/var/lib/app/locks.db"
//! let guard = locks.lock("tenant:42:migrate", Duration::from_secs(60)).await?;
//! // ... only one process on this host gets here at a time ...
//! println!("fencing token {:?}", guard.fencing_token());
//! guard.release().await?;
//! # Ok(())
//! # }
//! ```
//!
//! [`LockGuard::lost`]: tierlock_core::LockGuard::lost
//! [`LockGuard::fencing_token`]: tierlock_core::LockGuard::fencing_token

#![forbid(unsafe_code)]

mod builder;
mod busy;
mod clock;
mod error;
mod lock;
mod provider;
mod schema;
pub mod status;
mod worker;

pub use builder::SqliteProviderBuilder;
pub use error::SqliteError;
pub use provider::SqliteProvider;
pub use schema::{APPLICATION_ID, SCHEMA_VERSION};
pub use tierlock_file::{Mount, MountClass};
