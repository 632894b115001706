//! Redis provider benchmarks over loopback. Needs `TIERLOCK_REDIS_URL` (see
//! `scripts/redis-start`):
//!
//! ```text
//! eval "$(scripts/redis-start)"
//! cargo bench -p tierlock-benches --bench redis
//! ```
//!
//! * `redis_1000_cycles/manager`: 1,000 sequential zero-timeout `lock` + `release` through a
//!   `LockManager`, the name idle in between, so every cycle sets and deletes the key on the
//!   server (two scripts, two round trips; target ≤ 100 ms).
//! * `redis_1000_cycles/provider`: the same straight through the provider (no in-process tier).
//! * `redis_1000_cycles/raw_set_del`: the floor — `SET NX PX` + `DEL` on one multiplexed
//!   connection, nothing else (no token check, no fencing counter, no watchdog).
//!
//! The two-process contention case is `TIERLOCK_BENCH_PROVIDER=redis cargo bench -p
//! tierlock-worker --bench contention`.

use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use tierlock::{LockManager, LockName, RedisProvider};
use tierlock_benches::{
    assert_every_cycle_external, manager_cycles, multi_thread, provider_cycles,
};

const CYCLES: usize = 1_000;

fn prefix(label: &str) -> String {
    format!("bench:{label}:{}:", std::process::id())
}

fn bench(c: &mut Criterion) {
    let Some(url) = tierlock_testkit::server_url("TIERLOCK_REDIS_URL") else {
        eprintln!("(run `eval \"$(scripts/redis-start)\"` first)");
        return;
    };
    let rt = multi_thread(2);
    let connect = |label: &str| {
        rt.block_on(
            RedisProvider::builder(url.as_str())
                .key_prefix(prefix(label))
                .connect(),
        )
        .unwrap_or_else(|err| panic!("{err}"))
    };
    let locks = LockManager::new(connect("manager"));
    let provider = connect("provider");
    let name = LockName::new("bench:cycles").unwrap_or_else(|err| panic!("{err}"));
    let raw = rt.block_on(async {
        redis::Client::open(url.as_str())
            .unwrap_or_else(|err| panic!("{err}"))
            .get_multiplexed_async_connection()
            .await
            .unwrap_or_else(|err| panic!("{err}"))
    });
    let raw_key = format!("{}raw", prefix("raw"));

    let mut group = c.benchmark_group("redis_1000_cycles");
    group.sample_size(20);
    group.measurement_time(Duration::from_secs(5));
    group.bench_function("manager", |b| {
        b.to_async(&rt)
            .iter(|| manager_cycles(&locks, "bench:cycles", CYCLES))
    });
    group.bench_function("provider", |b| {
        b.to_async(&rt)
            .iter(|| provider_cycles(&provider, &name, CYCLES))
    });
    group.bench_function("raw_set_del", |b| {
        b.to_async(&rt).iter(|| {
            let mut raw = raw.clone();
            let key = raw_key.clone();
            async move {
                for _ in 0..CYCLES {
                    let set: Option<String> = redis::cmd("SET")
                        .arg(&key)
                        .arg("token")
                        .arg("NX")
                        .arg("PX")
                        .arg(10_000)
                        .query_async(&mut raw)
                        .await
                        .unwrap_or_else(|err| panic!("{err}"));
                    assert!(set.is_some());
                    let _: i64 = redis::cmd("DEL")
                        .arg(&key)
                        .query_async(&mut raw)
                        .await
                        .unwrap_or_else(|err| panic!("{err}"));
                }
            }
        })
    });
    group.finish();
    assert_every_cycle_external(&locks, CYCLES);
}

criterion_group!(benches, bench);
criterion_main!(benches);
