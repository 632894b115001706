//! One contended variant alone, for profilers: `cargo run --release -p tierlock-benches
//! --example handoff -- <tierlock|naive|naivec|tokio> <workers> <rounds> [yield]` (`naive` is the
//! naive keyed lock A, `naivec` the one that removes idle entries, C). Each round: 8 tasks
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

/// One round of `variant`: `TASKS` tasks on a fresh runtime; returns M critical sections/s.
fn round(variant: &str, workers: usize, yields: bool, locks: &LockManager) -> f64 {
    let naive = Arc::new(NaiveStd::new());
    let mutex = Arc::new(tokio::sync::Mutex::new(()));
    let rt = multi_thread(workers);
    let counter = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    rt.block_on(async {
        let mut handles = Vec::new();
        for _ in 0..TASKS {
            let counter = Arc::clone(&counter);
            let (locks, naive, mutex) = (locks.clone(), Arc::clone(&naive), Arc::clone(&mutex));
            let variant = variant.to_owned();
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
                        "naivec" => {
                            let g = naive.lock_c(NAME).await;
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
    (TASKS * CYCLES) as f64 / elapsed.as_secs_f64() / 1e6
}

/// Median, 10th and 90th percentile.
fn spread(mut values: Vec<f64>) -> (f64, f64, f64) {
    values.sort_by(f64::total_cmp);
    let at = |q: f64| values[((values.len() - 1) as f64 * q).round() as usize];
    (at(0.5), at(0.1), at(0.9))
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    // One variant, or several separated by commas: then each round runs each of them (in
    // rotating order) and the first is also compared with the others round by round.
    let variants: Vec<String> = args
        .first()
        .map_or("tierlock", String::as_str)
        .split(',')
        .map(str::to_owned)
        .collect();
    let workers: usize = args.get(1).map_or(2, |s| s.parse().unwrap());
    let rounds: usize = args.get(2).map_or(100, |s| s.parse().unwrap());
    let yields = args.get(3).is_some_and(|s| s == "yield");
    let locks = LockManager::new(MemoryProvider::new());
    let mut rates = vec![Vec::new(); variants.len()];
    for r in 0..rounds {
        for i in 0..variants.len() {
            let v = (i + r) % variants.len();
            rates[v].push(round(&variants[v], workers, yields, &locks));
        }
    }
    for (variant, rates) in variants.iter().zip(&rates) {
        let (median, p10, p90) = spread(rates.clone());
        println!(
            "{variant} workers={workers} yield={yields}: median {median:.3} M/s [p10 {p10:.3} p90 {p90:.3}]"
        );
    }
    for (variant, other) in variants.iter().zip(&rates).skip(1) {
        let ratios = rates[0].iter().zip(other).map(|(a, b)| a / b).collect();
        let (median, p10, p90) = spread(ratios);
        println!(
            "paired {} / {variant}: median {median:.3} [p10 {p10:.3} p90 {p90:.3}]",
            variants[0]
        );
    }
}
