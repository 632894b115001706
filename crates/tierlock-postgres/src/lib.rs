//! PostgreSQL provider for [tierlock](https://docs.rs/tierlock): named locks shared by every
//! process and host that can reach one PostgreSQL database, using session-level advisory locks.
//!
//! # When to use it
//!
//! When the processes that must exclude each other run on several hosts and already share a
//! PostgreSQL database. Nothing needs to be created in the database and no special privilege is
//! needed: a role that can `CONNECT` can take advisory locks (fencing tokens, which are opt-in,
//! need one small table: see [Fencing tokens](#fencing-tokens)). Do not point it at a PgBouncer (or
//! any pooler) in *transaction* or *statement* pooling mode: session advisory locks then land on
//! whichever server session the pooler picks, and exclusion silently breaks. Session pooling or a
//! direct connection is fine.
//!
//! # How it works
//!
//! * **Keys.** A lock name and the provider's [namespace](PostgresProviderBuilder::namespace)
//!   map to a stable
//!   64-bit key: the first 8 bytes of a SHA-256 (see [`lock_key`] for the exact derivation and
//!   its SQL equivalent). With *n* names in use at once, the chance that any two share a key is
//!   about n²/2⁶⁵ (10⁻⁸ for a million names); a collision makes two names exclude each other,
//!   it never lets two holders in.
//! * **Connections.** A held lock owns one connection: the lock lives exactly as long as that
//!   session. Idle connections are kept in a small pool
//!   ([`max_idle_connections`](PostgresProviderBuilder::max_idle_connections), default 4,
//!   closed after [`idle_timeout`](PostgresProviderBuilder::idle_timeout), 60 s), so an
//!   uncontended acquire + release is two round trips with no connection set-up.
//! * **Acquire.** With no time left, one `pg_try_advisory_lock`. Otherwise `pg_advisory_lock`
//!   under `lock_timeout` set to the remaining budget (in the same statement): the waiter
//!   queues on the server, fairly. If the server reports a lock timeout (SQLSTATE 55P03),
//!   `pg_locks` is checked, because the grant and the timeout can race; a granted lock is kept.
//! * **Requests, one session per waiter.** A [`LockManager`](tierlock_core::LockManager) that
//!   must wait announces it ([`Provider::request`](tierlock_core::Provider::request), no I/O);
//!   the wait then takes a *shared* advisory lock on the name's [`request_key`] (the mark) in
//!   the same statement as `pg_advisory_lock`, on the same session, just before it queues, and
//!   the statement after the wait withdraws the mark. So the holder sees the mark only once the
//!   wait is queued, and a hand-back reaches the waiter; and a cold waiter costs one session.
//!   A held lock checks `pg_locks` for another session's mark every
//!   [`request_poll_interval`](PostgresProviderBuilder::request_poll_interval) (50 ms) in the
//!   background, so the manager can hand the lock over at its next turn boundary.
//! * **Dead waiters.** Every session sets `client_connection_check_interval` (PostgreSQL 14 and
//!   later; [1 s](PostgresProviderBuilder::client_connection_check_interval)): a process killed
//!   while it waits leaves the server's queue within that time. Without it (PostgreSQL 13 and
//!   older) the dead waiter's backend stays queued until its turn, is granted the lock, and
//!   releases it as soon as it finds its client gone (or leaves at its `lock_timeout`).
//! * **Lost locks.** If a held lock's connection closes (backend terminated, server restart,
//!   network failure) or a background check fails, the lock's lost signal fires
//!   (`guard.lost()`), and later acquisitions use fresh connections. A `SELECT 1` is sent on a
//!   silent held connection every
//!   [`keepalive_interval`](PostgresProviderBuilder::keepalive_interval) (2 min) to keep
//!   idle-connection killers away and notice dead peers.
//! * **Held locks** follow the lifecycle every session-based provider shares
//!   ([`tierlock_core::held`]): a monitor task owns the lock's connection; `release` asks for it
//!   back between round trips; a dropped lock (a guard dropped, or a lock handed back to another
//!   process) is unlocked in the background and this provider's next acquisition of the name
//!   waits for that unlock, so it reuses the connection instead of opening another.
//!
//! # Fencing tokens
//!
//! With [`fencing(true)`](PostgresProviderBuilder::fencing), every external acquisition runs
//! one more statement on the lock's session, right after the grant and before the lock is
//! handed out, and `guard.fencing_token()` reports its result:
//!
//! ```sql
//! INSERT INTO public.tierlock_fence AS f (lock_key, token) VALUES ($1, 1)
//!     ON CONFLICT (lock_key) DO UPDATE SET token = f.token + 1 RETURNING token;
//! ```
//!
//! Tokens strictly increase per lock across processes, hosts and holders that died. The table
//! is created on first use (`CREATE TABLE IF NOT EXISTS`) if the role may; otherwise a DBA
//! creates it once (the name is [configurable](PostgresProviderBuilder::fencing_table)):
//!
//! ```sql
//! CREATE TABLE public.tierlock_fence (
//!     lock_key bigint PRIMARY KEY,   -- tierlock_postgres::lock_key(namespace, name)
//!     token    bigint NOT NULL       -- the last token handed out for that lock
//! );
//! GRANT SELECT, INSERT, UPDATE ON public.tierlock_fence TO app;
//! ```
//!
//! If the upsert fails, the lock is released and the acquisition fails with
//! [`PostgresError::Fencing`]. Sessions run with `synchronous_commit` at least `local`, so a
//! token is durable before it is handed out. See `docs/fencing.md` in the repository for what to
//! do with the token.
//!
//! # Failure behaviour
//!
//! * Dropping an acquisition at any point (timeout, `select!`) closes the connection it was
//!   using; if it was blocked on the server, a cancel request is sent too. The server then ends
//!   the session, so a lock granted at the last moment cannot stay held.
//! * A connection is only reused when it is known to be clean; any error closes it.
//! * Dropping a held lock unlocks it in the background; if that fails, or there is no runtime
//!   left, its connection is closed, which frees the lock on the server.
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
//! * `rustls` (off by default): TLS through rustls with the *ring* crypto provider, no OpenSSL
//!   nor aws-lc: a URL with `sslmode=require` then connects with TLS checked against the
//!   system's root certificates, and [`PostgresProviderBuilder::tls`] takes a configuration of
//!   your own. Without it, `sslmode=require` is refused with [`PostgresError::TlsNotBuilt`].

#![forbid(unsafe_code)]

mod config;
mod conn;
mod error;
mod fence;
mod held;
mod key;
mod provider;
mod status;
mod tls;

pub use config::PostgresProviderBuilder;
pub use error::PostgresError;
pub use key::{lock_key, request_key};
pub use provider::PostgresProvider;
