//! The in-process tier: one entry per name that is held or awaited, each with a holder, what
//! the holder has ([`Hold`]), a FIFO queue of local waiters and, for a table that escalates,
//! the external lock this process holds for the name.
//!
//! # States
//!
//! A name is *absent* (no entry), or its entry is in one of three states:
//!
//! * [`Hold::Idle`]: nobody holds or awaits the name; the entry is kept for the next
//!   acquisition, which reuses it instead of inserting one. It has no holder, no waiter and no
//!   external lock, and counts for nothing ([`Table::len`] skips it). The map sweeps idle
//!   entries when a shard has too many (see [`crate::shards`]), so they stay bounded.
//!
//! * [`Hold::Escalating`]: the holder was given the name and is taking the external lock. It
//!   holds an [`Escalation`] ticket and no guard yet; a request by the same owner queues (it
//!   is granted, as a re-entry, the moment the escalation completes).
//! * [`Hold::Held`]: the holder has its guards (counted in the entry's [`Count`], see
//!   below) and, in an escalating table, the external lock.
//!
//! The transitions, each made under the entry's shard lock:
//!
//! ```text
//!  absent | Idle ──enter──▶ Held, 1 guard          (memory table)
//!  absent | Idle ──enter──▶ Escalating             (escalating table)
//!  Escalating ──install──▶ Held, 1 + queued re-entries guards
//!  Escalating ──abandon──▶ next waiter Escalating | Idle
//!  Held, n ──enter by the holder──▶ Held, n + 1
//!  Held, n + 1 ──release──▶ Held, n
//!  Held, 1 ──release, turn boundary──▶ next waiter Held, 1    (hand-off, external kept)
//!                                    ▶ next waiter Escalating   (hand-back: external released)
//!                                    ▶ Idle                     (nobody waits: external released)
//!  Idle ──sweep──▶ absent
//! ```
//!
//! Each grant of `Held` starts a new *turn* of the entry's [`Count`]. The guard count is the
//! one part of an entry that changes without the shard lock: a re-entry found in the thread's
//! [`recent`] record counts itself in and out with one atomic operation each, and only the
//! guard that takes the count to 0 comes back under the lock, for the turn boundary (the
//! protocol is in [`count`]).
//!
//! A waiter in the queue is told its turn through its [`Grant`] (written under the shard
//! lock, its task woken after it is released), and leaves the queue by being granted or by
//! withdrawing (its [`Queued`] ticket dropped, or its deadline passed). The task's waker is kept
//! in the waiter's place in the [`queue`], under the same lock.
//!
//! # Invariants
//!
//! Checked by the loom models (`table/models.rs`) in every interleaving and by the stress tests:
//!
//! * at most one holder per name; the count of a `Held` entry is exactly the holder's live
//!   guards, but for the instant between a guard taking it to 0 and that guard's turn boundary;
//! * an entry is live (not `Idle`) iff it has a holder: it goes idle in the same critical
//!   section in which its holder goes and no waiter is left; an idle entry has no waiter and
//!   no external lock;
//! * every waiter in a queue is either the head-to-be of a future turn boundary or abandon, or
//!   is granted and woken: nobody is left queued with nobody to wake it;
//! * an escalating table's entry has its external lock exactly while it is `Held`; an external
//!   lock leaves the table exactly once (handed to the caller of a release to let go of it).
//!
//! The tickets that own the unfinished states ([`Queued`], [`Escalation`]) and their `Drop`s
//! are in [`tickets`]; the waiter and its wake-up protocol in [`waiter`]; the queue, which keeps
//! the wakers and knows its waiters' holders without a scan, in [`queue`].

mod count;
#[cfg(all(test, loom))]
mod models;
mod queue;
mod recent;
#[cfg(all(test, not(loom)))]
mod threads;
mod tickets;
mod waiter;

use std::fmt;
use std::pin::Pin;
use std::task::Waker;
use std::time::{Duration, Instant};

use crate::owner::Owner;
use crate::provider::ExternalLock;
use crate::shards::{Key, Live, Map, Slot};
use crate::sync::Arc;

use count::Count;
use queue::Queue;
pub(crate) use recent::Claim;
use recent::Fast;
pub(crate) use tickets::{Escalation, Queued, Turn};
pub(crate) use waiter::Waiter;
use waiter::{Grant, Node, Wakeups};

/// Who holds an entry: an owner, tagged with the manager it acquired through (so that two
/// managers sharing one table exclude each other even for the same task).
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash)]
pub(crate) struct Holder {
    pub(crate) tag: u64,
    pub(crate) owner: Owner,
}

/// What the holder of an entry has (see the module docs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Hold {
    /// Nobody holds or awaits the name; the entry waits for reuse or the next sweep.
    Idle,
    /// Taking the external lock; no guard yet.
    Escalating,
    /// The holder's guards are live (the entry's [`Count`]), and it has the external lock if
    /// the table escalates.
    Held,
}

struct Entry {
    holder: Holder,
    hold: Hold,
    /// The guards of the current turn, while they are counted here only.
    guards: u32,
    /// The guards of the current turn once a re-entry through the map made this entry a
    /// thread's record (see [`recent`]): counted from then on in a [`Count`] shared with the
    /// records and with the guards that re-entered without the shard lock. Until then the
    /// entry has no `Count` at all: an acquisition allocates nothing and counts with a plain
    /// field under the shard lock, no atomic read-modify-write (that was measured at a tenth
    /// of an uncontended acquisition, and an allocation at a fifth of a new name's).
    shared: Option<Arc<Count>>,
    queue: Queue,
    external: Option<Box<dyn ExternalLock>>,
    /// Set when the external lock was handed back to a requesting process: the next escalation
    /// waits until then, so a polling remote waiter gets its turn.
    yield_until: Option<Instant>,
}

impl Entry {
    fn new(holder: Holder, hold: Hold) -> Self {
        Entry {
            holder,
            hold,
            guards: 0,
            shared: None,
            queue: Queue::default(),
            external: None,
            yield_until: None,
        }
    }

    fn held_by(&self, holder: &Holder) -> bool {
        self.hold == Hold::Held && self.holder == *holder
    }

    /// Makes the entry `Held` by its holder with `guards` guards: a new turn.
    fn start_turn(&mut self, guards: u32) {
        self.hold = Hold::Held;
        match &self.shared {
            None => {
                debug_assert_eq!(self.guards, 0, "a turn began with guards live");
                self.guards = guards;
            }
            Some(count) => count.begin(guards),
        }
    }

    /// One more guard of the holder, under the shard lock (may revive a shared count of 0, see
    /// [`count`]). False, and nothing counted, at 2^32 - 1 guards.
    fn add_guard(&mut self) -> bool {
        match &self.shared {
            None => match self.guards.checked_add(1) {
                Some(more) => {
                    self.guards = more;
                    true
                }
                None => false,
            },
            Some(count) => count.add_locked(),
        }
    }

    /// One guard fewer, under the shard lock; true if it was the turn's last.
    fn remove_guard(&mut self) -> bool {
        match &self.shared {
            None => {
                debug_assert_ne!(self.guards, 0, "released a guard that was not counted");
                self.guards = self.guards.saturating_sub(1);
                self.guards == 0
            }
            Some(count) => count.remove(),
        }
    }

    /// The entry's shared count, made now (with the guards counted so far) if it has none.
    fn share(&mut self, key: impl FnOnce() -> Key) -> &Arc<Count> {
        let guards = std::mem::take(&mut self.guards);
        self.shared
            .get_or_insert_with(|| Arc::new(Count::new(key(), guards)))
    }

    /// Whether `claim` was counted in this entry's shared count.
    fn is_claimed_by(&self, claim: &Claim) -> bool {
        self.shared.as_ref().is_some_and(|count| claim.is_of(count))
    }

    /// The live guards now.
    #[cfg(all(test, loom))]
    fn guards(&self) -> u32 {
        self.shared
            .as_ref()
            .map_or(self.guards, |count| count.guards())
    }

    /// Nobody is left: the entry goes idle, giving up its external lock.
    fn go_idle(&mut self) -> Option<Box<dyn ExternalLock>> {
        debug_assert!(self.queue.is_empty(), "an entry went idle with waiters");
        self.hold = Hold::Idle;
        self.yield_until = None;
        // A burst of waiters is over: do not keep its memory in an idle entry.
        self.queue.shrink();
        self.external.take()
    }
}

impl Live for Entry {
    fn is_live(&self) -> bool {
        self.hold != Hold::Idle
    }
}

/// The outcome of [`Table::enter`].
pub(crate) enum Enter<'a> {
    /// The caller is the new holder and may use the lock.
    Acquired(Key),
    /// The caller already held the lock; its count went up.
    Reentered(Key),
    /// The caller is the new holder and must take the external lock.
    Escalate(Escalation<'a>),
    /// Held by another owner and the caller may not wait.
    Busy(Key),
    /// Queued behind the holder: wait with [`Queued::wait`].
    Queued(Queued<'a>),
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
    /// Nobody else wanted the name; the entry is idle.
    Removed,
    /// The caller did not hold the name (a bug; nothing was changed).
    NotHeld,
}

/// What [`Table::release`] leaves to the caller.
#[derive(Debug)]
pub(crate) struct Release {
    pub(crate) outcome: Outcome,
    /// The external lock to release, if this turn boundary gave it up.
    pub(crate) external: Option<Box<dyn ExternalLock>>,
    /// True if the external lock was found lost at this boundary.
    pub(crate) lost: bool,
}

impl Release {
    fn nested() -> Self {
        Release {
            outcome: Outcome::Nested,
            external: None,
            lost: false,
        }
    }
}

/// Whether holders take an external lock, and what to do with one that a dropped ticket gives
/// up (it cannot be awaited from `Drop`).
#[derive(Clone, Copy, Debug)]
pub(crate) enum Mode {
    /// The memory provider's table: the name is complete when it is granted.
    Memory,
    /// A manager's table in front of a provider.
    Escalating {
        /// How long the local queue stays back after handing the external lock to another
        /// process.
        handback_pause: Duration,
        /// Lets go of an external lock from synchronous code.
        dispose: fn(Box<dyn ExternalLock>),
    },
}

/// The per-name queues of one process (or of several managers sharing a memory provider).
pub(crate) struct Table {
    entries: Map<Entry>,
    mode: Mode,
}

impl fmt::Debug for Table {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Table")
            .field("entries", &self.entries.len())
            .field("mode", &self.mode)
            .finish()
    }
}

impl Table {
    pub(crate) fn new(mode: Mode) -> Self {
        Table {
            entries: Map::new(),
            mode,
        }
    }

    fn escalates(&self) -> bool {
        matches!(self.mode, Mode::Escalating { .. })
    }

    /// Lets go of an external lock that a dropped ticket gave up.
    fn dispose(&self, external: Box<dyn ExternalLock>) {
        match self.mode {
            Mode::Escalating { dispose, .. } => dispose(external),
            Mode::Memory => drop(external),
        }
    }

    /// Re-enters `name` for `holder` without the shard lock, if it is this thread's record and
    /// still `holder`'s (see [`recent`]); `None` sends the caller to [`enter`](Self::enter).
    /// The caller validated nothing: a name that matches the record was valid when it was
    /// first acquired.
    ///
    /// `holder` by value, as in [`enter`](Self::enter): a reference would make the caller keep
    /// it in memory (its future's state, written a field at a time), and the copy that `enter`
    /// then takes would read it back whole, which stalls store forwarding (measured: a tenth of
    /// an uncontended acquisition).
    #[inline(always)]
    pub(crate) fn reenter(&self, name: &str, holder: Holder) -> Option<Claim> {
        // Inline only the check that this thread has a record at all: the rest, inlined into
        // the manager's `acquire`, cost every uncontended acquisition 1-2% (measured).
        if !recent::any() {
            return None;
        }
        self.reenter_recorded(name, holder)
    }

    /// [`reenter`](Self::reenter) on a thread that has a record.
    #[inline(never)]
    fn reenter_recorded(&self, name: &str, holder: Holder) -> Option<Claim> {
        match recent::reenter(&holder, name) {
            Fast::Reentered(claim) => Some(claim),
            Fast::Miss => None,
            Fast::Stale(claim) => {
                self.give_back(&claim);
                None
            }
        }
    }

    /// A claim counted into another turn by a record that went stale in the meantime: gives
    /// the count back, running that turn's boundary if it was its last guard. (That release is
    /// not observed: the stale record is another manager's, or the same manager's in another
    /// turn, and no guard was handed out.)
    #[cold]
    fn give_back(&self, claim: &Claim) {
        let release = self.release_claim(claim);
        if let Some(external) = release.external {
            self.dispose(external);
        }
    }

    /// Registers `holder`'s request for `name`: takes it, re-enters it through the map, or
    /// queues behind the current holder, in `waiter` (only if given: else the caller may not
    /// wait). A waiter is queued at most once; the [`Queued`] ticket borrows it.
    #[inline(always)]
    pub(crate) fn enter<'a>(
        &'a self,
        name: &str,
        holder: Holder,
        waiter: Option<Pin<&'a Waiter>>,
    ) -> Enter<'a> {
        self.enter_as(name, holder.tag, holder.owner, waiter, None)
    }

    /// [`enter`](Self::enter) with the holder in parts. The manager calls this: a `Holder` is
    /// three words, passed in memory, and the caller's copy of it (kept for after the call)
    /// was written a field at a time and read back whole, which stalls store forwarding
    /// (measured: 4% of an uncontended acquisition); the parts travel in registers.
    ///
    /// `waker`, if given, is the task's to wake when a queued waiter is granted: registered in
    /// the same critical section that queues it, so that the poll that queued it need not come
    /// back under the lock to register it.
    pub(crate) fn enter_as<'a>(
        &'a self,
        name: &str,
        tag: u64,
        owner: Owner,
        waiter: Option<Pin<&'a Waiter>>,
        waker: Option<&Waker>,
    ) -> Enter<'a> {
        let holder = Holder { tag, owner };
        enum Found<'w> {
            Acquired,
            Reentered,
            Escalate,
            Busy,
            Queued(Pin<&'w Waiter>),
        }
        let escalates = self.escalates();
        let take = |entry: &mut Entry| {
            entry.holder = holder;
            if escalates {
                entry.hold = Hold::Escalating;
                Found::Escalate
            } else {
                entry.start_turn(1);
                Found::Acquired
            }
        };
        let (key, found) = self.entries.upsert(name, |slot| match slot {
            Slot::Vacant => {
                let mut entry = Entry::new(holder, Hold::Idle);
                let found = take(&mut entry);
                (Some(entry), found)
            }
            Slot::Occupied(entry, _) if entry.hold == Hold::Idle => (None, take(entry)),
            Slot::Occupied(entry, named) => {
                let found = if entry.held_by(&holder) {
                    if entry.add_guard() {
                        // A hold re-entered through the map becomes the thread's record, so
                        // that its next re-entries do not come here. (A first acquisition is
                        // not remembered: that would cost every acquisition a few nanoseconds,
                        // a tenth of an uncontended one, for the sake of code that re-enters.)
                        recent::remember(holder, entry.share(|| named.key()));
                        Found::Reentered
                    } else {
                        // 2^32 - 1 live guards: unreachable in practice, and never a hang.
                        Found::Busy
                    }
                } else if let Some(waiter) = waiter {
                    debug_assert_eq!(waiter.grant_state(), Grant::Idle, "a waiter queued twice");
                    waiter.set(Grant::Waiting);
                    entry.queue.push(Node::new(waiter), holder, waker.cloned());
                    Found::Queued(waiter)
                } else {
                    Found::Busy
                };
                (None, found)
            }
        });
        match found {
            Found::Acquired => Enter::Acquired(key),
            Found::Reentered => Enter::Reentered(key),
            Found::Escalate => Enter::Escalate(Escalation::new(self, key, holder)),
            Found::Busy => Enter::Busy(key),
            Found::Queued(waiter) => Enter::Queued(Queued::new(self, key, waiter, holder)),
        }
    }

    /// Takes `waiter` out of the queue if it is still waiting (it is `Idle` again); otherwise
    /// returns the turn it was given (which the caller now owns).
    fn withdraw(&self, key: &Key, waiter: Pin<&Waiter>) -> Grant {
        let grant = self.entries.with(key, |entry| {
            let grant = waiter.grant_state();
            if grant == Grant::Waiting {
                let removed = entry.queue.remove(Node::new(waiter));
                debug_assert!(removed, "a waiting waiter was not in its queue");
                waiter.set(Grant::Idle);
            }
            grant
        });
        debug_assert!(grant.is_some(), "a queued waiter's entry is gone");
        grant.unwrap_or(Grant::Waiting)
    }

    /// Makes `waiter` (queued for `key`) wake `waker` when it is granted. Returns its grant: still
    /// `Waiting` if the waker is registered, else the turn it was given meanwhile.
    fn register(&self, key: &Key, waiter: Pin<&Waiter>, waker: &Waker) -> Grant {
        let grant = self.entries.with(key, |entry| {
            if entry.queue.register(Node::new(waiter), waker) {
                Grant::Waiting
            } else {
                // Out of the queue, under this lock: granted (a withdrawal is its own caller's).
                waiter.grant_state()
            }
        });
        debug_assert!(grant.is_some(), "a queued waiter's entry is gone");
        grant.unwrap_or_else(|| waiter.grant_state())
    }

    /// Drops one guard of `holder` on `key`, with its `claim` if it was counted without the
    /// shard lock. At the holder's last guard this is a turn boundary: the next local waiter
    /// gets the name (keeping the external lock unless another process asked for it), or the
    /// entry goes idle and the external lock is returned to the caller for release.
    pub(crate) fn release(&self, key: &Key, holder: &Holder, claim: Option<&Claim>) -> Release {
        match claim {
            None => self.release_key(key, holder),
            Some(claim) => self.release_claim(claim),
        }
    }

    /// [`release`](Self::release) of a guard counted under the shard lock.
    pub(crate) fn release_key(&self, key: &Key, holder: &Holder) -> Release {
        let mut release = Release::nested();
        let mut wakeups = Wakeups::default();
        let found = self.entries.with(key, |entry| {
            if !entry.held_by(holder) {
                release.outcome = Outcome::NotHeld;
            } else if entry.remove_guard() {
                self.turn_boundary(entry, &mut release, &mut wakeups);
            }
        });
        if found.is_none() {
            release.outcome = Outcome::NotHeld;
        }
        debug_assert!(
            release.outcome != Outcome::NotHeld,
            "released a name not held"
        );
        wakeups.wake();
        release
    }

    /// [`release`](Self::release) of a guard counted without the shard lock: counted out
    /// without it too, unless it is the last.
    fn release_claim(&self, claim: &Claim) -> Release {
        let mut release = Release::nested();
        // Read while the claim is counted: afterwards its count may be gone.
        let hash = claim.key().hash();
        if !claim.remove() {
            return release;
        }
        // The count is at 0 by our hand: a boundary is pending, unless the holder revived the
        // turn meanwhile or someone ran it already (then the entry may even be gone); run the
        // one pending now, if any (module docs of `count`).
        let mut wakeups = Wakeups::default();
        self.entries.find(
            hash,
            |entry| entry.is_claimed_by(claim),
            |entry| {
                let pending = entry.hold == Hold::Held
                    && entry
                        .shared
                        .as_ref()
                        .is_some_and(|count| count.guards() == 0);
                if pending {
                    self.turn_boundary(entry, &mut release, &mut wakeups);
                }
            },
        );
        wakeups.wake();
        release
    }

    /// The holder of `entry` has just let go.
    fn turn_boundary(&self, entry: &mut Entry, release: &mut Release, wakeups: &mut Wakeups) {
        if entry.queue.is_empty() {
            release.outcome = Outcome::Removed;
            release.external = entry.go_idle();
            return;
        }
        release.outcome = Outcome::HandedOff;
        if let Some(external) = &entry.external {
            let lost = external.lost_signal().is_some_and(|s| s.is_lost());
            if lost || external.is_requested() {
                release.outcome = Outcome::HandedBack;
                release.lost = lost;
                release.external = entry.external.take();
                if let Mode::Escalating { handback_pause, .. } = self.mode {
                    if !lost && !handback_pause.is_zero() {
                        entry.yield_until = Some(Instant::now() + handback_pause);
                    }
                }
            }
        }
        self.grant_next(entry, wakeups);
    }

    /// Makes the head of the queue the holder. The entry's holder must have let go.
    fn grant_next(&self, entry: &mut Entry, wakeups: &mut Wakeups) {
        let Some(next) = entry.queue.pop() else {
            return;
        };
        entry.holder = next.holder;
        if entry.external.is_some() || !self.escalates() {
            next.node.grant(Grant::Granted, next.waker, wakeups);
            let guards = 1 + grant_reentries(entry, next.bit, wakeups);
            entry.start_turn(guards);
        } else {
            entry.hold = Hold::Escalating;
            next.node.grant(Grant::Escalate, next.waker, wakeups);
        }
    }

    /// The escalating holder took the external lock: the name is now fully held. Gives the
    /// lock back if the entry is not in that state (a broken invariant).
    fn install(
        &self,
        key: &Key,
        holder: Holder,
        external: Box<dyn ExternalLock>,
    ) -> Result<(), Box<dyn ExternalLock>> {
        let mut wakeups = Wakeups::default();
        let mut external = Some(external);
        self.entries.with(key, |entry| {
            if entry.holder != holder || entry.hold != Hold::Escalating {
                return;
            }
            entry.external = external.take();
            entry.yield_until = None;
            let guards = 1 + grant_reentries(entry, queue::bit(&holder), &mut wakeups);
            entry.start_turn(guards);
        });
        wakeups.wake();
        match external {
            None => Ok(()),
            Some(external) => Err(external),
        }
    }

    /// The escalating holder gives up (timeout, error or cancellation): the next waiter
    /// escalates in its place, or the entry goes idle.
    fn abandon(&self, key: &Key, holder: Holder) {
        let mut wakeups = Wakeups::default();
        let found = self.entries.with(key, |entry| {
            if entry.holder != holder || entry.hold != Hold::Escalating {
                debug_assert!(false, "abandoned an escalation not in progress");
            } else if entry.queue.is_empty() {
                let external = entry.go_idle();
                debug_assert!(
                    external.is_none(),
                    "an escalating entry had an external lock"
                );
            } else {
                self.grant_next(entry, &mut wakeups);
            }
        });
        debug_assert!(found.is_some(), "an escalating entry is gone");
        wakeups.wake();
    }

    /// When an escalation of `key` should start, if the external lock was just handed back.
    fn yield_until(&self, key: &Key) -> Option<Instant> {
        self.entries.with(key, |e| e.yield_until).flatten()
    }

    /// Whether anyone is queued for `key`.
    pub(crate) fn has_waiters(&self, key: &Key) -> bool {
        self.entries
            .with(key, |e| !e.queue.is_empty())
            .unwrap_or(false)
    }

    /// Runs `f` on the external lock held for `key`, if any.
    pub(crate) fn with_external<T>(
        &self,
        key: &Key,
        f: impl FnOnce(&dyn ExternalLock) -> T,
    ) -> Option<T> {
        self.entries
            .with(key, |entry| entry.external.as_deref().map(f))
            .flatten()
    }

    /// Number of live entries (names held or awaited); idle entries do not count.
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    /// (names held, tasks waiting), by a scan of all entries.
    pub(crate) fn census(&self) -> (usize, usize) {
        let mut held = 0;
        let mut waiting = 0;
        self.entries.for_each(|entry| {
            if entry.hold == Hold::Held {
                held += 1;
            }
            waiting += entry.queue.len();
        });
        (held, waiting)
    }

    /// The state of `key`'s entry: its holder, hold and guard count, and how many wait. For
    /// the models.
    #[cfg(all(test, loom))]
    pub(crate) fn inspect(&self, key: &Key) -> Option<(Holder, Hold, u32, usize)> {
        self.entries
            .with(key, |e| (e.holder, e.hold, e.guards(), e.queue.len()))
    }
}

/// Waiters of the holder's own owner (e.g. `join!` branches queued while it was escalating)
/// re-enter as soon as the holder has the lock. `bit` is the holder's [`queue::bit`]. Returns
/// how many were granted: the caller counts them in the turn it starts.
fn grant_reentries(entry: &mut Entry, bit: u64, wakeups: &mut Wakeups) -> u32 {
    let holder = entry.holder;
    entry.queue.take_holder(&holder, bit, |node, waker| {
        node.grant(Grant::Granted, waker, wakeups);
    })
}
