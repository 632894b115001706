//! A task queued for a name: its [`Grant`] state, and the wakers of granted waiters.
//!
//! The state goes one way: `Waiting` → `Granted` or `Waiting` → `Escalate`, written once by the
//! releasing (or abandoning) side with the entry's shard locked. The waiting side reads it
//! without the lock. The waiting task's waker is not here but in the waiter's place in the
//! queue ([`super::queue`]), under the same shard lock: the grant takes it in the critical
//! section that writes the state, and a task that must register another waker does it under
//! that lock too, finding its place gone if it was granted meanwhile. So no wake-up is lost,
//! and a hand-off locks nothing but the shard.

use std::task::Waker;

use crate::sync::{Arc, AtomicU8, Ordering};
use crate::table::{Holder, queue};

/// Where a queued waiter stands.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Grant {
    /// In the queue.
    Waiting = 0,
    /// Out of the queue and the holder: the lock is complete (external lock included).
    Granted = 1,
    /// Out of the queue and the holder, but must take the external lock first.
    Escalate = 2,
}

impl Grant {
    fn from_u8(value: u8) -> Grant {
        match value {
            0 => Grant::Waiting,
            1 => Grant::Granted,
            2 => Grant::Escalate,
            _ => {
                debug_assert!(false, "a waiter's state is {value}, not a Grant");
                Grant::Waiting
            }
        }
    }
}

/// A task queued for a name. Shared by the entry's queue and the waiting future.
#[derive(Debug)]
pub(crate) struct Waiter {
    pub(crate) holder: Holder,
    /// The holder's bit in the queue's set of holders ([`super::queue`]).
    pub(super) bit: u64,
    state: AtomicU8,
}

#[cfg(not(loom))]
thread_local! {
    /// A spent waiter of this thread, kept for its next wait: a hand-off then allocates and
    /// frees nothing (measured with callgrind: `malloc`, `free` and `Arc::drop_slow` of the
    /// waiter were about 165 instructions per hand-off; the spare costs about 80).
    static SPARE: std::cell::Cell<Option<Arc<Waiter>>> = const { std::cell::Cell::new(None) };
}

impl Waiter {
    /// A waiter of `holder`, in state `Waiting`: this thread's spare if it has one.
    pub(crate) fn new(holder: Holder) -> Arc<Self> {
        #[cfg(not(loom))]
        if let Some(mut spare) = SPARE.try_with(std::cell::Cell::take).ok().flatten() {
            if let Some(waiter) = Arc::get_mut(&mut spare) {
                waiter.holder = holder;
                waiter.bit = queue::bit(&holder);
                *waiter.state.get_mut() = Grant::Waiting as u8;
                return spare;
            }
        }
        Arc::new(Waiter {
            holder,
            bit: queue::bit(&holder),
            state: AtomicU8::new(Grant::Waiting as u8),
        })
    }

    /// Keeps a spent waiter as this thread's spare, if nobody else refers to it. (A load, not
    /// `Arc::get_mut`'s compare-and-swap: no `Weak` of a waiter is ever made, so one strong
    /// count is ours alone; `new` takes it back with `get_mut`, which synchronizes.)
    pub(crate) fn recycle(waiter: Arc<Self>) {
        #[cfg(not(loom))]
        if Arc::strong_count(&waiter) == 1 {
            let _ = SPARE.try_with(|spare| spare.set(Some(waiter)));
        }
        #[cfg(loom)]
        drop(waiter);
    }

    /// The waiter's state now.
    pub(crate) fn grant_state(&self) -> Grant {
        Grant::from_u8(self.state.load(Ordering::Acquire))
    }

    /// Gives the waiter its turn. Called with the entry locked, once, after the waiter left the
    /// queue with `waker`, which is collected in `wakeups`, to be woken once the lock is
    /// released.
    pub(crate) fn grant(&self, grant: Grant, waker: Option<Waker>, wakeups: &mut Wakeups) {
        debug_assert_ne!(grant, Grant::Waiting);
        debug_assert_eq!(self.grant_state(), Grant::Waiting, "granted twice");
        self.state.store(grant as u8, Ordering::Release);
        if let Some(waker) = waker {
            wakeups.push(waker);
        }
    }
}

/// Wakers collected under an entry's lock, woken after it is released. The first is stored
/// inline: a hand-off wakes exactly one waiter and should not allocate.
#[derive(Default)]
pub(crate) struct Wakeups {
    first: Option<Waker>,
    rest: Vec<Waker>,
}

impl Wakeups {
    fn push(&mut self, waker: Waker) {
        if self.first.is_none() {
            self.first = Some(waker);
        } else {
            self.rest.push(waker);
        }
    }

    pub(crate) fn wake(self) {
        if let Some(waker) = self.first {
            waker.wake();
        }
        if !self.rest.is_empty() {
            for waker in self.rest {
                waker.wake();
            }
        }
    }
}
