//! Redis provider for [tierlock](https://docs.rs/tierlock): named locks shared by every process
//! and host that can reach one Redis server, as keys with an expiry that the holder renews.
//!
//! # When to use it
//!
//! When the processes that must exclude each other run on several hosts and already share a
//! **single** Redis server (a primary without replicas, or one whose failover you accept may
//! lose a lock: see below). Nothing needs to be set up on the server; Redis 5 or newer
//! (scripts that read the server's clock), tested on 7.0. Prefer a database provider when the
//! work is done in that database anyway, and the file provider for processes on one host.
//!
//! # How it works
//!
//! * **Keys.** A name maps to a few keys under the [key prefix](RedisProviderBuilder::key_prefix)
//!   (default `tierlock:`): `tierlock:{n:job:nightly}:lock` for a short plain name, or a SHA-256
//!   based `{h:…}` form for long names and names with spaces, braces, quotes, control characters
//!   or non-ASCII text (see [`KeyNames`] for the exact rule).
//! * **Acquire.** One Lua script: `SET lock TOKEN NX PX ttl` with a random 128-bit token, and on
//!   success the fencing token from the name's counter. The holder's **watchdog** renews the key
//!   every `ttl / 3` with a compare-and-extend on the token.
//! * **Release.** A compare-and-delete on the token (a Lua script), which also `PUBLISH`es on the
//!   name's channel.
//! * **Waiting.** A waiter subscribes to the name's channel (one pub/sub connection per provider)
//!   and tries again when a release is announced. Pub/sub is fire-and-forget, so it also tries
//!   again when the holder's key is due to expire, and after a fallback [poll](RedisProviderBuilder::poll)
//!   (50 ms doubling to 1 s) — a lost message costs at most that.
//! * **Requests.** A waiting process adds a mark to the name's `wait` sorted set, scored by its
//!   expiry and refreshed every `ttl / 3`. The watchdog of a holder with local waiters counts the
//!   live marks every 50 ms into an atomic flag, so the lock manager hands the lock over at its
//!   next turn boundary. A one-shot attempt (zero timeout) does not take a free lock that
//!   another process is marked as waiting for, so a busy process that just handed the lock back
//!   does not snatch it again.
//! * **Fencing tokens.** `max(INCR counter, server time in µs)`: strictly increasing per name
//!   across processes, releases, takeovers and server restarts (even without persistence). See
//!   `docs/providers/redis.md` in the repository for why the clock floor is there.
//!
//! # Failure behaviour
//!
//! * A holder that dies (`kill -9`, a lost host) keeps the name for at most `ttl` (default
//!   10 s): the key expires and a waiter takes it at once (it wakes up at the key's expiry).
//! * A holder that cannot renew within `9/10` of its `ttl` (the server is down, frozen or
//!   unreachable, or this process was stopped) or finds its key gone or taken **loses** the lock:
//!   its lost signal fires (`guard.lost()`), and `guard.release()` returns `LockError::Lost`.
//! * A dropped acquisition whose script may have reached the server sends a compare-and-delete
//!   on the same connection right after it, so a key set at the last moment is removed at once;
//!   only if that connection breaks too does the key stay until its `ttl` runs out.
//! * Waiters ride out a server restart: they retry until their deadline, then report the last
//!   error ([`RedisError`]) if the server never came back, else a timeout.
//! * Server errors are [`RedisError`]s (wrapped by the manager in `LockError::Provider`); "held
//!   by someone else" is never an error.
//!
//! # Single instance only: failover and Redlock
//!
//! The guarantee holds for one Redis server. Redis replication is asynchronous: a primary can
//! acknowledge a lock and fail before a replica has it, and the promoted replica then grants the
//! same name to another process — two holders. This provider does not prevent that, and does
//! not offer Redlock (acquiring on a majority of independent servers) either: as Martin
//! Kleppmann showed, Redlock's safety rests on bounded clock drift, pauses and network delays,
//! and a holder paused past its lease is still unsafe with it. The fencing token is the answer
//! to both: a storage system that remembers the largest token it has seen and rejects smaller
//! ones stays correct when a lock is lost for any of these reasons.
//!
//! # Example
//!
//! ```no_run
//! use std::time::Duration;
//! use tierlock_core::LockManager;
//! use tierlock_redis::RedisProvider;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let provider = RedisProvider::builder("redis://cache.internal:6379/0")
//!     .key_prefix("orders:")
//!     .connect()
//!     .await?;
//! let locks = LockManager::new(provider);
//! let guard = locks.lock("order:7", Duration::from_secs(5)).await?;
//! let token = guard.fencing_token(); // pass it to the storage that must reject stale writers
//! # let _ = token;
//! guard.release().await?;
//! # Ok(())
//! # }
//! ```

#![forbid(unsafe_code)]

mod builder;
mod conn;
mod error;
mod held;
mod keys;
mod marks;
mod provider;
mod scripts;
mod status;
mod wakeups;

pub use builder::RedisProviderBuilder;
pub use error::RedisError;
pub use keys::{KeyNames, READABLE_MAX, key_names};
pub use provider::RedisProvider;
