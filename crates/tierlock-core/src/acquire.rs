//! [`Acquire`]: the future of one acquisition (`lock`, `try_lock` and their blocking forms),
//! written by hand.
//!
//! Its first poll answers the fast paths (a re-entry, a free name, a busy one) and otherwise
//! queues the task with its waker, in one critical section of the name's shard. Later polls
//! look at the waiter's grant (one atomic load) until the turn comes, then hand out the guard;
//! a turn that must take the external lock continues in the manager's `escalate`.
//!
//! Why not an `async fn`: as nested `async fn`s (`acquire`, `wait`, `Queued::wait`), the ticket
//! and the holder were moved from one future's state into the next at every layer
//! (store-forwarding stalls: 40% of the old `wait`'s samples in `perf annotate`), and the
//! waker could only be registered by a later poll, coming back under the lock. A hand-off is
//! the hot path of a contended name (figures in `docs/benchmarks.md`, "Hand-offs: one
//! hand-written future").
//!
//! # Cancel safety
//!
//! Dropping the future drops what it holds: a queued ticket withdraws (passing on a turn that
//! came meanwhile), an escalation in progress abandons the turn. Nothing is left behind.
//!
//! # Pinning
//!
//! The future holds the node its task waits in ([`Waiter`]), and the name's queue points to it
//! while it waits: the future is `!Unpin`, and the node is the one field that is structurally
//! pinned (never moved, replaced or dropped before the ticket that queued it; see `poll`).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use crate::error::LockError;
use crate::guard::LockGuard;
use crate::manager::LockManager;
use crate::name::validate;
#[cfg(any(feature = "tracing", feature = "metrics"))]
use crate::observe::Acquisition;
use crate::owner::Owner;
use crate::table::{Enter, Queued, Turn, Waiter};

/// Taking the external lock, boxed: it waits for I/O, and an allocation is small beside that
/// (inline, the provider's futures would be part of every acquisition's future, fast paths
/// included).
type Escalating<'a> = Pin<Box<dyn Future<Output = Result<LockGuard, LockError>> + Send + 'a>>;

/// The future of one acquisition of `name` by the owner `owner` returns (see the module docs).
#[must_use = "futures do nothing unless polled"]
pub(crate) struct Acquire<'a, F> {
    manager: &'a LockManager,
    name: &'a str,
    timeout: Duration,
    /// Called at the first poll (see [`LockManager::acquire`]); `None` after it.
    owner: Option<F>,
    state: State<'a>,
    /// The observer's record of this acquisition, if it is watched (the `metrics` feature, or
    /// `tracing` with a subscriber that wants its span).
    #[cfg(any(feature = "tracing", feature = "metrics"))]
    watch: Option<Acquisition<'a>>,
    /// The node the task waits in if it queues, pinned with the future: the queue and the
    /// `Queued` ticket in `state` point to it. Declared after `state`, so dropped after the
    /// ticket (which takes it out of the queue).
    waiter: Waiter,
}

/// What the observer of a watched acquisition is told.
#[derive(Clone, Copy)]
enum Event {
    Reentered,
    Waits,
}

enum State<'a> {
    /// Not polled yet, or finished.
    Idle,
    /// In the name's queue.
    Queued {
        ticket: Queued<'a>,
        /// When the wait began; `None` without a timeout (then the clock is not read).
        start: Option<Instant>,
        deadline: Option<Instant>,
        /// The deadline's timer, made at the first poll that finds the turn not come.
        timer: Option<Pin<Box<tokio::time::Sleep>>>,
        /// The waker of this very poll is registered with the ticket: true only within the poll
        /// that queued it (a later poll may come with another waker).
        registered: bool,
    },
    /// Taking the external lock.
    Escalating(Escalating<'a>),
}

impl<'a, F: FnOnce() -> Owner> Acquire<'a, F> {
    pub(crate) fn new(
        manager: &'a LockManager,
        name: &'a str,
        owner: F,
        timeout: Duration,
    ) -> Self {
        Acquire {
            manager,
            name,
            timeout,
            owner: Some(owner),
            state: State::Idle,
            #[cfg(any(feature = "tracing", feature = "metrics"))]
            watch: None,
            waiter: Waiter::new(),
        }
    }

    /// The first poll: the fast paths, or the queue. `None` if the acquisition is to be polled
    /// in its new state (queued with a deadline, or escalating) at once.
    #[inline(always)]
    fn start(
        &mut self,
        owner: F,
        cx: &mut Context<'_>,
    ) -> Option<Poll<Result<LockGuard, LockError>>> {
        let (manager, name, timeout) = (self.manager, self.name, self.timeout);
        let inner = &manager.inner;
        #[cfg(any(feature = "tracing", feature = "metrics"))]
        if inner.observer.watching() {
            self.watch = Some(inner.observer.start(name));
        }
        let holder = inner.holder(owner());
        if let Some(claim) = inner.table.reenter(name, holder) {
            self.watch(Event::Reentered);
            return Some(self.done(Ok(manager.reentered(claim, holder))));
        }
        if let Err(invalid) = validate(name) {
            return Some(self.done(Err(invalid)));
        }
        let waiter = if timeout.is_zero() {
            None
        } else {
            // SAFETY: `start` is only called by `poll`, on a pinned future, which is `!Unpin`
            // (the node's `PhantomPinned`): the node stays where it is until the future is
            // dropped, and its memory is not reused before its `Drop` runs. The lifetime `'a`
            // outlives the future, but the reference given out with it only goes into the
            // `Queued` ticket that `enter_as` returns, which is kept in `self.state` (dropped
            // before the node, the later field) or dropped in the poll that takes it out.
            // Nothing else of what `enter_as` returns refers to the node.
            #[allow(unsafe_code)]
            Some(unsafe { Pin::new_unchecked(&*std::ptr::from_ref(&self.waiter)) })
        };
        match (inner.table).enter_as(name, holder.tag, holder.owner, waiter, Some(cx.waker())) {
            Enter::Acquired(key) => Some(self.done(Ok(manager.guard(key, holder)))),
            Enter::Reentered(key) => {
                self.watch(Event::Reentered);
                Some(self.done(Ok(manager.guard(key, holder))))
            }
            Enter::Busy(key) => Some(self.done(Err(inner.timeout(&key, Duration::ZERO)))),
            Enter::Escalate(escalation) => {
                self.watch(Event::Waits);
                let start = Instant::now();
                let deadline = start.checked_add(timeout);
                let escalate = manager.escalate(escalation, holder, start, deadline);
                self.begin(State::Escalating(Box::pin(escalate)));
                None
            }
            Enter::Queued(ticket) => {
                self.watch(Event::Waits);
                // Without a timeout there is no deadline, and the clock is not read: a local
                // hand-off is the hot path of a contended name.
                let start = (timeout != Duration::MAX).then(Instant::now);
                let deadline = start.and_then(|start| start.checked_add(timeout));
                self.begin(State::Queued {
                    ticket,
                    start,
                    deadline,
                    timer: None,
                    // Polled again in this poll (with a deadline), or not before a wake-up.
                    registered: deadline.is_some(),
                });
                match deadline {
                    // The waker is registered: the grant will wake the task.
                    None => Some(Poll::Pending),
                    // The timer must be registered too.
                    Some(_) => None,
                }
            }
        }
    }

    /// Leaves `Idle` (the first poll) for `state`. (The `Idle` replaced has nothing to drop; an
    /// assignment would call the drop of the whole state enum all the same.)
    #[inline(always)]
    fn begin(&mut self, state: State<'a>) {
        debug_assert!(matches!(self.state, State::Idle));
        std::mem::forget(std::mem::replace(&mut self.state, state));
    }

    /// A poll in the queue: the turn, the deadline, or not yet.
    fn poll_queued(&mut self, cx: &mut Context<'_>) -> Poll<Result<LockGuard, LockError>> {
        let State::Queued {
            ticket,
            start,
            deadline,
            timer,
            registered,
        } = &mut self.state
        else {
            return Poll::Pending;
        };
        let turn = match ticket.poll_turn(cx, std::mem::take(registered)) {
            Poll::Ready(turn) => turn,
            Poll::Pending => {
                let Some(deadline) = *deadline else {
                    return Poll::Pending;
                };
                let timer = timer
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline.into())));
                if timer.as_mut().poll(cx).is_pending() {
                    return Poll::Pending;
                }
                ticket.time_out()
            }
        };
        let (holder, start, deadline) = (ticket.holder(), *start, *deadline);
        let manager = self.manager;
        // The spent ticket and the timer go, dropped as what they are (assigning `Idle` would
        // call the drop of the whole state enum: measured, a twentieth of a hand-off).
        if let State::Queued { ticket, timer, .. } = std::mem::replace(&mut self.state, State::Idle)
        {
            if timer.is_some() {
                drop(timer);
            }
            drop(ticket);
        }
        match turn {
            Turn::Granted(key) => self.done(Ok(manager.guard(key, holder))),
            Turn::Escalate(escalation) => {
                let start = start.unwrap_or_else(Instant::now);
                let escalate = manager.escalate(escalation, holder, start, deadline);
                self.state = State::Escalating(Box::pin(escalate));
                self.poll_escalating(cx)
            }
            Turn::TimedOut(key) => {
                let waited = start.map_or(Duration::ZERO, |start| start.elapsed());
                self.done(Err(manager.inner.timeout(&key, waited)))
            }
        }
    }

    fn poll_escalating(&mut self, cx: &mut Context<'_>) -> Poll<Result<LockGuard, LockError>> {
        let State::Escalating(escalating) = &mut self.state else {
            return Poll::Pending;
        };
        let result = std::task::ready!(escalating.as_mut().poll(cx));
        self.state = State::Idle;
        self.done(result)
    }

    /// The acquisition ends with `result`.
    #[inline(always)]
    fn done(&mut self, result: Result<LockGuard, LockError>) -> Poll<Result<LockGuard, LockError>> {
        #[cfg(any(feature = "tracing", feature = "metrics"))]
        if let Some(watch) = self.watch.take() {
            watch.finish(&result);
        }
        Poll::Ready(result)
    }

    /// Tells the observer, if this acquisition is watched.
    #[inline(always)]
    fn watch(&mut self, event: Event) {
        #[cfg(any(feature = "tracing", feature = "metrics"))]
        if let Some(watch) = &mut self.watch {
            match event {
                Event::Reentered => watch.reentered(),
                Event::Waits => watch.waits(),
            }
        }
        #[cfg(not(any(feature = "tracing", feature = "metrics")))]
        let _ = event;
    }
}

impl<F: FnOnce() -> Owner + Unpin> Future for Acquire<'_, F> {
    type Output = Result<LockGuard, LockError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        // SAFETY: the only structurally pinned field is `waiter` (module docs), which nothing
        // here moves or replaces; the other fields are used as if unpinned (the ticket holds a
        // shared reference to the node, not to its own place). The `&mut` does not assert
        // uniqueness over the node: the future is `!Unpin`, and the node's state is atomic.
        #[allow(unsafe_code)]
        let this = unsafe { self.get_unchecked_mut() };
        if let Some(owner) = this.owner.take() {
            if let Some(poll) = this.start(owner, cx) {
                return poll;
            }
        }
        // A watched acquisition waits in its span (as `tracing::Instrument` would run it).
        #[cfg(feature = "tracing")]
        let _span = this
            .watch
            .as_ref()
            .and_then(Acquisition::span)
            .map(tracing::Span::entered);
        match this.state {
            State::Queued { .. } => this.poll_queued(cx),
            State::Escalating(_) => this.poll_escalating(cx),
            State::Idle => panic!("an acquisition was polled after it finished"),
        }
    }
}
