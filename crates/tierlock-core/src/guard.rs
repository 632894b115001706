//! [`LockGuard`]: proof that a lock is held, released when the owner's last guard goes.

use std::fmt;
use std::sync::Arc;

use crate::error::LockError;
use crate::observe::Since;
use crate::owner::Owner;
use crate::provider::LostSignal;
use crate::runtime::dispose_external;
use crate::shards::Key;
use crate::shared::Inner;
use crate::table::{Claim, Holder};

/// A held lock. The lock is released when the owner's **last** guard for the name is gone,
/// whatever order its guards are dropped in.
///
/// Dropping a guard releases synchronously in this process (the next local waiter gets the lock
/// at once); if the external lock must go too, dropping either releases it inline (memory, file)
/// or on a background task. [`release`](LockGuard::release) does the same but waits for the
/// external release and reports its errors.
///
/// Guards are `Send`: a guard may be dropped on another task or thread than the one that
/// acquired it; it still counts for the owner that acquired it.
#[must_use = "the lock is released as soon as the guard is dropped"]
pub struct LockGuard {
    inner: Arc<Inner>,
    key: Key,
    holder: Holder,
    /// Where the guard is counted if it re-entered from the thread's record: the count itself,
    /// without the shard lock (otherwise in the entry found by `key`, under it).
    claim: Option<Claim>,
    /// When the guard was handed out (read only with the `metrics` feature).
    since: Since,
    /// False once [`release`](LockGuard::release) let go, so that `Drop` does not again.
    held: bool,
}

impl LockGuard {
    /// A guard for one of `holder`'s counts on `key` (the table already counted it, with
    /// `claim` if it did so without the shard lock).
    pub(crate) fn new(inner: Arc<Inner>, key: Key, holder: Holder, claim: Option<Claim>) -> Self {
        inner.observer.guard_created();
        LockGuard {
            inner,
            key,
            holder,
            claim,
            since: Since::now(),
            held: true,
        }
    }

    /// The lock name.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use tierlock_core::{LockManager, MemoryProvider};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), tierlock_core::LockError> {
    /// # let locks = LockManager::new(MemoryProvider::new());
    /// let guard = locks.lock("order:7", Duration::from_secs(1)).await?;
    /// assert_eq!(guard.name(), "order:7");
    /// # Ok(())
    /// # }
    /// ```
    pub fn name(&self) -> &str {
        self.key.name()
    }

    /// The owner this guard counts for.
    pub fn owner(&self) -> Owner {
        self.holder.owner
    }

    /// Releases this guard now and, if it was the owner's last one and no local waiter takes
    /// over, the external lock too, waiting for the provider to confirm.
    ///
    /// # Errors
    ///
    /// [`LockError::Lost`] if the external lock turned out to be lost while it was held (the
    /// critical section may not have been exclusive); [`LockError::Provider`] if the provider
    /// failed to release (the lock is freed anyway when its handle is dropped).
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use tierlock_core::{LockManager, MemoryProvider};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), tierlock_core::LockError> {
    /// # let locks = LockManager::new(MemoryProvider::new());
    /// let guard = locks.lock("order:7", Duration::from_secs(1)).await?;
    /// guard.release().await?;
    /// assert!(locks.try_lock("order:7").await?.is_some());
    /// # Ok(())
    /// # }
    /// ```
    pub async fn release(mut self) -> Result<(), LockError> {
        self.held = false;
        let release = self
            .inner
            .release(&self.key, &self.holder, self.claim.as_ref(), self.since);
        let name = self.key.name();
        let lost = || LockError::Lost {
            name: name.to_string(),
        };
        let Some(external) = release.external else {
            return if release.lost { Err(lost()) } else { Ok(()) };
        };
        // Checked after the release too: a provider may only find out while releasing.
        let signal = external.lost_signal();
        let result = external.release().await;
        if release.lost || signal.is_some_and(|s| s.is_lost()) {
            if !release.lost {
                // Found by the provider only now, after the boundary counted the release.
                self.inner.observer.lost(name);
            }
            return Err(lost());
        }
        result.map_err(|source| LockError::Provider {
            provider: self.inner.provider.kind(),
            name: name.to_string(),
            source,
        })
    }

    /// Whether the provider reported the external lock lost while this guard's owner holds
    /// it. Always false for providers that cannot tell.
    pub fn is_lost(&self) -> bool {
        self.lost_signal().is_some_and(|s| s.is_lost())
    }

    /// Resolves if the provider reports the external lock lost (connection broken, lease
    /// expired) while it is held. Never resolves for providers that cannot tell, so it is meant
    /// for `select!` against the critical section:
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use tierlock_core::{LockManager, MemoryProvider};
    /// # async fn migrate() {}
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), tierlock_core::LockError> {
    /// # let locks = LockManager::new(MemoryProvider::new());
    /// let guard = locks.lock("tenant:42:migrate", Duration::from_secs(60)).await?;
    /// tokio::select! {
    ///     _ = migrate() => {}
    ///     _ = guard.lost() => { /* stop: another process may own the lock now */ }
    /// }
    /// # Ok(())
    /// # }
    /// ```
    pub async fn lost(&self) {
        match self.lost_signal() {
            Some(signal) => signal.wait().await,
            None => std::future::pending().await,
        }
    }

    /// The fencing token of the external lock, if the provider makes one: it strictly increases
    /// each time the name is acquired externally, so a storage system can reject writes from a
    /// holder that has since lost the lock.
    pub fn fencing_token(&self) -> Option<u64> {
        self.inner
            .table
            .with_external(&self.key, |external| external.fencing_token())
            .flatten()
    }

    fn lost_signal(&self) -> Option<LostSignal> {
        self.inner
            .table
            .with_external(&self.key, |external| external.lost_signal())
            .flatten()
    }
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        if self.held {
            if let Some(external) = self
                .inner
                .release(&self.key, &self.holder, self.claim.as_ref(), self.since)
                .external
            {
                dispose_external(external);
            }
        }
    }
}

impl fmt::Debug for LockGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LockGuard")
            .field("name", &self.name())
            .field("owner", &self.holder.owner)
            .finish()
    }
}
