//! Uncontended acquire + release of one name, one task on a current-thread runtime:
//! tierlock (memory provider) against the naive keyed lock and a bare `tokio::sync::Mutex`.
//!
//! Every variant runs its whole inner loop inside one spawned task (`iter_custom`), so no
//! per-iteration `block_on` or spawn cost is measured.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::hint::black_box;
use std::sync::Arc;
use std::time::Instant;

use common::{
    LONG_NAME, NaiveFold, NaiveStd, SHORT_NAME, TIMEOUT, Timed, current_thread, in_task,
    interleaved, time_pairs,
};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use tierlock_core::{LockManager, MemoryProvider};

/// The paired comparison of `common::interleaved`, short names: tierlock against the naive
/// keyed locks and a bare tokio mutex, each timed in every round.
fn paired(rt: &tokio::runtime::Runtime) {
    let locks = LockManager::new(MemoryProvider::new());
    let (a, b, c) = (
        Arc::new(NaiveStd::new()),
        Arc::new(NaiveStd::new()),
        Arc::new(NaiveStd::new()),
    );
    let mutex = Arc::new(tokio::sync::Mutex::new(()));
    let mut variants: Vec<Timed<'_>> = vec![
        (
            "tierlock",
            Box::new(|iters| {
                time_pairs!(rt, locks, iters, |locks| locks
                    .lock(black_box(SHORT_NAME), TIMEOUT)
                    .await
                    .unwrap())
            }),
        ),
        (
            "naive_a_get_then_insert",
            Box::new(|iters| time_pairs!(rt, a, iters, |a| a.lock_a(black_box(SHORT_NAME)).await)),
        ),
        (
            "naive_b_entry",
            Box::new(|iters| time_pairs!(rt, b, iters, |b| b.lock_b(black_box(SHORT_NAME)).await)),
        ),
        (
            "naive_c_cleanup",
            Box::new(|iters| time_pairs!(rt, c, iters, |c| c.lock_c(black_box(SHORT_NAME)).await)),
        ),
        (
            "tokio_mutex",
            Box::new(|iters| {
                time_pairs!(rt, mutex, iters, |mutex| black_box(&*mutex).lock().await)
            }),
        ),
    ];
    interleaved(
        "uncontended (short name)",
        40,
        100_000,
        &mut variants,
        &[(0, 1), (0, 3), (0, 4)],
    );
    assert_eq!(locks.stats().entries, 0);
}

fn uncontended(c: &mut Criterion) {
    let rt = current_thread();
    paired(&rt);
    let mut group = c.benchmark_group("uncontended");
    group.throughput(Throughput::Elements(1));

    for (label, name) in [("short", SHORT_NAME), ("long", LONG_NAME)] {
        group.bench_function(BenchmarkId::new("tierlock", label), |b| {
            let locks = LockManager::new(MemoryProvider::new());
            b.iter_custom(|iters| {
                let locks = locks.clone();
                in_task(&rt, async move {
                    let start = Instant::now();
                    for _ in 0..iters {
                        let guard = locks.lock(black_box(name), TIMEOUT).await.unwrap();
                        drop(black_box(guard));
                    }
                    let elapsed = start.elapsed();
                    assert_eq!(locks.stats().entries, 0);
                    elapsed
                })
            });
        });

        group.bench_function(BenchmarkId::new("naive_a_get_then_insert", label), |b| {
            let naive = Arc::new(NaiveStd::new());
            b.iter_custom(|iters| {
                time_pairs!(&rt, naive, iters, |n| n.lock_a(black_box(name)).await)
            });
        });

        group.bench_function(BenchmarkId::new("naive_b_entry", label), |b| {
            let naive = Arc::new(NaiveStd::new());
            b.iter_custom(|iters| {
                time_pairs!(&rt, naive, iters, |n| n.lock_b(black_box(name)).await)
            });
        });

        group.bench_function(BenchmarkId::new("naive_c_cleanup", label), |b| {
            let naive = Arc::new(NaiveStd::new());
            b.iter_custom(|iters| {
                let naive = Arc::clone(&naive);
                in_task(&rt, async move {
                    let start = Instant::now();
                    for _ in 0..iters {
                        let guard = naive.lock_c(black_box(name)).await;
                        drop(black_box(guard));
                    }
                    let elapsed = start.elapsed();
                    assert_eq!(naive.len(), 0);
                    elapsed
                })
            });
        });

        // Not a baseline the issue asks for: the naive lock A with tierlock's hasher, to show
        // how much of any difference is SipHash vs foldhash.
        group.bench_function(BenchmarkId::new("naive_a_foldhash", label), |b| {
            let naive = Arc::new(NaiveFold::new());
            b.iter_custom(|iters| {
                time_pairs!(&rt, naive, iters, |n| n.lock_a(black_box(name)).await)
            });
        });
    }

    group.bench_function("tokio_mutex", |b| {
        let mutex = Arc::new(tokio::sync::Mutex::new(()));
        b.iter_custom(|iters| time_pairs!(&rt, mutex, iters, |m| black_box(&*m).lock().await));
    });

    group.finish();
}

criterion_group!(benches, uncontended);
criterion_main!(benches);
