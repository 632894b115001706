//! Shared by the in-process tier's microbenches: names, the task wrapper and the paired
//! comparison they print; the naive baselines and runtimes are the crate's (`tierlock_benches`).
//!
//! Each bench target compiles this module on its own and uses a subset of it.
#![allow(dead_code, unused_imports)]

use std::future::Future;
use std::time::Duration;

use tokio::runtime::Runtime;

/// The timeout passed to `LockManager::lock` in every bench.
pub const TIMEOUT: Duration = Duration::from_secs(1);

/// A short name (stored inline by tierlock's `SmolStr`, ≤ 23 bytes).
pub const SHORT_NAME: &str = "tenant:42:migrate";
/// A long name (> 23 bytes: tierlock's key is a heap `Arc<str>`).
pub const LONG_NAME: &str = "tenant:4242:orders:2024-06:invoice-export:nightly";

pub use tierlock_benches::naive::{CleanupGuard, NaiveFold, NaiveKeyed, NaiveStd};
pub use tierlock_benches::{current_thread, in_task, load_average, multi_thread, time_pairs};

/// A measured variant for [`interleaved`]: runs `iters` operations and returns the time taken.
pub type Timed<'a> = (&'static str, Box<dyn FnMut(u64) -> Duration + 'a>);

/// The paired comparison: `rounds` rounds, each timing every variant once for `iters`
/// operations in rotating order, so that drifts of the machine's load hit all variants alike.
/// Prints, per variant, the median ns per operation with the 10th-90th percentile, and for
/// each `(variant, baseline)` pair the median of the per-round ratios (both measured in the
/// same round), with the load average before and after.
pub fn interleaved(
    group: &str,
    rounds: usize,
    iters: u64,
    variants: &mut [Timed<'_>],
    pairs: &[(usize, usize)],
) {
    let before = load_average();
    let mut ns: Vec<Vec<f64>> = vec![Vec::with_capacity(rounds); variants.len()];
    for r in 0..rounds {
        for i in 0..variants.len() {
            let v = (i + r) % variants.len();
            let elapsed = (variants[v].1)(iters);
            ns[v].push(elapsed.as_nanos() as f64 / iters as f64);
        }
    }
    let quantile = |values: &[f64], q: f64| {
        let mut sorted = values.to_vec();
        sorted.sort_by(f64::total_cmp);
        sorted[((sorted.len() - 1) as f64 * q).round() as usize]
    };
    eprintln!(
        "{group}, interleaved: {rounds} rounds x {iters} ops; load {before} -> {}; ns/op median [p10 p90]",
        load_average()
    );
    for ((name, _), ns) in variants.iter().zip(&ns) {
        eprintln!(
            "  {name:<32} {:7.1}  [{:6.1} {:6.1}]",
            quantile(ns, 0.5),
            quantile(ns, 0.1),
            quantile(ns, 0.9)
        );
    }
    for &(v, base) in pairs {
        let ratios: Vec<f64> = ns[v].iter().zip(&ns[base]).map(|(a, b)| a / b).collect();
        eprintln!(
            "  ratio {} / {}: median {:.2} [{:.2} {:.2}]",
            variants[v].0,
            variants[base].0,
            quantile(&ratios, 0.5),
            quantile(&ratios, 0.1),
            quantile(&ratios, 0.9)
        );
    }
}
