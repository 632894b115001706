//! The owner-side record that makes a re-entry cheap: each thread remembers the last hold it
//! re-entered through the map ([`Table::enter`](super::Table::enter)) — the holder, the entry's
//! [`Count`] (which knows the name) and the turn.
//!
//! A re-entry that matches the record ([`Table::reenter`](super::Table::reenter)) counts itself
//! in with one atomic increment ([`Count::try_add`]) and its guard counts itself out with one
//! decrement: no hash, no shard lock, no lookup, not even the name's validation (the record's
//! name was valid). The record is only a hint. It is checked on every use against the count
//! (above 0) and the turn (unchanged), so a record outlived by its turn — the name released,
//! handed on, or taken again by the same owner in a later turn — is never trusted; the map then
//! answers and, at the next re-entry through it, refreshes the record. A task that moves to
//! another worker thread finds no record there and re-enters through the map once.
//!
//! Which holds are remembered: a *re-entry through the map*, not a first acquisition. So a
//! hold's first re-entry costs what it did before this record existed, and its second and
//! later ones are fast; code that never nests locks pays one thread-local load per
//! acquisition (`ANY`) and nothing else, and its entries are never shared with a record, so
//! their counts change with plain loads and stores under the shard lock (see
//! [`Entry`](super::Entry)'s `shared`). Remembering every acquisition was measured at about a
//! tenth of an uncontended acquisition.
//!
//! One record per thread: nested holds of several names re-enter fast on the name the thread
//! re-entered last, and through the map for the others.

use std::cell::RefCell;
use std::ptr::NonNull;

use super::Holder;
use super::count::{self, Added, Count};
use crate::shards::Key;
use crate::sync::Arc;

/// A guard's share of a turn's count, taken without the shard lock: the guard gives it back
/// with [`Claim::remove`], and runs the turn boundary if it was the last.
///
/// It points at the [`Count`] without owning a reference to it: taking and dropping an `Arc`
/// would be two more atomic read-modify-writes on every re-entry, about a tenth of its cost.
/// The pointer is valid while the claim is counted: the entry owns its `Count` for its whole
/// life, and an entry leaves the map only when it is idle, which needs a turn boundary, which
/// needs the count at 0 — so not before this claim's [`remove`](Claim::remove).
///
/// One word: it is returned in a register (a return value of more than two words is written
/// to memory piecewise and read back whole, which stalls store forwarding: measured), and a
/// guard grows by one word only.
#[derive(Debug)]
pub(crate) struct Claim {
    count: NonNull<Count>,
}

// SAFETY: a `Claim` is in effect a shared reference to a `Count`, which is `Sync` (a key that is
// never mutated, and two atomics), valid for as long as the claim may use it (see the type's
// docs).
#[allow(unsafe_code)]
unsafe impl Send for Claim {}
// SAFETY: as for `Send`: `&Claim` gives access to nothing but `&Count`, which is `Sync`.
#[allow(unsafe_code)]
unsafe impl Sync for Claim {}

impl Claim {
    /// A claim on one guard that the caller has just counted into `count`.
    fn new(count: &Arc<Count>) -> Self {
        Claim {
            count: NonNull::from(&**count),
        }
    }

    /// The name the claim is on. Only while the claim is counted: not after
    /// [`remove`](Claim::remove).
    pub(crate) fn key(&self) -> &Key {
        // SAFETY: the claim is counted (the caller's contract: its guard is alive and has not
        // been released), so the `Count` is alive (type docs) and is never mutated but for its
        // atomics; the `&Key` lives no longer than `&self`.
        #[allow(unsafe_code)]
        let count = unsafe { self.count.as_ref() };
        count.key()
    }

    /// Takes the claim's guard out of the count: true if it was the last of its turn (the
    /// caller then owns the turn boundary). The claim's `Count` may be freed as soon as this
    /// returns: only [`is_of`](Claim::is_of) may be used after it.
    pub(crate) fn remove(&self) -> bool {
        // SAFETY: the claim is still counted (this is its one `remove`: a guard calls it once,
        // guarded by its `held` flag, and the table's stale-claim path once), so the entry that
        // owns the `Count` is `Held` and in the map (type docs). Only the count's atomic is
        // borrowed, reached through the raw pointer without a reference to the whole `Count`,
        // and only for the one read-modify-write, as `Arc`'s own `drop` does: once the decrement
        // is visible another thread may free the `Count`, and no reference to it (its key is
        // not in a cell) may be live then.
        #[allow(unsafe_code)]
        let guards = unsafe { &*std::ptr::addr_of!((*self.count.as_ptr()).guards) };
        count::remove_from(guards)
    }

    /// Whether the claim was on `count` (by address only: nothing is read through the claim).
    pub(crate) fn is_of(&self, count: &Arc<Count>) -> bool {
        std::ptr::eq(self.count.as_ptr().cast_const(), Arc::as_ptr(count))
    }
}

struct Record {
    holder: Holder,
    count: Arc<Count>,
    turn: u64,
}

#[cfg(not(loom))]
std::thread_local! {
    static RECORD: RefCell<Option<Record>> = const { RefCell::new(None) };
    /// Whether `RECORD` was ever set on this thread: a thread that never re-entered through
    /// the map (most, in code that does not nest locks) answers a miss with one load, without
    /// the registration check and borrow of `RECORD`.
    static ANY: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

#[cfg(loom)]
loom::thread_local! {
    static RECORD: RefCell<Option<Record>> = RefCell::new(None);
    static ANY: std::cell::Cell<bool> = std::cell::Cell::new(false);
}

/// What [`reenter`] found.
pub(crate) enum Fast {
    /// No usable record: take the slow path.
    Miss,
    /// Re-entered: one guard of `holder`'s turn is the caller's.
    Reentered(Claim),
    /// Counted into a turn that is not the remembered one: the caller must give the claim
    /// back (and run that turn's boundary if it was the last guard) and take the slow path.
    Stale(Claim),
}

/// Whether this thread ever had a record: one load, without the registration check and the
/// borrow of the record itself.
#[inline(always)]
pub(crate) fn any() -> bool {
    ANY.with(std::cell::Cell::get)
}

/// Re-enters `name` for `holder` from this thread's record, if it matches and is current.
#[inline(always)]
pub(crate) fn reenter(holder: &Holder, name: &str) -> Fast {
    // `try_with`: during thread teardown the record may be gone; the slow path still works.
    RECORD
        .try_with(|record| {
            let record = record.borrow();
            let Some(record) = record.as_ref() else {
                return Fast::Miss;
            };
            if record.holder != *holder || record.count.key().name() != name {
                return Fast::Miss;
            }
            match record.count.try_add(record.turn) {
                Added::No => Fast::Miss,
                Added::Yes => Fast::Reentered(Claim::new(&record.count)),
                Added::Stale => Fast::Stale(Claim::new(&record.count)),
            }
        })
        .unwrap_or(Fast::Miss)
}

/// Makes `holder`'s hold of the entry whose count is `count` this thread's record, at the
/// count's current turn. Under the shard lock (the turn cannot change meanwhile); the count is
/// cloned only if the record was about another one.
pub(crate) fn remember(holder: Holder, count: &Arc<Count>) {
    let turn = count.turn();
    ANY.with(|any| any.set(true));
    let _ = RECORD.try_with(|slot| {
        let mut slot = slot.borrow_mut();
        match slot.as_mut() {
            Some(record) if Arc::ptr_eq(&record.count, count) => {
                record.holder = holder;
                record.turn = turn;
                None
            }
            _ => slot.replace(Record {
                holder,
                count: Arc::clone(count),
                turn,
            }),
        }
    });
}
