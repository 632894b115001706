//! PostgreSQL provider benchmarks over loopback. Needs `TIERLOCK_PG_URL` (see `scripts/pg-start`):
//!
//! ```text
//! eval "$(scripts/pg-start)"
//! cargo bench -p tierlock-benches --bench postgres
//! ```
//!
//! * `cycles_1000/manager`: 1,000 sequential `lock` + `release` through a `LockManager`, the name
//!   idle in between, so every cycle takes and releases the advisory lock on the server
//!   (target ≤ 0.3 s).
//! * `cycles_1000/provider`: the same straight through the provider (no in-process tier).
//! * `cycles_1000/provider_fencing`: the same with `.fencing(true)`: one upsert more per cycle.
//! * `cycles_1000/raw_tokio_postgres`: the floor — `pg_try_advisory_lock` + `pg_advisory_unlock`
//!   as prepared statements on one connection, nothing else.
//! * `contention/…`: two "processes" (two providers) with 4 tasks each, 25 turns per task, on
//!   one name: with the in-process tier (two managers) vs. every task going to the server.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::Criterion;
use tierlock::{LockManager, LockName, PostgresProvider, Provider};
use tokio::runtime::Runtime;

const CYCLES: usize = 1000;

fn main() {
    let Ok(url) = std::env::var("TIERLOCK_PG_URL") else {
        eprintln!("skipped: TIERLOCK_PG_URL not set (run `eval \"$(scripts/pg-start)\"` first)");
        return;
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let mut c = Criterion::default()
        .sample_size(10)
        .measurement_time(Duration::from_secs(10))
        .configure_from_args();
    cycles(&mut c, &runtime, &url);
    contention(&mut c, &runtime, &url);
    c.final_summary();
}

fn namespace(label: &str) -> String {
    format!("bench:{label}:{}", std::process::id())
}

fn cycles(c: &mut Criterion, runtime: &Runtime, url: &str) {
    let mut group = c.benchmark_group("cycles_1000");

    let provider = runtime.block_on(connect(url, &namespace("manager")));
    let locks = LockManager::new(provider);
    group.bench_function("manager", |b| {
        b.iter(|| {
            runtime.block_on(async {
                for _ in 0..CYCLES {
                    let guard = locks.lock("bench", Duration::from_secs(5)).await.unwrap();
                    guard.release().await.unwrap();
                }
            })
        })
    });

    let provider = runtime.block_on(connect(url, &namespace("provider")));
    let name = LockName::new("bench").unwrap();
    group.bench_function("provider", |b| {
        b.iter(|| {
            runtime.block_on(async {
                for _ in 0..CYCLES {
                    let lock = provider.acquire(&name, Some(Instant::now())).await.unwrap();
                    lock.unwrap().release().await.unwrap();
                }
            })
        })
    });

    let fencing = runtime.block_on(async {
        PostgresProvider::builder(url)
            .namespace(namespace("provider-fencing"))
            .fencing(true)
            .connect()
            .await
            .unwrap()
    });
    group.bench_function("provider_fencing", |b| {
        b.iter(|| {
            runtime.block_on(async {
                for _ in 0..CYCLES {
                    let lock = fencing.acquire(&name, Some(Instant::now())).await.unwrap();
                    lock.unwrap().release().await.unwrap();
                }
            })
        })
    });

    let client = runtime.block_on(async {
        let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(connection);
        client
    });
    let key = tierlock::postgres_lock_key(&namespace("raw"), "bench");
    group.bench_function("raw_tokio_postgres", |b| {
        b.iter(|| {
            runtime.block_on(async {
                let lock = client
                    .prepare("SELECT pg_try_advisory_lock($1)")
                    .await
                    .unwrap();
                let unlock = client
                    .prepare("SELECT pg_advisory_unlock($1)")
                    .await
                    .unwrap();
                for _ in 0..CYCLES {
                    let got: bool = client.query_one(&lock, &[&key]).await.unwrap().get(0);
                    let freed: bool = client.query_one(&unlock, &[&key]).await.unwrap().get(0);
                    assert!(got && freed);
                }
            })
        })
    });
    group.finish();
}

const TASKS: usize = 4;
const TURNS: usize = 25;

fn contention(c: &mut Criterion, runtime: &Runtime, url: &str) {
    let mut group = c.benchmark_group("contention_2x4x25");
    let ns = namespace("contention-tier");
    let managers: Vec<LockManager> = (0..2)
        .map(|_| LockManager::new(runtime.block_on(connect(url, &ns))))
        .collect();
    group.bench_function("with_in_process_tier", |b| {
        b.iter(|| {
            runtime.block_on(async {
                let mut tasks = Vec::new();
                for manager in &managers {
                    for _ in 0..TASKS {
                        let manager = manager.clone();
                        tasks.push(tokio::spawn(async move {
                            for _ in 0..TURNS {
                                let guard =
                                    manager.lock("hot", Duration::from_secs(30)).await.unwrap();
                                guard.release().await.unwrap();
                            }
                        }));
                    }
                }
                for task in tasks {
                    task.await.unwrap();
                }
            })
        })
    });

    let ns = namespace("contention-direct");
    let providers: Vec<Arc<PostgresProvider>> = (0..2)
        .map(|_| Arc::new(runtime.block_on(connect(url, &ns))))
        .collect();
    let name = LockName::new("hot").unwrap();
    group.bench_function("provider_only", |b| {
        b.iter(|| {
            runtime.block_on(async {
                let mut tasks = Vec::new();
                for provider in &providers {
                    for _ in 0..TASKS {
                        let (provider, name) = (Arc::clone(provider), name.clone());
                        tasks.push(tokio::spawn(async move {
                            for _ in 0..TURNS {
                                let deadline = Some(Instant::now() + Duration::from_secs(30));
                                let lock = provider.acquire(&name, deadline).await.unwrap();
                                lock.unwrap().release().await.unwrap();
                            }
                        }));
                    }
                }
                for task in tasks {
                    task.await.unwrap();
                }
            })
        })
    });
    group.finish();
}

async fn connect(url: &str, namespace: &str) -> PostgresProvider {
    PostgresProvider::builder(url)
        .namespace(namespace)
        .max_idle_connections(8)
        .connect()
        .await
        .unwrap()
}
