//! Real multi-process tests of the SQLite provider: separate OS processes on one database file.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::time::Duration;

use tierlock_testkit::multiprocess::{self, PATIENCE, Worker, field};

fn worker() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_tierlock-worker"))
}

fn args(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}

/// Provider arguments: the database file and the lease time to live.
fn sqlite(db: &Path, ttl_ms: u64) -> Vec<String> {
    args(&[
        "sqlite",
        db.to_str().expect("temp paths are UTF-8"),
        &ttl_ms.to_string(),
    ])
}

#[tokio::test]
async fn four_processes_count_to_8000() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("locks.db");
    // 4 processes × 4 tasks × 500 read-sleep-write increments of a counter file.
    multiprocess::mutual_exclusion(worker(), &sqlite(&db, 10_000), dir.path()).await;
}

#[tokio::test]
async fn eight_processes_set_up_a_new_database_at_once() {
    // Switching a new file to WAL mode needs it to itself, and SQLite reports "busy" there
    // without waiting: every process must still come up.
    for round in 0..5 {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("locks.db");
        let providers = vec![sqlite(&db, 10_000); 8];
        let counter = dir.path().join("counter.txt");
        multiprocess::count_together(worker(), &providers, &counter, 1, 5).await;
        eprintln!("round {round}: 8 processes started on a new file");
    }
}

#[tokio::test]
async fn a_killed_holder_is_taken_over_within_ttl_and_a_renewal() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("locks.db");
    let ttl = Duration::from_millis(1500);
    let provider = sqlite(&db, ttl.as_millis() as u64);
    let bound = ttl + ttl / 3;
    let took =
        multiprocess::killed_holder_is_released_to(worker(), &provider, &provider, bound).await;
    // Not before the lease could have expired: the holder renewed at most ttl/3 before the kill.
    assert!(
        took >= ttl * 2 / 3,
        "taken over after {took:?}, ttl {ttl:?}"
    );
    eprintln!("the waiter took the lease {took:?} after the holder was killed (ttl {ttl:?})");
}

#[tokio::test]
async fn a_stopped_holder_is_taken_over_and_learns_it_lost_with_a_lower_token() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("locks.db");
    let mut holder = Worker::spawn(worker(), &sqlite(&db, 500), &args(&["hold", "x", "10000"]));
    holder.expect("waiting", PATIENCE).await;
    let held = holder.expect("acquired", PATIENCE).await;
    let old_token = field(&held, "token").unwrap();
    holder.signal("STOP");
    let mut taker = Worker::spawn(worker(), &sqlite(&db, 500), &args(&["hold", "x", "30000"]));
    taker.expect("waiting", PATIENCE).await;
    let took = taker.expect("acquired", PATIENCE).await;
    let new_token = field(&took, "token").unwrap();
    assert!(new_token > old_token, "{new_token} after {old_token}");
    holder.signal("CONT");
    let lost = holder.expect("lost", PATIENCE).await;
    assert_eq!(field(&lost, "token"), Some(old_token));
    holder.tell_release().await;
    assert_eq!(holder.expect("released", PATIENCE).await, "released lost");
    holder.finish().await;
    // The new holder was never disturbed.
    taker.tell_release().await;
    assert_eq!(taker.expect("released", PATIENCE).await, "released");
    taker.finish().await;
}

#[tokio::test]
async fn fencing_tokens_strictly_increase_across_processes_and_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("locks.db");
    let mut last = 0;
    for restart in 0..3 {
        let mut a = Worker::serve(worker(), &sqlite(&db, 10_000), "tokens").await;
        let mut b = Worker::serve(worker(), &sqlite(&db, 10_000), "tokens").await;
        for i in 0..200 {
            let worker = if i % 2 == 0 { &mut a } else { &mut b };
            let token = worker.lock_token(30_000).await.expect("acquired");
            assert!(
                token > last,
                "restart {restart}, acquisition {i}: token {token} after {last}"
            );
            last = token;
            assert!(worker.release().await);
        }
        // The last holder dies holding the lock: its successor takes the row over.
        let token = a.lock_token(30_000).await.expect("acquired");
        assert!(token > last);
        last = token;
        a.kill().await;
        b.finish().await;
        // A person empties the lease table between runs; the tokens go on regardless.
        let conn = rusqlite::Connection::open(&db).unwrap();
        conn.busy_timeout(Duration::from_secs(5)).unwrap();
        conn.execute_batch("DELETE FROM tierlock_leases").unwrap();
    }
}

#[tokio::test]
async fn a_busy_process_hands_the_lock_over() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("locks.db");
    let took = multiprocess::busy_process_hands_over(worker(), &sqlite(&db, 10_000)).await;
    eprintln!("the asking process waited {took:?}");
}
