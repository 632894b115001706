//! SQLite provider benchmarks: 1,000 sequential zero-timeout acquire + release cycles of one
//! name on a local disk in WAL mode, each taking and releasing the lease (two write
//! transactions and a read), against the same two transactions run inline on one connection
//! (no database thread, no manager) measured in the same run.
//!
//! `cargo bench -p tierlock-benches --bench sqlite`. Each reported time is for 1,000 cycles;
//! the target is ≤ 100 ms (`manager_lock_release_zero_timeout`).

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use rusqlite::{Connection, params};
use tierlock::{LockManager, LockName, SqliteProvider};
use tierlock_benches::{
    assert_every_cycle_external, manager_drop_cycles, multi_thread, provider_cycles,
};

const CYCLES: usize = 1_000;

/// The floor: what the provider's two write transactions cost on one connection, inline.
fn raw_cycles(conn: &Connection) {
    for token in 0..CYCLES as i64 {
        conn.execute_batch("BEGIN IMMEDIATE")
            .unwrap_or_else(|err| panic!("{err}"));
        conn.prepare_cached(
            "INSERT OR REPLACE INTO leases (name, token, owner, expires) VALUES (?1, ?2, ?3, ?4)",
        )
        .and_then(|mut stmt| stmt.execute(params!["bench:raw", token, "0123456789abcdef", token]))
        .unwrap_or_else(|err| panic!("{err}"));
        conn.execute_batch("COMMIT")
            .unwrap_or_else(|err| panic!("{err}"));
        conn.execute_batch("BEGIN IMMEDIATE")
            .unwrap_or_else(|err| panic!("{err}"));
        conn.prepare_cached("DELETE FROM leases WHERE name = ?1 AND owner = ?2")
            .and_then(|mut stmt| stmt.execute(params!["bench:raw", "0123456789abcdef"]))
            .unwrap_or_else(|err| panic!("{err}"));
        conn.execute_batch("COMMIT")
            .unwrap_or_else(|err| panic!("{err}"));
    }
}

async fn manager_cycles(locks: &LockManager) {
    tierlock_benches::manager_cycles(locks, "bench:manager", CYCLES).await;
}

/// On a shared, noisy machine the criterion figures above are measured seconds apart; this
/// alternates batches of the raw loop and the manager loop, so both see the same load, and
/// prints the best and median batch of each.
fn paired(rt: &tokio::runtime::Runtime, raw: &Connection, locks: &LockManager) {
    const ROUNDS: usize = 60;
    let (mut floor, mut ours) = (Vec::with_capacity(ROUNDS), Vec::with_capacity(ROUNDS));
    for _ in 0..ROUNDS {
        let start = Instant::now();
        raw_cycles(raw);
        floor.push(start.elapsed());
        let start = Instant::now();
        rt.block_on(manager_cycles(locks));
        ours.push(start.elapsed());
    }
    floor.sort();
    ours.sort();
    println!(
        "paired, per {CYCLES} cycles over {ROUNDS} alternating rounds: \
         raw best {:?} median {:?}; manager best {:?} median {:?}",
        floor[0],
        floor[ROUNDS / 2],
        ours[0],
        ours[ROUNDS / 2],
    );
}

fn bench(c: &mut Criterion) {
    let tmp = tempfile::tempdir().unwrap_or_else(|err| panic!("no temp dir: {err}"));
    let rt = multi_thread(2);
    let mut group = c.benchmark_group("sqlite_1000_cycles");
    group.sample_size(20);
    group.measurement_time(Duration::from_secs(5));

    let raw = Connection::open(tmp.path().join("raw.db")).unwrap_or_else(|err| panic!("{err}"));
    raw.execute_batch(
        "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL;
         CREATE TABLE leases (name TEXT PRIMARY KEY, token INTEGER, owner TEXT, expires INTEGER) WITHOUT ROWID;",
    )
    .unwrap_or_else(|err| panic!("{err}"));
    group.bench_function("raw_rusqlite_two_transactions", |b| {
        b.iter(|| raw_cycles(black_box(&raw)))
    });

    // The provider alone, without the manager.
    let provider =
        SqliteProvider::new(tmp.path().join("provider.db")).unwrap_or_else(|err| panic!("{err}"));
    let name = LockName::new("bench:provider").unwrap_or_else(|err| panic!("{err}"));
    group.bench_function("provider_acquire_release", |b| {
        b.to_async(&rt)
            .iter(|| provider_cycles(&provider, &name, CYCLES))
    });

    // Through a LockManager: the name goes idle between cycles, so each one takes and releases
    // the lease (checked below).
    let locks = LockManager::new(
        SqliteProvider::new(tmp.path().join("manager.db")).unwrap_or_else(|err| panic!("{err}")),
    );
    group.bench_function("manager_lock_release_zero_timeout", |b| {
        b.to_async(&rt).iter(|| manager_cycles(&locks))
    });
    group.bench_function("manager_lock_drop_zero_timeout", |b| {
        b.to_async(&rt)
            .iter(|| manager_drop_cycles(&locks, "bench:manager", CYCLES))
    });
    group.finish();

    // Skipped when run as a test (`cargo test --benches`): only `cargo bench` passes --bench.
    if std::env::args().any(|arg| arg == "--bench") {
        paired(&rt, &raw, &locks);
    }

    assert_every_cycle_external(&locks, CYCLES);
}

criterion_group!(benches, bench);
criterion_main!(benches);
