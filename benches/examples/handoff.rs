//! The hand-off workload of `benches/contended.rs` (`tierlock_benches::handoff`), for profilers
//! and long paired runs:
//!
//! ```sh
//! cargo run --release -p tierlock-benches --example handoff -- VARIANTS WORKERS ROUNDS [yield]
//! ```
//!
//! `VARIANTS` is one of `tierlock` (no timeout), `naive` (the naive keyed lock A), `naivec` (C,
//! which removes idle entries), `tokio` (a bare `tokio::sync::Mutex`), or several separated by
//! commas: then each round runs each of them in rotating order, and the first is compared with
//! the others round by round (median of the per-round ratios, 10th and 90th percentiles). Each
//! round: 8 tasks on one name, 1,000 cycles each, on a fresh runtime of `WORKERS` workers; with
//! `yield`, every critical section yields while it holds the lock. `SPIN_NS=N` adds N ns of busy
//! time to every critical section (to see how the rate depends on the section's length).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use tierlock::{LockManager, MemoryProvider};
use tierlock_benches::handoff::{
    Naive, Section, Variant, naive, rate, round, tierlock, tokio_mutex,
};

/// Median, 10th and 90th percentile.
fn spread(mut values: Vec<f64>) -> (f64, f64, f64) {
    values.sort_by(f64::total_cmp);
    let at = |q: f64| values[((values.len() - 1) as f64 * q).round() as usize];
    (at(0.5), at(0.1), at(0.9))
}

fn variant(name: &str, section: Section) -> Variant {
    match name {
        "tierlock" => tierlock(
            LockManager::new(MemoryProvider::new()),
            Duration::MAX,
            section,
        ),
        "naive" => naive(Naive::A, section),
        "naivec" => naive(Naive::C, section),
        "tokio" => tokio_mutex(section),
        other => panic!("unknown variant {other:?}: tierlock, naive, naivec or tokio"),
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let names: Vec<String> = args
        .first()
        .map_or("tierlock", String::as_str)
        .split(',')
        .map(str::to_owned)
        .collect();
    let workers: usize = args.get(1).map_or(2, |s| s.parse().unwrap());
    let rounds: usize = args.get(2).map_or(100, |s| s.parse().unwrap());
    let section = Section {
        yields: args.get(3).is_some_and(|s| s == "yield"),
        spin: Duration::from_nanos(
            std::env::var("SPIN_NS")
                .ok()
                .and_then(|s| s.parse().ok())
                .unwrap_or(0),
        ),
    };
    let variants: Vec<Variant> = names.iter().map(|name| variant(name, section)).collect();
    let mut rates = vec![Vec::new(); variants.len()];
    for r in 0..rounds {
        for i in 0..variants.len() {
            let v = (i + r) % variants.len();
            rates[v].push(rate(round(workers, &variants[v])));
        }
    }
    let yields = section.yields;
    for (name, rates) in names.iter().zip(&rates) {
        let (median, p10, p90) = spread(rates.clone());
        println!(
            "{name} workers={workers} yield={yields}: median {median:.3} M/s [p10 {p10:.3} p90 {p90:.3}]"
        );
    }
    for (name, other) in names.iter().zip(&rates).skip(1) {
        let ratios = rates[0].iter().zip(other).map(|(a, b)| a / b).collect();
        let (median, p10, p90) = spread(ratios);
        println!(
            "paired {} / {name}: median {median:.3} [p10 {p10:.3} p90 {p90:.3}]",
            names[0]
        );
    }
}
