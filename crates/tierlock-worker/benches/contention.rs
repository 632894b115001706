//! Two processes × 4 tasks contending on one name with 100 µs critical sections, with the
//! in-process tier and with it bypassed (every acquisition goes to the provider).
//!
//! `cargo bench -p tierlock-worker --bench contention` (`TIERLOCK_BENCH_SECS` changes the 10 s
//! per run, `TIERLOCK_BENCH_CRIT_US` the 100 µs critical section). With
//! `TIERLOCK_BENCH_PROVIDER=postgres` it runs on the PostgreSQL server named by
//! `TIERLOCK_PG_URL` instead of a lock directory; with `sqlite`, on an SQLite database file in
//! a temporary directory (10 s leases); with `redis`, on the Redis server named by
//! `TIERLOCK_REDIS_URL` (`eval "$(scripts/redis-start)"`); with `lease`, in lease mode on a local
//! directory; with `rig-lease` / `rig-flock`, one process on each "host" of the two-host rig
//! (`eval "$(scripts/rig start)"`), in lease mode on hostA/hostB or flock mode on fwdA/fwdB. Prints critical sections per second and per-process wait percentiles.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

use tierlock_testkit::multiprocess;
use tierlock_testkit::rig::{Rig, Share};

fn field(line: &str, key: &str) -> u64 {
    line.split_whitespace()
        .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('=')?.parse().ok())
        .unwrap_or(0)
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return; // `cargo test --benches` asks for a list; there is nothing to list.
    }
    let secs: u64 = std::env::var("TIERLOCK_BENCH_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10);
    let critical_us: u64 = std::env::var("TIERLOCK_BENCH_CRIT_US")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(100);
    let kind = std::env::var("TIERLOCK_BENCH_PROVIDER").unwrap_or_else(|_| "file".to_owned());
    let bin = Path::new(env!("CARGO_BIN_EXE_tierlock-worker"));
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let mut rates = Vec::new();
    for (label, bypass) in [("with the in-process tier", false), ("tier bypassed", true)] {
        let dir = tempfile::tempdir().expect("temp dir");
        let local = dir.path().to_string_lossy().into_owned();
        let strings = |items: &[&str]| items.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        // One entry per process: its provider arguments.
        let providers = match kind.as_str() {
            "postgres" => {
                let url =
                    std::env::var("TIERLOCK_PG_URL").expect("TIERLOCK_PG_URL must name the server");
                let namespace = format!("bench:{}:{bypass}", std::process::id());
                vec![strings(&["postgres", &url, &namespace]); 2]
            }
            "redis" => {
                let url = std::env::var("TIERLOCK_REDIS_URL")
                    .expect("TIERLOCK_REDIS_URL must name the server");
                let prefix = format!("bench:{}:{bypass}:", std::process::id());
                vec![strings(&["redis", &url, &prefix]); 2]
            }
            // Two "hosts" on the rig of scripts/rig: lease mode on hostA/hostB (chosen from
            // the mount), flock on fwdA/fwdB (forced, as on a share known to forward locks).
            "rig-lease" | "rig-flock" => {
                let rig = Rig::get().expect("TIERLOCK_RIG must name a mounted rig");
                let (share, mode) = if kind == "rig-lease" {
                    (Share::LocalOnlyLocks, "file")
                } else {
                    (Share::ForwardsLocks, "file-flock")
                };
                let pair = rig.pair(share, "bench");
                vec![
                    strings(&[mode, pair.a.to_str().expect("UTF-8")]),
                    strings(&[mode, pair.b.to_str().expect("UTF-8")]),
                ]
            }
            "lease" => vec![strings(&["file-lease", &local, "10000"]); 2],
            "sqlite" => {
                let db = dir.path().join("locks.db").to_string_lossy().into_owned();
                vec![strings(&["sqlite", &db, "10000"]); 2]
            }
            _ => vec![strings(&["file", &local]); 2],
        };
        let lines = runtime.block_on(multiprocess::contention_across(
            bin,
            &providers,
            4,
            secs,
            critical_us,
            bypass,
        ));
        let total: u64 = lines.iter().map(|l| field(l, "sections")).sum();
        let rate = total as f64 / secs as f64;
        println!(
            "{kind} provider, 2 processes x 4 tasks, {critical_us} us sections, {secs} s, {label}:"
        );
        println!("  {rate:.0} critical sections/s");
        for (i, line) in lines.iter().enumerate() {
            println!(
                "  process {i}: sections={} wait p50={} us p99={} us max={} us, external acquisitions={}",
                field(line, "sections"),
                field(line, "p50_us"),
                field(line, "p99_us"),
                field(line, "max_us"),
                field(line, "external"),
            );
        }
        rates.push(rate);
    }
    println!("speed-up of the tier: {:.1}x", rates[0] / rates[1].max(1.0));
}
