//! SQL Server provider for [tierlock](https://docs.rs/tierlock): named locks shared by every
//! process, on any host, that connects to the same SQL Server database.
//!
//! # When to use it
//!
//! When the processes that must exclude each other run on several hosts and already share a
//! SQL Server (or Azure SQL) database. It needs no schema and no permission beyond access to the
//! database: `sp_getapplock`, `sp_releaseapplock` and `APPLOCK_TEST` only require membership in
//! `public` (fencing tokens, which are opt-in, need one small table: see
//! [Fencing tokens](#fencing-tokens)). For processes on one host, the file provider is cheaper.
//!
//! ```no_run
//! use std::time::Duration;
//! use tierlock_core::LockManager;
//! use tierlock_mssql::MssqlProvider;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let provider = MssqlProvider::builder(
//!     "server=tcp:db.example.com,1433;database=app;user id=locker;password=secret",
//! )?
//! .namespace("billing:")
//! .build()?;
//! let locks = LockManager::new(provider);
//! let out = locks
//!     .with_lock("invoice-run", Duration::from_secs(30), async { 42 })
//!     .await?;
//! # let _ = out;
//! # Ok(())
//! # }
//! ```
//!
//! # How it works
//!
//! * **Acquire**: on a pooled (or new) connection, `sp_getapplock @Resource, @LockMode =
//!   'Exclusive', @LockOwner = 'Session', @LockTimeout = <remaining budget in ms>` — `0` makes a
//!   single attempt, `-1` waits without limit. The server queues waiters fairly. The connection
//!   then belongs to the held lock: the lock lives exactly as long as that session.
//! * **Return codes**: `0`/`1` acquired; `-1` held elsewhere (`Ok(None)`); `-2`
//!   [`MssqlError::Cancelled`]; `-3` [`MssqlError::DeadlockVictim`]; `-999`
//!   [`MssqlError::ParameterError`]; anything else [`MssqlError::Unexpected`]. See
//!   [`AppLockOutcome`].
//! * **Release**: `sp_releaseapplock @Resource, @LockOwner = 'Session'`, then the connection
//!   goes back to a small pool of idle connections (default 4, closed after 60 s idle or as
//!   soon as the server closes them), so the next acquisition skips the TCP, TLS and login
//!   handshake.
//! * **Request signal, one session per waiter**: a [`LockManager`](tierlock_core::LockManager)
//!   that must wait announces it ([`Provider::request`](tierlock_core::Provider::request), no
//!   I/O), and the wait then runs one batch on one session: a `Shared` session applock on the
//!   name's *request resource* (the mark), the `Exclusive` wait, and the mark's release. The
//!   mark becomes visible to the holder only an instant before the wait is queued on the
//!   server, so when the holder hands the lock back, the waiter's request is already in the
//!   queue and gets it — the holder's own next task cannot take it back in between — and a cold
//!   waiter costs one session, its first attempt's. Every 100 ms
//!   ([`request_poll_interval`](MssqlProviderBuilder::request_poll_interval)) the holder runs
//!   `APPLOCK_TEST('public', <request resource>, 'Exclusive', 'Session')` on its own
//!   connection; `0` means someone holds a mark, and the manager hands the lock over at its
//!   next turn boundary.
//! * **Keepalive and lost signal**: the probe is a round trip on the holding connection, so it
//!   also keeps the connection from idling and notices when it breaks; with probing off,
//!   `SELECT 1` runs every 2 minutes instead. A broken connection fires the
//!   [`LostSignal`](tierlock_core::LostSignal) (`guard.lost()`), and the next acquisition starts
//!   on a fresh connection.
//!
//! * **Held locks** follow the lifecycle every session-based provider shares
//!   ([`tierlock_core::held`]): a monitor task owns the lock's connection; `release` asks for it
//!   back between round trips; a dropped [`MssqlLock`] (a guard dropped, or a lock handed back
//!   to another process) is released in the background, and this provider's next acquisition
//!   of the name waits for that release, so it finds the connection back in the pool instead of
//!   logging in again.
//!
//! # Babelfish (Aurora PostgreSQL with SQL Server compatibility)
//!
//! The provider tells Babelfish from SQL Server once, on its first connection
//! ([`ServerKind`], [`MssqlProvider::server_kind`]), and adapts to its applock deviations: it
//! never sends `@LockTimeout = 0` (1 ms instead; `-1` or `-999` to it is a refusal), closes a
//! session that had a request refused instead of reusing it (about the 5th refusal in one
//! session crashes the whole server there), keeps resources within 255 bytes of UTF-8
//! ([`map_resource_utf8`]), and takes the error for releasing an unheld lock as
//! [`MssqlError::NotHeld`]. A cold waiter costs two sessions there (the refused first attempt's
//! is closed).
//!
//! # Interop with .NET DistributedLock
//!
//! With [`naming(Naming::DistributedLock)`](MssqlProviderBuilder::naming), long names map to the
//! resources .NET's `SqlDistributedLock` uses ([`distributed_lock_resource`]); names of up to 255
//! characters are the same under both namings. A Rust and a .NET process then exclude each
//! other if they also agree on the database (applocks are per database), the principal
//! (`@DbPrincipal` left at its default, `public`, on both sides), the mode (exclusive:
//! `SqlDistributedLock`, or the write lock of `SqlDistributedReaderWriterLock`) and the name
//! (no [namespace](MssqlProviderBuilder::namespace) here, or the same prefix in the .NET names).
//! The lock owner does not matter for exclusion: locks of different sessions conflict whether
//! owned by a session (as here, and DistributedLock's default) or a transaction. .NET waiters
//! take no request mark, so a busy Rust process does not hand over early to them.
//!
//! # A waiter that dies
//!
//! A process killed while it waits closes its socket (the kernel sends FIN or RST). SQL Server
//! keeps a read posted on every connection, also while a request runs, to receive attention
//! signals; the closed connection completes it, the server ends the session, and the waiting
//! request (with its mark) leaves the queue: no ghost waiter is granted the lock. A client host
//! that vanishes without a FIN is noticed by the server's TCP keep-alive (SQL Server's TCP/IP
//! *Keep Alive*, 30 000 ms by default, then probes every *KeepAliveInterval*, 1 000 ms, up to
//! `TcpMaxDataRetransmissions` on Windows: about 35 s); until then the dead session stays
//! queued, and is granted the lock in its turn until the server drops it. The provider's own
//! [`tcp_keepalive`](MssqlProviderBuilder::tcp_keepalive) protects the client against a vanished
//! server, not the other way round.
//!
//! # Fencing tokens
//!
//! With [`fencing(true)`](MssqlProviderBuilder::fencing), every external acquisition runs one
//! more statement on the lock's session, right after `sp_getapplock` granted it and before the
//! lock is handed out, and `guard.fencing_token()` reports its result:
//!
//! ```sql
//! MERGE dbo.tierlock_fence WITH (HOLDLOCK) AS f
//! USING (SELECT @P1 AS resource) AS s ON f.resource = s.resource
//! WHEN MATCHED THEN UPDATE SET token = f.token + 1
//! WHEN NOT MATCHED THEN INSERT (resource, token) VALUES (s.resource, 1)
//! OUTPUT CAST(inserted.token AS bigint);
//! ```
//!
//! Tokens strictly increase per resource across processes, hosts and holders that died. The
//! table is created on first use if the login may; otherwise a DBA creates it once (the name is
//! [configurable](MssqlProviderBuilder::fencing_table)):
//!
//! ```sql
//! CREATE TABLE dbo.tierlock_fence (
//!     resource nvarchar(255) COLLATE Latin1_General_100_BIN2 NOT NULL PRIMARY KEY,
//!     token    bigint NOT NULL
//! );
//! GRANT SELECT, INSERT, UPDATE ON dbo.tierlock_fence TO locker;
//! ```
//!
//! `resource` is the lock's `@Resource` ([`MssqlProvider::resource_name`]); the binary
//! collation matches `sp_getapplock`'s case-sensitive comparison. The table must have no
//! triggers (`OUTPUT` without `INTO` refuses them). If the statement fails, the lock is released
//! and the acquisition fails with [`MssqlError::Fencing`].
//!
//! # Names
//!
//! `@Resource` is `nvarchar(255)`, compared as binary (case-sensitive). The resource is the
//! [namespace](MssqlProviderBuilder::namespace) followed by the name; if that exceeds 255 UTF-16 code
//! units it becomes a 190-unit prefix, `#`, and the SHA-256 of the whole in hex. See
//! [`map_resource`], [`map_resource_utf8`] (Babelfish) and [`Naming`].
//!
//! # Timeouts
//!
//! tiberius 0.13 has a per-round-trip command timeout (30 s by default) that would cut any
//! longer lock wait short. This provider switches it off on its connections and bounds each
//! statement itself: a lock wait gets `@LockTimeout` plus [`command_timeout`]
//! (default 30 s) before the client gives the connection up, a wait without deadline gets no
//! client-side bound (TCP keepalive detects a vanished host), and short statements get
//! [`command_timeout`]. Opening a connection is bounded by the connect timeout (15 s).
//!
//! [`command_timeout`]: MssqlProviderBuilder::command_timeout
//!
//! # Failure behaviour
//!
//! * A future dropped mid-statement drops its connection: the socket closes, the session ends
//!   and the server frees whatever it held, including a lock granted at that very moment (and a
//!   request mark). Such a connection is never reused.
//! * A failing release closes the connection, which frees the lock anyway, and reports the
//!   error.
//! * A pooled connection found broken is discarded and the statement runs once more on a new
//!   connection (a broken session holds nothing).
//! * If the holding connection is killed or breaks, the server has freed the lock: another
//!   process may take it at once. The lost signal fires at the next probe (within about 100 ms
//!   plus the time the broken connection takes to error out).
//! * Errors are [`MssqlError`]s with the lock name and the driver's error as source; "held
//!   elsewhere" is never an error.
//!
//! # TLS
//!
//! tiberius encrypts as the connection string's `encrypt` says, through rustls with the
//! aws-lc-rs crypto provider, which it cannot be built without (so this crate compiles the aws-lc
//! C library, unlike tierlock's other providers, which use ring). At run time it uses the
//! process-level rustls `CryptoProvider` if one was installed
//! (`CryptoProvider::install_default`), aws-lc-rs otherwise; no configuration can make it panic
//! for want of one.

#![forbid(unsafe_code)]

mod acquire;
mod config;
mod conn;
mod error;
mod held;
mod names;
mod naming;
mod provider;
mod server;
mod sql;
mod status;

pub use config::{MssqlProviderBuilder, parse_connection_string};
pub use error::{ConnectError, MssqlError};
pub use held::MssqlLock;
pub use names::{
    HASHED_PREFIX_UNITS, MAX_RESOURCE_UNITS, REQUEST_SUFFIX, map_resource, map_resource_utf8,
};
pub use naming::{DISTRIBUTED_LOCK_PREFIX_UNITS, Naming, distributed_lock_resource};
pub use provider::MssqlProvider;
pub use server::ServerKind;
pub use sql::AppLockOutcome;
/// The driver, re-exported for [`MssqlProviderBuilder::from_config`].
pub use tiberius;
