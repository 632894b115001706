//! Re-entrant acquire + release: the task already holds the name and takes it again.
//! Target: ≤ 100 ns. The first acquisition is shown beside it for scale.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::hint::black_box;
use std::time::Instant;

use std::sync::Arc;

use common::{SHORT_NAME, TIMEOUT, Timed, current_thread, in_task, interleaved, time_pairs};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use tierlock_core::{LockManager, MemoryProvider};

/// The paired comparison of `common::interleaved`: a re-entry (acquire + release while the
/// task holds the name) against a bare `tokio::sync::Mutex` lock + unlock, each timed in every
/// round.
fn paired(rt: &tokio::runtime::Runtime) {
    let locks = LockManager::new(MemoryProvider::new());
    let mutex = Arc::new(tokio::sync::Mutex::new(()));
    let mut variants: Vec<Timed<'_>> = vec![
        ("tierlock_reentry", {
            let locks = locks.clone();
            Box::new(move |iters| {
                let locks = locks.clone();
                in_task(rt, async move {
                    let outer = locks.lock(SHORT_NAME, TIMEOUT).await.unwrap();
                    let start = Instant::now();
                    for _ in 0..iters {
                        drop(black_box(
                            locks.lock(black_box(SHORT_NAME), TIMEOUT).await.unwrap(),
                        ));
                    }
                    let elapsed = start.elapsed();
                    drop(outer);
                    elapsed
                })
            })
        }),
        (
            "tokio_mutex",
            Box::new(|iters| {
                time_pairs!(rt, mutex, iters, |mutex| black_box(&*mutex).lock().await)
            }),
        ),
    ];
    interleaved("reentrant", 40, 100_000, &mut variants, &[(0, 1)]);
    assert_eq!(locks.stats().entries, 0);
}

fn reentrant(c: &mut Criterion) {
    let rt = current_thread();
    paired(&rt);
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
