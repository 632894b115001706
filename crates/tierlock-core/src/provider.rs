//! The provider trait: what a backend implements to exclude other processes.
//!
//! A provider is the *external tier*. It turns a lock name into something exclusive across
//! processes and hosts — a lock file, a database lock, a Redis key — and nothing more: waiting
//! queues, re-entrancy, timeouts, back-off, cancellation and hand-off are written once, in the
//! [`LockManager`](crate::LockManager), on top of these few methods (in the spirit of
//! `lock_api`'s `RawMutex`).
//!
//! The manager calls a provider only on the slow path:
//!
//! * [`Provider::acquire`] when a name is not yet held externally by this process. The manager
//!   first makes one attempt with a deadline that has already passed; if that fails and the
//!   caller may wait, it marks interest with [`Provider::request`] and then either waits with
//!   the remaining budget ([`WaitStrategy::Native`]) or retries with capped, jittered back-off
//!   ([`WaitStrategy::Poll`]).
//! * [`ExternalLock::is_requested`] at each turn boundary where a local waiter could take over:
//!   if another process asked, the external lock is released there instead of handed on.
//! * [`ExternalLock::release`] (or dropping the handle) when the name goes idle in this process.
//!
//! At most one `acquire` per name is in flight in one manager.
//!
//! # Cancellation
//!
//! Every future a provider returns may be dropped at any `.await`. A dropped `acquire` must leave
//! nothing held: if the backend may have granted the lock, the provider must make sure it is
//! released (e.g. by closing the connection the lock lives on).
//!
//! # Writing a provider
//!
//! The contract in practice. The file provider (`tierlock-file`: flock and lease modes), the
//! PostgreSQL provider (`tierlock-postgres`: a held lock on a session, unlocked on drop, fencing
//! by upsert) and the SQL Server provider (`tierlock-mssql`: the same lifecycle, closed on drop,
//! tested through a fake server) are the worked examples.
//!
//! * **Shape.** A crate `tierlock-xxx` that depends on `tierlock-core` (and its backend's
//!   driver). `XxxProvider::builder(..)` returns an `XxxProviderBuilder` (`FileProviderBuilder`,
//!   `PostgresProviderBuilder`, `MssqlProviderBuilder`, `SqliteProviderBuilder`,
//!   `RedisProviderBuilder`); `build()` makes the provider without I/O, `connect()` (where it
//!   means something) also proves the backend reachable.
//! * **Options** use one vocabulary, where they apply: `namespace`, `max_idle_connections`,
//!   `idle_timeout`, `request_poll_interval`, `keepalive_interval`, `command_timeout`,
//!   `connect_timeout`, `fencing(bool)`. A duration that can be switched off takes
//!   `impl Into<Option<Duration>>`: `None` is off, a plain `Duration` is on. A zero duration is
//!   never a sentinel: `build()` rejects it with a typed error naming the option (a computed
//!   interval that happens to be zero must not silently switch hand-over off). Check them with
//!   [`options`](crate::options), which also vets table names put into SQL. The builder's
//!   docs have a table of the options and their defaults.
//! * **[`Provider::acquire`] is one attempt or one native wait.** With
//!   [`WaitStrategy::Native`], wait on the server until the deadline: a passed deadline is one
//!   attempt, `None` waits without limit, the remaining budget is rounded *up*, and a server
//!   that gives up before the deadline by the client's clock is asked again — "held elsewhere"
//!   (`Ok(None)`) is never reported early. Bound the client's wait for the answer by the budget
//!   plus `command_timeout`. With [`WaitStrategy::Poll`], make exactly one attempt and return;
//!   the manager backs off and retries.
//! * **Cancellation.** Every future may be dropped at any `.await`. Run each command on a
//!   connection *owned* by the future, so dropping the future closes the connection and the
//!   server frees whatever the session took, including a lock granted at that instant. If the
//!   backend does not notice a closed socket while it waits (PostgreSQL), send a cancel request
//!   too. Reuse connections through [`IdlePool`](crate::pool::IdlePool) and keep its rules:
//!   only clean connections go back.
//! * **Request marks.** [`Provider::request`] marks interest for as long as the returned
//!   [`RequestMark`] lives (a shared lock on a derived resource, a row, a key), on its own
//!   connection; wrap what holds it in [`AbandonOnDrop`](crate::held::AbandonOnDrop) so
//!   dropping withdraws it in the background.
//! * **[`ExternalLock::is_requested`] is a cached read.** The manager calls it at turn
//!   boundaries with the name's entry locked: a load of an atomic that a background task keeps
//!   up to date, never I/O. With `request_poll_interval` off it stays `false`, and the process
//!   keeps the lock for as long as its own tasks want it.
//! * **The held lock's lifecycle** is [`held::Hold`](crate::held::Hold): a monitor task owns
//!   the session, checks requests every `request_poll_interval`, sends a keepalive after
//!   `keepalive_interval` of silence, and fires the [`LostSignal`] when the session closes,
//!   breaks or stops answering; `release` takes the session back between round trips, unlocks
//!   and pools it; dropping abandons it in the background (unlock, or close the connection).
//!   Without a runtime the session is dropped with its task: closing the connection frees the
//!   lock.
//! * **Lost locks.** Fire the [`LostSignal`] whenever the backend can no longer promise
//!   exclusion: the connection closed, a round trip failed or timed out. A lease provider renews
//!   every `ttl / 3` and counts its lease lost if no renewal succeeded within 9/10 of `ttl`
//!   after the start of the last one ([`Schedule::lease`](crate::held::Schedule::lease)): a
//!   waiter breaks a lease only after seeing it unchanged for a whole `ttl` by its own clock,
//!   and the tenth left covers clock-rate differences and telling the code that holds the lock.
//! * **Fencing tokens.** [`ExternalLock::fencing_token`] strictly increases per name with every
//!   external acquisition, across processes, hosts and killed holders. Take it before the lock
//!   is handed out, in the same session or transaction that holds it; if that fails, release
//!   the lock and return a typed error. Always on where the counter is free (file, lease rows,
//!   Redis), `.fencing(true)` where it costs a statement (PostgreSQL, SQL Server). Re-entrant
//!   guards and local hand-offs share the token: the manager does that, not the provider.
//! * **[`ExternalLock::drop_releases`]** is `true` only if dropping the handle frees the lock
//!   at once with a system call (file), or starts the release itself without blocking *and*
//!   makes this provider's next acquisition of the name wait for it
//!   ([`held::Releases`](crate::held::Releases), as PostgreSQL does). Otherwise leave it
//!   `false`: the manager spawns [`ExternalLock::release`]. Either way, dropping must free the
//!   lock eventually, with or without a runtime.
//! * **Errors** are a `thiserror` enum of the crate. Every variant about a lock carries the
//!   lock name, and the driver's or the server's error as `#[source]`; configuration errors
//!   come from `build()`. "Held elsewhere" is `Ok(None)`, never an error.
//! * **Tests.** Run the battery with
//!   [`tierlock_testkit::conformance_tests!`](https://docs.rs/tierlock-testkit) (each factory
//!   call a fresh namespace; `requires_env = "…"` for a server; once more with fencing on if it
//!   is opt-in). Try to break the concurrency claims on the real backend: cancel acquisitions at
//!   every await, kill sessions and servers, terminate backends. Add a provider kind to the
//!   `tierlock-worker` binary and run the multi-process scenarios of
//!   `tierlock_testkit::multiprocess`: `mutual_exclusion`, `killed_holder_is_released`,
//!   `busy_process_hands_over`, and for tokens `tokens_increase_across_processes` and
//!   `tokens_increase_across_a_killed_holder`. Document it in `docs/providers/xxx.md` in the
//!   repository.
//!
//! # Implementing a provider
//!
//! The smallest provider that compiles:
//!
//! ```
//! use std::time::Instant;
//! use tierlock_core::provider::{BoxFuture, ExternalLock, Provider, WaitStrategy};
//! use tierlock_core::{BoxError, LockName};
//!
//! /// Excludes nothing: every acquisition succeeds (an example, not a useful provider).
//! #[derive(Debug)]
//! struct Permissive;
//!
//! #[derive(Debug)]
//! struct Held;
//!
//! impl ExternalLock for Held {
//!     fn release(self: Box<Self>) -> BoxFuture<'static, Result<(), BoxError>> {
//!         Box::pin(async { Ok(()) })
//!     }
//! }
//!
//! impl Provider for Permissive {
//!     fn kind(&self) -> &'static str {
//!         "permissive"
//!     }
//!     fn wait_strategy(&self) -> WaitStrategy {
//!         WaitStrategy::Native
//!     }
//!     fn acquire<'a>(
//!         &'a self,
//!         _name: &'a LockName,
//!         _deadline: Option<Instant>,
//!     ) -> BoxFuture<'a, Result<Option<Box<dyn ExternalLock>>, BoxError>> {
//!         Box::pin(async { Ok(Some(Box::new(Held) as Box<dyn ExternalLock>)) })
//!     }
//! }
//!
//! let locks = tierlock_core::LockManager::new(Permissive);
//! ```

use std::any::Any;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

use crate::error::BoxError;
use crate::name::LockName;

/// A boxed, `Send` future: what provider methods return (the external tier is the slow path).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// How a provider waits for a lock that is held elsewhere.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum WaitStrategy {
    /// [`Provider::acquire`] waits until its deadline itself, typically in a queue on the server
    /// (`sp_getapplock`, `pg_advisory_lock`), which is fair between processes.
    Native,
    /// [`Provider::acquire`] makes a single attempt and never waits; the manager retries with
    /// exponential back-off from `initial`, capped at `max`, with jitter.
    ///
    /// After the external lock was handed back to a requesting process, the local queue waits
    /// about `2 × max` before retrying, so a polling remote waiter gets its turn.
    Poll {
        /// The first pause between attempts.
        initial: Duration,
        /// The longest pause between attempts.
        max: Duration,
    },
}

/// The external tier: a backend that makes a lock name exclusive across processes.
///
/// The trait is object-safe; a [`LockManager`](crate::LockManager) holds its provider as
/// `Arc<dyn Provider>`. See the [module documentation](self) for the contract.
pub trait Provider: Any + Send + Sync + fmt::Debug {
    /// A short name for the backend, used in errors and statistics (`"file"`, `"postgres"`).
    fn kind(&self) -> &'static str;

    /// Whether [`acquire`](Provider::acquire) waits natively or must be polled.
    fn wait_strategy(&self) -> WaitStrategy;

    /// Takes the external lock for `name`.
    ///
    /// Returns `Ok(Some(lock))` when acquired, `Ok(None)` when the lock is held elsewhere and was
    /// not obtained in time, and `Err` only for real failures (never for "held elsewhere").
    ///
    /// `deadline` is `None` to wait without limit, or the instant to give up at. A deadline
    /// that has already passed means exactly one attempt without waiting. Providers with
    /// [`WaitStrategy::Poll`] always make one attempt and may ignore the deadline.
    fn acquire<'a>(
        &'a self,
        name: &'a LockName,
        deadline: Option<Instant>,
    ) -> BoxFuture<'a, Result<Option<Box<dyn ExternalLock>>, BoxError>>;

    /// Marks this process's interest in `name` while it waits for it, so that the holder sees
    /// [`ExternalLock::is_requested`] and hands the lock over at its next turn boundary.
    ///
    /// The mark lasts until the returned value is dropped. The default returns `None`: right for
    /// backends where a waiter is already visible to the holder.
    fn request<'a>(
        &'a self,
        name: &'a LockName,
    ) -> BoxFuture<'a, Result<Option<RequestMark>, BoxError>> {
        let _ = name;
        Box::pin(std::future::ready(Ok(None)))
    }
}

/// An external lock held by this process: the handle a [`Provider`] returns.
///
/// Dropping the handle must release the lock without blocking for long (closing a file handle or
/// a database session), so a guard dropped after its runtime is gone still frees the lock.
pub trait ExternalLock: Send + Sync + 'static {
    /// Releases the lock, reporting backend errors.
    fn release(self: Box<Self>) -> BoxFuture<'static, Result<(), BoxError>>;

    /// True if dropping the handle is all the release needs: either it frees the lock at once
    /// with no more than a quick system call (memory, file), or it starts the release itself
    /// without blocking and makes the provider's next `acquire` of the name wait for it
    /// (PostgreSQL). The manager then releases by dropping, inline, instead of spawning a task
    /// that calls [`release`](ExternalLock::release).
    fn drop_releases(&self) -> bool {
        false
    }

    /// Whether another process has asked for this lock (see [`Provider::request`]).
    ///
    /// Called at turn boundaries with the name's entry locked: it must be cheap and must not
    /// block. A backend that needs I/O to find out keeps the answer up to date in the background.
    fn is_requested(&self) -> bool {
        false
    }

    /// A signal that fires if the backend reports the lock lost (broken connection, expired
    /// lease), or `None` if this backend cannot tell.
    fn lost_signal(&self) -> Option<LostSignal> {
        None
    }

    /// A number that strictly increases each time this name is acquired externally, for
    /// backends that can make one (see "fencing tokens"), else `None`.
    fn fencing_token(&self) -> Option<u64> {
        None
    }
}

impl fmt::Debug for dyn ExternalLock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ExternalLock")
            .field("fencing_token", &self.fencing_token())
            .finish_non_exhaustive()
    }
}

/// A mark of interest in a lock name, held while a process waits (see [`Provider::request`]).
/// Dropping it withdraws the request.
pub struct RequestMark(#[allow(dead_code)] Box<dyn Send + Sync>);

impl RequestMark {
    /// Wraps whatever keeps the mark alive (a lock on a request file, a database session…);
    /// dropping it must withdraw the mark.
    pub fn new(keep_alive: impl Send + Sync + 'static) -> Self {
        RequestMark(Box::new(keep_alive))
    }
}

impl fmt::Debug for RequestMark {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RequestMark")
    }
}

/// A flag that is raised once and can be awaited: "the connection closed", "the release
/// finished". Cloning shares the flag.
///
/// It is the one raised-once type of the project: [`LostSignal`] is a `Latch` with a name that
/// says what it means, and providers use it for their own events (a connection's socket task
/// ending, a background release finishing).
///
/// ```
/// use tierlock_core::provider::Latch;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let closed = Latch::new();
/// let seen = closed.clone();
/// let waiter = tokio::spawn(async move { seen.wait().await });
/// closed.raise();
/// waiter.await.unwrap();
/// assert!(closed.is_raised());
/// # }
/// ```
#[derive(Clone, Default)]
pub struct Latch(Arc<LatchInner>);

#[derive(Default)]
struct LatchInner {
    raised: AtomicBool,
    notify: Notify,
}

impl Latch {
    /// A latch that is not raised.
    pub fn new() -> Self {
        Self::default()
    }

    /// Raises the latch and wakes everyone waiting in [`Latch::wait`]. Raising it again does
    /// nothing more.
    pub fn raise(&self) {
        self.0.raised.store(true, Ordering::Release);
        self.0.notify.notify_waiters();
    }

    /// Whether the latch was raised.
    pub fn is_raised(&self) -> bool {
        self.0.raised.load(Ordering::Acquire)
    }

    /// Resolves once the latch is raised (at once if it already was).
    pub async fn wait(&self) {
        loop {
            let notified = self.0.notify.notified();
            if self.is_raised() {
                return;
            }
            notified.await;
        }
    }

    /// Whether `self` and `other` are clones of one latch.
    pub(crate) fn same(&self, other: &Latch) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl fmt::Debug for Latch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Latch")
            .field("raised", &self.is_raised())
            .finish()
    }
}

/// A one-way flag that a provider raises when an external lock it handed out is lost: a
/// [`Latch`] under a name that says what it means.
///
/// Cloning shares the flag. The manager checks it at turn boundaries (a lost lock is not handed
/// to the next local owner) and [`LockGuard::lost`](crate::LockGuard::lost) lets the code that
/// holds the lock react to it.
#[derive(Clone, Default)]
pub struct LostSignal(Latch);

impl LostSignal {
    /// A signal that has not fired.
    pub fn new() -> Self {
        Self::default()
    }

    /// Marks the lock lost and wakes everyone waiting in [`LostSignal::wait`].
    pub fn trigger(&self) {
        self.0.raise();
    }

    /// Whether the lock was lost.
    pub fn is_lost(&self) -> bool {
        self.0.is_raised()
    }

    /// Resolves once the lock is lost (at once if it already was).
    pub async fn wait(&self) {
        self.0.wait().await;
    }
}

impl fmt::Debug for LostSignal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LostSignal")
            .field("lost", &self.is_lost())
            .finish()
    }
}
