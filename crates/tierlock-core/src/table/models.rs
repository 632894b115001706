//! Loom models of the in-process tier: every interleaving of 2–3 threads driving a [`Table`]
//! through the protocol the manager follows (enter, wait, escalate, release), without timers.
//!
//! Run them with `scripts/test` or:
//!
//! ```text
//! RUSTFLAGS="--cfg loom" CARGO_TARGET_DIR=target/loom \
//!     cargo test -p tierlock-core --lib --release -- loom_
//! ```
//!
//! `LOOM_MAX_PREEMPTIONS` (default 3 here) bounds the number of preemptions per execution.
//!
//! A party takes a name as the manager's acquisition future does (`Party::take`: the waker
//! registered in the critical section that queues it); the models of a waiter that withdraws
//! or is polled once wait through `Queued::wait`, which registers the waker at its first poll,
//! under the shard lock: both ways of registering are explored.
//!
//! Invariants checked in every interleaving:
//!
//! * at most one owner is inside the critical section of a name ([`Section`]);
//! * the holder's count in the entry equals its live guards, and of two guards released at
//!   once exactly one release is the turn boundary;
//! * nobody is left queued with nobody to wake it: a waiter blocks in `loom::future::block_on`,
//!   so a lost wake-up is a deadlock, which loom reports;
//! * the entry is gone, and nobody waits, once every thread is done;
//! * the external lock ([`Remote`]) is held by at most one party at a time and released exactly
//!   once per acquisition; a lock found lost at a turn boundary is not handed on.

use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use loom::sync::atomic::{AtomicBool, AtomicUsize};
use loom::thread;

use super::{Claim, Enter, Escalation, Hold, Holder, Mode, Outcome, Release, Table, Turn, Waiter};
use crate::owner::Owner;
use crate::provider::{BoxFuture, ExternalLock, LostSignal};
use crate::shards::Key;
use crate::sync::{Arc, Ordering::SeqCst};

const NAME: &str = "name";

fn check(f: impl Fn() + Send + Sync + 'static) {
    let mut builder = loom::model::Builder::new();
    if builder.preemption_bound.is_none() {
        builder.preemption_bound = Some(3);
    }
    builder.check(f);
}

fn holder() -> Holder {
    Holder {
        tag: 1,
        owner: Owner::new_unique(),
    }
}

fn escalating() -> Arc<Table> {
    Arc::new(Table::new(Mode::Escalating {
        handback_pause: std::time::Duration::ZERO,
        dispose: drop,
    }))
}

fn memory() -> Arc<Table> {
    Arc::new(Table::new(Mode::Memory))
}

/// The other side of the external tier: the one lock all parties exclude each other on.
#[derive(Debug, Default)]
struct Remote {
    held: AtomicBool,
    acquired: AtomicUsize,
    released: AtomicUsize,
    /// Another process asked for the name.
    requested: AtomicBool,
}

impl Remote {
    /// Takes the lock, waiting (by yielding) while another party has it.
    fn acquire(remote: &Arc<Self>, lost: Option<LostSignal>) -> Box<dyn ExternalLock> {
        while remote.held.swap(true, SeqCst) {
            thread::yield_now();
        }
        remote.acquired.fetch_add(1, SeqCst);
        Box::new(RemoteLock {
            remote: Arc::clone(remote),
            lost,
        })
    }

    fn check_all_released(&self) {
        assert!(!self.held.load(SeqCst), "the external lock is still held");
        assert_eq!(
            self.acquired.load(SeqCst),
            self.released.load(SeqCst),
            "external acquisitions and releases differ"
        );
    }
}

#[derive(Debug)]
struct RemoteLock {
    remote: Arc<Remote>,
    lost: Option<LostSignal>,
}

impl Drop for RemoteLock {
    fn drop(&mut self) {
        assert!(
            self.remote.held.swap(false, SeqCst),
            "an external lock was released twice"
        );
        self.remote.released.fetch_add(1, SeqCst);
    }
}

impl ExternalLock for RemoteLock {
    fn release(self: Box<Self>) -> BoxFuture<'static, Result<(), crate::BoxError>> {
        drop(self);
        Box::pin(std::future::ready(Ok(())))
    }

    fn drop_releases(&self) -> bool {
        true
    }

    fn is_requested(&self) -> bool {
        self.remote.requested.load(SeqCst)
    }

    fn lost_signal(&self) -> Option<LostSignal> {
        self.lost.clone()
    }
}

/// Counts the owners inside a name's critical section.
#[derive(Debug, Default)]
struct Section(AtomicUsize);

impl Section {
    fn enter(&self) {
        assert_eq!(self.0.fetch_add(1, SeqCst), 0, "two owners hold the name");
    }

    fn leave(&self) {
        self.0.fetch_sub(1, SeqCst);
    }
}

/// One party of a model: a holder, the table, the remote lock and the critical section.
#[derive(Clone)]
struct Party {
    table: Arc<Table>,
    remote: Arc<Remote>,
    section: Arc<Section>,
    holder: Holder,
    /// The lost signal external locks taken by this party report.
    lost: Option<LostSignal>,
}

impl Party {
    fn new(table: &Arc<Table>, remote: &Arc<Remote>, section: &Arc<Section>) -> Self {
        Party {
            table: Arc::clone(table),
            remote: Arc::clone(remote),
            section: Arc::clone(section),
            holder: holder(),
            lost: None,
        }
    }

    /// Takes the name as the manager's `lock` does with no deadline; enters the section if
    /// this is the holder's first guard.
    fn lock(&self) -> Guard {
        let guard = self.take();
        if self.count(&guard) == 1 {
            self.section.enter();
        }
        guard
    }

    /// Takes the name, without looking at the section, as the manager's acquisition future
    /// does: the first poll enters with the task's waker (queued with it, if the name is
    /// held), later polls look at the ticket's turn.
    fn take(&self) -> Guard {
        if let Some(claim) = self.table.reenter(NAME, self.holder) {
            return Guard {
                key: claim.key().clone(),
                claim: Some(claim),
            };
        }
        let waiter = pin!(Waiter::new());
        let waiter = waiter.into_ref();
        let mut queued = None;
        let turn = loom::future::block_on(std::future::poll_fn(|cx| match queued.as_mut() {
            None => {
                let (tag, owner) = (self.holder.tag, self.holder.owner);
                match self
                    .table
                    .enter_as(NAME, tag, owner, Some(waiter), Some(cx.waker()))
                {
                    Enter::Acquired(key) | Enter::Reentered(key) => Poll::Ready(Turn::Granted(key)),
                    Enter::Escalate(escalation) => Poll::Ready(Turn::Escalate(escalation)),
                    Enter::Busy(_) => panic!("busy although the caller may wait"),
                    Enter::Queued(ticket) => {
                        queued = Some(ticket);
                        Poll::Pending
                    }
                }
            }
            Some(ticket) => ticket.poll_turn(cx, false),
        }));
        match turn {
            Turn::Granted(key) => Guard::slow(key),
            Turn::Escalate(escalation) => self.escalate(escalation),
            Turn::TimedOut(_) => panic!("timed out without a deadline"),
        }
    }

    fn escalate(&self, escalation: Escalation<'_>) -> Guard {
        let external = Remote::acquire(&self.remote, self.lost.clone());
        match escalation.install(external) {
            Ok(key) => Guard::slow(key),
            Err(_) => panic!("install failed"),
        }
    }

    /// The holder's count, asserting that this party holds the name.
    fn count(&self, guard: &Guard) -> u32 {
        match self.table.inspect(&guard.key) {
            Some((holder, Hold::Held, count, _)) if holder == self.holder => count,
            other => panic!("the party does not hold the name: {other:?}"),
        }
    }

    /// Lets go of a turn without using it, as the manager does when the caller is gone: a
    /// grant is one guard, released at once; an escalation is abandoned by dropping it.
    fn give_up(&self, turn: Turn<'_>) {
        match turn {
            Turn::Granted(key) => {
                self.section.enter();
                self.unlock(&Guard::slow(key), true);
            }
            Turn::Escalate(escalation) => drop(escalation),
            Turn::TimedOut(_) => {}
        }
    }

    /// Releases one guard; the caller says whether it is the holder's last (then it leaves
    /// the section first). Drops an external lock the release gave up, as the guard does.
    fn unlock(&self, guard: &Guard, last: bool) -> Release {
        if last {
            self.section.leave();
        }
        let mut release = self
            .table
            .release(&guard.key, &self.holder, guard.claim.as_ref());
        assert_ne!(release.outcome, Outcome::NotHeld);
        drop(release.external.take());
        release
    }
}

/// A guard of the model: its key, and its claim on the count if it was counted without the
/// shard lock (a re-entry from the thread's record).
#[derive(Debug)]
struct Guard {
    key: Key,
    claim: Option<Claim>,
}

impl Guard {
    fn slow(key: Key) -> Self {
        Guard { key, claim: None }
    }

    fn is_fast(&self) -> bool {
        self.claim.is_some()
    }
}

fn check_empty(table: &Table, remote: &Remote) {
    assert_eq!(table.len(), 0, "an entry outlived its holders and waiters");
    assert_eq!(table.census(), (0, 0));
    remote.check_all_released();
}

/// Polls `future` once with a waker that does nothing.
fn poll_once<F: Future>(future: std::pin::Pin<&mut F>) -> Poll<F::Output> {
    future.poll(&mut Context::from_waker(Waker::noop()))
}

/// Re-entry, and two guards of one owner released at once on two threads while another owner
/// waits: the count follows the guards, exactly one release is the turn boundary, the waiter
/// gets the name and nothing is left.
fn reentry_and_out_of_order_drops(table: Arc<Table>) {
    let remote = Arc::new(Remote::default());
    let section = Arc::new(Section::default());
    let a = Party::new(&table, &remote, &section);
    let first = a.lock();
    // The first re-entry goes through the map and makes the hold this thread's record; the
    // second is counted without the shard lock, and its release will be too.
    let through_map = a.take();
    assert!(!through_map.is_fast());
    let second = a.take();
    assert!(
        second.is_fast(),
        "the re-entry was not counted from the record"
    );
    a.unlock(&through_map, false);
    assert_eq!(a.count(&second), 2);
    let guards = Arc::new(AtomicUsize::new(2));

    let b = Party::new(&table, &remote, &section);
    let other = thread::spawn(move || {
        let key = b.lock();
        b.unlock(&key, true);
    });
    let elsewhere = thread::spawn({
        let (a, guards) = (a.clone(), Arc::clone(&guards));
        move || {
            let last = guards.fetch_sub(1, SeqCst) == 1;
            a.unlock(&first, last).outcome
        }
    });
    let last = guards.fetch_sub(1, SeqCst) == 1;
    let here = a.unlock(&second, last).outcome;
    let there = elsewhere.join().unwrap_or(Outcome::NotHeld);
    let nested = [here, there]
        .iter()
        .filter(|o| **o == Outcome::Nested)
        .count();
    assert_eq!(nested, 1, "outcomes {here:?} and {there:?}");
    other.join().unwrap();
    check_empty(&table, &remote);
}

#[test]
fn loom_reentry_and_out_of_order_drops_escalating() {
    check(|| reentry_and_out_of_order_drops(escalating()));
}

#[test]
fn loom_reentry_and_out_of_order_drops_memory() {
    check(|| reentry_and_out_of_order_drops(memory()));
}

/// A waiter withdraws (its `lock` future dropped after one poll) while the holder releases,
/// so it may be granted the name just before it withdraws; a second waiter behind it must
/// still get the name.
#[test]
fn loom_waiter_withdrawn_while_granted() {
    check(|| {
        let table = escalating();
        let remote = Arc::new(Remote::default());
        let section = Arc::new(Section::default());
        let a = Party::new(&table, &remote, &section);
        let key = a.lock();

        let b = Party::new(&table, &remote, &section);
        let quitter = thread::spawn(move || {
            let waiter = pin!(Waiter::new());
            if let Enter::Queued(queued) = b.table.enter(NAME, b.holder, Some(waiter.into_ref())) {
                let mut wait = pin!(queued.wait(None));
                if let Poll::Ready(turn) = poll_once(wait.as_mut()) {
                    // The turn came at once: a lock the caller lets go of unused.
                    b.give_up(turn);
                }
            }
        });
        let c = Party::new(&table, &remote, &section);
        let patient = thread::spawn(move || {
            let key = c.lock();
            c.unlock(&key, true);
        });
        a.unlock(&key, true);
        quitter.join().unwrap();
        patient.join().unwrap();
        check_empty(&table, &remote);
    });
}

/// The holder abandons its escalation (a provider error, a timeout, a dropped future), and so
/// does the waiter the turn passes to: the third party must still get the name.
#[test]
fn loom_grant_abandoned_during_escalation() {
    check(|| {
        let table = escalating();
        let remote = Arc::new(Remote::default());
        let section = Arc::new(Section::default());
        let a = Party::new(&table, &remote, &section);
        let Enter::Escalate(escalation) = table.enter(NAME, a.holder, None) else {
            panic!("the first request did not escalate");
        };

        let b = Party::new(&table, &remote, &section);
        let quitter = thread::spawn(move || {
            let waiter = pin!(Waiter::new());
            match b.table.enter(NAME, b.holder, Some(waiter.into_ref())) {
                Enter::Escalate(escalation) => drop(escalation),
                Enter::Queued(queued) => b.give_up(loom::future::block_on(queued.wait(None))),
                _ => panic!("unexpected"),
            }
        });
        let c = Party::new(&table, &remote, &section);
        let patient = thread::spawn(move || {
            let key = c.lock();
            c.unlock(&key, true);
        });
        drop(escalation);
        quitter.join().unwrap();
        patient.join().unwrap();
        check_empty(&table, &remote);
    });
}

/// Another process asked for the name: the holder's release hands the external lock back
/// while a new local waiter queues; the waiter then takes it again from the provider.
#[test]
fn loom_handback_while_a_waiter_queues() {
    check(|| {
        let table = escalating();
        let remote = Arc::new(Remote::default());
        let section = Arc::new(Section::default());
        let a = Party::new(&table, &remote, &section);
        let key = a.lock();
        remote.requested.store(true, SeqCst);

        let b = Party::new(&table, &remote, &section);
        let waiter = thread::spawn(move || {
            let key = b.lock();
            b.unlock(&key, true).outcome
        });
        let release = a.unlock(&key, true);
        assert!(matches!(
            release.outcome,
            Outcome::HandedBack | Outcome::Removed
        ));
        assert_eq!(waiter.join().unwrap(), Outcome::Removed);
        // Requested at every boundary, so every holder took the lock from the provider.
        assert_eq!(remote.acquired.load(SeqCst), 2);
        check_empty(&table, &remote);
    });
}

/// The external lock is reported lost while the holder releases with a waiter queued: if the
/// boundary saw it, it gives the lock back instead of handing it on.
#[test]
fn loom_lost_signal_at_a_turn_boundary() {
    check(|| {
        let table = escalating();
        let remote = Arc::new(Remote::default());
        let section = Arc::new(Section::default());
        let lost = LostSignal::new();
        let mut a = Party::new(&table, &remote, &section);
        a.lost = Some(lost.clone());
        let key = a.lock();

        let b = Party::new(&table, &remote, &section);
        let waiter = thread::spawn(move || {
            let key = b.lock();
            b.unlock(&key, true);
        });
        let fired = Arc::new(AtomicBool::new(false));
        let provider = thread::spawn({
            let fired = Arc::clone(&fired);
            move || {
                lost.trigger();
                fired.store(true, SeqCst);
            }
        });
        let fired_before = fired.load(SeqCst);
        let release = a.unlock(&key, true);
        if fired_before {
            assert!(release.lost || release.outcome == Outcome::Removed);
            assert_ne!(
                release.outcome,
                Outcome::HandedOff,
                "a lost lock was handed on"
            );
        }
        if release.lost {
            assert_eq!(release.outcome, Outcome::HandedBack);
        }
        waiter.join().unwrap();
        provider.join().unwrap();
        check_empty(&table, &remote);
    });
}

/// A request by the escalating holder's own owner (a `join!` branch) queues and re-enters the
/// moment the escalation completes, while another owner waits behind.
#[test]
fn loom_reentry_queued_during_escalation() {
    check(|| {
        let table = escalating();
        let remote = Arc::new(Remote::default());
        let section = Arc::new(Section::default());
        let a = Party::new(&table, &remote, &section);
        let Enter::Escalate(escalation) = table.enter(NAME, a.holder, None) else {
            panic!("the first request did not escalate");
        };
        let branch = thread::spawn({
            let a = a.clone();
            move || {
                let waiter = pin!(Waiter::new());
                match a.table.enter(NAME, a.holder, Some(waiter.into_ref())) {
                    Enter::Queued(queued) => match loom::future::block_on(queued.wait(None)) {
                        Turn::Granted(key) => Guard::slow(key),
                        _ => panic!("a queued re-entry was not granted"),
                    },
                    Enter::Reentered(key) => Guard::slow(key),
                    _ => panic!("unexpected"),
                }
            }
        });
        let b = Party::new(&table, &remote, &section);
        let other = thread::spawn(move || {
            let key = b.lock();
            b.unlock(&key, true);
        });
        let key = a.escalate(escalation);
        a.section.enter();
        let Ok(branch_key) = branch.join() else {
            panic!("the branch failed");
        };
        assert_eq!(a.count(&key), 2);
        a.unlock(&branch_key, false);
        a.unlock(&key, true);
        other.join().unwrap();
        check_empty(&table, &remote);
    });
}

/// A waiter's deadline passes just as its turn comes: the holder lets go (abandoning its
/// escalation, or releasing the lock) while the waiter times out, with a third party waiting.
/// A late escalation must be passed on, a late grant kept and released by its caller.
fn deadline_passes_as_the_turn_comes(abandon: bool) {
    let table = escalating();
    let remote = Arc::new(Remote::default());
    let section = Arc::new(Section::default());
    let a = Party::new(&table, &remote, &section);
    let (escalation, key) = if abandon {
        let Enter::Escalate(escalation) = table.enter(NAME, a.holder, None) else {
            panic!("the first request did not escalate");
        };
        (Some(escalation), None)
    } else {
        (None, Some(a.lock()))
    };

    let b = Party::new(&table, &remote, &section);
    let late = thread::spawn(move || {
        let waiter = pin!(Waiter::new());
        match b.table.enter(NAME, b.holder, Some(waiter.into_ref())) {
            Enter::Queued(mut queued) => b.give_up(queued.time_out()),
            Enter::Escalate(escalation) => drop(escalation),
            _ => panic!("unexpected"),
        }
    });
    let c = Party::new(&table, &remote, &section);
    let patient = thread::spawn(move || {
        let key = c.lock();
        c.unlock(&key, true);
    });
    drop(escalation);
    if let Some(key) = key {
        a.unlock(&key, true);
    }
    late.join().unwrap();
    patient.join().unwrap();
    check_empty(&table, &remote);
}

#[test]
fn loom_deadline_passes_as_an_escalation_is_abandoned() {
    check(|| deadline_passes_as_the_turn_comes(true));
}

#[test]
fn loom_deadline_passes_as_the_lock_is_released() {
    check(|| deadline_passes_as_the_turn_comes(false));
}

/// Who is inside a name's critical section, guard by guard: each guard enters after it is
/// handed out and leaves before it is released, so two owners inside at once means the table
/// let two owners hold the name.
#[derive(Debug, Default)]
struct Inside(loom::sync::Mutex<(u64, usize)>);

impl Inside {
    fn enter(&self, owner: u64) {
        let mut inside = self.0.lock().unwrap();
        assert!(
            inside.1 == 0 || inside.0 == owner,
            "owners {} and {owner} hold the name",
            inside.0
        );
        *inside = (owner, inside.1 + 1);
    }

    fn leave(&self) {
        self.0.lock().unwrap().1 -= 1;
    }
}

/// A re-entry counted without the shard lock, its guard then dropped on another thread as the
/// holder's last, while the holder takes the name again (from its record, by reviving the
/// turn, or anew) and another owner waits: one holder at a time, and nothing left.
fn last_fast_guard_goes_elsewhere(table: Arc<Table>) {
    let remote = Arc::new(Remote::default());
    let section = Arc::new(Section::default());
    let inside = Arc::new(Inside::default());
    let a = Party::new(&table, &remote, &section);
    let first = a.take();
    // The first re-entry, through the map, makes the hold this thread's record.
    let through_map = a.take();
    let fast = a.take();
    a.unlock(&through_map, false);
    assert!(
        fast.is_fast(),
        "the re-entry was not counted from the record"
    );
    a.unlock(&first, false);
    inside.enter(1);

    let b = Party::new(&table, &remote, &section);
    let other = thread::spawn({
        let inside = Arc::clone(&inside);
        move || {
            let guard = b.take();
            inside.enter(2);
            inside.leave();
            b.unlock(&guard, false);
        }
    });
    let elsewhere = thread::spawn({
        let (a, inside) = (a.clone(), Arc::clone(&inside));
        move || {
            inside.leave();
            a.unlock(&fast, false);
        }
    });
    let again = a.take();
    inside.enter(1);
    inside.leave();
    a.unlock(&again, false);
    elsewhere.join().unwrap();
    other.join().unwrap();
    check_empty(&table, &remote);
}

#[test]
fn loom_last_fast_guard_goes_elsewhere_memory() {
    check(|| last_fast_guard_goes_elsewhere(memory()));
}

#[test]
fn loom_last_fast_guard_goes_elsewhere_escalating() {
    check(|| last_fast_guard_goes_elsewhere(escalating()));
}

/// The holder's record outlives its turn: A released the name, B takes and releases it on
/// another thread while A takes it again on the thread with the stale record. The record must
/// never let A in beside B (a stale count taken into B's turn is given back, and if it was B's
/// last, its boundary runs), and nothing is left.
#[test]
fn loom_stale_record_meets_a_new_turn() {
    check(|| {
        let table = memory();
        let remote = Arc::new(Remote::default());
        let section = Arc::new(Section::default());
        let inside = Arc::new(Inside::default());
        let a = Party::new(&table, &remote, &section);
        // A re-entry through the map makes A's hold this thread's record.
        let guard = a.take();
        let again = a.take();
        a.unlock(&again, false);
        a.unlock(&guard, false);

        let b = Party::new(&table, &remote, &section);
        let other = thread::spawn({
            let inside = Arc::clone(&inside);
            move || {
                let guard = b.take();
                inside.enter(2);
                inside.leave();
                b.unlock(&guard, false);
            }
        });
        let guard = a.take();
        assert!(!guard.is_fast(), "a stale record re-entered");
        inside.enter(1);
        inside.leave();
        a.unlock(&guard, false);
        other.join().unwrap();
        check_empty(&table, &remote);
    });
}
