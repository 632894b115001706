//! A name's FIFO queue of local waiters: a pointer to each waiter's node, with its holder and
//! the waker of its task, which knows without a scan whether a holder has a waiter in it.
//!
//! The holders and wakers live here, under the shard lock, rather than in the nodes: the grant
//! that takes a waiter out of the queue takes them with it, and touches the node only to write
//! its state (see [`super::waiter`]).
//!
//! When the name goes to a holder, that holder's other waiters (the branches of one task's
//! `join!`, queued while someone else held the name) must be granted too, as re-entries. Asking
//! the queue at every hand-off cost a scan of all waiters (measured with callgrind: 141
//! instructions per hand-off with 7 waiters). So the queue keeps a 64-bit set of its waiters'
//! holders, one bit per holder's hash: while no two waiters share a bit, a holder whose bit is
//! clear has no waiter, and a grant scans nothing. Once two waiters share a bit (the same holder
//! twice, or two holders whose hashes collide), the set cannot tell and the next grant scans
//! the queue, rebuilding the set from the waiters that stay.

use std::collections::VecDeque;
use std::hash::{Hash, Hasher};
use std::task::Waker;

use super::Holder;
use super::waiter::Node;

/// The waiters of one name, oldest first.
#[derive(Default)]
pub(super) struct Queue {
    waiters: VecDeque<Place>,
    /// The bits of the waiters' holders (see the module docs).
    holders: u64,
    /// Two waiters share a bit: `holders` over-approximates until the next rebuild.
    shared: bool,
}

impl Queue {
    pub(super) fn is_empty(&self) -> bool {
        self.waiters.is_empty()
    }

    pub(super) fn len(&self) -> usize {
        self.waiters.len()
    }

    /// Appends the waiter `node` of `holder`, to wake `waker` (if any yet) when it is granted.
    pub(super) fn push(&mut self, node: Node, holder: Holder, waker: Option<Waker>) {
        let bit = bit(&holder);
        if self.holders & bit != 0 {
            self.shared = true;
        }
        self.holders |= bit;
        self.waiters.push_back(Place {
            node,
            holder,
            bit,
            waker,
        });
    }

    /// Takes the oldest waiter out.
    pub(super) fn pop(&mut self) -> Option<Place> {
        let place = self.waiters.pop_front()?;
        self.forget(place.bit);
        Some(place)
    }

    /// Takes `node` out, wherever it is; false if it was not queued.
    pub(super) fn remove(&mut self, node: Node) -> bool {
        let Some(at) = self.position(node) else {
            return false;
        };
        if let Some(place) = self.waiters.remove(at) {
            self.forget(place.bit);
        }
        true
    }

    /// Makes `node` wake `waker` when it is granted, unless the waker it has would wake the
    /// same task; false if `node` is not queued (it was granted or withdrew).
    pub(super) fn register(&mut self, node: Node, waker: &Waker) -> bool {
        let Some(at) = self.position(node) else {
            return false;
        };
        let slot = &mut self.waiters[at].waker;
        if !slot.as_ref().is_some_and(|w| w.will_wake(waker)) {
            *slot = Some(waker.clone());
        }
        true
    }

    /// Takes out every waiter of `holder`, whose [`bit`] is `bit`, calling `f` on each with its
    /// waker, oldest first; returns how many.
    #[inline]
    pub(super) fn take_holder(
        &mut self,
        holder: &Holder,
        bit: u64,
        f: impl FnMut(Node, Option<Waker>),
    ) -> u32 {
        if !self.shared && self.holders & bit == 0 {
            return 0;
        }
        self.scan_holder(holder, f)
    }

    /// [`take_holder`](Self::take_holder) when the set cannot rule `holder` out.
    #[inline(never)]
    fn scan_holder(&mut self, holder: &Holder, mut f: impl FnMut(Node, Option<Waker>)) -> u32 {
        let mut taken = 0;
        let (mut holders, mut shared) = (0, false);
        self.waiters.retain_mut(|place| {
            if place.holder == *holder {
                f(place.node, place.waker.take());
                taken += 1;
                return false;
            }
            shared |= holders & place.bit != 0;
            holders |= place.bit;
            true
        });
        (self.holders, self.shared) = (holders, shared);
        taken
    }

    /// Drops the queue's memory if a burst of waiters left it large (the queue is empty).
    pub(super) fn shrink(&mut self) {
        debug_assert!(self.waiters.is_empty());
        if self.waiters.capacity() > 8 {
            self.waiters = VecDeque::new();
        }
    }

    fn position(&self, node: Node) -> Option<usize> {
        self.waiters.iter().position(|place| place.node == node)
    }

    /// A waiter whose holder's bit is `bit` left.
    fn forget(&mut self, bit: u64) {
        if self.waiters.is_empty() {
            (self.holders, self.shared) = (0, false);
        } else if !self.shared {
            self.holders &= !bit;
        }
    }
}

/// A waiter's place in the queue.
pub(super) struct Place {
    pub(super) node: Node,
    pub(super) holder: Holder,
    /// The holder's [`bit`].
    pub(super) bit: u64,
    /// The task to wake when the waiter is granted; `None` until the waiting future registered
    /// it (when the waiter was queued without one).
    pub(super) waker: Option<Waker>,
}

/// The bit of `holder` in a queue's set: the top 6 bits of a multiplicative hash. Each place
/// keeps its holder's (computed once per wait).
pub(super) fn bit(holder: &Holder) -> u64 {
    let mut hasher = Mix(0);
    holder.hash(&mut hasher);
    1 << (hasher.finish() >> 58)
}

/// A few multiplications over the words of a holder (its tag and its owner's id): enough to
/// spread them over 64 bits, far cheaper than a keyed hash.
struct Mix(u64);

impl Hasher for Mix {
    fn write(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            self.write_u64(u64::from(byte));
        }
    }

    fn write_u64(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(26) ^ word).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }

    fn write_usize(&mut self, word: usize) {
        self.write_u64(word as u64);
    }

    fn write_isize(&mut self, word: isize) {
        self.write_u64(word as u64);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use std::pin::Pin;

    use super::*;
    use crate::owner::Owner;
    use crate::table::Waiter;

    fn holder() -> Holder {
        Holder {
            tag: 1,
            owner: Owner::new_unique(),
        }
    }

    /// Takes out `holder`'s waiters by a full scan, for comparison.
    fn scan(queue: &Queue, holder: &Holder) -> usize {
        queue
            .waiters
            .iter()
            .filter(|place| place.holder == *holder)
            .count()
    }

    #[test]
    fn finds_every_twin_whatever_the_bits() {
        // Many holders, so that bits collide; twins pushed at random places; every answer of
        // `take_holder` is compared with a scan.
        let holders: Vec<Holder> = (0..200).map(|_| holder()).collect();
        // Nodes to point to (never dereferenced by the queue; left `Idle`).
        let nodes: Vec<Pin<Box<Waiter>>> = (0..20_000).map(|_| Box::pin(Waiter::new())).collect();
        let mut queue = Queue::default();
        let mut seed = 0x2545_F491_4F6C_DD1Du64;
        let mut next = |n: usize| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed % n as u64) as usize
        };
        for round in 0..20_000 {
            match next(4) {
                0 | 1 => {
                    let holder = holders[next(if round % 2 == 0 { 8 } else { 200 })];
                    queue.push(Node::new(nodes[round].as_ref()), holder, None);
                }
                2 => {
                    if let Some(place) = queue.pop() {
                        let expected = scan(&queue, &place.holder);
                        let taken = queue.take_holder(&place.holder, place.bit, |_, _| {});
                        assert_eq!(taken as usize, expected, "round {round}");
                        assert_eq!(scan(&queue, &place.holder), 0);
                    }
                }
                _ => {
                    if !queue.is_empty() {
                        let at = next(queue.len());
                        let node = queue.waiters[at].node;
                        assert!(queue.remove(node));
                        assert!(!queue.remove(node));
                    }
                }
            }
            // The set's promise: a clear bit means no waiter of that holder.
            if !queue.shared {
                for holder in &holders {
                    if queue.holders & bit(holder) == 0 {
                        assert_eq!(scan(&queue, holder), 0, "round {round}");
                    }
                }
                assert_eq!(queue.holders.count_ones() as usize, queue.len());
            }
        }
    }

    #[test]
    fn distinct_task_like_owners_rarely_share_a_bit() {
        // Not a correctness property, the reason for the design: 8 holders of one manager
        // usually fit without a shared bit, so a grant scans nothing.
        let fits = (0..1_000)
            .filter(|_| {
                let bits = (0..8).fold(0u64, |bits, _| bits | bit(&holder()));
                bits.count_ones() == 8
            })
            .count();
        assert!(fits > 500, "{fits} of 1000 sets of 8 holders fit");
    }
}
