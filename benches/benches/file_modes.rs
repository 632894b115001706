//! Flock mode against lease mode: 1,000 sequential zero-timeout lock+release cycles of one name
//! through a `LockManager` (each cycle takes and releases the external lock), on a local disk
//! and, when the two-host rig of `scripts/rig` is mounted (`TIERLOCK_RIG`), through its FUSE
//! mounts (lease mode on hostA, flock mode on fwdA, the share that forwards locks).
//!
//! `cargo bench -p tierlock-benches --bench file_modes`. Each reported time is for 1,000
//! cycles.

use std::path::Path;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use tierlock::{FileLockMode, FileProvider, LockManager};
use tierlock_benches::{assert_every_cycle_external, manager_cycles, multi_thread};
use tierlock_testkit::rig::{Rig, Share};

const CYCLES: usize = 1_000;

fn manager(dir: &Path, mode: FileLockMode) -> LockManager {
    let provider = FileProvider::builder(dir)
        .mode(mode)
        .build()
        .unwrap_or_else(|err| panic!("{err}"));
    LockManager::new(provider)
}

fn bench(c: &mut Criterion) {
    let tmp = tempfile::tempdir().unwrap_or_else(|err| panic!("no temp dir: {err}"));
    let rt = multi_thread(2);
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
        group.bench_function(*label, |b| {
            b.to_async(&rt)
                .iter(|| manager_cycles(locks, "bench:modes", CYCLES))
        });
    }
    group.finish();
    for (_, locks) in &runs {
        assert_every_cycle_external(locks, CYCLES);
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
