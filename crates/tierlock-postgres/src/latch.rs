//! [`Latch`]: a flag that is raised once and can be awaited, and [`Releasing`], the releases of
//! dropped locks still in flight.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::Notify;

/// Raised once (a connection closed, a release finished); [`wait`](Latch::wait) resolves from
/// then on.
#[derive(Default)]
pub(crate) struct Latch {
    raised: AtomicBool,
    notify: Notify,
}

impl Latch {
    pub(crate) fn is_raised(&self) -> bool {
        self.raised.load(Ordering::Acquire)
    }

    pub(crate) fn raise(&self) {
        self.raised.store(true, Ordering::Release);
        self.notify.notify_waiters();
    }

    /// Resolves once the latch is raised (at once if it is).
    pub(crate) async fn wait(&self) {
        loop {
            let notified = self.notify.notified();
            if self.is_raised() {
                return;
            }
            notified.await;
        }
    }
}

/// The keys whose lock was dropped (not released with `release().await`) and is being
/// unlocked on a background task. An acquisition of such a key through the same provider first
/// waits for that unlock, so a process that drops a guard and locks the name again does not
/// find its own lock still held.
#[derive(Default)]
pub(crate) struct Releasing(Mutex<HashMap<i64, Arc<Latch>>>);

impl Releasing {
    /// Marks `key` as being released; raise the returned latch through [`finish`](Self::finish).
    pub(crate) fn start(&self, key: i64) -> Arc<Latch> {
        let latch = Arc::new(Latch::default());
        self.0.lock().insert(key, Arc::clone(&latch));
        latch
    }

    pub(crate) fn finish(&self, key: i64, latch: &Arc<Latch>) {
        latch.raise();
        let mut map = self.0.lock();
        if map.get(&key).is_some_and(|l| Arc::ptr_eq(l, latch)) {
            map.remove(&key);
        }
    }

    /// Waits (up to `limit`) for a release of `key` in flight, if there is one.
    pub(crate) async fn settle(&self, key: i64, limit: Duration) {
        let latch = {
            let map = self.0.lock();
            if map.is_empty() {
                return;
            }
            map.get(&key).cloned()
        };
        if let Some(latch) = latch {
            // After `limit` the unlock is presumed stuck; the acquisition goes ahead anyway.
            let _ = tokio::time::timeout(limit, latch.wait()).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn settle_waits_for_the_release_of_its_key_only() {
        let releasing = Arc::new(Releasing::default());
        let latch = releasing.start(7);
        // Another key does not wait.
        let other =
            tokio::time::timeout(Duration::from_secs(5), releasing.settle(8, Duration::MAX));
        other.await.unwrap();
        let waiter = tokio::spawn({
            let releasing = Arc::clone(&releasing);
            async move { releasing.settle(7, Duration::from_secs(30)).await }
        });
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        releasing.finish(7, &latch);
        tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .unwrap()
            .unwrap();
        assert!(releasing.0.lock().is_empty());
    }
}
