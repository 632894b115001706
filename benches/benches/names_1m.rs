//! 1,000,000 distinct names, each acquired and released once: sequentially in one task, and
//! split over 8 tasks on a 2-worker runtime. tierlock removes every entry (checked: the entry
//! count is 0 afterwards); the naive keyed lock keeps all 1,000,000 (a fresh map per
//! iteration; dropping it is not timed), except variant C, which removes unused entries. Peak memory is measured by the `million_names`
//! example, not here.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{NaiveStd, TIMEOUT, current_thread, multi_thread};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use tierlock_core::{LockManager, MemoryProvider};
use tokio::runtime::Runtime;

const NAMES: usize = 1_000_000;
const TASKS: usize = 8;
const WORKERS: usize = 2;

fn names() -> Arc<Vec<String>> {
    Arc::new((0..NAMES).map(|i| format!("tenant:{i}:job")).collect())
}

/// Locks and unlocks every name with tierlock in `tasks` tasks; returns the time taken.
fn tierlock_run(
    rt: &Runtime,
    locks: &LockManager,
    names: &Arc<Vec<String>>,
    tasks: usize,
) -> Duration {
    let chunk = NAMES / tasks;
    let start = Instant::now();
    rt.block_on(async {
        let handles: Vec<_> = (0..tasks)
            .map(|t| {
                let (locks, names) = (locks.clone(), Arc::clone(names));
                tokio::spawn(async move {
                    for name in &names[t * chunk..(t + 1) * chunk] {
                        drop(locks.lock(name, TIMEOUT).await.unwrap());
                    }
                })
            })
            .collect();
        for handle in handles {
            handle.await.expect("bench task panicked");
        }
    });
    let elapsed = start.elapsed();
    assert_eq!(locks.stats().entries, 0, "tierlock left entries behind");
    elapsed
}

/// Which naive keyed lock to run.
#[derive(Clone, Copy, PartialEq)]
enum Naive {
    /// Get, then insert if missing; keeps every entry.
    A,
    /// Entry API; keeps every entry.
    B,
    /// A, removing unused entries on unlock.
    C,
}

/// The same with a naive keyed lock on a fresh map; the map is dropped after timing.
fn naive_run(rt: &Runtime, names: &Arc<Vec<String>>, tasks: usize, variant: Naive) -> Duration {
    let chunk = NAMES / tasks;
    let naive = Arc::new(NaiveStd::new());
    let start = Instant::now();
    rt.block_on(async {
        let handles: Vec<_> = (0..tasks)
            .map(|t| {
                let (naive, names) = (Arc::clone(&naive), Arc::clone(names));
                tokio::spawn(async move {
                    for name in &names[t * chunk..(t + 1) * chunk] {
                        match variant {
                            Naive::A => drop(naive.lock_a(name).await),
                            Naive::B => drop(naive.lock_b(name).await),
                            Naive::C => drop(naive.lock_c(name).await),
                        }
                    }
                })
            })
            .collect();
        for handle in handles {
            handle.await.expect("bench task panicked");
        }
    });
    let elapsed = start.elapsed();
    let expected = if variant == Naive::C { 0 } else { NAMES };
    assert_eq!(naive.len(), expected, "entries left in the naive map");
    elapsed
}

fn names_1m(c: &mut Criterion) {
    let names = names();
    let single = current_thread();
    let multi = multi_thread(WORKERS);
    let mut group = c.benchmark_group("names_1m");
    group.sample_size(10);
    group.throughput(Throughput::Elements(NAMES as u64));

    group.bench_function("tierlock_sequential", |b| {
        let locks = LockManager::new(MemoryProvider::new());
        b.iter_custom(|iters| {
            (0..iters)
                .map(|_| tierlock_run(&single, &locks, &names, 1))
                .sum()
        });
    });
    group.bench_function("naive_a_sequential", |b| {
        b.iter_custom(|iters| {
            (0..iters)
                .map(|_| naive_run(&single, &names, 1, Naive::A))
                .sum()
        });
    });
    group.bench_function("naive_b_sequential", |b| {
        b.iter_custom(|iters| {
            (0..iters)
                .map(|_| naive_run(&single, &names, 1, Naive::B))
                .sum()
        });
    });
    group.bench_function("naive_c_cleanup_sequential", |b| {
        b.iter_custom(|iters| {
            (0..iters)
                .map(|_| naive_run(&single, &names, 1, Naive::C))
                .sum()
        });
    });
    group.bench_function("tierlock_8_tasks", |b| {
        let locks = LockManager::new(MemoryProvider::new());
        b.iter_custom(|iters| {
            (0..iters)
                .map(|_| tierlock_run(&multi, &locks, &names, TASKS))
                .sum()
        });
    });
    group.bench_function("naive_a_8_tasks", |b| {
        b.iter_custom(|iters| {
            (0..iters)
                .map(|_| naive_run(&multi, &names, TASKS, Naive::A))
                .sum()
        });
    });

    group.finish();
}

criterion_group!(benches, names_1m);
criterion_main!(benches);
