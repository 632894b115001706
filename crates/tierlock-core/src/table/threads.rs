//! The tier driven by OS threads, each waiting in a node pinned on its stack: hand-offs,
//! withdrawals while being granted, waiters that move to another waker. Small enough to run
//! under Miri, which checks the queue's pointers to the nodes (see [`super::waiter`]) for
//! use-after-free, aliasing and data races:
//!
//! ```text
//! cargo +nightly miri test -p tierlock-core --lib -- table::threads
//! ```
//!
//! A normal `cargo test` runs them with more cycles, as stress tests.

use std::future::Future;
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::task::{Context, Poll, Wake, Waker};
use std::thread;
use std::time::Duration;

use super::{Enter, Holder, Mode, Outcome, Table, Turn, Waiter};
use crate::manager::LockManager;
use crate::memory::MemoryProvider;
use crate::owner::Owner;
use crate::shards::Key;

const NAME: &str = "threads";

/// Cycles per thread: Miri is some thousand times slower.
const CYCLES: usize = if cfg!(miri) { 12 } else { 2_000 };

/// Wakes a parked thread.
struct Unpark(thread::Thread);

impl Wake for Unpark {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }
}

fn waker() -> Waker {
    Waker::from(Arc::new(Unpark(thread::current())))
}

/// Polls `future` on this thread until it is ready, parking in between.
fn block_on<F: Future>(future: F) -> F::Output {
    let mut future = pin!(future);
    let waker = waker();
    let mut cx = Context::from_waker(&waker);
    loop {
        if let Poll::Ready(output) = future.as_mut().poll(&mut cx) {
            return output;
        }
        thread::park();
    }
}

/// Who is inside the critical section.
#[derive(Default)]
struct Section(AtomicUsize);

impl Section {
    fn run(&self) {
        assert_eq!(self.0.fetch_add(1, SeqCst), 0, "two holders at once");
        thread::yield_now();
        self.0.fetch_sub(1, SeqCst);
    }
}

fn holder() -> Holder {
    Holder {
        tag: 0,
        owner: Owner::new_unique(),
    }
}

/// Takes the name in `waiter` as the manager's acquisition future does (the waker given at
/// enqueue), moving to a new waker after the first wait if `move_waker`.
fn take(table: &Table, holder: Holder, waiter: Pin<&Waiter>, move_waker: bool) -> Key {
    let mut queued = None;
    let mut polls = 0;
    let turn = block_on(std::future::poll_fn(|cx| {
        polls += 1;
        match queued.as_mut() {
            None => match table.enter_as(
                NAME,
                holder.tag,
                holder.owner,
                Some(waiter),
                Some(cx.waker()),
            ) {
                Enter::Acquired(key) => Poll::Ready(Turn::Granted(key)),
                Enter::Queued(ticket) => {
                    queued = Some(ticket);
                    Poll::Pending
                }
                _ => panic!("neither acquired nor queued"),
            },
            // A poll with another waker (the future moved to another task) registers it.
            Some(ticket) if move_waker && polls == 2 => {
                let other = waker();
                let poll = ticket.poll_turn(&mut Context::from_waker(&other), false);
                if poll.is_pending() {
                    cx.waker().wake_by_ref();
                }
                poll
            }
            Some(ticket) => ticket.poll_turn(cx, false),
        }
    }));
    match turn {
        Turn::Granted(key) => key,
        _ => panic!("not granted"),
    }
}

/// Threads take one name in turn, each waiting in a node on its stack; every third attempt
/// queues and withdraws at once (so it may be granted while it withdraws: its ticket then
/// releases), and every fifth moves to another waker while queued.
#[test]
fn threads_hand_off_withdraw_and_move_wakers() {
    let table = Arc::new(Table::new(Mode::Memory));
    let section = Arc::new(Section::default());
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let (table, section) = (Arc::clone(&table), Arc::clone(&section));
            thread::spawn(move || {
                let holder = holder();
                for i in 0..CYCLES {
                    let waiter = pin!(Waiter::new());
                    let waiter = waiter.into_ref();
                    if (i + t) % 3 == 0 {
                        match table.enter(NAME, holder, Some(waiter)) {
                            Enter::Acquired(key) => {
                                section.run();
                                let release = table.release_key(&key, &holder);
                                assert_ne!(release.outcome, Outcome::NotHeld);
                            }
                            Enter::Queued(ticket) => {
                                thread::yield_now();
                                drop(ticket);
                            }
                            _ => panic!("neither acquired nor queued"),
                        }
                        continue;
                    }
                    let key = take(&table, holder, waiter, (i + t) % 5 == 0);
                    section.run();
                    let release = table.release_key(&key, &holder);
                    assert_ne!(release.outcome, Outcome::NotHeld);
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().expect("a thread failed");
    }
    assert_eq!(table.len(), 0, "an entry outlived its holders and waiters");
}

/// The manager's own acquisition future, which holds its node inline, pinned with it: threads
/// lock a name, hold it across a yield, and every third acquisition is polled once and dropped
/// (cancelled while queued, or just granted).
#[test]
fn acquisition_futures_on_threads() {
    let locks = LockManager::new(MemoryProvider::new());
    let section = Arc::new(Section::default());
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let (locks, section) = (locks.clone(), Arc::clone(&section));
            thread::spawn(move || {
                for i in 0..CYCLES {
                    if (i + t) % 3 == 0 {
                        let mut lock = pin!(locks.lock(NAME, Duration::MAX));
                        let waker = waker();
                        if let Poll::Ready(guard) =
                            lock.as_mut().poll(&mut Context::from_waker(&waker))
                        {
                            section.run();
                            drop(guard.expect("lock failed"));
                        }
                        continue;
                    }
                    let guard = block_on(locks.lock(NAME, Duration::MAX)).expect("lock failed");
                    section.run();
                    drop(guard);
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().expect("a thread failed");
    }
    assert_eq!(locks.stats().entries, 0, "an entry outlived its holders");
}
