//! A task's place-holder while it waits for a name: its [`Grant`] state, and the wakers of
//! granted waiters.
//!
//! A [`Waiter`] is a node that lives in the waiting future itself (the manager's acquisition
//! future, or a pinned local of an `async` wait), pinned there; the name's queue keeps a
//! pointer to it ([`super::queue`]), as tokio's semaphore keeps its waiters. So a wait
//! allocates nothing and shares no reference count: the `Arc<Waiter>` it replaced cost three
//! atomic read-modify-writes per hand-off, one of them under the shard lock (figures in
//! `docs/benchmarks.md`, "Hand-offs: the waiter in the future").
//!
//! The state goes one way per wait: `Idle` → `Waiting` when the node is queued, then
//! `Granted`, `Escalate` (both written by the releasing or abandoning side) or back to `Idle`
//! (withdrawn by its own side), every write with the entry's shard lock held. The waiting side
//! reads it without the lock. The waiting task's waker is not here but in the node's place in
//! the queue, under the same shard lock: the grant takes it in the critical section that
//! writes the state, and a task that must register another waker does it under that lock too,
//! finding its place gone if it was granted meanwhile. So no wake-up is lost, and a hand-off
//! locks nothing but the shard.
//!
//! # Why the queue's pointers are valid
//!
//! A node is in a queue exactly while its state is `Waiting`: it is pushed and set `Waiting`
//! in one critical section ([`Table::enter_as`](super::Table::enter_as)), and it leaves in the
//! critical section that sets another state (a grant, or the withdrawal of its
//! [`Queued`](super::Queued) ticket). A node is `!Unpin` and only ever queued through a
//! `Pin<&Waiter>`, so its memory stays valid until its `Drop` runs (the `Pin` drop guarantee),
//! and that `Drop` aborts the process if the node is still `Waiting` (only a leaked ticket can
//! make it so: the ticket borrows the node, and withdraws when dropped). Every pointer in a
//! queue therefore points to a live node. The granting side writes the state last and touches
//! the node no more: from that store on, the waiting side may free it.

use std::marker::PhantomPinned;
use std::pin::Pin;
use std::ptr::NonNull;
use std::task::Waker;

use crate::sync::{AtomicU8, Ordering};

/// Where a waiter stands.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Grant {
    /// In the queue.
    Waiting = 0,
    /// Out of the queue and the holder: the lock is complete (external lock included).
    Granted = 1,
    /// Out of the queue and the holder, but must take the external lock first.
    Escalate = 2,
    /// Not queued: not yet, or withdrawn.
    Idle = 3,
}

impl Grant {
    fn from_u8(value: u8) -> Grant {
        match value {
            0 => Grant::Waiting,
            1 => Grant::Granted,
            2 => Grant::Escalate,
            3 => Grant::Idle,
            _ => {
                debug_assert!(false, "a waiter's state is {value}, not a Grant");
                Grant::Idle
            }
        }
    }
}

/// The node of a task waiting for a name (see the module docs). Made `Idle`; queued at most
/// once.
#[derive(Debug)]
pub(crate) struct Waiter {
    state: AtomicU8,
    /// The queue points to the node: it must not move once queued.
    _pinned: PhantomPinned,
}

impl Waiter {
    /// A node not queued yet.
    pub(crate) fn new() -> Self {
        Waiter {
            state: AtomicU8::new(Grant::Idle as u8),
            _pinned: PhantomPinned,
        }
    }

    /// The waiter's state now.
    pub(crate) fn grant_state(&self) -> Grant {
        Grant::from_u8(self.state.load(Ordering::Acquire))
    }

    /// Sets the state. Called with the entry's shard lock held (see the module docs); a grant
    /// must be the granting side's last touch of the node.
    pub(super) fn set(&self, grant: Grant) {
        self.state.store(grant as u8, Ordering::Release);
    }
}

impl Drop for Waiter {
    #[inline]
    fn drop(&mut self) {
        // A plain read: `&mut self` excludes every other access, but a queue's (if the node is
        // still `Waiting`, which this checks; loom reports a concurrent access).
        #[cfg(not(loom))]
        let state = *self.state.get_mut();
        #[cfg(loom)]
        let state = self.state.with_mut(|state| *state);
        if Grant::from_u8(state) == Grant::Waiting {
            // Still in a queue, which would keep a dangling pointer (only a leaked `Queued`
            // ticket can do this, or a broken invariant of the table, such as a withdrawal
            // that found no entry; see the module docs). Not a panic: unwinding could not make
            // the pointer valid again.
            std::process::abort();
        }
    }
}

/// A queue's pointer to a queued [`Waiter`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Node(NonNull<Waiter>);

// SAFETY: a `Node` is only dereferenced to reach the waiter's atomic state (which is `Sync`),
// and only while the waiter is queued, which keeps it alive (module docs). Sending the pointer
// to, or sharing it with, another thread (the one that releases the name) is what it is for.
#[allow(unsafe_code)]
unsafe impl Send for Node {}
// SAFETY: as for `Send`: `&Node` gives nothing but the pointer's value.
#[allow(unsafe_code)]
unsafe impl Sync for Node {}

impl Node {
    pub(super) fn new(waiter: Pin<&Waiter>) -> Self {
        Node(NonNull::from(waiter.get_ref()))
    }

    /// Ends the wait of a node taken out of its queue (a grant): writes its state, its last
    /// access from this side. The caller holds the shard lock under which the node was queued
    /// and has just taken it out of the queue.
    pub(super) fn grant(self, grant: Grant, waker: Option<Waker>, wakeups: &mut Wakeups) {
        debug_assert_ne!(grant, Grant::Waiting);
        // SAFETY: the node was in the queue until the caller took it out under the shard lock,
        // which it still holds: its state is still `Waiting` (only a write under this lock
        // changes it), so it is alive (module docs). Only the node's atomic is borrowed,
        // reached through the raw pointer without a reference to the whole node, for the one
        // store that ends its wait, as `Arc`'s `drop` reaches its count: once the store is
        // visible the waiting side may free the node, and no reference to it may be live then.
        #[allow(unsafe_code)]
        let state = unsafe { &*std::ptr::addr_of!((*self.0.as_ptr()).state) };
        debug_assert_eq!(
            Grant::from_u8(state.load(Ordering::Relaxed)),
            Grant::Waiting,
            "granted twice"
        );
        state.store(grant as u8, Ordering::Release);
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
