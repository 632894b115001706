//! The tickets that own a name's unfinished states, and what their `Drop`s undo.
//!
//! * [`Queued`]: a place in a name's queue. Waiting consumes it and turns it into a [`Turn`];
//!   dropping it (the `lock` future cancelled) withdraws from the queue, and if the turn had
//!   already come, passes it on: a grant is released at once (a turn boundary), an escalation
//!   is abandoned.
//! * [`Escalation`]: the name is ours but the external lock is not yet. [`Escalation::install`]
//!   completes it with the external lock; dropping it abandons the turn, which goes to the next
//!   waiter (or the entry goes).
//!
//! These are the only drop guards of the tier; [`LockGuard`](crate::LockGuard) is the guard of
//! a complete lock. Each ticket keeps its parts in an `Option` that completing takes, so `Drop`
//! undoes exactly the tickets that were not completed.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use super::{Grant, Holder, Table, Waiter};
use crate::provider::ExternalLock;
use crate::shards::Key;

/// What waiting in the queue gave.
pub(crate) enum Turn<'a> {
    /// The lock was handed to the waiter, external lock included: one guard is the caller's.
    Granted(Key),
    /// The waiter is the holder and must take the external lock.
    Escalate(Escalation<'a>),
    /// The deadline passed; the waiter is gone from the queue.
    TimedOut(Key),
}

/// A place in a name's queue (see the module docs): the queued waiter node, which the ticket
/// borrows (the node outlives it, and the ticket takes the node out of the queue when dropped).
pub(crate) struct Queued<'a> {
    table: &'a Table,
    key: Key,
    /// `None` once the ticket was completed.
    waiter: Option<Pin<&'a Waiter>>,
    holder: Holder,
}

impl<'a> Queued<'a> {
    pub(super) fn new(table: &'a Table, key: Key, waiter: Pin<&'a Waiter>, holder: Holder) -> Self {
        Queued {
            table,
            key,
            waiter: Some(waiter),
            holder,
        }
    }

    /// The waiting holder.
    pub(crate) fn holder(&self) -> Holder {
        self.holder
    }

    /// Waits until the turn comes or `deadline` passes. Cancel-safe: dropping the future drops
    /// the ticket, which withdraws. For waits written as `async` code (the memory provider
    /// behind the `Provider` trait, the loom models); the manager's acquisition future polls the
    /// ticket itself ([`poll_turn`](Self::poll_turn)).
    pub(crate) async fn wait(mut self, deadline: Option<Instant>) -> Turn<'a> {
        match deadline {
            None => self.await,
            Some(deadline) => match tokio::time::timeout_at(deadline.into(), &mut self).await {
                Ok(turn) => turn,
                Err(_) => self.time_out(),
            },
        }
    }

    /// The deadline passed: leaves the queue, unless the turn came meanwhile. A late grant is
    /// kept (the lock is the caller's); a late escalation is abandoned (no time is left to
    /// take the external lock).
    pub(crate) fn time_out(&mut self) -> Turn<'a> {
        let grant = match self.waiter {
            Some(waiter) => match self.table.withdraw(&self.key, waiter) {
                Grant::Escalate => {
                    drop(Escalation::new(self.table, self.key.clone(), self.holder));
                    Grant::Waiting
                }
                grant => grant,
            },
            None => Grant::Waiting,
        };
        self.complete(grant)
    }

    /// Turns the ticket into the turn it was given; the ticket is spent (its key moves into
    /// the turn).
    fn complete(&mut self, grant: Grant) -> Turn<'a> {
        let table = self.table;
        if self.waiter.take().is_none() {
            debug_assert!(false, "a queued ticket was completed twice");
            return Turn::TimedOut(self.key.clone());
        }
        let key = self.key.take();
        match grant {
            Grant::Granted => Turn::Granted(key),
            Grant::Escalate => Turn::Escalate(Escalation::new(table, key, self.holder)),
            Grant::Waiting | Grant::Idle => Turn::TimedOut(key),
        }
    }

    /// The turn, if it came; else `Pending`, with the task's waker registered (under the shard
    /// lock, see `waiter`) unless `registered` says it already is (the poll that queued it).
    pub(crate) fn poll_turn(&mut self, cx: &mut Context<'_>, registered: bool) -> Poll<Turn<'a>> {
        let grant = match self.waiter {
            Some(waiter) => match waiter.grant_state() {
                Grant::Waiting if registered => return Poll::Pending,
                Grant::Waiting => match self.table.register(&self.key, waiter, cx.waker()) {
                    Grant::Waiting => return Poll::Pending,
                    grant => grant,
                },
                grant => grant,
            },
            None => Grant::Waiting,
        };
        Poll::Ready(self.complete(grant))
    }
}

/// The ticket waits for its turn, with no deadline. It must not be polled once it resolved (a
/// spent ticket has no turn: a debug build panics, a release build resolves to `TimedOut`).
impl<'a> Future for Queued<'a> {
    type Output = Turn<'a>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Turn<'a>> {
        self.get_mut().poll_turn(cx, false)
    }
}

impl Drop for Queued<'_> {
    /// A spent ticket (the common case: its wait ended) has nothing to undo; only a ticket
    /// dropped while it waits withdraws (out of line).
    #[inline]
    fn drop(&mut self) {
        if let Some(waiter) = self.waiter.take() {
            self.withdraw_dropped(waiter);
        }
    }
}

impl Queued<'_> {
    /// Withdraws the waiter of a ticket dropped before its wait ended (the `lock` future
    /// cancelled), passing on a turn that came meanwhile.
    #[inline(never)]
    fn withdraw_dropped(&mut self, waiter: Pin<&Waiter>) {
        let (table, key) = (self.table, &self.key);
        match table.withdraw(key, waiter) {
            Grant::Waiting | Grant::Idle => {}
            Grant::Escalate => drop(Escalation::new(table, key.clone(), self.holder)),
            Grant::Granted => {
                let release = table.release_key(key, &self.holder);
                if let Some(external) = release.external {
                    table.dispose(external);
                }
            }
        }
    }
}

/// The name is ours and the external lock is to be taken (see the module docs).
pub(crate) struct Escalation<'a> {
    table: &'a Table,
    key: Key,
    /// `None` once the ticket was completed.
    holder: Option<Holder>,
}

impl<'a> Escalation<'a> {
    pub(super) fn new(table: &'a Table, key: Key, holder: Holder) -> Self {
        Escalation {
            table,
            key,
            holder: Some(holder),
        }
    }

    /// The name being escalated.
    pub(crate) fn key(&self) -> &Key {
        &self.key
    }

    /// When to start taking the external lock, if it was just handed back to another process.
    pub(crate) fn yield_until(&self) -> Option<Instant> {
        self.table.yield_until(&self.key)
    }

    /// Completes the escalation: the entry holds `external` and the caller has one guard.
    ///
    /// # Errors
    ///
    /// Gives `external` back if the entry was not escalating for this holder, which the
    /// table's invariants rule out (a debug build panics).
    pub(crate) fn install(
        mut self,
        external: Box<dyn ExternalLock>,
    ) -> Result<Key, Box<dyn ExternalLock>> {
        let Some(holder) = self.holder.take() else {
            debug_assert!(false, "an escalation was completed twice");
            return Err(external);
        };
        let result = self.table.install(&self.key, holder, external);
        debug_assert!(
            result.is_ok(),
            "installed an external lock on an entry not escalating"
        );
        result.map(|()| self.key.clone())
    }
}

impl Drop for Escalation<'_> {
    fn drop(&mut self) {
        if let Some(holder) = self.holder.take() {
            self.table.abandon(&self.key, holder);
        }
    }
}
