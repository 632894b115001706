//! 8 tasks contending on one name on a 2-worker multi-thread runtime, each doing `CYCLES`
//! lock / tiny critical section / unlock cycles. Throughput = critical sections per second
//! (with 8 contenders nearly every one of them ends in a hand-off to a queued waiter).
//!
//! One criterion iteration is one round: spawn the 8 tasks, join them. The critical section is
//! a non-atomic increment (load, then store) of a shared counter, checked after each round.

mod common;

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::{NaiveStd, SHORT_NAME, TIMEOUT, multi_thread};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use tierlock_core::{LockManager, MemoryProvider};
use tokio::runtime::Runtime;

const TASKS: u64 = 8;
const CYCLES: u64 = 1_000;
const WORKERS: usize = 2;

/// The critical section: an increment that is only correct under mutual exclusion.
fn critical_section(counter: &AtomicU64) {
    let value = counter.load(Ordering::Relaxed);
    counter.store(value + 1, Ordering::Relaxed);
}

/// Runs `iters` rounds of `TASKS` tasks, each running `task(counter)` `CYCLES` times.
fn rounds<F, Fut>(rt: &Runtime, iters: u64, task: F) -> Duration
where
    F: Fn(Arc<AtomicU64>) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let mut total = Duration::ZERO;
    for _ in 0..iters {
        let counter = Arc::new(AtomicU64::new(0));
        let start = Instant::now();
        rt.block_on(async {
            let handles: Vec<_> = (0..TASKS)
                .map(|_| tokio::spawn(task(Arc::clone(&counter))))
                .collect();
            for handle in handles {
                handle.await.expect("bench task panicked");
            }
        });
        total += start.elapsed();
        assert_eq!(
            counter.load(Ordering::Relaxed),
            TASKS * CYCLES,
            "lost update"
        );
    }
    total
}

fn tierlock_task(
    locks: LockManager,
    timeout: Duration,
) -> impl Fn(Arc<AtomicU64>) -> std::pin::Pin<Box<dyn Future<Output = ()> + Send>> {
    move |counter| {
        let locks = locks.clone();
        Box::pin(async move {
            for _ in 0..CYCLES {
                let guard = locks.lock(SHORT_NAME, timeout).await.unwrap();
                critical_section(&counter);
                drop(guard);
            }
        })
    }
}

fn contended(c: &mut Criterion) {
    let rt = multi_thread(WORKERS);
    let mut group = c.benchmark_group("contended");
    group.throughput(Throughput::Elements(TASKS * CYCLES));

    // One round outside the measurement, to report how many turns were local hand-offs.
    {
        let locks = LockManager::new(MemoryProvider::new());
        rounds(&rt, 1, tierlock_task(locks.clone(), TIMEOUT));
        let stats = locks.stats();
        eprintln!(
            "contended: tierlock round: {} critical sections, {} local hand-offs, entries after: {}",
            TASKS * CYCLES,
            stats.local_handoffs,
            stats.entries
        );
    }

    group.bench_function("tierlock_timeout_1s", |b| {
        let locks = LockManager::new(MemoryProvider::new());
        b.iter_custom(|iters| rounds(&rt, iters, tierlock_task(locks.clone(), TIMEOUT)));
    });

    // `Duration::MAX` has no deadline, so a queued waiter registers no timer.
    group.bench_function("tierlock_no_timeout", |b| {
        let locks = LockManager::new(MemoryProvider::new());
        b.iter_custom(|iters| rounds(&rt, iters, tierlock_task(locks.clone(), Duration::MAX)));
    });

    group.bench_function("naive_a_get_then_insert", |b| {
        let naive = Arc::new(NaiveStd::new());
        b.iter_custom(|iters| {
            rounds(&rt, iters, |counter| {
                let naive = Arc::clone(&naive);
                async move {
                    for _ in 0..CYCLES {
                        let guard = naive.lock_a(SHORT_NAME).await;
                        critical_section(&counter);
                        drop(guard);
                    }
                }
            })
        });
    });

    group.bench_function("naive_b_entry", |b| {
        let naive = Arc::new(NaiveStd::new());
        b.iter_custom(|iters| {
            rounds(&rt, iters, |counter| {
                let naive = Arc::clone(&naive);
                async move {
                    for _ in 0..CYCLES {
                        let guard = naive.lock_b(SHORT_NAME).await;
                        critical_section(&counter);
                        drop(guard);
                    }
                }
            })
        });
    });

    group.bench_function("naive_c_cleanup", |b| {
        let naive = Arc::new(NaiveStd::new());
        b.iter_custom(|iters| {
            rounds(&rt, iters, |counter| {
                let naive = Arc::clone(&naive);
                async move {
                    for _ in 0..CYCLES {
                        let guard = naive.lock_c(SHORT_NAME).await;
                        critical_section(&counter);
                        drop(guard);
                    }
                }
            })
        });
    });

    // The naive lock A with a 1 s timeout around each wait, as tierlock's `lock` has.
    group.bench_function("naive_a_timeout_1s", |b| {
        let naive = Arc::new(NaiveStd::new());
        b.iter_custom(|iters| {
            rounds(&rt, iters, |counter| {
                let naive = Arc::clone(&naive);
                async move {
                    for _ in 0..CYCLES {
                        let guard = tokio::time::timeout(TIMEOUT, naive.lock_a(SHORT_NAME))
                            .await
                            .unwrap();
                        critical_section(&counter);
                        drop(guard);
                    }
                }
            })
        });
    });

    group.bench_function("tokio_mutex", |b| {
        let mutex = Arc::new(tokio::sync::Mutex::new(()));
        b.iter_custom(|iters| {
            rounds(&rt, iters, |counter| {
                let mutex = Arc::clone(&mutex);
                async move {
                    for _ in 0..CYCLES {
                        let guard = mutex.lock().await;
                        critical_section(&counter);
                        drop(guard);
                    }
                }
            })
        });
    });

    group.finish();
}

criterion_group!(benches, contended);
criterion_main!(benches);
