//! The multi-process scenarios of the test kit, with real OS processes on one PostgreSQL server.
//!
//! This binary is its own worker: run with `worker URL NAMESPACE MODE...` it builds a provider
//! and runs [`tierlock_testkit::worker::run`]; run by `cargo test` (no harness) it drives the
//! scenarios, spawning itself as the workers. Honours a name filter and `--exact`, and `--list`.

use std::panic::AssertUnwindSafe;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use tierlock_postgres::PostgresProvider;
use tierlock_testkit::multiprocess;

const SCENARIOS: [&str; 3] = [
    "mutual_exclusion",
    "killed_holder_is_released",
    "busy_process_hands_over",
];

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("worker") {
        return worker(&args[1..]);
    }
    if args.iter().any(|a| a == "--list") {
        for name in SCENARIOS {
            println!("multiprocess::{name}: test");
        }
        return;
    }
    let exact = args.iter().any(|a| a == "--exact");
    let filter = args.iter().find(|a| !a.starts_with('-'));
    let selected: Vec<&str> = SCENARIOS
        .into_iter()
        .filter(|name| {
            let full = format!("multiprocess::{name}");
            filter.is_none_or(|f| {
                if exact {
                    full == *f
                } else {
                    full.contains(f.as_str())
                }
            })
        })
        .collect();
    let Some(url) = tierlock_testkit::server_url("TIERLOCK_PG_URL") else {
        println!("0 passed, 0 failed, {} skipped", selected.len());
        return;
    };
    let bin = std::env::current_exe().unwrap();
    let (mut passed, mut failed) = (0, 0);
    for name in selected {
        let start = Instant::now();
        let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| {
            runtime().block_on(scenario(name, &bin, &url))
        }));
        let verdict = if outcome.is_ok() { "ok" } else { "FAILED" };
        println!(
            "test multiprocess::{name} ... {verdict} ({:?})",
            start.elapsed()
        );
        if outcome.is_ok() {
            passed += 1;
        } else {
            failed += 1;
        }
    }
    println!("{passed} passed, {failed} failed");
    if failed > 0 {
        std::process::exit(101);
    }
}

async fn scenario(name: &str, bin: &Path, url: &str) {
    let namespace = format!("mp:{name}:{}:{:?}", std::process::id(), Instant::now());
    let provider = ["worker".to_owned(), url.to_owned(), namespace];
    match name {
        "mutual_exclusion" => {
            let scratch =
                std::env::temp_dir().join(format!("tierlock-pg-mp-{}", std::process::id()));
            std::fs::create_dir_all(&scratch).unwrap();
            multiprocess::mutual_exclusion(bin, &provider, &scratch).await;
            let _ = std::fs::remove_dir_all(&scratch);
        }
        "killed_holder_is_released" => {
            let took = multiprocess::killed_holder_is_released(bin, &provider).await;
            println!("  the waiter got the killed holder's lock after {took:?}");
        }
        "busy_process_hands_over" => {
            let took = multiprocess::busy_process_hands_over(bin, &provider).await;
            println!("  the busy process handed over after {took:?}");
        }
        other => panic!("unknown scenario {other}"),
    }
}

/// `URL NAMESPACE MODE...`: one worker process.
fn worker(args: &[String]) {
    let [url, namespace, mode @ ..] = args else {
        eprintln!("usage: worker URL NAMESPACE MODE...");
        std::process::exit(2);
    };
    let result = runtime().block_on(async {
        let provider = PostgresProvider::builder(url)
            .namespace(namespace)
            .connect()
            .await?;
        tierlock_testkit::worker::run(Arc::new(provider), mode).await
    });
    if let Err(err) = result {
        eprintln!("worker failed: {err}");
        std::process::exit(1);
    }
}
