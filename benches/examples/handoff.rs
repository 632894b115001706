//! One contended variant alone, for profilers: `cargo run --release -p tierlock-benches
//! --example handoff -- <tierlock|naive|tokio> <workers> <rounds> [yield]`. Each round: 8 tasks
//! on one name, 1,000 lock / critical section / unlock cycles each (as `benches/contended.rs`);
//! prints the median rate in M critical sections/s.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tierlock::{LockManager, MemoryProvider};
use tierlock_benches::multi_thread;
use tierlock_benches::naive::NaiveStd;

const TASKS: u64 = 8;
const CYCLES: u64 = 1_000;
const NAME: &str = "tenant:42:migrate";

async fn section(counter: &AtomicU64, yields: bool) {
    let spin = spin_ns();
    if spin > 0 {
        let until = Instant::now() + Duration::from_nanos(spin);
        while Instant::now() < until {}
    }
    let value = counter.load(Ordering::Relaxed);
    if yields {
        tokio::task::yield_now().await;
    }
    counter.store(value + 1, Ordering::Relaxed);
}

/// Extra busy time per critical section (env `SPIN_NS`), to see how the rate depends on it.
fn spin_ns() -> u64 {
    static SPIN: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *SPIN.get_or_init(|| {
        std::env::var("SPIN_NS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(0)
    })
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let variant = args.first().map_or("tierlock", String::as_str).to_owned();
    let workers: usize = args.get(1).map_or(2, |s| s.parse().unwrap());
    let rounds: usize = args.get(2).map_or(100, |s| s.parse().unwrap());
    let yields = args.get(3).is_some_and(|s| s == "yield");
    let locks = LockManager::new(MemoryProvider::new());
    let naive = Arc::new(NaiveStd::new());
    let mutex = Arc::new(tokio::sync::Mutex::new(()));
    let mut rates = Vec::new();
    for _ in 0..rounds {
        let rt = multi_thread(workers);
        let counter = Arc::new(AtomicU64::new(0));
        let start = Instant::now();
        rt.block_on(async {
            let mut handles = Vec::new();
            for _ in 0..TASKS {
                let counter = Arc::clone(&counter);
                let (locks, naive, mutex) = (locks.clone(), Arc::clone(&naive), Arc::clone(&mutex));
                let variant = variant.clone();
                handles.push(tokio::spawn(async move {
                    for _ in 0..CYCLES {
                        match variant.as_str() {
                            "tierlock" => {
                                let g = locks.lock(NAME, Duration::MAX).await.unwrap();
                                section(&counter, yields).await;
                                drop(g);
                            }
                            "naive" => {
                                let g = naive.lock_a(NAME).await;
                                section(&counter, yields).await;
                                drop(g);
                            }
                            _ => {
                                let g = mutex.lock().await;
                                section(&counter, yields).await;
                                drop(g);
                            }
                        }
                    }
                }));
            }
            for h in handles {
                h.await.unwrap();
            }
        });
        let elapsed = start.elapsed();
        drop(rt);
        assert_eq!(
            counter.load(Ordering::Relaxed),
            TASKS * CYCLES,
            "lost update"
        );
        rates.push((TASKS * CYCLES) as f64 / elapsed.as_secs_f64() / 1e6);
    }
    rates.sort_by(f64::total_cmp);
    println!(
        "{variant} workers={workers} yield={yields}: median {:.3} M/s [p10 {:.3} p90 {:.3}]",
        rates[rates.len() / 2],
        rates[rates.len() / 10],
        rates[rates.len() * 9 / 10]
    );
}
