//! PostgreSQL provider for [tierlock](https://docs.rs/tierlock): named locks shared by every
//! process and host that can reach one PostgreSQL database, using session-level advisory locks.
//!
//! # When to use it
//!
//! When the processes that must exclude each other run on several hosts and already share a
//! PostgreSQL database. Nothing needs to be created in the database and no special privilege is
//! needed: a role that can `CONNECT` can take advisory locks. Do not point it at a PgBouncer (or
//! any pooler) in *transaction* or *statement* pooling mode: session advisory locks then land on
//! whichever server session the pooler picks, and exclusion silently breaks. Session pooling or a
//! direct connection is fine.
//!
//! # How it works
//!
//! * **Keys.** A lock name and the provider's [namespace](Builder::namespace) map to a stable
//!   64-bit key: the first 8 bytes of a SHA-256 (see [`lock_key`] for the exact derivation and
//!   its SQL equivalent). With *n* names in use at once, the chance that any two share a key is
//!   about n²/2⁶⁵ (10⁻⁸ for a million names); a collision makes two names exclude each other,
//!   it never lets two holders in.
//! * **Connections.** A held lock owns one connection: the lock lives exactly as long as that
//!   session. Idle connections are kept in a small pool ([`Builder::max_idle`], default 4), so an
//!   uncontended acquire + release is two round trips with no connection set-up.
//! * **Acquire.** With no time left, one `pg_try_advisory_lock`. Otherwise `pg_advisory_lock`
//!   under `lock_timeout` set to the remaining budget: the waiter queues on the server, fairly.
//!   If the server reports a lock timeout (SQLSTATE 55P03), `pg_locks` is checked, because the
//!   grant and the timeout can race; a granted lock is kept.
//! * **Requests.** A process that waits holds a *shared* advisory lock on the name's
//!   [`request_key`] on a connection of its own. A held lock checks `pg_locks` for such a shared
//!   lock every [`request_poll_interval`](Builder::request_poll_interval) (50 ms) in the
//!   background, so the manager can hand the lock over at its next turn boundary.
//! * **Lost locks.** If a held lock's connection closes (backend terminated, server restart,
//!   network failure) or a background check fails, the lock's lost signal fires
//!   (`guard.lost()`), and later acquisitions use fresh connections. A `SELECT 1` is sent on a
//!   silent held connection every [`keepalive_interval`](Builder::keepalive_interval) (2 min) to
//!   keep idle-connection killers away and notice dead peers.
//!
//! # Failure behaviour
//!
//! * Dropping an acquisition at any point (timeout, `select!`) closes the connection it was
//!   using; if it was blocked on the server, a cancel request is sent too. The server then ends
//!   the session, so a lock granted at the last moment cannot stay held.
//! * A connection is only reused when it is known to be clean; any error closes it.
//! * Dropping a held lock without releasing it (e.g. after the runtime is gone) closes its
//!   connection, which frees the lock on the server.
//! * Server errors are [`PostgresError`]s (wrapped by the manager in `LockError::Provider`);
//!   "held by someone else" is never an error.
//!
//! # Example
//!
//! ```no_run
//! use std::time::Duration;
//! use tierlock_core::LockManager;
//! use tierlock_postgres::PostgresProvider;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let provider = PostgresProvider::builder("postgres://app:secret@db.internal/app")
//!     .namespace("orders")
//!     .connect()
//!     .await?;
//! let locks = LockManager::new(provider);
//! let out = locks
//!     .with_lock("order:7", Duration::from_secs(5), async { "shipped" })
//!     .await?;
//! assert_eq!(out, "shipped");
//! # Ok(())
//! # }
//! ```
//!
//! # Cargo features
//!
//! * `rustls` (off by default): TLS through rustls with the *ring* crypto provider, no OpenSSL;
//!   adds [`Builder::tls`].

#![deny(missing_docs)]
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]
#![forbid(unsafe_code)]

mod config;
mod conn;
mod error;
mod key;
mod latch;
mod lock;
mod provider;

pub use config::Builder;
pub use error::PostgresError;
pub use key::{lock_key, request_key};
pub use provider::PostgresProvider;
