//! [`LockManager`]: the user-facing machinery, written once on top of [`Provider`].

use std::any::Any;
use std::cell::Cell;
use std::fmt;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use smol_str::SmolStr;

use crate::error::{BoxError, LockError};
use crate::guard::LockGuard;
use crate::memory::MemoryProvider;
use crate::name::{LockName, validate};
use crate::owner::Owner;
use crate::provider::{ExternalLock, Provider, WaitStrategy};
use crate::stats::{Counters, Stats};
use crate::table::{Enter, Holder, Outcome, Release, Table, Turn};

/// A two-tier, re-entrant lock manager: named locks that exclude tasks in this process and, via
/// its [`Provider`], other processes and hosts.
///
/// Create one at start-up and share it (it is `Clone + Send + Sync`; a clone is an `Arc` bump
/// and shares everything). Each name is an independent lock. See the [crate
/// documentation](crate) for when to use it, fairness and cancel-safety.
///
/// ```
/// use std::time::Duration;
/// use tierlock_core::{LockManager, MemoryProvider};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), tierlock_core::LockError> {
/// let locks = LockManager::new(MemoryProvider::new());
/// let guard = locks.lock("tenant:42:migrate", Duration::from_secs(60)).await?;
/// // ... the critical section ...
/// guard.release().await?;
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct LockManager {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) table: Arc<Table>,
    /// Distinguishes this manager's holders in a table shared with other managers.
    pub(crate) tag: u64,
    pub(crate) provider: Arc<dyn Provider>,
    pub(crate) counters: Counters,
}

static NEXT_TAG: AtomicU64 = AtomicU64::new(1);

impl LockManager {
    /// A manager whose external tier is `provider`.
    ///
    /// ```
    /// use tierlock_core::{LockManager, MemoryProvider};
    ///
    /// let locks = LockManager::new(MemoryProvider::new());
    /// let shared = locks.clone(); // the same manager
    /// ```
    pub fn new(provider: impl Provider) -> Self {
        Self::from_arc(Arc::new(provider))
    }

    /// A manager on a provider that is already shared, e.g. one concrete provider injected
    /// app-wide as `Arc<dyn Provider>`.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use tierlock_core::{LockManager, MemoryProvider, Provider};
    ///
    /// let provider: Arc<dyn Provider> = Arc::new(MemoryProvider::new());
    /// let a = LockManager::from_arc(Arc::clone(&provider));
    /// let b = LockManager::from_arc(provider); // excludes `a`
    /// ```
    pub fn from_arc(provider: Arc<dyn Provider>) -> Self {
        let any: &dyn Any = &*provider;
        let table = match any.downcast_ref::<MemoryProvider>() {
            // Everyone is in this process: share the provider's table as the in-process tier.
            Some(memory) => memory.table(),
            None => {
                let handback_pause = match provider.wait_strategy() {
                    WaitStrategy::Native => Duration::ZERO,
                    WaitStrategy::Poll { max, .. } => max.saturating_mul(2),
                };
                Arc::new(Table::new(true, handback_pause))
            }
        };
        LockManager {
            inner: Arc::new(Inner {
                table,
                tag: NEXT_TAG.fetch_add(1, Ordering::Relaxed),
                provider,
                counters: Counters::default(),
            }),
        }
    }

    /// The provider this manager escalates to.
    pub fn provider(&self) -> &Arc<dyn Provider> {
        &self.inner.provider
    }

    /// Acquires the lock `name`, waiting up to `timeout` in all (local queue and external wait
    /// together). `Duration::ZERO` makes exactly one attempt; `Duration::MAX` waits forever.
    ///
    /// If the calling [`Owner`] already holds `name`, this returns a new guard at once without
    /// any provider call (re-entry); the lock is released when the owner's last guard goes.
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe: dropping the future at any point (before its turn, while taking the external
    /// lock, after being granted) leaves nothing behind — no queue entry, no external lock, no
    /// stuck name.
    ///
    /// # Errors
    ///
    /// [`LockError::Timeout`] if not acquired in time, [`LockError::InvalidName`] for a bad
    /// name, [`LockError::Provider`] if the external tier failed.
    ///
    /// ```
    /// use std::time::Duration;
    /// use tierlock_core::{LockManager, MemoryProvider};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), tierlock_core::LockError> {
    /// let locks = LockManager::new(MemoryProvider::new());
    /// let outer = locks.lock("order:7", Duration::from_secs(5)).await?;
    /// let inner = locks.lock("order:7", Duration::from_secs(5)).await?; // re-entry
    /// drop(outer);
    /// // Still held by this task until `inner` goes too.
    /// let other = tokio::spawn({
    ///     let locks = locks.clone();
    ///     async move { locks.lock("order:7", Duration::ZERO).await.is_err() }
    /// });
    /// assert!(other.await.unwrap());
    /// drop(inner);
    /// # Ok(())
    /// # }
    /// ```
    pub async fn lock(&self, name: &str, timeout: Duration) -> Result<LockGuard, LockError> {
        self.acquire(name, Owner::current(), timeout).await
    }

    /// Takes the lock if it is free (or already held by the calling owner) without waiting.
    ///
    /// Returns `Ok(None)` when another owner, here or in another process, holds it.
    ///
    /// # Errors
    ///
    /// Only real failures: [`LockError::InvalidName`], [`LockError::Provider`].
    ///
    /// ```
    /// use tierlock_core::{LockManager, MemoryProvider};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), tierlock_core::LockError> {
    /// let locks = LockManager::new(MemoryProvider::new());
    /// match locks.try_lock("job:nightly").await? {
    ///     Some(_guard) => { /* run the job */ }
    ///     None => { /* someone else is running it */ }
    /// }
    /// # Ok(())
    /// # }
    /// ```
    pub async fn try_lock(&self, name: &str) -> Result<Option<LockGuard>, LockError> {
        none_on_timeout(self.acquire(name, Owner::current(), Duration::ZERO).await)
    }

    /// Runs `work` under the lock `name` and releases the lock after it, returning its output.
    ///
    /// `work` runs as the calling owner, so locks it takes on `name` re-enter.
    ///
    /// # Errors
    ///
    /// Those of [`lock`](Self::lock) (then `work` is not run), and those of
    /// [`LockGuard::release`] after `work` ran — notably [`LockError::Lost`] if the external
    /// lock was lost meanwhile.
    ///
    /// ```
    /// use std::time::Duration;
    /// use tierlock_core::{LockManager, MemoryProvider};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), tierlock_core::LockError> {
    /// let locks = LockManager::new(MemoryProvider::new());
    /// let total = locks
    ///     .with_lock("invoice:9", Duration::from_secs(5), async { 40 + 2 })
    ///     .await?;
    /// assert_eq!(total, 42);
    /// # Ok(())
    /// # }
    /// ```
    pub async fn with_lock<F: Future>(
        &self,
        name: &str,
        timeout: Duration,
        work: F,
    ) -> Result<F::Output, LockError> {
        let guard = self.lock(name, timeout).await?;
        let output = work.await;
        guard.release().await?;
        Ok(output)
    }

    /// [`lock`](Self::lock) for code without an async runtime at hand. The owner is the
    /// calling thread (or the ambient owner, see [`Owner::current`]).
    ///
    /// Outside any tokio runtime, waiting is driven by a small runtime that tierlock starts
    /// on first use (one worker thread). Inside `spawn_blocking` it uses the current runtime.
    ///
    /// # Panics
    ///
    /// If called from asynchronous code running on a tokio runtime (like tokio's own
    /// `blocking_lock`), because blocking there would stall the runtime's worker. Use
    /// `lock(..).await` there, or call this from `spawn_blocking`.
    ///
    /// # Errors
    ///
    /// As [`lock`](Self::lock).
    ///
    /// ```
    /// use std::time::Duration;
    /// use tierlock_core::{LockManager, MemoryProvider};
    ///
    /// let locks = LockManager::new(MemoryProvider::new());
    /// let guard = locks.lock_blocking("export", Duration::from_secs(5))?;
    /// let again = locks.lock_blocking("export", Duration::ZERO)?; // same thread: re-entry
    /// drop((again, guard));
    /// # Ok::<(), tierlock_core::LockError>(())
    /// ```
    pub fn lock_blocking(&self, name: &str, timeout: Duration) -> Result<LockGuard, LockError> {
        block_on(self.acquire(name, Owner::current(), timeout))
    }

    /// [`try_lock`](Self::try_lock) for code without an async runtime at hand; see
    /// [`lock_blocking`](Self::lock_blocking) for where it may be called.
    ///
    /// # Errors
    ///
    /// As [`try_lock`](Self::try_lock).
    ///
    /// ```
    /// use tierlock_core::{LockManager, MemoryProvider};
    ///
    /// let locks = LockManager::new(MemoryProvider::new());
    /// assert!(locks.try_lock_blocking("export")?.is_some());
    /// # Ok::<(), tierlock_core::LockError>(())
    /// ```
    pub fn try_lock_blocking(&self, name: &str) -> Result<Option<LockGuard>, LockError> {
        none_on_timeout(block_on(self.acquire(
            name,
            Owner::current(),
            Duration::ZERO,
        )))
    }

    /// A snapshot of the manager's state and counters.
    ///
    /// `entries`, `held` and `waiting` come from a scan of the live entries, so this costs time
    /// proportional to the names held or awaited right now (zero when idle). For a manager on a
    /// [`MemoryProvider`], they cover every manager sharing that provider.
    ///
    /// ```
    /// use tierlock_core::{LockManager, MemoryProvider};
    ///
    /// let locks = LockManager::new(MemoryProvider::new());
    /// assert_eq!(locks.stats().entries, 0);
    /// ```
    pub fn stats(&self) -> Stats {
        let (held, waiting) = self.inner.table.census();
        self.inner
            .counters
            .snapshot(self.inner.table.len(), held, waiting)
    }

    /// The acquisition itself, as a given owner.
    async fn acquire(
        &self,
        name: &str,
        owner: Owner,
        timeout: Duration,
    ) -> Result<LockGuard, LockError> {
        validate(name)?;
        let inner = &self.inner;
        let holder = Holder {
            tag: inner.tag,
            owner,
        };
        let (key, enter) = inner.table.enter(name, holder, !timeout.is_zero());
        match enter {
            Enter::Acquired | Enter::Reentered => Ok(self.guard(key, holder)),
            Enter::Busy => Err(inner.timeout(&key, Duration::ZERO)),
            Enter::Escalate => {
                let start = Instant::now();
                self.escalate(key, holder, start, start.checked_add(timeout))
                    .await
            }
            Enter::Queued(waiter) => {
                let start = Instant::now();
                let deadline = start.checked_add(timeout);
                match inner.table.wait_turn(&key, waiter, deadline).await {
                    Turn::Granted => Ok(self.guard(key, holder)),
                    Turn::Escalate => self.escalate(key, holder, start, deadline).await,
                    Turn::TimedOut => Err(inner.timeout(&key, start.elapsed())),
                }
            }
        }
    }

    /// As the new local holder, takes the external lock; on failure or cancellation the turn
    /// passes to the next local waiter.
    async fn escalate(
        &self,
        key: SmolStr,
        holder: Holder,
        start: Instant,
        deadline: Option<Instant>,
    ) -> Result<LockGuard, LockError> {
        let inner = &self.inner;
        let mut abandon = AbandonOnDrop {
            table: &inner.table,
            key: &key,
            holder,
            armed: true,
        };
        if let Some(resume) = inner.table.yield_until(&key) {
            // The external lock was just handed to another process: give it time to take it.
            let resume = deadline.map_or(resume, |d| d.min(resume));
            tokio::time::sleep_until(resume.into()).await;
        }
        let name = LockName::from_key(key.clone());
        let external = match self.acquire_external(&name, deadline).await {
            Ok(Some(external)) => external,
            Ok(None) => return Err(inner.timeout(&key, start.elapsed())),
            Err(source) => {
                inner
                    .counters
                    .provider_errors
                    .fetch_add(1, Ordering::Relaxed);
                return Err(LockError::Provider {
                    provider: inner.provider.kind(),
                    name: key.to_string(),
                    source,
                });
            }
        };
        abandon.armed = false;
        drop(abandon);
        inner
            .counters
            .external_acquisitions
            .fetch_add(1, Ordering::Relaxed);
        match inner.table.escalated(&key, holder, external) {
            Ok(()) => Ok(self.guard(key, holder)),
            Err(external) => {
                // Unreachable while the table's invariants hold; never hand out a lock then.
                dispose_external(external);
                Err(LockError::Lost {
                    name: key.to_string(),
                })
            }
        }
    }

    /// One attempt without waiting; then, if there is time left, a marked wait: native, or
    /// polling with capped, jittered exponential back-off.
    async fn acquire_external(
        &self,
        name: &LockName,
        deadline: Option<Instant>,
    ) -> Result<Option<Box<dyn ExternalLock>>, BoxError> {
        let provider = &*self.inner.provider;
        if let Some(lock) = provider.acquire(name, Some(Instant::now())).await? {
            return Ok(Some(lock));
        }
        if deadline.is_some_and(|d| d <= Instant::now()) {
            return Ok(None);
        }
        let _request = provider.request(name).await?;
        match provider.wait_strategy() {
            WaitStrategy::Native => provider.acquire(name, deadline).await,
            WaitStrategy::Poll { initial, max } => {
                let mut pause = initial.max(Duration::from_micros(100));
                loop {
                    let mut nap = jitter(pause);
                    if let Some(deadline) = deadline {
                        let left = deadline.saturating_duration_since(Instant::now());
                        if left.is_zero() {
                            return Ok(None);
                        }
                        nap = nap.min(left);
                    }
                    tokio::time::sleep(nap).await;
                    if let Some(lock) = provider.acquire(name, Some(Instant::now())).await? {
                        return Ok(Some(lock));
                    }
                    pause = pause.saturating_mul(2).min(max.max(initial));
                }
            }
        }
    }

    fn guard(&self, key: SmolStr, holder: Holder) -> LockGuard {
        LockGuard::new(Arc::clone(&self.inner), key, holder)
    }
}

impl Inner {
    fn timeout(&self, key: &SmolStr, waited: Duration) -> LockError {
        self.counters.timeouts.fetch_add(1, Ordering::Relaxed);
        LockError::Timeout {
            name: key.to_string(),
            waited,
        }
    }

    /// Releases one guard; returns the external lock if this boundary gave it up.
    pub(crate) fn release(&self, key: &SmolStr, holder: Holder) -> Release {
        let release = self.table.release(key, holder);
        let counter = match release.outcome {
            Outcome::HandedOff => Some(&self.counters.local_handoffs),
            Outcome::HandedBack => Some(&self.counters.handbacks),
            Outcome::Nested | Outcome::Removed | Outcome::NotHeld => None,
        };
        if let Some(counter) = counter {
            counter.fetch_add(1, Ordering::Relaxed);
        }
        if release.external.is_some() {
            self.counters
                .external_releases
                .fetch_add(1, Ordering::Relaxed);
        }
        release
    }
}

impl fmt::Debug for LockManager {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LockManager")
            .field("provider", &self.inner.provider)
            .field("entries", &self.inner.table.len())
            .finish_non_exhaustive()
    }
}

fn none_on_timeout(result: Result<LockGuard, LockError>) -> Result<Option<LockGuard>, LockError> {
    match result {
        Ok(guard) => Ok(Some(guard)),
        Err(LockError::Timeout { .. }) => Ok(None),
        Err(err) => Err(err),
    }
}

/// Passes the turn on if an escalation does not complete.
struct AbandonOnDrop<'a> {
    table: &'a Table,
    key: &'a SmolStr,
    holder: Holder,
    armed: bool,
}

impl Drop for AbandonOnDrop<'_> {
    fn drop(&mut self) {
        if self.armed {
            self.table.abandon(self.key, self.holder);
        }
    }
}

/// Releases an external lock from synchronous code: inline when dropping the handle is enough
/// and cheap, else on a background task, else (no runtime left) by dropping the handle, which
/// every provider guarantees releases the lock.
pub(crate) fn dispose_external(external: Box<dyn ExternalLock>) {
    if external.drop_releases() {
        drop(external);
        return;
    }
    let handle = tokio::runtime::Handle::try_current()
        .ok()
        .or_else(|| FALLBACK.get().map(|rt| rt.handle().clone()));
    match handle {
        Some(handle) => {
            handle.spawn(async move {
                // Nobody is left to tell; dropping the handle on error still frees the lock.
                let _ = external.release().await;
            });
        }
        None => drop(external),
    }
}

/// The runtime that drives blocking acquisitions made outside any runtime.
static FALLBACK: OnceLock<tokio::runtime::Runtime> = OnceLock::new();

fn block_on<F: Future>(future: F) -> F::Output {
    if let Ok(handle) = tokio::runtime::Handle::try_current() {
        return handle.block_on(future);
    }
    let runtime = FALLBACK.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("tierlock-blocking")
            .enable_all()
            .build()
            .unwrap_or_else(|err| panic!("tierlock could not start its blocking runtime: {err}"))
    });
    runtime.block_on(future)
}

/// `pause` ± 25 %, from a per-thread xorshift generator (no need for a strong RNG here).
fn jitter(pause: Duration) -> Duration {
    thread_local! {
        static STATE: Cell<u64> = Cell::new({
            let seed = std::collections::hash_map::RandomState::new();
            std::hash::BuildHasher::hash_one(&seed, std::thread::current().id()) | 1
        });
    }
    let random = STATE.with(|state| {
        let mut x = state.get();
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        state.set(x);
        x
    });
    let quarter = pause / 4;
    let nanos = u64::try_from(quarter.as_nanos()).unwrap_or(u64::MAX).max(1);
    pause - quarter + Duration::from_nanos(random % (2 * nanos))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_stays_within_a_quarter() {
        let pause = Duration::from_millis(4);
        for _ in 0..1000 {
            let j = jitter(pause);
            assert!(
                j >= Duration::from_millis(3) && j <= Duration::from_millis(5),
                "{j:?}"
            );
        }
    }
}
