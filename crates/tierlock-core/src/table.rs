//! The in-process tier: one entry per name that is held or awaited, each with a holder, a
//! re-entrancy count, a FIFO queue of local waiters and (for a manager with an external tier)
//! the external lock this process holds for the name.
//!
//! All state of an entry lives inline in the concurrent map and is only touched under the map
//! shard's lock, for a few instructions and never across an `.await`. A waiter is told its turn
//! through [`Waiter::state`], written under that lock, and woken after the lock is dropped.
//!
//! Invariants (checked by the stress tests):
//! * an entry exists iff it has a holder; it is removed in the same critical section in which
//!   its holder goes and no waiter is left, so idle names cost nothing;
//! * `count > 0` means the holder's acquisition is complete (it holds the external lock if the
//!   table escalates); `count == 0` means the holder is still taking the external lock;
//! * an escalating table keeps `external` set while `count > 0`.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use smol_str::SmolStr;

use crate::owner::Owner;
use crate::provider::ExternalLock;
use crate::shards::{Map, Slot};

/// Who holds an entry: an owner, tagged with the manager it acquired through (so that two
/// managers sharing one table exclude each other even for the same task).
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash)]
pub(crate) struct Holder {
    pub(crate) tag: u64,
    pub(crate) owner: Owner,
}

const WAITING: u8 = 0;
const GRANTED: u8 = 1;
const ESCALATE: u8 = 2;

/// A task queued for a name.
#[derive(Debug)]
pub(crate) struct Waiter {
    holder: Holder,
    state: AtomicU8,
    waker: Mutex<Option<Waker>>,
}

impl Waiter {
    fn new(holder: Holder) -> Arc<Self> {
        Arc::new(Waiter {
            holder,
            state: AtomicU8::new(WAITING),
            waker: Mutex::new(None),
        })
    }

    /// Gives the waiter its turn. Called with the entry locked; the waker is woken later.
    fn grant(&self, state: u8, wakeups: &mut Wakeups) {
        self.state.store(state, Ordering::Release);
        if let Some(waker) = self.waker.lock().take() {
            wakeups.push(waker);
        }
    }
}

/// Wakers collected under an entry's lock, woken after it is released. The first is stored
/// inline: a hand-off wakes exactly one waiter and should not allocate.
#[derive(Default)]
struct Wakeups {
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

    fn wake(self) {
        if let Some(waker) = self.first {
            waker.wake();
        }
        for waker in self.rest {
            waker.wake();
        }
    }
}

struct Entry {
    holder: Holder,
    /// Live guards of the holder; 0 while the holder is still taking the external lock.
    count: u32,
    queue: VecDeque<Arc<Waiter>>,
    external: Option<Box<dyn ExternalLock>>,
    /// Set when the external lock was handed back to a requesting process: the next escalation
    /// waits until then, so a polling remote waiter gets its turn.
    yield_until: Option<Instant>,
}

impl Entry {
    fn new(holder: Holder, count: u32) -> Self {
        Entry {
            holder,
            count,
            queue: VecDeque::new(),
            external: None,
            yield_until: None,
        }
    }
}

/// The outcome of [`Table::enter`].
#[derive(Debug)]
pub(crate) enum Enter {
    /// The caller is the new holder and may use the lock.
    Acquired,
    /// The caller already held the lock; its count went up.
    Reentered,
    /// The caller is the new holder and must take the external lock, then call
    /// [`Table::escalated`] or [`Table::abandon`].
    Escalate,
    /// Held by another owner and the caller may not wait.
    Busy,
    /// Queued behind the holder: wait with [`Table::wait_turn`].
    Queued(Arc<Waiter>),
}

/// The outcome of waiting in the queue.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Turn {
    /// The lock was handed to the waiter, external lock included.
    Granted,
    /// The waiter is the holder and must take the external lock.
    Escalate,
    /// The deadline passed; the waiter is gone from the queue.
    TimedOut,
}

/// What a release did to the name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Other guards of the holder remain.
    Nested,
    /// Handed to the next local waiter, external lock kept.
    HandedOff,
    /// The external lock was released at this turn boundary because another process asked for
    /// it (or it was lost); the next local waiter takes it again.
    HandedBack,
    /// Nobody else wanted the name; the entry is gone.
    Removed,
    /// The caller did not hold the name (a bug; nothing was changed).
    NotHeld,
}

/// What [`Table::release`] leaves to the caller.
pub(crate) struct Release {
    pub(crate) outcome: Outcome,
    /// The external lock to release, if this turn boundary gave it up.
    pub(crate) external: Option<Box<dyn ExternalLock>>,
    /// True if the external lock was found lost at this boundary.
    pub(crate) lost: bool,
}

/// The per-name queues of one process (or of several managers sharing a memory provider).
pub(crate) struct Table {
    entries: Map<Entry>,
    /// Whether a new holder must take an external lock (false for the memory provider's table).
    escalates: bool,
    /// How long the local queue stays back after handing the external lock to another process.
    handback_pause: Duration,
}

impl std::fmt::Debug for Table {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Table")
            .field("entries", &self.entries.len())
            .field("escalates", &self.escalates)
            .finish()
    }
}

impl Table {
    pub(crate) fn new(escalates: bool, handback_pause: Duration) -> Self {
        Table {
            entries: Map::new(),
            escalates,
            handback_pause,
        }
    }

    /// Registers `holder`'s request for `name`: takes it, re-enters it, or queues behind the
    /// current holder (only if `may_wait`). Returns the key to use for every later call.
    pub(crate) fn enter(&self, name: &str, holder: Holder, may_wait: bool) -> (SmolStr, Enter) {
        let escalates = self.escalates;
        let (key, outcome) = self.entries.upsert(name, |slot| match slot {
            Slot::Vacant if escalates => (Some(Entry::new(holder, 0)), Enter::Escalate),
            Slot::Vacant => (Some(Entry::new(holder, 1)), Enter::Acquired),
            Slot::Occupied(entry) => {
                let outcome = if entry.holder == holder && entry.count > 0 {
                    entry.count += 1;
                    Enter::Reentered
                } else if may_wait {
                    let waiter = Waiter::new(holder);
                    entry.queue.push_back(Arc::clone(&waiter));
                    Enter::Queued(waiter)
                } else {
                    Enter::Busy
                };
                (None, outcome)
            }
        });
        (key, outcome)
    }

    /// Waits until `waiter` gets its turn or `deadline` passes. Cancel-safe: if the future is
    /// dropped, the waiter leaves the queue, and a turn it was given is passed on.
    pub(crate) async fn wait_turn(
        &self,
        key: &SmolStr,
        waiter: Arc<Waiter>,
        deadline: Option<Instant>,
    ) -> Turn {
        let mut withdraw = WithdrawOnDrop {
            table: self,
            key,
            waiter: &waiter,
            armed: true,
        };
        let state = match deadline {
            None => Some(WaitGranted(&waiter).await),
            Some(deadline) => tokio::time::timeout_at(deadline.into(), WaitGranted(&waiter))
                .await
                .ok(),
        };
        withdraw.armed = false;
        match state {
            Some(GRANTED) => Turn::Granted,
            Some(_) => Turn::Escalate,
            None => match self.withdraw(key, &waiter) {
                Turn::Escalate => {
                    // Our turn came as the deadline passed: too late to take the external lock.
                    self.abandon(key, waiter.holder);
                    Turn::TimedOut
                }
                turn => turn,
            },
        }
    }

    /// Takes `waiter` out of the queue if it is still waiting; otherwise reports the turn it
    /// was given (which the caller now owns).
    fn withdraw(&self, key: &SmolStr, waiter: &Arc<Waiter>) -> Turn {
        let Some(mut entry) = self.entries.get_mut(key.as_str()) else {
            debug_assert!(false, "a queued waiter's entry is gone");
            return Turn::TimedOut;
        };
        match waiter.state.load(Ordering::Acquire) {
            GRANTED => Turn::Granted,
            ESCALATE => Turn::Escalate,
            _ => {
                if let Some(at) = entry.queue.iter().position(|w| Arc::ptr_eq(w, waiter)) {
                    entry.queue.remove(at);
                }
                Turn::TimedOut
            }
        }
    }

    /// Drops one guard of `holder`. At the last one this is a turn boundary: the next local
    /// waiter gets the name (keeping the external lock unless another process asked for it),
    /// or the entry goes and the external lock is returned to the caller for release.
    pub(crate) fn release(&self, key: &SmolStr, holder: Holder) -> Release {
        let mut wakeups = Wakeups::default();
        let mut release = Release {
            outcome: Outcome::NotHeld,
            external: None,
            lost: false,
        };
        let removed = self.entries.remove_if_mut(key.as_str(), |entry| {
            if entry.holder != holder || entry.count == 0 {
                return false;
            }
            entry.count -= 1;
            if entry.count > 0 {
                release.outcome = Outcome::Nested;
                return false;
            }
            self.turn_boundary(entry, &mut release, &mut wakeups)
        });
        debug_assert!(
            release.outcome != Outcome::NotHeld,
            "released a name not held"
        );
        drop(removed);
        wakeups.wake();
        release
    }

    /// The holder of `entry` has just let go. Returns true if the entry must be removed.
    fn turn_boundary(
        &self,
        entry: &mut Entry,
        release: &mut Release,
        wakeups: &mut Wakeups,
    ) -> bool {
        if entry.queue.is_empty() {
            release.outcome = Outcome::Removed;
            release.external = entry.external.take();
            return true;
        }
        release.outcome = Outcome::HandedOff;
        if let Some(external) = &entry.external {
            let lost = external.lost_signal().is_some_and(|s| s.is_lost());
            if lost || external.is_requested() {
                release.outcome = Outcome::HandedBack;
                release.lost = lost;
                release.external = entry.external.take();
                if !lost && !self.handback_pause.is_zero() {
                    entry.yield_until = Some(Instant::now() + self.handback_pause);
                }
            }
        }
        self.grant_next(entry, wakeups);
        false
    }

    /// Makes the head of the queue the holder. The entry must have no holder left.
    fn grant_next(&self, entry: &mut Entry, wakeups: &mut Wakeups) {
        let Some(next) = entry.queue.pop_front() else {
            return;
        };
        entry.holder = next.holder;
        if entry.external.is_some() || !self.escalates {
            entry.count = 1;
            next.grant(GRANTED, wakeups);
            grant_reentries(entry, wakeups);
        } else {
            entry.count = 0;
            next.grant(ESCALATE, wakeups);
        }
    }

    /// The escalating holder took the external lock: the name is now fully held.
    /// Gives the lock back if the entry is not the caller's (which would be a bug).
    pub(crate) fn escalated(
        &self,
        key: &SmolStr,
        holder: Holder,
        external: Box<dyn ExternalLock>,
    ) -> Result<(), Box<dyn ExternalLock>> {
        let mut wakeups = Wakeups::default();
        {
            let Some(mut entry) = self.entries.get_mut(key.as_str()) else {
                return Err(external);
            };
            if entry.holder != holder || entry.count != 0 {
                return Err(external);
            }
            entry.external = Some(external);
            entry.count = 1;
            entry.yield_until = None;
            grant_reentries(&mut entry, &mut wakeups);
        }
        wakeups.wake();
        Ok(())
    }

    /// The escalating holder gives up (timeout, error or cancellation): the next waiter
    /// escalates in its place, or the entry goes.
    pub(crate) fn abandon(&self, key: &SmolStr, holder: Holder) {
        let mut wakeups = Wakeups::default();
        let removed = self.entries.remove_if_mut(key.as_str(), |entry| {
            if entry.holder != holder || entry.count != 0 {
                debug_assert!(false, "abandoned an escalation not in progress");
                return false;
            }
            if entry.queue.is_empty() {
                return true;
            }
            self.grant_next(entry, &mut wakeups);
            false
        });
        drop(removed);
        wakeups.wake();
    }

    /// When an escalation of `key` should start, if the external lock was just handed back.
    pub(crate) fn yield_until(&self, key: &SmolStr) -> Option<Instant> {
        self.entries
            .get_mut(key.as_str())
            .and_then(|e| e.yield_until)
    }

    /// Whether anyone is queued for `key`.
    pub(crate) fn has_waiters(&self, key: &SmolStr) -> bool {
        self.entries
            .get_mut(key.as_str())
            .is_some_and(|e| !e.queue.is_empty())
    }

    /// Runs `f` on the external lock held for `key`, if any.
    pub(crate) fn with_external<T>(
        &self,
        key: &SmolStr,
        f: impl FnOnce(&dyn ExternalLock) -> T,
    ) -> Option<T> {
        let entry = self.entries.get_mut(key.as_str())?;
        entry.external.as_deref().map(f)
    }

    /// Number of entries (names held or awaited).
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    /// (names held, tasks waiting), by a scan of all entries.
    pub(crate) fn census(&self) -> (usize, usize) {
        let mut held = 0;
        let mut waiting = 0;
        self.entries.for_each(|entry| {
            if entry.count > 0 {
                held += 1;
            }
            waiting += entry.queue.len();
        });
        (held, waiting)
    }
}

/// Waiters of the holder's own owner (e.g. `join!` branches queued while it was escalating)
/// re-enter as soon as the holder has the lock.
fn grant_reentries(entry: &mut Entry, wakeups: &mut Wakeups) {
    if entry.queue.is_empty() {
        return;
    }
    let holder = entry.holder;
    let mut granted = 0;
    entry.queue.retain(|waiter| {
        if waiter.holder == holder {
            waiter.grant(GRANTED, wakeups);
            granted += 1;
            false
        } else {
            true
        }
    });
    entry.count += granted;
}

/// Resolves to the waiter's new state once it is no longer `WAITING`.
struct WaitGranted<'a>(&'a Waiter);

impl Future for WaitGranted<'_> {
    type Output = u8;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<u8> {
        let waiter = self.0;
        let state = waiter.state.load(Ordering::Acquire);
        if state != WAITING {
            return Poll::Ready(state);
        }
        {
            let mut slot = waiter.waker.lock();
            match &*slot {
                Some(waker) if waker.will_wake(cx.waker()) => {}
                _ => *slot = Some(cx.waker().clone()),
            }
        }
        // A grant stores the state before it takes the waker, so either it sees our waker or we
        // see its state.
        match waiter.state.load(Ordering::Acquire) {
            WAITING => Poll::Pending,
            state => Poll::Ready(state),
        }
    }
}

/// Leaves the queue when a waiting future is dropped, passing on a turn it was given.
struct WithdrawOnDrop<'a> {
    table: &'a Table,
    key: &'a SmolStr,
    waiter: &'a Arc<Waiter>,
    armed: bool,
}

impl Drop for WithdrawOnDrop<'_> {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let holder = self.waiter.holder;
        match self.table.withdraw(self.key, self.waiter) {
            Turn::TimedOut => {}
            Turn::Escalate => self.table.abandon(self.key, holder),
            Turn::Granted => {
                let release = self.table.release(self.key, holder);
                if let Some(external) = release.external {
                    crate::manager::dispose_external(external);
                }
            }
        }
    }
}
