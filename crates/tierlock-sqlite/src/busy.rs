//! SQLite's busy handler, bounded per operation by a deadline and a cancel flag.
//!
//! SQLite calls the busy handler when another connection holds a lock it needs (in WAL mode:
//! another writer's transaction). `PRAGMA busy_timeout` would give every operation the same
//! fixed wait; here each operation sets its own limit in a thread-local [`Scope`] on the thread
//! that runs it: the provider's busy timeout, shortened to the earliest moment a held lease of
//! this provider must be judged lost (so a long wait never delays a lost signal), and ended at
//! once when the future that asked for the operation is dropped.

use std::cell::RefCell;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use rusqlite::Connection;

struct Context {
    deadline: Instant,
    cancel: Option<Arc<AtomicBool>>,
}

thread_local! {
    static CONTEXT: RefCell<Option<Context>> = const { RefCell::new(None) };
}

/// The limits of the busy waits of one operation on this thread, until dropped. Outside any
/// scope the handler does not wait at all.
#[must_use]
pub(crate) struct Scope {
    started: Instant,
}

impl Scope {
    /// Busy waits until `deadline`, or until `cancel` is set.
    pub(crate) fn new(deadline: Instant, cancel: Option<Arc<AtomicBool>>) -> Scope {
        CONTEXT.with(|c| *c.borrow_mut() = Some(Context { deadline, cancel }));
        Scope {
            started: Instant::now(),
        }
    }

    /// Since the scope began (for `SqliteError::Busy { waited }`).
    pub(crate) fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }
}

impl Drop for Scope {
    fn drop(&mut self) {
        CONTEXT.with(|c| *c.borrow_mut() = None);
    }
}

/// Installs [`handler`] on `conn`.
pub(crate) fn install(conn: &Connection) -> rusqlite::Result<()> {
    conn.busy_handler(Some(handler))
}

/// Sleeps a little and says "try again", until the scope's deadline or cancellation: 20 µs,
/// doubling up to 1 ms (a tierlock transaction holds the write lock for tens of microseconds).
fn handler(count: i32) -> bool {
    CONTEXT.with(|c| {
        let context = c.borrow();
        let Some(context) = context.as_ref() else {
            return false;
        };
        if context
            .cancel
            .as_ref()
            .is_some_and(|cancel| cancel.load(Ordering::Acquire))
        {
            return false;
        }
        let left = context.deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return false;
        }
        let shift = u32::try_from(count.clamp(0, 6)).unwrap_or(6);
        let pause = Duration::from_micros(20 << shift).min(Duration::from_millis(1));
        std::thread::sleep(pause.min(left));
        true
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_scope_no_wait_and_the_scope_bounds_the_wait() {
        assert!(!handler(0), "outside a scope");
        let scope = Scope::new(Instant::now() + Duration::from_millis(5), None);
        let start = Instant::now();
        let mut count = 0;
        while handler(count) {
            count += 1;
        }
        let waited = start.elapsed();
        assert!(waited >= Duration::from_millis(5), "{waited:?}");
        assert!(waited < Duration::from_secs(1), "{waited:?}");
        drop(scope);
        assert!(!handler(0), "the scope is over");
        let cancel = Arc::new(AtomicBool::new(true));
        let _scope = Scope::new(Instant::now() + Duration::from_secs(60), Some(cancel));
        assert!(!handler(0), "cancelled");
    }
}
