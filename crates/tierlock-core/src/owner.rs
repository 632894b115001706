//! Who is "the same caller": the owner identity behind re-entrancy.
//!
//! A lock is held by an [`Owner`]. A nested acquisition by the owner that already holds the lock
//! re-enters it at once; any other owner waits. The ambient owner of running code is, in order:
//!
//! 1. the innermost [`scope`] (or [`Owner::run`]) around the current future;
//! 2. otherwise the current tokio task ([`tokio::task::try_id`]);
//! 3. otherwise the current thread (blocking code, the root future of `block_on`).
//!
//! So a spawned task is a *different* owner from its parent, and the branches of a `join!` in one
//! task are the *same* owner unless each is wrapped in [`scope`]. See `docs/semantics.md` in the
//! repository.

use std::cell::Cell;
use std::fmt;
use std::future::Future;
use std::num::NonZeroU64;
use std::sync::atomic::{AtomicU64, Ordering};

tokio::task_local! {
    static SCOPE: Owner;
}

/// The identity that holds a lock; the unit of re-entrancy.
///
/// Get the ambient owner with [`Owner::current`]; make code run as a given owner with
/// [`Owner::run`], or as a fresh owner with [`scope`]. Owners are small `Copy` values.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Owner(Repr);

#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
enum Repr {
    Scope(NonZeroU64),
    Task(tokio::task::Id),
    Thread(NonZeroU64),
}

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

fn next_id() -> NonZeroU64 {
    let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
    // 2^64 owners would take centuries at a billion per second; wrapping is not a concern,
    // but never hand out zero.
    NonZeroU64::new(id).unwrap_or(NonZeroU64::MIN)
}

thread_local! {
    static THREAD_OWNER: Cell<Option<NonZeroU64>> = const { Cell::new(None) };
}

impl Owner {
    /// The ambient owner of the code that calls it: the innermost [`scope`]/[`Owner::run`],
    /// else the current tokio task, else the current thread.
    ///
    /// ```
    /// use tierlock_core::Owner;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let here = Owner::current();
    /// assert_eq!(here, Owner::current());
    /// // A spawned task is another owner.
    /// let child = tokio::spawn(async { Owner::current() }).await.unwrap();
    /// assert_ne!(here, child);
    /// # }
    /// ```
    pub fn current() -> Owner {
        if let Ok(owner) = SCOPE.try_with(|owner| *owner) {
            return owner;
        }
        if let Some(task) = tokio::task::try_id() {
            return Owner(Repr::Task(task));
        }
        Owner::current_thread()
    }

    /// A new owner, distinct from every other.
    pub fn new_unique() -> Owner {
        Owner(Repr::Scope(next_id()))
    }

    fn current_thread() -> Owner {
        THREAD_OWNER.with(|cell| {
            let id = cell.get().unwrap_or_else(|| {
                let id = next_id();
                cell.set(Some(id));
                id
            });
            Owner(Repr::Thread(id))
        })
    }

    /// Runs `future` as this owner: locks it takes re-enter locks this owner holds.
    ///
    /// This is how a spawned task works on behalf of its parent on purpose. A task spawned
    /// while its parent holds a lock is otherwise a different owner and would wait for the
    /// parent, which deadlocks if the parent awaits the child.
    ///
    /// ```
    /// use std::time::Duration;
    /// use tierlock_core::{LockManager, MemoryProvider, Owner};
    ///
    /// # #[tokio::main]
    /// # async fn main() -> Result<(), tierlock_core::LockError> {
    /// let locks = LockManager::new(MemoryProvider::new());
    /// let _guard = locks.lock("report", Duration::from_secs(5)).await?;
    ///
    /// let owner = Owner::current();
    /// let child_locks = locks.clone();
    /// let child = tokio::spawn(owner.run(async move {
    ///     // Re-enters the parent's lock instead of waiting for it.
    ///     child_locks.lock("report", Duration::ZERO).await.map(|_| ())
    /// }));
    /// child.await.expect("child task panicked")?;
    /// # Ok(())
    /// # }
    /// ```
    pub fn run<F: Future>(self, future: F) -> impl Future<Output = F::Output> {
        SCOPE.scope(self, future)
    }
}

/// Runs `future` as a fresh owner: inside it, locks held by the surrounding code are not
/// re-entered but waited for, and locks it takes exclude the surrounding code.
///
/// Use it where sub-flows of one task must exclude each other, e.g. the branches of a `join!`,
/// which otherwise share the task's owner and would re-enter each other's locks.
///
/// ```
/// use std::time::Duration;
/// use tierlock_core::{LockManager, MemoryProvider, scope};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), tierlock_core::LockError> {
/// let locks = LockManager::new(MemoryProvider::new());
/// let (a, b) = tokio::join!(
///     scope(locks.with_lock("ledger", Duration::from_secs(5), async { 1 })),
///     scope(locks.with_lock("ledger", Duration::from_secs(5), async { 2 })),
/// );
/// assert_eq!(a? + b?, 3); // the two branches ran one after the other
/// # Ok(())
/// # }
/// ```
pub fn scope<F: Future>(future: F) -> impl Future<Output = F::Output> {
    SCOPE.scope(Owner::new_unique(), future)
}

impl fmt::Debug for Owner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Repr::Scope(id) => write!(f, "Owner::Scope({id})"),
            Repr::Task(id) => write!(f, "Owner::Task({id})"),
            Repr::Thread(id) => write!(f, "Owner::Thread({id})"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thread_owner_is_stable_per_thread() {
        let a = Owner::current();
        assert_eq!(a, Owner::current());
        let b = std::thread::spawn(Owner::current).join().unwrap();
        assert_ne!(a, b);
    }

    #[tokio::test]
    async fn scope_and_run_set_the_owner() {
        let task = Owner::current();
        let inner = scope(async { Owner::current() }).await;
        assert_ne!(task, inner);
        let again = task.run(async { Owner::current() }).await;
        assert_eq!(task, again);
        assert_eq!(task, Owner::current());
    }
}
