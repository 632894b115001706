//! Re-entrant acquire + release: the task already holds the name and takes it again.
//! Target: ≤ 100 ns. The first acquisition is shown beside it for scale.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::hint::black_box;
use std::time::Instant;

use common::{SHORT_NAME, TIMEOUT, current_thread, in_task};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use tierlock_core::{LockManager, MemoryProvider};

fn reentrant(c: &mut Criterion) {
    let rt = current_thread();
    let mut group = c.benchmark_group("reentrant");
    group.throughput(Throughput::Elements(1));

    group.bench_function("tierlock_depth2", |b| {
        let locks = LockManager::new(MemoryProvider::new());
        b.iter_custom(|iters| {
            let locks = locks.clone();
            in_task(&rt, async move {
                let outer = locks.lock(SHORT_NAME, TIMEOUT).await.unwrap();
                let start = Instant::now();
                for _ in 0..iters {
                    let guard = locks.lock(black_box(SHORT_NAME), TIMEOUT).await.unwrap();
                    drop(black_box(guard));
                }
                let elapsed = start.elapsed();
                assert_eq!(
                    locks.stats().held,
                    1,
                    "the outer guard still holds the name"
                );
                drop(outer);
                assert_eq!(locks.stats().entries, 0);
                elapsed
            })
        });
    });

    group.bench_function("tierlock_try_lock_depth2", |b| {
        let locks = LockManager::new(MemoryProvider::new());
        b.iter_custom(|iters| {
            let locks = locks.clone();
            in_task(&rt, async move {
                let outer = locks.lock(SHORT_NAME, TIMEOUT).await.unwrap();
                let start = Instant::now();
                for _ in 0..iters {
                    let guard = locks.try_lock(black_box(SHORT_NAME)).await.unwrap();
                    drop(black_box(guard.expect("re-entry never fails")));
                }
                let elapsed = start.elapsed();
                drop(outer);
                elapsed
            })
        });
    });

    group.finish();
}

criterion_group!(benches, reentrant);
criterion_main!(benches);
