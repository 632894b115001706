//! Acquires and releases 1,000,000 distinct names and reports time, peak memory and the
//! manager's entry count (which must be back at 0), then does the same with the naive keyed
//! lock (`DashMap<String, Arc<tokio::sync::Mutex<()>>>`): variant C removes unused entries on
//! unlock, variant A keeps every name.
//!
//! ```text
//! cargo run --release -p tierlock-benches --example million_names [all|tierlock|naive]
//! ```
//!
//! Peak memory is the process's VmHWM from `/proc/self/status` (Linux only; "n/a" elsewhere),
//! read before and after each phase. VmHWM never goes down, so the phases run from the one
//! expected to need least memory to the one expected to need most, and each reports how much it
//! raised the peak. Names are formatted into a reused buffer, so they cost no memory of their own.
//! Exits with an error if tierlock leaves any entry behind.

use std::error::Error;
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

use dashmap::DashMap;
use tierlock_core::{LockManager, MemoryProvider};
use tokio::runtime::{Builder, Runtime};

const NAMES: usize = 1_000_000;
const TASKS: usize = 8;
const TIMEOUT: Duration = Duration::from_secs(1);

type Naive = DashMap<String, Arc<tokio::sync::Mutex<()>>>;

/// A field of `/proc/self/status`, in KiB.
fn status_kib(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn show(kib: Option<u64>) -> String {
    kib.map_or_else(
        || "n/a".to_owned(),
        |k| format!("{:.1} MiB", k as f64 / 1024.0),
    )
}

/// Runs one phase and prints its line.
fn phase(
    label: &str,
    run: impl FnOnce() -> Result<usize, Box<dyn Error>>,
) -> Result<(), Box<dyn Error>> {
    let before = status_kib("VmHWM:");
    let start = Instant::now();
    let entries = run()?;
    let elapsed = start.elapsed();
    let after = status_kib("VmHWM:");
    let delta = before.zip(after).map(|(b, a)| a - b);
    println!(
        "{label:<24} {:>9.1} ms {:>8.0} ns/name  VmHWM {:>10} -> {:>10} (+{:>10})  VmRSS after {:>10}  entries left {entries}",
        elapsed.as_secs_f64() * 1e3,
        elapsed.as_nanos() as f64 / NAMES as f64,
        show(before),
        show(after),
        show(delta),
        show(status_kib("VmRSS:")),
    );
    Ok(())
}

fn runtime(workers: Option<usize>) -> std::io::Result<Runtime> {
    match workers {
        None => Builder::new_current_thread().enable_all().build(),
        Some(n) => Builder::new_multi_thread()
            .worker_threads(n)
            .enable_all()
            .build(),
    }
}

/// Locks and unlocks names `[from, to)` with tierlock.
async fn tierlock_range(
    locks: LockManager,
    from: usize,
    to: usize,
) -> Result<(), tierlock_core::LockError> {
    let mut name = String::new();
    for i in from..to {
        name.clear();
        let _ = write!(name, "tenant:{i}:job");
        drop(locks.lock(&name, TIMEOUT).await?);
    }
    Ok(())
}

/// Locks and unlocks names `[from, to)` with the naive keyed lock (get, then insert if
/// missing); with `cleanup`, removes each entry again once nobody else holds its mutex.
async fn naive_range(map: Arc<Naive>, from: usize, to: usize, cleanup: bool) {
    let mut name = String::new();
    for i in from..to {
        name.clear();
        let _ = write!(name, "tenant:{i}:job");
        let existing = map.get(name.as_str()).map(|m| Arc::clone(&m));
        let mutex = existing.unwrap_or_else(|| Arc::clone(&map.entry(name.clone()).or_default()));
        drop(mutex.lock_owned().await);
        if cleanup {
            map.remove_if(name.as_str(), |_, m| Arc::strong_count(m) == 1);
        }
    }
}

fn tierlock(tasks: usize) -> Result<usize, Box<dyn Error>> {
    let locks = LockManager::new(MemoryProvider::new());
    let rt = runtime((tasks > 1).then_some(2))?;
    let chunk = NAMES / tasks;
    rt.block_on(async {
        let handles: Vec<_> = (0..tasks)
            .map(|t| tokio::spawn(tierlock_range(locks.clone(), t * chunk, (t + 1) * chunk)))
            .collect();
        for handle in handles {
            handle.await??;
        }
        Ok::<_, Box<dyn Error>>(())
    })?;
    let entries = locks.stats().entries;
    if entries != 0 {
        return Err(format!("tierlock left {entries} entries behind").into());
    }
    Ok(entries)
}

fn naive(tasks: usize, cleanup: bool) -> Result<usize, Box<dyn Error>> {
    let map = Arc::new(Naive::new());
    let rt = runtime((tasks > 1).then_some(2))?;
    let chunk = NAMES / tasks;
    rt.block_on(async {
        let handles: Vec<_> = (0..tasks)
            .map(|t| {
                tokio::spawn(naive_range(
                    Arc::clone(&map),
                    t * chunk,
                    (t + 1) * chunk,
                    cleanup,
                ))
            })
            .collect();
        for handle in handles {
            handle.await?;
        }
        Ok::<_, Box<dyn Error>>(())
    })?;
    // The peak (VmHWM) was reached while the map was alive; it is dropped on return.
    Ok(map.len())
}

fn main() -> Result<(), Box<dyn Error>> {
    let mode = std::env::args().nth(1).unwrap_or_else(|| "all".to_owned());
    println!("{NAMES} distinct names, each acquired and released once");
    println!(
        "start: VmHWM {}, VmRSS {}",
        show(status_kib("VmHWM:")),
        show(status_kib("VmRSS:"))
    );
    if mode == "all" || mode == "tierlock" {
        phase("tierlock sequential", || tierlock(1))?;
        phase("tierlock 8 tasks", || tierlock(TASKS))?;
    }
    if mode == "all" || mode == "naive" {
        phase("naive C (cleanup) seq.", || naive(1, true))?;
        phase("naive A sequential", || naive(1, false))?;
    }
    if !["all", "tierlock", "naive"].contains(&mode.as_str()) {
        return Err(format!("unknown mode {mode:?}: expected all, tierlock or naive").into());
    }
    Ok(())
}
