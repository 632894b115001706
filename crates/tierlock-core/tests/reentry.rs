//! Re-entries counted from the thread's record of its last hold (without the shard lock), tried
//! hard: many tasks on few names and four workers, nested guards dropped in random order, some
//! on other tasks and threads, while the same owners release and take the names again in new
//! turns (so records go stale under them).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use tierlock_core::{LockGuard, LockManager, MemoryProvider};
use tierlock_testkit::CountingProvider;
use tierlock_testkit::conformance::Rng;

const LONG: Duration = Duration::from_secs(30);
const NAMES: usize = 4;

/// Who holds each name, as the test sees it: set when an owner's first guard is handed out,
/// cleared just before its last guard is released, so two owners inside at once is a failure
/// of the lock.
struct Occupants([AtomicU64; NAMES]);

/// One guard of a hold; the hold's last one clears the occupant before it releases.
struct Counted {
    guard: Option<LockGuard>,
    live: Arc<AtomicUsize>,
    occupants: Arc<Occupants>,
    name: usize,
}

impl Drop for Counted {
    fn drop(&mut self) {
        if self.live.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.occupants.0[self.name].store(0, Ordering::SeqCst);
        }
        drop(self.guard.take());
    }
}

async fn churn(locks: LockManager, occupants: Arc<Occupants>, seed: u64, rounds: u32) -> u64 {
    let mut rng = Rng::new(seed);
    let me = seed;
    let mut reentries = 0;
    // This task's live guards per name, across rounds: a guard of an earlier round sent to
    // another task may still hold the name when this task takes it again (a re-entry then).
    let lives: Vec<Arc<AtomicUsize>> = (0..NAMES).map(|_| Arc::default()).collect();
    // The tasks that drop guards elsewhere, awaited at the end so that their panics count.
    let mut droppers = Vec::new();
    for _ in 0..rounds {
        let name = rng.below(NAMES as u64) as usize;
        let label = format!("reentry:{name}");
        let live = &lives[name];
        let wrap = |guard| {
            if live.fetch_add(1, Ordering::SeqCst) == 0 {
                let previous = occupants.0[name].swap(me, Ordering::SeqCst);
                // `me`: our own last guard is between clearing the mark and its release.
                assert!(
                    previous == 0 || previous == me,
                    "{label}: owner {me} got in beside {previous}"
                );
            }
            Counted {
                guard: Some(guard),
                live: Arc::clone(live),
                occupants: Arc::clone(&occupants),
                name,
            }
        };
        let mut guards = vec![wrap(locks.lock(&label, LONG).await.unwrap())];
        for _ in 0..rng.below(4) {
            let guard = if rng.below(2) == 0 {
                locks.lock(&label, Duration::ZERO).await.unwrap()
            } else {
                locks
                    .try_lock(&label)
                    .await
                    .unwrap()
                    .expect("a re-entry is never busy")
            };
            guards.push(wrap(guard));
            reentries += 1;
        }
        // Let go in a random order: some here, some on another task (and maybe thread), the
        // first of them perhaps the last to go.
        while !guards.is_empty() {
            let guard = guards.swap_remove(rng.below(guards.len() as u64) as usize);
            match rng.below(4) {
                0 => {
                    droppers.push(tokio::spawn(async move {
                        tokio::task::yield_now().await;
                        drop(guard);
                    }));
                }
                1 => tokio::task::yield_now().await,
                _ => drop(guard),
            }
        }
        if rng.below(8) == 0 {
            tokio::task::yield_now().await;
        }
    }
    for dropper in droppers {
        dropper
            .await
            .expect("a guard's drop on another task panicked");
    }
    reentries
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn reentries_from_the_record_keep_one_holder_per_name() {
    let counting = CountingProvider::new(MemoryProvider::new());
    for locks in [
        LockManager::new(MemoryProvider::new()),
        LockManager::new(counting.clone()),
    ] {
        let occupants = Arc::new(Occupants(Default::default()));
        let tasks: Vec<_> = (1..=8u64)
            .map(|seed| tokio::spawn(churn(locks.clone(), Arc::clone(&occupants), seed, 10_000)))
            .collect();
        let mut reentries = 0;
        for task in tasks {
            reentries += task.await.unwrap();
        }
        assert!(reentries > 10_000, "only {reentries} re-entries were tried");
        assert_eq!(locks.stats().entries, 0, "{:?}", locks.stats());
        for name in 0..NAMES {
            let label = format!("reentry:{name}");
            assert!(
                locks.try_lock(&label).await.unwrap().is_some(),
                "{label} is stuck"
            );
        }
    }
    assert_eq!(counting.held(), 0, "the provider still holds locks");
    assert_eq!(counting.acquired(), counting.released());
}
