//! [`IdlePool`]: the idle connections of a provider whose locks live on connections.
//!
//! Database providers (PostgreSQL, SQL Server) hold each lock on a session of its own, so every
//! acquisition needs a connection, and opening one (TCP, TLS, login) costs far more than the
//! lock itself. An `IdlePool` keeps a few connections that hold nothing for the next
//! acquisition. It never opens connections: the provider takes one with [`IdlePool::take`] or
//! opens a new one, and gives it back with [`IdlePool::put`] when it is clean.
//!
//! # The rules a provider keeps
//!
//! The pool hands out what it was given, so these are the provider's to keep, and together
//! they make sure that no acquisition ever gets a connection that holds a lock or is in the
//! middle of a command:
//!
//! * **Own the connection while a command runs.** A command runs on a connection owned by the
//!   future that runs it (never a shared reference), so a future dropped mid-command drops the
//!   connection with it, which closes it. Such a connection never reaches `put`.
//! * **Put back only clean connections:** the last command completed and the session holds
//!   nothing (the unlock succeeded, the try-lock failed, the wait timed out and its session
//!   settings were reset). After any error or client-side timeout, drop the connection instead.
//! * **Retry a reused connection once.** A connection can close while idle just after the
//!   pool checked it. If the first command on a *reused* connection fails because the
//!   connection was closed, the command did not run: run it once more on a new connection.
//!
//! The pool's part: it skips connections that [`PooledConnection::is_closed`] reports closed,
//! lets go of those idle for longer than the idle timeout, keeps at most `max_idle` (the most
//! recently returned first, so the fewest stay warm), and closes what it lets go outside its
//! mutex.
//!
//! ```
//! use std::time::Duration;
//! use tierlock_core::pool::{IdlePool, PooledConnection};
//!
//! struct Conn {
//!     open: bool,
//! }
//!
//! impl PooledConnection for Conn {
//!     fn is_closed(&self) -> bool {
//!         !self.open
//!     }
//! }
//!
//! let pool = IdlePool::new(4, Some(Duration::from_secs(60)));
//! pool.put(Conn { open: true });
//! pool.put(Conn { open: false }); // closed: let go, not kept
//! assert_eq!(pool.len(), 1);
//! assert!(pool.take().is_some());
//! assert!(pool.take().is_none()); // empty: the provider opens a new connection
//! ```

use std::fmt;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

/// A connection an [`IdlePool`] can keep.
pub trait PooledConnection: Send + 'static {
    /// True once the connection is known to be closed (its socket task ended, the peer hung
    /// up). Called under the pool's mutex: it must be cheap and must not block.
    fn is_closed(&self) -> bool;

    /// Lets go of a clean connection the pool does not keep (the pool is full, or it was idle
    /// too long). The default drops it; a provider may close it politely instead.
    fn close(self)
    where
        Self: Sized,
    {
        drop(self);
    }
}

/// Idle, clean connections kept for reuse: bounded, newest first, closed ones and those idle
/// for too long let go. See the [module documentation](self) for the rules.
pub struct IdlePool<C> {
    idle: Mutex<Vec<Idle<C>>>,
    max_idle: usize,
    idle_timeout: Option<Duration>,
}

struct Idle<C> {
    conn: C,
    since: Instant,
}

/// Why the pool lets a connection go, and so how.
#[derive(Clone, Copy)]
enum Unfit {
    /// It closed: dropped.
    Closed,
    /// Clean, but idle too long or beyond `max_idle`: [`PooledConnection::close`]d.
    Surplus,
}

impl<C: PooledConnection> IdlePool<C> {
    /// A pool keeping at most `max_idle` connections (0 disables reuse), each for at most
    /// `idle_timeout` (`None`: until it closes).
    pub fn new(max_idle: usize, idle_timeout: Option<Duration>) -> Self {
        IdlePool {
            idle: Mutex::new(Vec::with_capacity(max_idle)),
            max_idle,
            idle_timeout,
        }
    }

    /// The most recently returned connection that is still open and was not idle for longer
    /// than the idle timeout; the others met on the way are let go.
    pub fn take(&self) -> Option<C> {
        let mut gone = Vec::new();
        let found = {
            let mut idle = self.idle.lock();
            loop {
                let entry = idle.pop()?;
                match self.unfit(&entry) {
                    None => break Some(entry.conn),
                    Some(why) => gone.push((entry.conn, why)),
                }
            }
        };
        let_go(gone);
        found
    }

    /// Returns a clean connection: no lock held, no command in flight. It is kept if it is
    /// open and there is room (after letting go of closed and expired ones), else let go.
    pub fn put(&self, conn: C) {
        if conn.is_closed() {
            return;
        }
        let mut gone = Vec::new();
        {
            let mut idle = self.idle.lock();
            let mut at = 0;
            while at < idle.len() {
                match self.unfit(&idle[at]) {
                    None => at += 1,
                    Some(why) => gone.push((idle.remove(at).conn, why)),
                }
            }
            if idle.len() < self.max_idle {
                idle.push(Idle {
                    conn,
                    since: Instant::now(),
                });
            } else {
                gone.push((conn, Unfit::Surplus));
            }
        }
        let_go(gone);
    }

    /// Number of idle connections kept right now.
    pub fn len(&self) -> usize {
        self.idle.lock().len()
    }

    /// Whether no connection is kept right now.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The most connections kept.
    pub fn max_idle(&self) -> usize {
        self.max_idle
    }

    /// How long a connection may stay idle before it is let go.
    pub fn idle_timeout(&self) -> Option<Duration> {
        self.idle_timeout
    }

    fn unfit(&self, entry: &Idle<C>) -> Option<Unfit> {
        if entry.conn.is_closed() {
            return Some(Unfit::Closed);
        }
        let expired = self
            .idle_timeout
            .is_some_and(|timeout| entry.since.elapsed() > timeout);
        expired.then_some(Unfit::Surplus)
    }
}

/// Closes what the pool let go of, outside its mutex.
fn let_go<C: PooledConnection>(gone: Vec<(C, Unfit)>) {
    for (conn, why) in gone {
        match why {
            Unfit::Closed => drop(conn),
            Unfit::Surplus => conn.close(),
        }
    }
}

impl<C> fmt::Debug for IdlePool<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IdlePool")
            .field("idle", &self.idle.lock().len())
            .field("max_idle", &self.max_idle)
            .field("idle_timeout", &self.idle_timeout)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    use super::*;

    /// A stand-in connection that records how it went.
    struct Fake {
        id: u32,
        open: Arc<AtomicBool>,
        log: Arc<Mutex<Vec<(u32, &'static str)>>>,
    }

    impl PooledConnection for Fake {
        fn is_closed(&self) -> bool {
            !self.open.load(Ordering::SeqCst)
        }

        fn close(self) {
            self.log.lock().push((self.id, "closed politely"));
        }
    }

    impl Drop for Fake {
        fn drop(&mut self) {
            self.log.lock().push((self.id, "dropped"));
        }
    }

    fn fakes() -> impl FnMut(u32) -> Fake {
        let log = Arc::new(Mutex::new(Vec::new()));
        move |id| Fake {
            id,
            open: Arc::new(AtomicBool::new(true)),
            log: Arc::clone(&log),
        }
    }

    fn ids(log: &Arc<Mutex<Vec<(u32, &'static str)>>>) -> Vec<u32> {
        let mut ids: Vec<u32> = log.lock().iter().map(|(id, _)| *id).collect();
        ids.sort_unstable();
        ids.dedup();
        ids
    }

    #[test]
    fn the_pool_is_bounded_and_newest_first() {
        let mut fake = fakes();
        let pool = IdlePool::new(2, Some(Duration::from_secs(60)));
        assert!(pool.take().is_none());
        let (one, two, three) = (fake(1), fake(2), fake(3));
        let log = Arc::clone(&one.log);
        for conn in [one, two, three] {
            pool.put(conn);
        }
        assert_eq!(pool.len(), 2);
        assert_eq!(
            *log.lock(),
            [(3, "closed politely"), (3, "dropped")],
            "the connection over the bound is closed, politely"
        );
        assert_eq!(pool.take().map(|f| f.id), Some(2));
        assert_eq!(pool.take().map(|f| f.id), Some(1));
        assert!(pool.take().is_none());
    }

    #[test]
    fn stale_connections_are_closed_not_reused() {
        let mut fake = fakes();
        let pool = IdlePool::new(4, Some(Duration::ZERO));
        let one = fake(1);
        let log = Arc::clone(&one.log);
        pool.put(one);
        pool.put(fake(2));
        std::thread::sleep(Duration::from_millis(5));
        assert!(pool.take().is_none());
        assert_eq!(pool.len(), 0);
        assert_eq!(ids(&log), [1, 2]);
        assert!(log.lock().contains(&(1, "closed politely")));

        let pool = IdlePool::new(0, None);
        pool.put(fake(3));
        assert_eq!(pool.len(), 0, "max 0 disables reuse");
    }

    #[test]
    fn closed_connections_are_skipped_and_dropped() {
        let mut fake = fakes();
        let pool = IdlePool::new(4, None);
        let (one, two) = (fake(1), fake(2));
        let (log, two_open) = (Arc::clone(&one.log), Arc::clone(&two.open));
        pool.put(one);
        pool.put(two);
        two_open.store(false, Ordering::SeqCst);
        // The newest one closed while idle: skipped, and the next one handed out.
        let taken = pool.take();
        assert_eq!(taken.as_ref().map(|f| f.id), Some(1));
        assert_eq!(*log.lock(), [(2, "dropped")]);
        // A closed connection is never kept.
        let three = fake(3);
        three.open.store(false, Ordering::SeqCst);
        pool.put(three);
        assert!(pool.is_empty());
    }

    #[test]
    fn put_makes_room_by_letting_unfit_ones_go() {
        let mut fake = fakes();
        let pool = IdlePool::new(1, None);
        let one = fake(1);
        let one_open = Arc::clone(&one.open);
        pool.put(one);
        one_open.store(false, Ordering::SeqCst);
        pool.put(fake(2));
        assert_eq!(pool.len(), 1);
        assert_eq!(pool.take().map(|f| f.id), Some(2));
    }
}
