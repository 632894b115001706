//! Flock mode against lease mode: 1,000 sequential zero-timeout lock+release cycles of one name
//! through a `LockManager` (each cycle takes and releases the external lock), on a local disk
//! and, when the two-host rig of `scripts/rig` is mounted (`TIERLOCK_RIG`), through its FUSE
//! mounts (lease mode on hostA, flock mode on fwdA, the share that forwards locks).
//!
//! `cargo bench -p tierlock-file --bench modes`. Each reported time is for 1,000 cycles.

use std::path::Path;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use tierlock_core::LockManager;
use tierlock_file::{FileLockMode, FileProvider};
use tierlock_testkit::rig::{Rig, Share};

const CYCLES: usize = 1_000;

async fn cycles(locks: &LockManager) {
    for _ in 0..CYCLES {
        let guard = locks
            .lock("bench:modes", Duration::ZERO)
            .await
            .unwrap_or_else(|err| panic!("{err}"));
        guard.release().await.unwrap_or_else(|err| panic!("{err}"));
    }
}

fn manager(dir: &Path, mode: FileLockMode) -> LockManager {
    let provider = FileProvider::builder(dir)
        .mode(mode)
        .build()
        .unwrap_or_else(|err| panic!("{err}"));
    LockManager::new(provider)
}

fn bench(c: &mut Criterion) {
    let tmp = tempfile::tempdir().unwrap_or_else(|err| panic!("no temp dir: {err}"));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap_or_else(|err| panic!("no runtime: {err}"));
    let mut runs = vec![
        (
            "flock_local_disk",
            manager(&tmp.path().join("flock"), FileLockMode::Flock),
        ),
        (
            "lease_local_disk",
            manager(&tmp.path().join("lease"), FileLockMode::lease()),
        ),
    ];
    // Only when the rig is mounted; `server_url` says "skipped" otherwise.
    if std::env::var_os(tierlock_testkit::rig::RIG_VAR).is_some() {
        if let Some(rig) = Rig::get() {
            let host = rig.pair(Share::LocalOnlyLocks, "bench-modes");
            let fwd = rig.pair(Share::ForwardsLocks, "bench-modes");
            runs.push(("lease_rig_hostA", manager(&host.a, FileLockMode::lease())));
            runs.push(("flock_rig_fwdA", manager(&fwd.a, FileLockMode::Flock)));
        }
    }
    let mut group = c.benchmark_group("file_modes_1000_cycles");
    group.sample_size(20);
    group.measurement_time(Duration::from_secs(5));
    for (label, locks) in &runs {
        group.bench_function(*label, |b| b.to_async(&rt).iter(|| cycles(locks)));
    }
    group.finish();
    for (label, locks) in &runs {
        let stats = locks.stats();
        assert_eq!(
            stats.external_acquisitions, stats.external_releases,
            "{label}"
        );
        assert!(
            stats.external_acquisitions >= CYCLES as u64,
            "{label}: every cycle must take the external lock: {stats:?}"
        );
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
