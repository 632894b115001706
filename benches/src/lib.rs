//! The side-by-side benchmarks of tierlock, and what they share.
//!
//! `cargo bench -p tierlock-benches --bench summary` runs every comparison in paired rounds and
//! prints one markdown table (the one `docs/benchmarks.md` quotes). The other bench targets are
//! the in-process tier's microbenches (`uncontended`, `reentrant`, `contended`, `names_1m`,
//! `floor`: paired comparisons with the naive baselines, then criterion groups) and the
//! per-provider criterion benches; `examples/million_names.rs` measures a million distinct
//! names (time, peak RSS, entries left).

#![allow(clippy::unwrap_used, clippy::expect_used)]
#![forbid(unsafe_code)]

pub mod handoff;
pub mod naive;
pub mod paired;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tierlock::{LockManager, LockName, Provider};
use tokio::runtime::Runtime;

/// Runs `body` inside a task spawned on `rt` (so the lock owner is a tokio task, as in real
/// use, not the `block_on` thread) and returns the time it measured.
pub fn in_task<F>(rt: &Runtime, body: F) -> Duration
where
    F: std::future::Future<Output = Duration> + Send + 'static,
{
    rt.block_on(async move { tokio::spawn(body).await.expect("bench task panicked") })
}

/// Times `$iters` acquire+release pairs in a task on `$rt` ([`in_task`]): each pair awaits
/// `$lock` (an expression of `$state`, a clone of `$shared`) and drops what it gives.
#[macro_export]
macro_rules! time_pairs {
    ($rt:expr, $shared:expr, $iters:expr, |$state:ident| $lock:expr) => {{
        let $state = $shared.clone();
        let iters = $iters;
        $crate::in_task($rt, async move {
            let start = std::time::Instant::now();
            for _ in 0..iters {
                drop(std::hint::black_box($lock));
            }
            start.elapsed()
        })
    }};
}

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

/// The 1-, 5- and 15-minute load averages (Linux), for the record next to each figure.
pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "n/a".to_owned())
}

/// `cycles` raw `open + flock(LOCK_EX) + unlock + close` cycles on the file `path`: what one
/// process pays to lock a file with nothing around it.
pub fn raw_flock_cycles(path: &Path, cycles: usize) {
    for _ in 0..cycles {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .unwrap_or_else(|err| panic!("open: {err}"));
        fs2::FileExt::try_lock_exclusive(&file).unwrap_or_else(|err| panic!("lock: {err}"));
        fs2::FileExt::unlock(&file).unwrap_or_else(|err| panic!("unlock: {err}"));
        drop(std::hint::black_box(file));
    }
}

/// `cycles` sequential zero-timeout `lock` + `release().await` of `name` through `locks`: the
/// name is idle in between, so every cycle takes and releases the external lock.
pub async fn manager_cycles(locks: &LockManager, name: &str, cycles: usize) {
    for _ in 0..cycles {
        let guard = locks
            .lock(name, Duration::ZERO)
            .await
            .unwrap_or_else(|err| panic!("{err}"));
        guard.release().await.unwrap_or_else(|err| panic!("{err}"));
    }
}

/// `cycles` sequential zero-timeout `lock` of `name` through `locks`, the guard dropped (the
/// release finishes in the background).
pub async fn manager_drop_cycles(locks: &LockManager, name: &str, cycles: usize) {
    for _ in 0..cycles {
        let guard = locks
            .lock(name, Duration::ZERO)
            .await
            .unwrap_or_else(|err| panic!("{err}"));
        drop(std::hint::black_box(guard));
    }
}

/// `cycles` sequential zero-timeout `acquire` + `release` of `name` straight through
/// `provider` (no in-process tier). Panics if the lock is held elsewhere.
pub async fn provider_cycles(provider: &dyn Provider, name: &LockName, cycles: usize) {
    for _ in 0..cycles {
        let lock = provider
            .acquire(name, Some(Instant::now()))
            .await
            .unwrap_or_else(|err| panic!("{err}"))
            .unwrap_or_else(|| panic!("held elsewhere"));
        lock.release().await.unwrap_or_else(|err| panic!("{err}"));
    }
}

/// Panics unless every one of at least `cycles` external acquisitions of `locks` was released:
/// the benches check that each cycle really went to the provider.
pub fn assert_every_cycle_external(locks: &LockManager, cycles: usize) {
    let stats = locks.stats();
    assert_eq!(stats.external_acquisitions, stats.external_releases);
    assert!(
        stats.external_acquisitions >= cycles as u64,
        "every cycle must take the external lock: {stats:?}"
    );
}

/// How the tasks of [`contend`] reach the provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// All tasks share one `LockManager`: the in-process tier settles who is next, the
    /// provider is asked when the name goes idle or another process wants it.
    Tier,
    /// Each task has a `LockManager` of its own on the shared provider, so every acquisition
    /// goes to the provider (what a process without an in-process tier does).
    Bypassed,
}

/// `tasks` tasks, spawned on the current runtime, each take `name` `turns` times through
/// managers on `provider` (see [`Route`]) and yield to the runtime while holding it; returns
/// the time for all `tasks × turns` critical sections and the external acquisitions made.
///
/// Panics if two critical sections overlap or a lock call fails (60 s timeout).
pub async fn contend(
    provider: &Arc<dyn Provider>,
    route: Route,
    name: &str,
    tasks: usize,
    turns: usize,
) -> (Duration, u64) {
    let shared = LockManager::from_arc(Arc::clone(provider));
    let managers: Vec<LockManager> = (0..tasks)
        .map(|_| match route {
            Route::Tier => shared.clone(),
            Route::Bypassed => LockManager::from_arc(Arc::clone(provider)),
        })
        .collect();
    let inside = Arc::new(AtomicBool::new(false));
    let sections = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let mut handles = Vec::with_capacity(tasks);
    for locks in &managers {
        let locks = locks.clone();
        let (inside, sections, name) =
            (Arc::clone(&inside), Arc::clone(&sections), name.to_owned());
        handles.push(tokio::spawn(async move {
            for _ in 0..turns {
                let guard = locks
                    .lock(&name, Duration::from_secs(60))
                    .await
                    .unwrap_or_else(|err| panic!("{err}"));
                assert!(!inside.swap(true, Ordering::AcqRel), "two holders at once");
                tokio::task::yield_now().await;
                inside.store(false, Ordering::Release);
                sections.fetch_add(1, Ordering::Relaxed);
                guard.release().await.unwrap_or_else(|err| panic!("{err}"));
            }
        }));
    }
    for handle in handles {
        handle.await.expect("a contending task panicked");
    }
    let elapsed = start.elapsed();
    assert_eq!(sections.load(Ordering::Relaxed), (tasks * turns) as u64);
    let external = match route {
        Route::Tier => shared.stats().external_acquisitions,
        Route::Bypassed => managers
            .iter()
            .map(|m| m.stats().external_acquisitions)
            .sum(),
    };
    (elapsed, external)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Both routes keep the critical sections apart and count them; the bypassed one goes to
    /// the provider for every acquisition, the tier far less often.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn contend_routes_go_where_they_say() {
        let tmp = tempfile::tempdir().unwrap();
        let locks = tierlock::connect(tmp.path().join("locks").to_str().unwrap())
            .await
            .unwrap();
        let provider = Arc::clone(locks.provider());
        let (_, bypassed) = contend(&provider, Route::Bypassed, "t", 4, 20).await;
        assert_eq!(bypassed, 80);
        let (_, tier) = contend(&provider, Route::Tier, "t", 4, 20).await;
        assert!(
            (1..80).contains(&tier),
            "tier: {tier} external acquisitions"
        );
    }

    #[test]
    fn raw_and_manager_cycles_take_the_file_lock() {
        let tmp = tempfile::tempdir().unwrap();
        raw_flock_cycles(&tmp.path().join("raw"), 10);
        let locks = LockManager::new(tierlock::FileProvider::new(tmp.path().join("m")).unwrap());
        let rt = current_thread();
        rt.block_on(manager_cycles(&locks, "c", 10));
        rt.block_on(manager_drop_cycles(&locks, "d", 10));
        assert_every_cycle_external(&locks, 20);
        let provider = tierlock::FileProvider::new(tmp.path().join("p")).unwrap();
        rt.block_on(provider_cycles(&provider, &LockName::new("p").unwrap(), 10));
    }
}
