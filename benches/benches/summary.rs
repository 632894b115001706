//! The side-by-side summary: every comparison of tierlock against what it replaces, each in
//! paired rounds (every round times every variant of a comparison once, in rotating order; the
//! ratio is the median of the per-round ratios, so a shared machine's load drifts hit all
//! variants alike), printed as one markdown table.
//!
//! ```text
//! cargo bench -p tierlock-benches --bench summary                           # ~1 min
//! TIERLOCK_BENCH_QUICK=1 cargo bench -p tierlock-benches --bench summary    # fewer rounds
//! eval "$(scripts/pg-start)"; eval "$(scripts/redis-start)"                  # for those rows
//! ```
//!
//! * **In-process** (memory provider, no other process): the naive keyed lock (a `DashMap` of
//!   tokio mutexes; A never removes an entry, C removes idle ones), a bare
//!   `tokio::sync::Mutex`, and tierlock — uncontended, re-entrant, and 8 tasks handing one
//!   name to each other on 2 workers (a yield inside each critical section, so nearly every
//!   release is a hand-off; tierlock twice: with the 1 s timeout of the other rows, which arms
//!   a timer for every wait, and without a timeout, as the naive lock and the mutex wait).
//! * **File**: 1,000 zero-timeout cycles, a raw `open + flock + unlock + close` loop against a
//!   `LockManager` on the file provider (each cycle takes and releases the lock file).
//! * **Tier vs bypassed**: 8 tasks of this process on one name, 2 workers, through one
//!   `LockManager` (the in-process tier) against a manager per task on the same provider (every
//!   acquisition goes to the provider), for memory, file (flock; lease), SQLite, and PostgreSQL /
//!   Redis when `TIERLOCK_PG_URL` / `TIERLOCK_REDIS_URL` are set (a "skipped" row otherwise).
//!   Memory twice: `memory:` as `connect` gives it (managers on one `MemoryProvider` use its
//!   table as their tier, so both routes take the same path and nothing is external), and the
//!   same provider behind the `Provider` trait (wrapped in the test kit's `CountingProvider`),
//!   which the manager treats as any external provider.
//!
//! `TIERLOCK_BENCH_ROUNDS=N` sets the rounds of every comparison.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tierlock::{LockManager, MemoryProvider, Provider};
use tierlock_benches::handoff::{self, Naive, Section};
use tierlock_benches::naive::NaiveStd as NaiveKeyed;
use tierlock_benches::paired::{self, Rounds, Variant};
use tierlock_benches::{
    Route, assert_every_cycle_external, contend, current_thread, in_task, load_average,
    manager_cycles, multi_thread, raw_flock_cycles, time_pairs,
};
use tierlock_testkit::CountingProvider;
use tokio::runtime::Runtime;

/// A short name (stored inline by tierlock).
const NAME: &str = "tenant:42:migrate";
/// The timeout of the in-process variants (as in the core's benches).
const TIMEOUT: Duration = Duration::from_secs(1);
/// Operations per batch of the uncontended and re-entrant comparisons.
const ITERS: u32 = 100_000;
/// Cycles per batch of the file comparison.
const FILE_CYCLES: usize = 1_000;
/// Tasks of the tier-vs-bypassed comparisons.
const TASKS: usize = 8;

struct Config {
    micro_rounds: usize,
    provider_rounds: usize,
}

/// The table: one row per variant.
#[derive(Default)]
struct Table {
    rows: Vec<String>,
}

impl Table {
    fn row(&mut self, cells: [&str; 5]) {
        self.rows.push(format!("| {} |", cells.join(" | ")));
    }

    /// One comparison: every variant's median time per operation and its ratio to `base`.
    fn comparison(
        &mut self,
        what: &str,
        rounds: &Rounds,
        ops: f64,
        base: usize,
        external: &[String],
    ) {
        for v in 0..rounds.labels.len() {
            let ratio = if v == base {
                "1 (baseline)".to_owned()
            } else {
                let [median, p10, p90] = rounds.ratio(v, base).map(ratio);
                format!("**{median}** [{p10} {p90}]")
            };
            let first = if v == 0 { what } else { "" };
            let ext = external.get(v).map_or("", String::as_str);
            self.row([
                first,
                rounds.labels[v],
                &per_op(rounds.median_secs(v) / ops),
                &ratio,
                ext,
            ]);
        }
    }

    fn skipped(&mut self, what: &str, var: &str) {
        self.row([what, &format!("skipped: {var} not set"), "", "", ""]);
    }
}

/// A ratio with two significant digits below 0.1 (a tier 100× faster reads 0.010, not 0.01).
fn ratio(x: f64) -> String {
    if x >= 0.1 {
        format!("{x:.2}")
    } else if x >= 0.01 {
        format!("{x:.3}")
    } else {
        format!("{x:.4}")
    }
}

fn per_op(secs: f64) -> String {
    if secs < 1e-6 {
        format!("{:.1} ns", secs * 1e9)
    } else if secs < 1e-3 {
        format!("{:.2} µs", secs * 1e6)
    } else {
        format!("{:.2} ms", secs * 1e3)
    }
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return; // `cargo test --benches` asks for a list; there is nothing to list.
    }
    let quick = std::env::var("TIERLOCK_BENCH_QUICK").is_ok_and(|v| v != "0" && !v.is_empty());
    let rounds: Option<usize> = std::env::var("TIERLOCK_BENCH_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok());
    let config = Config {
        micro_rounds: rounds.unwrap_or(if quick { 10 } else { 100 }),
        provider_rounds: rounds.unwrap_or(if quick { 3 } else { 20 }),
    };
    let started = Instant::now();
    let load_before = load_average();
    let one = current_thread();
    let two = multi_thread(2);
    let mut table = Table::default();

    uncontended(&mut table, &one, &config);
    reentrant(&mut table, &one, &config);
    handoffs(&mut table, &two, &config);
    file_cycles(&mut table, &one, &config);
    tier_vs_bypassed(&mut table, &two, &config);

    println!();
    println!(
        "tierlock side-by-side summary: {} rounds (in-process, file), {} rounds (tier vs \
         bypassed); load {load_before} -> {}; {:.0} s",
        config.micro_rounds,
        config.provider_rounds,
        load_average(),
        started.elapsed().as_secs_f64()
    );
    println!();
    println!(
        "| comparison | variant | per operation (median) | time ÷ baseline, same rounds: median [p10 p90] | external acquisitions per round (median) |"
    );
    println!("|---|---|---|---|---|");
    for row in &table.rows {
        println!("{row}");
    }
}

/// A variant that times `ITERS` acquire+release pairs in a task on `rt` ([`time_pairs!`]).
macro_rules! pairs_in_task {
    ($rt:expr, $shared:expr, |$state:ident| $lock:expr) => {
        Box::new(|| time_pairs!($rt, $shared, ITERS, |$state| $lock))
    };
}

fn uncontended(table: &mut Table, rt: &Runtime, config: &Config) {
    let locks = LockManager::new(MemoryProvider::new());
    let (a, c) = (Arc::new(NaiveKeyed::new()), Arc::new(NaiveKeyed::new()));
    let mutex = Arc::new(tokio::sync::Mutex::new(()));
    let mut variants: Vec<Variant<'_>> = vec![
        (
            "naive A (get-then-insert, never removes)",
            pairs_in_task!(rt, a, |a| a.lock_a(black_box(NAME)).await),
        ),
        (
            "naive C (removes idle entries)",
            pairs_in_task!(rt, c, |c| c.lock_c(black_box(NAME)).await),
        ),
        (
            "bare `tokio::sync::Mutex`",
            pairs_in_task!(rt, mutex, |mutex| mutex.lock().await),
        ),
        (
            "**tierlock**, memory provider",
            pairs_in_task!(rt, locks, |locks| locks
                .lock(black_box(NAME), TIMEOUT)
                .await
                .unwrap()),
        ),
    ];
    let rounds = paired::run(config.micro_rounds, &mut variants);
    table.comparison(
        "uncontended acquire+release, one task",
        &rounds,
        f64::from(ITERS),
        0,
        &[],
    );
    assert_eq!(locks.stats().entries, 0);
    assert!(c.is_empty() && a.len() == 1);
}

fn reentrant(table: &mut Table, rt: &Runtime, config: &Config) {
    let locks = LockManager::new(MemoryProvider::new());
    let mutex = Arc::new(tokio::sync::Mutex::new(()));
    let mut variants: Vec<Variant<'_>> = vec![
        (
            "bare `tokio::sync::Mutex`",
            pairs_in_task!(rt, mutex, |mutex| mutex.lock().await),
        ),
        (
            "**tierlock** re-entry (the task holds the name)",
            Box::new(|| {
                let locks = locks.clone();
                in_task(rt, async move {
                    let outer = locks.lock(NAME, TIMEOUT).await.unwrap();
                    let start = Instant::now();
                    for _ in 0..ITERS {
                        drop(black_box(
                            locks.lock(black_box(NAME), TIMEOUT).await.unwrap(),
                        ));
                    }
                    let elapsed = start.elapsed();
                    drop(outer);
                    elapsed
                })
            }),
        ),
    ];
    let rounds = paired::run(config.micro_rounds, &mut variants);
    table.comparison(
        "re-entrant acquire+release",
        &rounds,
        f64::from(ITERS),
        0,
        &[],
    );
}

fn handoffs(table: &mut Table, rt: &Runtime, config: &Config) {
    // A yield between the read and the write of each critical section, so that every other
    // task queues while the lock is held.
    let section = Section {
        yields: true,
        ..Section::default()
    };
    let locks = LockManager::new(MemoryProvider::new());
    let workloads = [
        ("naive A", handoff::naive(Naive::A, section)),
        ("naive C", handoff::naive(Naive::C, section)),
        ("bare `tokio::sync::Mutex`", handoff::tokio_mutex(section)),
        (
            "**tierlock**, memory provider, 1 s timeout",
            handoff::tierlock(locks.clone(), TIMEOUT, section),
        ),
        (
            "**tierlock**, memory provider, no timeout (`Duration::MAX`: no timer)",
            handoff::tierlock(locks, Duration::MAX, section),
        ),
    ];
    let mut variants: Vec<Variant<'_>> = workloads
        .iter()
        .map(|(name, workload)| -> Variant<'_> {
            (name, Box::new(move || handoff::round_on(rt, workload)))
        })
        .collect();
    let rounds = paired::run(config.micro_rounds, &mut variants);
    table.comparison(
        "hand-offs: 8 tasks on one name, 2 workers, per critical section",
        &rounds,
        (handoff::TASKS * handoff::CYCLES) as f64,
        0,
        &[],
    );
}

fn file_cycles(table: &mut Table, rt: &Runtime, config: &Config) {
    let tmp = tempfile::tempdir().expect("temp dir");
    let raw = tmp.path().join("raw.lock");
    let locks = LockManager::new(
        tierlock::FileProvider::builder(tmp.path().join("manager"))
            .mode(tierlock::FileLockMode::Flock)
            .build()
            .unwrap(),
    );
    let mut variants: Vec<Variant<'_>> = vec![
        (
            "raw `open + flock + unlock + close`",
            Box::new(|| {
                let start = Instant::now();
                raw_flock_cycles(&raw, FILE_CYCLES);
                start.elapsed()
            }),
        ),
        (
            "**tierlock**, file provider (flock), `release().await`",
            Box::new(|| {
                let start = Instant::now();
                rt.block_on(manager_cycles(&locks, "bench:file", FILE_CYCLES));
                start.elapsed()
            }),
        ),
    ];
    let rounds = paired::run(config.micro_rounds, &mut variants);
    table.comparison(
        "file: 1,000 zero-timeout cycles of one name, per cycle",
        &rounds,
        FILE_CYCLES as f64,
        0,
        &[],
    );
    assert_every_cycle_external(&locks, FILE_CYCLES);
}

/// A namespace (key prefix) of this run, so runs against one server never meet.
fn namespace(label: &str) -> String {
    format!("bench-{label}-{}", std::process::id())
}

fn with_param(url: &str, param: &str) -> String {
    let separator = if url.contains('?') { '&' } else { '?' };
    format!("{url}{separator}{param}")
}

/// Where a tier-vs-bypassed case gets its provider.
enum Source {
    /// `tierlock::connect(url)`, as users do.
    Url(String),
    /// A provider built here.
    Direct(Arc<dyn Provider>),
    /// Its server's variable is not set.
    Skipped(&'static str),
}

fn tier_vs_bypassed(table: &mut Table, rt: &Runtime, config: &Config) {
    let tmp = tempfile::tempdir().expect("temp dir");
    let dir = |sub: &str| tmp.path().join(sub).display().to_string();
    // (label, where the provider comes from, cycles per task)
    let mut cases: Vec<(&str, Source, usize)> = vec![
        (
            "memory (`memory:`)",
            Source::Url("memory:".to_owned()),
            1_000,
        ),
        (
            "memory through the `Provider` trait",
            Source::Direct(Arc::new(CountingProvider::new(MemoryProvider::new()))),
            1_000,
        ),
        (
            "file, flock",
            Source::Url(format!("file://{}?mode=flock", dir("flock"))),
            200,
        ),
        (
            "file, lease",
            Source::Url(format!("file://{}?mode=lease", dir("lease"))),
            50,
        ),
        (
            "SQLite",
            Source::Url(format!("sqlite:{}", dir("locks.db"))),
            50,
        ),
    ];
    for (label, var) in [
        ("PostgreSQL", "TIERLOCK_PG_URL"),
        ("Redis", "TIERLOCK_REDIS_URL"),
    ] {
        let source = match tierlock_testkit::server_url(var) {
            Some(url) => Source::Url(with_param(&url, &format!("namespace={}", namespace(label)))),
            None => Source::Skipped(var),
        };
        cases.push((label, source, 25));
    }
    for (label, source, turns) in cases {
        let what = format!("tier vs bypassed: {label}, 8 tasks on one name, per critical section");
        let provider: Arc<dyn Provider> = match source {
            Source::Skipped(var) => {
                table.skipped(&what, var);
                continue;
            }
            Source::Direct(provider) => provider,
            Source::Url(url) => rt.block_on(async {
                let locks = tierlock::connect(&url)
                    .await
                    .unwrap_or_else(|err| panic!("{label}: {err}"));
                Arc::clone(locks.provider())
            }),
        };
        let external = [Vec::new(), Vec::new()];
        let external = std::cell::RefCell::new(external);
        let mut variants: Vec<Variant<'_>> = [
            ("bypassed: a manager per task", Route::Bypassed),
            ("**tier**: one manager", Route::Tier),
        ]
        .into_iter()
        .enumerate()
        .map(|(i, (variant, route))| {
            let (provider, external) = (&provider, &external);
            let run: Box<dyn FnMut() -> Duration + '_> = Box::new(move || {
                let (elapsed, ext) =
                    rt.block_on(contend(provider, route, "bench:hot", TASKS, turns));
                external.borrow_mut()[i].push(ext as f64);
                elapsed
            });
            (variant, run)
        })
        .collect();
        let rounds = paired::run(config.provider_rounds, &mut variants);
        drop(variants);
        let external: Vec<String> = external
            .into_inner()
            .iter()
            .map(|counts| format!("{:.0}", paired::quantile(counts, 0.5)))
            .collect();
        table.comparison(&what, &rounds, (TASKS * turns) as f64, 0, &external);
    }
}
