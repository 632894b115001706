//! File provider benchmarks: 1,000 sequential zero-timeout acquire+release cycles of one name,
//! each taking and releasing the lock file's OS lock, against a raw
//! `open + flock + unlock + close` loop on one file measured in the same run.
//!
//! Run with `cargo bench -p tierlock-benches --bench file`. Each reported time is for 1,000
//! cycles. The summary (`--bench summary`) has the paired raw-vs-manager row of this bench.

use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use tierlock::{FileProvider, LockManager, LockName};
use tierlock_benches::{
    assert_every_cycle_external, current_thread, manager_drop_cycles, provider_cycles,
    raw_flock_cycles,
};

const CYCLES: usize = 1_000;

fn raw_cycles(path: &std::path::Path) {
    raw_flock_cycles(path, CYCLES);
}

async fn manager_cycles(locks: &LockManager) {
    tierlock_benches::manager_cycles(locks, "bench:manager", CYCLES).await;
}

/// On a shared, noisy machine the criterion figures above are measured minutes apart; this
/// alternates batches of the raw loop and the manager loops (fencing tokens on, the default,
/// and off), so all see the same load, and prints the best and median batch of each and their
/// ratios to raw.
fn paired(
    rt: &tokio::runtime::Runtime,
    raw_path: &std::path::Path,
    fenced: &LockManager,
    unfenced: &LockManager,
) {
    const ROUNDS: usize = 200;
    let mut runs = [(); 3].map(|()| Vec::with_capacity(ROUNDS));
    for _ in 0..ROUNDS {
        let start = Instant::now();
        raw_cycles(raw_path);
        runs[0].push(start.elapsed());
        for (i, locks) in [fenced, unfenced].into_iter().enumerate() {
            let start = Instant::now();
            rt.block_on(manager_cycles(locks));
            runs[i + 1].push(start.elapsed());
        }
    }
    for run in &mut runs {
        run.sort();
    }
    let [raw, fenced, unfenced] = &runs;
    for (label, ours) in [("manager", fenced), ("manager, fencing off", unfenced)] {
        println!(
            "paired, per {CYCLES} cycles over {ROUNDS} alternating rounds: raw best {:?} median \
             {:?}; {label} best {:?} median {:?}; ratio of best {:.2}, of medians {:.2}",
            raw[0],
            raw[ROUNDS / 2],
            ours[0],
            ours[ROUNDS / 2],
            ours[0].as_secs_f64() / raw[0].as_secs_f64(),
            ours[ROUNDS / 2].as_secs_f64() / raw[ROUNDS / 2].as_secs_f64(),
        );
    }
}

fn bench(c: &mut Criterion) {
    let tmp = tempfile::tempdir().unwrap_or_else(|err| panic!("no temp dir: {err}"));
    let rt = current_thread();
    let mut group = c.benchmark_group("file_1000_cycles");
    group.sample_size(30);
    group.measurement_time(Duration::from_secs(5));

    // The baseline: what one process pays to lock a file with nothing around it.
    let raw_path = tmp.path().join("raw.lock");
    group.bench_function("raw_open_flock_unlock_close", |b| {
        b.iter(|| raw_cycles(&raw_path))
    });

    // The provider alone, without the manager.
    let provider =
        FileProvider::new(tmp.path().join("provider")).unwrap_or_else(|err| panic!("{err}"));
    let name = LockName::new("bench:provider").unwrap_or_else(|err| panic!("{err}"));
    group.bench_function("provider_acquire_release", |b| {
        b.to_async(&rt)
            .iter(|| provider_cycles(&provider, &name, CYCLES))
    });

    // Through a LockManager: the name goes idle between cycles, so each one takes and releases
    // the external lock (checked below).
    let locks = LockManager::new(
        FileProvider::new(tmp.path().join("manager")).unwrap_or_else(|err| panic!("{err}")),
    );
    group.bench_function("manager_lock_release_zero_timeout", |b| {
        b.to_async(&rt).iter(|| manager_cycles(&locks))
    });
    group.bench_function("manager_lock_drop_zero_timeout", |b| {
        b.to_async(&rt)
            .iter(|| manager_drop_cycles(&locks, "bench:manager", CYCLES))
    });
    // Without fencing tokens: no read and write of the counter in the lock file.
    let unfenced = LockManager::new(
        FileProvider::builder(tmp.path().join("unfenced"))
            .fencing(false)
            .build()
            .unwrap_or_else(|err| panic!("{err}")),
    );
    group.bench_function("manager_lock_release_zero_timeout_fencing_off", |b| {
        b.to_async(&rt).iter(|| manager_cycles(&unfenced))
    });
    group.finish();

    // Skipped when run as a test (`cargo test --benches`): only `cargo bench` passes --bench.
    if std::env::args().any(|arg| arg == "--bench") {
        paired(&rt, &raw_path, &locks, &unfenced);
    }

    assert_every_cycle_external(&locks, CYCLES);
}

criterion_group!(benches, bench);
criterion_main!(benches);
