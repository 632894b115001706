//! Shared by the bench targets: the naive keyed-lock baselines and runtime helpers.
//!
//! Each bench target compiles this module on its own and uses a subset of it.
#![allow(dead_code)]

use std::future::Future;
use std::hash::BuildHasher;
use std::sync::Arc;
use std::time::Duration;

use dashmap::DashMap;
use tokio::runtime::Runtime;
use tokio::sync::{Mutex, OwnedMutexGuard};

/// The timeout passed to `LockManager::lock` in every bench.
pub const TIMEOUT: Duration = Duration::from_secs(1);

/// A short name (stored inline by tierlock's `SmolStr`, ≤ 23 bytes).
pub const SHORT_NAME: &str = "tenant:42:migrate";
/// A long name (> 23 bytes: tierlock's key is a heap `Arc<str>`).
pub const LONG_NAME: &str = "tenant:4242:orders:2024-06:invoice-export:nightly";

/// The naive keyed lock users write by hand: a concurrent map of per-name tokio mutexes.
///
/// Entries are never removed: removing one safely needs the bookkeeping tierlock does (a
/// waiter may hold a clone of the `Arc`), so the map keeps every name ever locked.
pub struct NaiveKeyed<S = std::collections::hash_map::RandomState> {
    map: DashMap<String, Arc<Mutex<()>>, S>,
}

impl<S: BuildHasher + Clone + Default> NaiveKeyed<S> {
    pub fn new() -> Self {
        NaiveKeyed {
            map: DashMap::with_hasher(S::default()),
        }
    }

    /// Variant A: a shared `get` first (no allocation when the name exists), insert if missing.
    pub fn mutex_get_then_insert(&self, name: &str) -> Arc<Mutex<()>> {
        if let Some(mutex) = self.map.get(name) {
            return Arc::clone(&mutex);
        }
        Arc::clone(&self.map.entry(name.to_owned()).or_default())
    }

    /// Variant B: the entry API (allocates the `String` key on every call).
    pub fn mutex_entry(&self, name: &str) -> Arc<Mutex<()>> {
        Arc::clone(&self.map.entry(name.to_owned()).or_default())
    }

    pub async fn lock_a(&self, name: &str) -> OwnedMutexGuard<()> {
        self.mutex_get_then_insert(name).lock_owned().await
    }

    pub async fn lock_b(&self, name: &str) -> OwnedMutexGuard<()> {
        self.mutex_entry(name).lock_owned().await
    }

    /// Variant C: A, plus removal of the entry on unlock when nobody else holds its `Arc` (the
    /// usual fix for the leak; `remove_if` runs under the shard's write lock, so no clone can
    /// be taken meanwhile). This does the same map work as tierlock: insert and remove.
    pub async fn lock_c<'a>(&'a self, name: &'a str) -> CleanupGuard<'a, S> {
        let guard = self.mutex_get_then_insert(name).lock_owned().await;
        CleanupGuard {
            map: &self.map,
            name,
            guard: Some(guard),
        }
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }
}

/// The naive keyed lock with std's default (SipHash) hasher, as most users would write it.
pub type NaiveStd = NaiveKeyed;
/// The naive keyed lock with the hasher tierlock uses, to separate hashing from the rest.
pub type NaiveFold = NaiveKeyed<foldhash::fast::RandomState>;

/// A current-thread runtime (timers enabled, as tierlock's timeouts need them).
pub fn current_thread() -> Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("current-thread runtime")
}

/// A multi-thread runtime with `workers` worker threads.
pub fn multi_thread(workers: usize) -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_all()
        .build()
        .expect("multi-thread runtime")
}

/// Runs `body` inside a spawned task (so the lock owner is a tokio task, as in real use, not
/// the `block_on` thread) and returns the time it measured.
pub fn in_task<F>(rt: &Runtime, body: F) -> Duration
where
    F: Future<Output = Duration> + Send + 'static,
{
    rt.block_on(async move { tokio::spawn(body).await.expect("bench task panicked") })
}

/// The guard of the naive keyed lock C: unlocks, then removes the entry if it is unused.
pub struct CleanupGuard<'a, S: BuildHasher + Clone> {
    map: &'a DashMap<String, Arc<Mutex<()>>, S>,
    name: &'a str,
    guard: Option<OwnedMutexGuard<()>>,
}

impl<S: BuildHasher + Clone> Drop for CleanupGuard<'_, S> {
    fn drop(&mut self) {
        drop(self.guard.take());
        self.map
            .remove_if(self.name, |_, mutex| Arc::strong_count(mutex) == 1);
    }
}

/// The 1-, 5- and 15-minute load averages (Linux), for the record next to each figure.
pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "n/a".to_owned())
}

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
