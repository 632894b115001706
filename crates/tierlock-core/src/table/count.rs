//! A hold's guard count: how many live guards the holder of a name has, and which turn of the
//! name they belong to.
//!
//! The entry owns its [`Count`] (in an `Arc`), the threads' records share it (see
//! [`super::recent`]), and the guards of *fast re-entries* point at it: they count themselves in
//! and out with one atomic operation each, without the entry's shard lock. Everything else about the entry (holder, queue, external lock)
//! stays under the shard lock.
//!
//! # Protocol
//!
//! * A turn starts under the shard lock ([`Count::begin`]), only when no guard of the previous
//!   turn is left: the turn number goes up by one, then the guard count is published with
//!   `Release`. Turn numbers of one `Count` never repeat (64 bits).
//! * Under the shard lock, the holder counts a guard in with [`Count::add_locked`], whatever
//!   the count is: a count of 0 under a `Held` entry means the holder's last guard is being
//!   released on another thread and its turn boundary has not run yet; adding to it *revives*
//!   the turn, and that release's boundary then finds the count above 0 and does nothing.
//! * Without the lock, [`Count::try_add`] counts in only if the count is above 0 (like
//!   `Weak::upgrade`) and the turn is the one the caller remembered. A count above 0 pins the
//!   turn: no turn starts while a guard is counted. So after a successful increment the turn
//!   number read is that of the turn counted into; if it is not the remembered one, the caller
//!   counted into another holder's turn and must take the count out again
//!   ([`Added::Stale`]) — without ever using the lock.
//! * Whoever takes the count from 1 to 0 ([`Count::remove`]) owns a turn boundary: under the
//!   shard lock it runs one if the entry (found by this `Count`) is `Held` with a count of 0,
//!   and otherwise nothing. No turn number is needed for that: a `Held` entry with a count of
//!   0 has exactly one boundary pending (no turn starts before it runs), the one of its current
//!   turn, and whoever locks first after it arose runs it — its own releaser at the latest. So
//!   if the holder revived the turn meanwhile, or the boundary already ran, the late releaser
//!   finds nothing to do, and if it finds a later turn's pending boundary, running it is what
//!   that turn's releaser would have done (and that one then finds nothing).
//! * An entry has a `Count` only from its first re-entry through the map on (which makes it a
//!   thread's record): until then nothing outside the shard lock could reach one, so the
//!   entry counts its guards in a plain field, and an acquisition allocates nothing and
//!   costs no atomic read-modify-write for its count. The `Count` starts at turn 1 with the
//!   guards counted so far; it stays with the entry until the entry is swept.

use crate::shards::Key;
use crate::sync::{AtomicU32, AtomicU64, Ordering};

/// The live guards of a name's current turn (see the module docs).
#[derive(Debug)]
pub(crate) struct Count {
    /// The entry's name (and hash): what a guard counted here knows its lock by.
    key: Key,
    /// The current turn; written only under the shard lock, read without it.
    turn: AtomicU64,
    /// Live guards of the turn; 0 between turns and while the holder escalates.
    pub(super) guards: AtomicU32,
}

/// What [`Count::try_add`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Added {
    /// One more guard of the remembered turn.
    Yes,
    /// Nothing: the turn is over (or the count is at its maximum).
    No,
    /// One more guard, but of another turn: the caller must [`remove`](Count::remove) it.
    Stale,
}

impl Count {
    /// The count of the entry for `key`, shared from now on, with the `guards` of its current
    /// turn (if it is held) counted so far under the shard lock.
    pub(crate) fn new(key: Key, guards: u32) -> Self {
        Count {
            key,
            turn: AtomicU64::new(1),
            guards: AtomicU32::new(guards),
        }
    }

    /// The entry's key.
    pub(crate) fn key(&self) -> &Key {
        &self.key
    }
    /// Starts the next turn with `guards` guards. Under the shard lock, with no guard of the
    /// previous turn left.
    pub(crate) fn begin(&self, guards: u32) {
        debug_assert_eq!(
            self.guards.load(Ordering::Relaxed),
            0,
            "a turn began while guards of the last one were live"
        );
        let turn = self.turn.load(Ordering::Relaxed) + 1;
        self.turn.store(turn, Ordering::Relaxed);
        self.guards.store(guards, Ordering::Release);
    }

    /// The current turn (under the shard lock).
    pub(crate) fn turn(&self) -> u64 {
        self.turn.load(Ordering::Relaxed)
    }

    /// The live guards now.
    pub(crate) fn guards(&self) -> u32 {
        self.guards.load(Ordering::Acquire)
    }

    /// One more guard for the holder, under the shard lock; may revive a count of 0 (module
    /// docs). False, and nothing counted, if the count is at its maximum.
    pub(crate) fn add_locked(&self) -> bool {
        self.guards
            .fetch_update(Ordering::Acquire, Ordering::Relaxed, |n| n.checked_add(1))
            .is_ok()
    }

    /// One more guard without the lock, if the count is above 0 and `turn` is current.
    #[inline(always)]
    pub(crate) fn try_add(&self, turn: u64) -> Added {
        // Most stale records fail here, before touching the count.
        if self.turn.load(Ordering::Acquire) != turn {
            return Added::No;
        }
        let added = self
            .guards
            .fetch_update(Ordering::Acquire, Ordering::Relaxed, |n| {
                if n == 0 { None } else { n.checked_add(1) }
            });
        if added.is_err() {
            return Added::No;
        }
        // Our guard pins the turn: the one read now is the one we counted into. (The increment
        // read a count published by `begin` with `Release`, or one of the read-modify-writes
        // that followed it, so its turn store is visible here.)
        if self.turn.load(Ordering::Relaxed) == turn {
            Added::Yes
        } else {
            Added::Stale
        }
    }

    /// One guard fewer; true if it was the last of its turn (the caller owns the boundary).
    pub(crate) fn remove(&self) -> bool {
        remove_from(&self.guards)
    }
}

/// One guard fewer in the guard count `guards` (of a [`Count`]); true if it was the last of
/// its turn. A function of the atomic alone, so that a claim can give its guard back without a
/// reference to the whole `Count` (see `Claim::remove`).
pub(super) fn remove_from(guards: &AtomicU32) -> bool {
    let before = guards.fetch_sub(1, Ordering::AcqRel);
    debug_assert_ne!(before, 0, "released a guard that was not counted");
    before == 1
}
