//! The floor under a re-entry and an uncontended acquisition: what the parts of the hot path
//! cost on this machine, each timed in the same rounds as a bare `tokio::sync::Mutex` lock +
//! unlock and the naive keyed lock A (see `common::interleaved`).
//!
//! * `arc_clone_drop`: the guard's `Arc<Inner>`, cloned and dropped.
//! * `parking_lot_lock_unlock`: one shard lock round trip.
//! * `foldhash_17b`: hashing a 17-byte name.
//! * `owner_current`: `Owner::current()` inside a task.
//! * `table_model`: what tierlock's re-entry must do at the least with one shard lock per
//!   acquisition and per release: hash, lock, find by `&str` in a `hashbrown::HashTable`, bump a
//!   count, unlock; clone the `Arc` the guard keeps; then lock, find by hash + key, drop the
//!   count, unlock, drop the `Arc`. No owner, no validation, no future.
//! * `tierlock_reentry` and `tierlock_uncontended`: the real thing, for comparison.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::hash::BuildHasher;
use std::hint::black_box;
use std::sync::Arc;
use std::time::Instant;

use common::{
    NaiveStd, SHORT_NAME, TIMEOUT, Timed, current_thread, in_task, interleaved, time_pairs,
};
use hashbrown::HashTable;
use smol_str::SmolStr;
use tierlock_core::{LockManager, MemoryProvider, Owner};

type Slots = HashTable<(u64, SmolStr, u32)>;

fn main() {
    let rt = current_thread();
    let rt = &rt;
    let arc = Arc::new(0u64);
    let mutex = Arc::new(parking_lot::Mutex::new(0u64));
    let hasher = foldhash::fast::RandomState::default();
    let table = {
        let mut slots = Slots::new();
        for i in 0..64 {
            let name = format!("tenant:{i}:other");
            let hash = hasher.hash_one(name.as_str());
            slots.insert_unique(hash, (hash, SmolStr::new(&name), 0), |s| s.0);
        }
        let hash = hasher.hash_one(SHORT_NAME);
        slots.insert_unique(hash, (hash, SmolStr::new(SHORT_NAME), 1), |s| s.0);
        Arc::new(parking_lot::Mutex::new(slots))
    };
    let tokio_mutex = Arc::new(tokio::sync::Mutex::new(()));
    let naive = Arc::new(NaiveStd::new());
    let locks = LockManager::new(MemoryProvider::new());

    let mut variants: Vec<Timed<'_>> = vec![
        (
            "tokio_mutex",
            Box::new(|iters| time_pairs!(rt, tokio_mutex, iters, |m| black_box(&*m).lock().await)),
        ),
        (
            "naive_a_get_then_insert",
            Box::new(|iters| {
                time_pairs!(rt, naive, iters, |a| a.lock_a(black_box(SHORT_NAME)).await)
            }),
        ),
        ("arc_clone_drop", {
            Box::new(move |iters| {
                let start = Instant::now();
                for _ in 0..iters {
                    drop(black_box(Arc::clone(black_box(&arc))));
                }
                start.elapsed()
            })
        }),
        ("parking_lot_lock_unlock", {
            Box::new(move |iters| {
                let start = Instant::now();
                for _ in 0..iters {
                    *black_box(&*mutex).lock() += 1;
                }
                start.elapsed()
            })
        }),
        ("foldhash_17b", {
            let hasher = hasher.clone();
            Box::new(move |iters| {
                let start = Instant::now();
                for _ in 0..iters {
                    black_box(hasher.hash_one(black_box(SHORT_NAME)));
                }
                start.elapsed()
            })
        }),
        ("owner_current", {
            Box::new(move |iters| {
                in_task(rt, async move {
                    let start = Instant::now();
                    for _ in 0..iters {
                        black_box(Owner::current());
                    }
                    start.elapsed()
                })
            })
        }),
        ("table_model", {
            let hasher = hasher.clone();
            let guard_arc = Arc::new(0u64);
            Box::new(move |iters| {
                let start = Instant::now();
                for _ in 0..iters {
                    let name = black_box(SHORT_NAME);
                    let hash = hasher.hash_one(name);
                    let key = {
                        let mut slots = table.lock();
                        let slot = slots
                            .find_mut(hash, |s| s.0 == hash && s.1 == name)
                            .expect("present");
                        slot.2 += 1;
                        (hash, slot.1.clone())
                    };
                    let guard = (black_box(Arc::clone(&guard_arc)), key);
                    {
                        let (hash, name) = &guard.1;
                        let mut slots = table.lock();
                        let slot = slots
                            .find_mut(*hash, |s| s.0 == *hash && s.1 == *name)
                            .expect("present");
                        slot.2 -= 1;
                    }
                    drop(black_box(guard));
                }
                start.elapsed()
            })
        }),
        ("tierlock_reentry", {
            let locks = locks.clone();
            Box::new(move |iters| {
                let locks = locks.clone();
                in_task(rt, async move {
                    let outer = locks.lock("floor:outer", TIMEOUT).await.unwrap();
                    let start = Instant::now();
                    for _ in 0..iters {
                        drop(black_box(
                            locks.lock(black_box("floor:outer"), TIMEOUT).await.unwrap(),
                        ));
                    }
                    let elapsed = start.elapsed();
                    drop(outer);
                    elapsed
                })
            })
        }),
        (
            "tierlock_uncontended",
            Box::new(|iters| {
                time_pairs!(rt, locks, iters, |locks| locks
                    .lock(black_box(SHORT_NAME), TIMEOUT)
                    .await
                    .unwrap())
            }),
        ),
    ];
    interleaved(
        "floor",
        40,
        100_000,
        &mut variants,
        &[(6, 0), (7, 0), (7, 6), (8, 1), (8, 6)],
    );
}
