//! The memory provider: locks shared by the managers of one process, with no external system.

use std::sync::Arc;
use std::time::Instant;

use crate::error::BoxError;
use crate::name::LockName;
use crate::owner::Owner;
use crate::provider::{BoxFuture, ExternalLock, Provider, WaitStrategy};
use crate::shards::Key;
use crate::table::{Enter, Holder, Mode, Table, Turn, Waiter};

/// A provider that excludes only within this process: for tests and single-process apps.
///
/// Cloning shares the provider; managers built on clones of one `MemoryProvider` exclude each
/// other, like managers of different processes on one lock directory would. Distinct
/// `MemoryProvider`s are independent scopes.
///
/// A manager built directly on a `MemoryProvider` uses the provider's table *as* its in-process
/// tier: every party is in this process, so the two tiers collapse into one and an acquisition
/// costs one map operation. Through the [`Provider`] trait (for instance when wrapped by a test
/// provider) it behaves as any external provider, with native FIFO waiting.
///
/// ```
/// use std::time::Duration;
/// use tierlock_core::{LockManager, MemoryProvider};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), tierlock_core::LockError> {
/// let shared = MemoryProvider::new();
/// let a = LockManager::new(shared.clone());
/// let b = LockManager::new(shared);
///
/// let held = a.lock("cache:rebuild", Duration::from_secs(1)).await?;
/// assert!(b.try_lock("cache:rebuild").await?.is_none());
/// drop(held);
/// assert!(b.try_lock("cache:rebuild").await?.is_some());
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct MemoryProvider {
    table: Arc<Table>,
}

impl MemoryProvider {
    /// A new, empty scope.
    pub fn new() -> Self {
        MemoryProvider {
            table: Arc::new(Table::new(Mode::Memory)),
        }
    }

    /// Number of names currently held or awaited through this provider.
    pub fn held_count(&self) -> usize {
        self.table.len()
    }

    pub(crate) fn table(&self) -> Arc<Table> {
        Arc::clone(&self.table)
    }
}

impl Default for MemoryProvider {
    fn default() -> Self {
        Self::new()
    }
}

impl Provider for MemoryProvider {
    fn kind(&self) -> &'static str {
        "memory"
    }

    fn wait_strategy(&self) -> WaitStrategy {
        WaitStrategy::Native
    }

    fn acquire<'a>(
        &'a self,
        name: &'a LockName,
        deadline: Option<Instant>,
    ) -> BoxFuture<'a, Result<Option<Box<dyn ExternalLock>>, BoxError>> {
        Box::pin(async move {
            let holder = Holder {
                tag: 0,
                owner: Owner::new_unique(),
            };
            let may_wait = deadline.is_none_or(|d| d > Instant::now());
            // The node this wait is queued in, pinned in this future (see `table::waiter`).
            let waiter = std::pin::pin!(Waiter::new());
            let waiter = may_wait.then_some(waiter.as_ref());
            let key = match self.table.enter(name.as_str(), holder, waiter) {
                Enter::Acquired(key) => Some(key),
                Enter::Queued(queued) => match queued.wait(deadline).await {
                    Turn::Granted(key) => Some(key),
                    Turn::TimedOut(_) => None,
                    Turn::Escalate(_) => {
                        debug_assert!(false, "the memory table escalated");
                        None
                    }
                },
                Enter::Busy(_) => None,
                // A fresh owner never re-enters and this table never escalates.
                Enter::Reentered(..) | Enter::Escalate(_) => {
                    debug_assert!(
                        false,
                        "a fresh owner re-entered, or the memory table escalated"
                    );
                    None
                }
            };
            Ok(key.map(|key| {
                Box::new(MemoryLock {
                    table: Arc::clone(&self.table),
                    key,
                    holder,
                }) as Box<dyn ExternalLock>
            }))
        })
    }
}

/// A name held through [`MemoryProvider`]'s trait interface.
struct MemoryLock {
    table: Arc<Table>,
    key: Key,
    holder: Holder,
}

impl Drop for MemoryLock {
    fn drop(&mut self) {
        // The memory table never escalates, so a release hands back no external lock.
        let _ = self.table.release_key(&self.key, &self.holder);
    }
}

impl ExternalLock for MemoryLock {
    fn release(self: Box<Self>) -> BoxFuture<'static, Result<(), BoxError>> {
        drop(self);
        Box::pin(std::future::ready(Ok(())))
    }

    fn drop_releases(&self) -> bool {
        true
    }

    fn is_requested(&self) -> bool {
        self.table.has_waiters(&self.key)
    }
}
