//! [`CountingProvider`]: an instrumented wrapper around any provider.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Instant;

use parking_lot::Mutex;
use tierlock_core::provider::BoxFuture;
use tierlock_core::{
    BoxError, ExternalLock, LockName, LostSignal, Provider, RequestMark, WaitStrategy,
};

/// The error a [`CountingProvider`] returns while failures are injected.
#[derive(Debug, thiserror::Error)]
#[error("injected failure while acquiring {name:?}")]
pub struct InjectedFailure {
    /// The name whose acquisition failed.
    pub name: String,
}

/// Wraps a provider, counts what the manager asks of it, and lets a test inject failures,
/// remote requests and lost locks.
///
/// Clones share the counters (and the inner provider, if its clones share state, as
/// [`MemoryProvider`](tierlock_core::MemoryProvider)'s do), so a test keeps one clone and hands
/// another to the manager.
///
/// ```
/// use std::time::Duration;
/// use tierlock_core::{LockManager, MemoryProvider};
/// use tierlock_testkit::CountingProvider;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), tierlock_core::LockError> {
/// let counting = CountingProvider::new(MemoryProvider::new());
/// let locks = LockManager::new(counting.clone());
/// let outer = locks.lock("a", Duration::from_secs(1)).await?;
/// let inner = locks.lock("a", Duration::from_secs(1)).await?; // re-entry: no provider call
/// assert_eq!(counting.acquire_calls(), 1);
/// drop((inner, outer));
/// assert_eq!(counting.held(), 0);
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct CountingProvider<P> {
    inner: P,
    state: Arc<State>,
}

#[derive(Debug, Default)]
struct State {
    acquire_calls: AtomicU64,
    acquired: AtomicU64,
    released: AtomicU64,
    request_calls: AtomicU64,
    failing: AtomicBool,
    force_requested: AtomicBool,
    lost: Mutex<LostSignal>,
}

impl<P: Provider> CountingProvider<P> {
    /// Wraps `inner`.
    pub fn new(inner: P) -> Self {
        CountingProvider {
            inner,
            state: Arc::default(),
        }
    }

    /// The wrapped provider.
    pub fn inner(&self) -> &P {
        &self.inner
    }

    /// Calls of [`Provider::acquire`], successful or not.
    pub fn acquire_calls(&self) -> u64 {
        self.state.acquire_calls.load(Ordering::SeqCst)
    }

    /// External locks handed out.
    pub fn acquired(&self) -> u64 {
        self.state.acquired.load(Ordering::SeqCst)
    }

    /// External locks released (explicitly or by dropping the handle).
    pub fn released(&self) -> u64 {
        self.state.released.load(Ordering::SeqCst)
    }

    /// External locks currently held through this provider.
    pub fn held(&self) -> u64 {
        self.acquired() - self.released()
    }

    /// Calls of [`Provider::request`].
    pub fn request_calls(&self) -> u64 {
        self.state.request_calls.load(Ordering::SeqCst)
    }

    /// While `true`, every acquisition fails with [`InjectedFailure`].
    pub fn set_failing(&self, failing: bool) {
        self.state.failing.store(failing, Ordering::SeqCst);
    }

    /// While `true`, every held lock reports [`ExternalLock::is_requested`], as if another
    /// process were waiting.
    pub fn set_requested(&self, requested: bool) {
        self.state
            .force_requested
            .store(requested, Ordering::SeqCst);
    }

    /// Reports every external lock handed out so far as lost; later ones are not.
    pub fn lose_held_locks(&self) {
        let old = std::mem::take(&mut *self.state.lost.lock());
        old.trigger();
    }
}

impl<P: Provider> Provider for CountingProvider<P> {
    fn kind(&self) -> &'static str {
        self.inner.kind()
    }

    fn wait_strategy(&self) -> WaitStrategy {
        self.inner.wait_strategy()
    }

    fn acquire<'a>(
        &'a self,
        name: &'a LockName,
        deadline: Option<Instant>,
    ) -> BoxFuture<'a, Result<Option<Box<dyn ExternalLock>>, BoxError>> {
        Box::pin(async move {
            self.state.acquire_calls.fetch_add(1, Ordering::SeqCst);
            if self.state.failing.load(Ordering::SeqCst) {
                return Err(InjectedFailure {
                    name: name.to_string(),
                }
                .into());
            }
            let Some(inner) = self.inner.acquire(name, deadline).await? else {
                return Ok(None);
            };
            self.state.acquired.fetch_add(1, Ordering::SeqCst);
            let lost = self.state.lost.lock().clone();
            Ok(Some(Box::new(CountingLock {
                inner: Some(inner),
                state: Arc::clone(&self.state),
                lost,
            }) as Box<dyn ExternalLock>))
        })
    }

    fn request<'a>(
        &'a self,
        name: &'a LockName,
    ) -> BoxFuture<'a, Result<Option<RequestMark>, BoxError>> {
        self.state.request_calls.fetch_add(1, Ordering::SeqCst);
        self.inner.request(name)
    }
}

struct CountingLock {
    inner: Option<Box<dyn ExternalLock>>,
    state: Arc<State>,
    lost: LostSignal,
}

impl Drop for CountingLock {
    fn drop(&mut self) {
        if let Some(inner) = self.inner.take() {
            drop(inner);
            self.state.released.fetch_add(1, Ordering::SeqCst);
        }
    }
}

impl ExternalLock for CountingLock {
    fn release(mut self: Box<Self>) -> BoxFuture<'static, Result<(), BoxError>> {
        let inner = self.inner.take();
        let state = Arc::clone(&self.state);
        Box::pin(async move {
            let result = match inner {
                Some(inner) => inner.release().await,
                None => Ok(()),
            };
            state.released.fetch_add(1, Ordering::SeqCst);
            result
        })
    }

    fn drop_releases(&self) -> bool {
        self.inner.as_ref().is_some_and(|i| i.drop_releases())
    }

    fn is_requested(&self) -> bool {
        self.state.force_requested.load(Ordering::SeqCst)
            || self.inner.as_ref().is_some_and(|i| i.is_requested())
    }

    fn lost_signal(&self) -> Option<LostSignal> {
        Some(self.lost.clone())
    }

    fn fencing_token(&self) -> Option<u64> {
        self.inner.as_ref().and_then(|i| i.fencing_token())
    }
}
