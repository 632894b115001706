//! The core of [tierlock](https://docs.rs/tierlock): a two-tier, re-entrant lock manager.
//!
//! Most users depend on the `tierlock` facade crate, which re-exports this crate and the
//! providers behind cargo features. Provider authors depend on this crate only: the trait and
//! the contract in practice ("Writing a provider") are in [`provider`], waits announced by
//! `request` in [`announce`], the idle connection pool in [`pool`], and the lifecycle of a lock held on a session (monitor task, release between
//! round trips, abandon on drop, lease expiry) in [`held`].
//!
//! # When to use it
//!
//! Use a [`LockManager`] when code needs a lock identified by a *name* (`"tenant:42:migrate"`,
//! `"job:nightly"`) that must exclude other tasks of this process and, through a [`Provider`],
//! other processes and hosts — a lock file on a shared directory, a database lock, a Redis key.
//! If only tasks of one process need to be excluded and the set of locks is fixed, a
//! `tokio::sync::Mutex` in a struct is simpler; if the data lives in one database, a transaction
//! is usually the better tool.
//!
//! # The two tiers
//!
//! Inside the process, contention is settled by per-name FIFO queues in memory. Only the head of
//! a name's queue talks to the provider, and once this process holds the external lock it keeps
//! it while local waiters keep arriving, handing the name from task to task without provider
//! I/O. At each such turn boundary it checks whether another process has asked for the name; if
//! so the external lock is released there, so a busy process cannot starve the others.
//!
//! # Owners and re-entrancy
//!
//! A lock is held by an [`Owner`]: the innermost [`scope`], else the current tokio task, else the
//! current thread. A nested `lock` by the owner that holds the name returns a new guard at once;
//! the lock goes when the owner's last [`LockGuard`] goes, in any drop order. A spawned task is a
//! different owner; hand it yours on purpose with [`Owner::run`].
//!
//! # Fairness
//!
//! Local waiters are served first-in, first-out; a request by the current holder bypasses the
//! queue. Between processes, fairness is the provider's: native waiters queue on the server,
//! polling waiters retry with capped back-off and are let in at the holder's next turn boundary.
//!
//! # Timeouts and cancel-safety
//!
//! A timeout is one budget for the whole acquisition; `Duration::ZERO` makes one attempt.
//! Every future is cancel-safe: dropping a `lock` future (`tokio::time::timeout`, `select!`)
//! at any point leaves no queue entry, no external lock and no stuck name.
//!
//! ```
//! use std::time::Duration;
//! use tierlock_core::{LockManager, MemoryProvider};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), tierlock_core::LockError> {
//! let locks = LockManager::new(MemoryProvider::new());
//!
//! let guard = locks.lock("tenant:42:migrate", Duration::from_secs(60)).await?;
//! assert!(locks.try_lock("tenant:42:migrate").await?.is_some()); // same task: re-entry
//! drop(guard);
//!
//! let out = locks
//!     .with_lock("order:7", Duration::from_secs(5), async { "done" })
//!     .await?;
//! assert_eq!(out, "done");
//! # Ok(())
//! # }
//! ```

#![deny(unsafe_code)]

// The modules by layer, lowest first: a module uses only modules of the layers above it.
// The vocabulary: errors, names, what a provider is.
mod error;
mod name;
pub mod provider;
// What a backend reports as held right now (`tierlock status`).
pub mod status;
// Primitives: who owns, the synchronization shim, the sharded map, the runtime glue.
mod owner;
mod runtime;
mod shards;
mod sync;
// The in-process tier (the tier itself, then the memory provider built on it).
mod table;
// The memory provider: the tier alone, as a provider.
mod memory;
// Tracing and metrics (features), what a manager shares with its guards, the guards, the manager.
mod observe;
mod shared;
mod stats;
// The future of an acquisition, the guard of a held lock.
mod acquire;
mod guard;
// The user-facing manager.
mod manager;
// Helpers for provider crates.
pub mod announce;
pub mod held;
pub mod options;
pub mod pool;

pub use error::{BoxError, InvalidNameReason, LockError};
pub use guard::LockGuard;
pub use manager::LockManager;
pub use memory::MemoryProvider;
pub use name::{LockName, MAX_NAME_LEN};
pub use owner::{Owner, scope};
pub use provider::{ExternalLock, Latch, LostSignal, Provider, RequestMark, WaitStrategy};
pub use stats::Stats;
pub use status::HeldLock;
