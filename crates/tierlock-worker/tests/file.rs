//! Real multi-process tests of the file provider: separate OS processes on one directory.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

use tierlock_testkit::multiprocess;

fn worker() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_tierlock-worker"))
}

fn provider(dir: &Path) -> Vec<String> {
    vec!["file".to_owned(), dir.to_string_lossy().into_owned()]
}

#[tokio::test]
async fn four_processes_count_to_8000() {
    let dir = tempfile::tempdir().unwrap();
    let locks = dir.path().join("locks");
    multiprocess::mutual_exclusion(worker(), &provider(&locks), dir.path()).await;
}

#[tokio::test]
async fn a_killed_holder_frees_the_lock() {
    let dir = tempfile::tempdir().unwrap();
    let took = multiprocess::killed_holder_is_released(worker(), &provider(dir.path())).await;
    eprintln!("the waiter got the lock {took:?} after the holder was killed");
}

#[tokio::test]
async fn a_busy_process_hands_the_lock_over() {
    let dir = tempfile::tempdir().unwrap();
    let took = multiprocess::busy_process_hands_over(worker(), &provider(dir.path())).await;
    eprintln!("the asking process waited {took:?}");
}

#[tokio::test]
async fn fencing_tokens_increase_across_a_killed_holder_in_flock_mode() {
    let dir = tempfile::tempdir().unwrap();
    let tokens =
        multiprocess::tokens_increase_across_a_killed_holder(worker(), &provider(dir.path())).await;
    eprintln!("tokens {tokens:?}");
}

#[tokio::test]
async fn fencing_tokens_increase_across_a_killed_holder_in_lease_mode() {
    let dir = tempfile::tempdir().unwrap();
    let lease = vec![
        "file-lease".to_owned(),
        dir.path().to_string_lossy().into_owned(),
        "500".to_owned(),
    ];
    let tokens = multiprocess::tokens_increase_across_a_killed_holder(worker(), &lease).await;
    eprintln!("tokens {tokens:?}");
}
