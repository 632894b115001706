//! A task queued for a name: its [`Grant`] state, its waker, and the future that waits for the
//! grant.
//!
//! The state goes one way: `Waiting` → `Granted` or `Waiting` → `Escalate`, written once by the
//! releasing (or abandoning) side with the entry's shard locked. The waiting side reads it
//! without the lock. The waker slot is the only other shared state; the protocol that prevents
//! a lost wake-up is written at [`WaitGranted::poll`].

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

use crate::sync::{Arc, AtomicU8, Mutex, Ordering};
use crate::table::Holder;

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
    state: AtomicU8,
    waker: Mutex<Option<Waker>>,
}

impl Waiter {
    pub(crate) fn new(holder: Holder) -> Arc<Self> {
        Arc::new(Waiter {
            holder,
            state: AtomicU8::new(Grant::Waiting as u8),
            waker: Mutex::new(None),
        })
    }

    /// The waiter's state now.
    pub(crate) fn grant_state(&self) -> Grant {
        Grant::from_u8(self.state.load(Ordering::Acquire))
    }

    /// Gives the waiter its turn. Called with the entry locked, once, after the waiter left the
    /// queue; its waker is collected in `wakeups`, to be woken once the lock is released.
    pub(crate) fn grant(&self, grant: Grant, wakeups: &mut Wakeups) {
        debug_assert_ne!(grant, Grant::Waiting);
        debug_assert_eq!(self.grant_state(), Grant::Waiting, "granted twice");
        self.state.store(grant as u8, Ordering::Release);
        if let Some(waker) = self.waker.lock().take() {
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
        for waker in self.rest {
            waker.wake();
        }
    }
}

/// Resolves to the waiter's grant once it is no longer [`Grant::Waiting`].
pub(crate) struct WaitGranted<'a>(pub(crate) &'a Waiter);

impl Future for WaitGranted<'_> {
    type Output = Grant;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Grant> {
        let waiter = self.0;
        let grant = waiter.grant_state();
        if grant != Grant::Waiting {
            return Poll::Ready(grant);
        }
        {
            let mut slot = waiter.waker.lock();
            match &*slot {
                Some(waker) if waker.will_wake(cx.waker()) => {}
                _ => *slot = Some(cx.waker().clone()),
            }
        }
        // No lost wake-up: `grant` stores the state *before* it takes the waker (both under the
        // waker's mutex or ordered by it), and we store the waker *before* we read the state
        // again. So either the granter finds our waker, or we see its state here.
        match waiter.grant_state() {
            Grant::Waiting => Poll::Pending,
            grant => Poll::Ready(grant),
        }
    }
}
