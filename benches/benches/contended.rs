//! 8 tasks contending on one name on a 2-worker multi-thread runtime, each doing `CYCLES`
//! lock / tiny critical section / unlock cycles. Throughput = critical sections per second
//! (with 8 contenders nearly every one of them ends in a hand-off to a queued waiter).
//!
//! One criterion iteration is one round: spawn the 8 tasks, join them. The critical section is
//! a non-atomic increment (load, then store) of a shared counter, checked after each round.
//!
//! Two kinds of critical section:
//! * `contended`: load, store. Tasks run to their next `.await` without yielding, so whether a
//!   release finds a queued waiter depends on how the runtime interleaves the tasks; part of the
//!   cycles are uncontended (the share of hand-offs is printed).
//! * `contended_yield`: load, `yield_now().await`, store (as in the mutual-exclusion test): the
//!   holder always yields with the lock held, so every other task queues and nearly every
//!   release is a hand-off. This measures hand-offs per second proper.
//!
//! On a 2-core machine shared with other work, this benchmark swings by 2-4x with the load of
//! the moment, and criterion measures the variants one after the other. So before the criterion
//! group it also runs an *interleaved* comparison: `INTERLEAVED_ROUNDS` rounds, each timing
//! every variant once in rotating order, and prints the median and 10th-90th percentile
//! throughput per variant; load drifts then hit all variants alike. It does the same on a
//! 1-worker runtime, for comparison.
//!
//! The workload (tasks, cycles, rounds, the variants) is `tierlock_benches::handoff`, shared
//! with `examples/handoff.rs`, which runs chosen variants alone or paired, for profilers.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use tierlock_benches::handoff::{
    CYCLES, Naive, Section, TASKS, TIMEOUT, Variant, naive, rate, round, tierlock, tokio_mutex,
};
use tierlock_core::{LockManager, MemoryProvider};

const WORKERS: usize = 2;
const INTERLEAVED_ROUNDS: usize = 40;

fn variants(yields: bool) -> Vec<(&'static str, Variant)> {
    let memory = || LockManager::new(MemoryProvider::new());
    let section = Section {
        yields,
        ..Section::default()
    };
    vec![
        ("tierlock_timeout_1s", tierlock(memory(), TIMEOUT, section)),
        // `Duration::MAX` has no deadline, so a queued waiter registers no timer.
        (
            "tierlock_no_timeout",
            tierlock(memory(), Duration::MAX, section),
        ),
        ("naive_a_get_then_insert", naive(Naive::A, section)),
        ("naive_b_entry", naive(Naive::B, section)),
        ("naive_c_cleanup", naive(Naive::C, section)),
        ("naive_a_timeout_1s", naive(Naive::ATimeout, section)),
        ("tokio_mutex", tokio_mutex(section)),
    ]
}

/// The interleaved comparison described in the module docs, printed to stderr.
fn interleaved(group: &str, workers: usize, variants: &[(&'static str, Variant)]) {
    let mut rates: Vec<Vec<f64>> = vec![Vec::new(); variants.len()];
    for r in 0..INTERLEAVED_ROUNDS {
        for i in 0..variants.len() {
            let v = (i + r) % variants.len();
            rates[v].push(rate(round(workers, &variants[v].1)));
        }
    }
    eprintln!(
        "{group}, interleaved, {workers} worker(s): {INTERLEAVED_ROUNDS} rounds of {TASKS} tasks \
         x {CYCLES} cycles; load {}; M critical sections/s: median [p10 p90]",
        common::load_average()
    );
    // Paired: tierlock without timeout against naive A, and both with timeouts, per round.
    let find = |wanted: &str| variants.iter().position(|(name, _)| *name == wanted);
    for (v, base) in [
        ("tierlock_no_timeout", "naive_a_get_then_insert"),
        ("tierlock_timeout_1s", "naive_a_timeout_1s"),
    ] {
        if let (Some(v), Some(b)) = (find(v), find(base)) {
            let mut ratios: Vec<f64> = rates[v].iter().zip(&rates[b]).map(|(x, y)| x / y).collect();
            ratios.sort_by(f64::total_cmp);
            let at = |q: f64| ratios[((ratios.len() - 1) as f64 * q).round() as usize];
            eprintln!(
                "  paired ratio {} / {}: median {:.2} [{:.2} {:.2}]",
                variants[v].0,
                variants[b].0,
                at(0.5),
                at(0.1),
                at(0.9)
            );
        }
    }
    for ((name, _), rates) in variants.iter().zip(&mut rates) {
        rates.sort_by(f64::total_cmp);
        let at = |q: f64| rates[((rates.len() - 1) as f64 * q).round() as usize];
        eprintln!(
            "  {name:<26} {:6.2}  [{:5.2} {:5.2}]",
            at(0.5),
            at(0.1),
            at(0.9)
        );
    }
}

fn contended(c: &mut Criterion) {
    for (group_name, yields) in [("contended", false), ("contended_yield", true)] {
        // One round outside the measurement, to report how many turns were local hand-offs.
        let locks = LockManager::new(MemoryProvider::new());
        let section = Section {
            yields,
            ..Section::default()
        };
        round(WORKERS, &tierlock(locks.clone(), TIMEOUT, section));
        let stats = locks.stats();
        eprintln!(
            "{group_name}: one tierlock round: {} critical sections, {} local hand-offs, {} entries after",
            TASKS * CYCLES,
            stats.local_handoffs,
            stats.entries
        );

        let variants = variants(yields);
        interleaved(group_name, WORKERS, &variants);
        // Not asked for by the issue: the same on one worker, where no task crosses threads;
        // it separates the cost of the lock from that of the runtime's cross-worker wake-ups.
        interleaved(group_name, 1, &variants);

        let mut group = c.benchmark_group(group_name);
        group.throughput(Throughput::Elements(TASKS * CYCLES));
        for (name, variant) in &variants {
            group.bench_function(*name, |b| {
                b.iter_custom(|iters| (0..iters).map(|_| round(WORKERS, variant)).sum());
            });
        }
        group.finish();
    }
}

criterion_group!(benches, contended);
criterion_main!(benches);
