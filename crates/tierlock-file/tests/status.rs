//! The status listing in both modes: what it shows while a name is held and after, and that it
//! disturbs neither the holder nor concurrent acquisitions. Each provider below opens its own
//! handles, so two providers on a directory exclude each other as two processes do (the same
//! across real processes is tested through `tierlock status` in tierlock-cli).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::{Duration, Instant};

use tierlock_core::{ExternalLock, LockName, Provider};
use tierlock_file::status::{self, FlockProbe};
use tierlock_file::{FileLockMode, FileProvider};

fn flock(dir: &Path) -> FileProvider {
    FileProvider::builder(dir)
        .mode(FileLockMode::Flock)
        .build()
        .unwrap()
}

fn lease(dir: &Path) -> FileProvider {
    FileProvider::builder(dir)
        .mode(FileLockMode::Lease {
            ttl: Duration::from_secs(5),
        })
        .build()
        .unwrap()
}

fn name(s: &str) -> LockName {
    LockName::new(s).unwrap()
}

async fn try_acquire(provider: &FileProvider, name: &LockName) -> Option<Box<dyn ExternalLock>> {
    provider.acquire(name, Some(Instant::now())).await.unwrap()
}

#[test]
fn a_missing_or_empty_directory_has_no_held_locks_and_is_not_created() {
    let tmp = tempfile::tempdir().unwrap();
    let missing = tmp.path().join("nope");
    assert!(status::held_locks(&missing).unwrap().is_empty());
    assert!(!missing.exists(), "the listing created the directory");
    assert!(status::held_locks(tmp.path()).unwrap().is_empty());
}

async fn lists_while_held(provider: &FileProvider, other: &FileProvider, lease_mode: bool) {
    let dir = provider.dir().to_path_buf();
    let short = name("nightly-export");
    let long = name("tenant:42/migrate");
    let a = try_acquire(other, &short).await.unwrap();
    let b = try_acquire(other, &long).await.unwrap();
    // A name used once and released leaves its file behind: not held.
    let c = try_acquire(other, &name("free-again")).await.unwrap();
    c.release().await.unwrap();

    for probe in [
        FlockProbe::Auto,
        FlockProbe::KernelTable,
        FlockProbe::TryShared,
    ] {
        if !lease_mode && probe == FlockProbe::KernelTable && !cfg!(target_os = "linux") {
            continue;
        }
        let held = status::held_locks_with(&dir, probe).unwrap();
        assert_eq!(held.len(), 2, "{probe:?}: {held:#?}");
        let exact = held
            .iter()
            .find(|h| h.name.as_deref() == Some("nightly-export"))
            .unwrap_or_else(|| panic!("{held:#?}"));
        assert_eq!(exact.fencing_token, a.fencing_token(), "{exact:#?}");
        let ext = if lease_mode { ".lease" } else { ".lock" };
        assert!(exact.key.ends_with(ext), "{exact:#?}");
        let hinted = held
            .iter()
            .find(|h| h.name.is_none())
            .unwrap_or_else(|| panic!("{held:#?}"));
        assert_eq!(hinted.name_hint.as_deref(), Some("tenant_42_migrate"));
        assert_eq!(hinted.fencing_token, b.fencing_token());
        if lease_mode || cfg!(target_os = "linux") {
            let me = format!("pid {}", std::process::id());
            let holder = exact
                .holder
                .as_deref()
                .unwrap_or_else(|| panic!("{exact:#?}"));
            assert!(holder.starts_with(&me), "{holder}");
        }
    }
    assert_eq!(provider.held_locks().unwrap().len(), 2);

    a.release().await.unwrap();
    let held = status::held_locks(&dir).unwrap();
    assert_eq!(held.len(), 1, "{held:#?}");
    assert_eq!(held[0].name_hint.as_deref(), Some("tenant_42_migrate"));
    b.release().await.unwrap();
    assert!(status::held_locks(&dir).unwrap().is_empty());
}

#[tokio::test]
async fn flock_mode_lists_held_names() {
    let tmp = tempfile::tempdir().unwrap();
    lists_while_held(&flock(tmp.path()), &flock(tmp.path()), false).await;
}

#[tokio::test]
async fn lease_mode_lists_held_names() {
    let tmp = tempfile::tempdir().unwrap();
    lists_while_held(&lease(tmp.path()), &lease(tmp.path()), true).await;
}

#[tokio::test]
async fn lease_mode_counts_waiting_processes() {
    let tmp = tempfile::tempdir().unwrap();
    let holder = lease(tmp.path());
    let waiter = lease(tmp.path());
    let n = name("queue");
    let held = try_acquire(&holder, &n).await.unwrap();
    let mark = waiter.request(&n).await.unwrap();
    assert!(mark.is_some());
    let listed = status::held_locks(tmp.path()).unwrap();
    assert_eq!(listed[0].waiters, Some(1), "{listed:#?}");
    drop(mark);
    held.release().await.unwrap();
}

#[cfg(target_os = "linux")]
#[tokio::test]
async fn flock_mode_counts_waiting_processes_from_the_kernel_table() {
    let tmp = tempfile::tempdir().unwrap();
    let holder = flock(tmp.path());
    let waiter = flock(tmp.path());
    let n = name("queue");
    let held = try_acquire(&holder, &n).await.unwrap();
    let mark = waiter.request(&n).await.unwrap();
    assert!(mark.is_some());
    let listed = status::held_locks(tmp.path()).unwrap();
    assert_eq!(listed[0].waiters, Some(1), "{listed:#?}");
    drop(mark);
    held.release().await.unwrap();
}

/// Lists `dir` in a loop on a thread until `stop`, with `probe`.
fn lister(dir: &Path, probe: FlockProbe, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<u32> {
    let dir = dir.to_path_buf();
    std::thread::spawn(move || {
        let mut rounds = 0;
        while !stop.load(Ordering::Relaxed) {
            status::held_locks_with(&dir, probe).unwrap();
            rounds += 1;
        }
        rounds
    })
}

/// While listings run in a loop: the holder keeps its lock (nobody else gets it, its lease is
/// never lost), and — with a probe that never locks — zero-timeout attempts on a free name
/// always succeed.
async fn listing_disturbs_nobody(
    make: fn(&Path) -> FileProvider,
    free_probe: FlockProbe,
    lease_mode: bool,
) {
    let tmp = tempfile::tempdir().unwrap();
    let holder = make(tmp.path());
    let other = make(tmp.path());
    let busy = name("busy");
    let free = name("free");
    let held = try_acquire(&holder, &busy).await.unwrap();
    try_acquire(&other, &free)
        .await
        .unwrap()
        .release()
        .await
        .unwrap();

    let stop = Arc::new(AtomicBool::new(false));
    let threads = [
        lister(tmp.path(), free_probe, stop.clone()),
        lister(tmp.path(), free_probe, stop.clone()),
    ];
    let failures = AtomicU32::new(0);
    let until = Instant::now() + Duration::from_millis(700);
    let mut attempts = 0;
    while Instant::now() < until {
        assert!(
            try_acquire(&other, &busy).await.is_none(),
            "the held name was taken"
        );
        match try_acquire(&other, &free).await {
            Some(lock) => lock.release().await.unwrap(),
            None => {
                failures.fetch_add(1, Ordering::Relaxed);
            }
        }
        attempts += 1;
        tokio::task::yield_now().await;
    }
    stop.store(true, Ordering::Relaxed);
    let rounds: u32 = threads.into_iter().map(|t| t.join().unwrap()).sum();
    assert!(
        rounds > 10 && attempts > 10,
        "{rounds} listings, {attempts} attempts"
    );
    assert_eq!(
        failures.load(Ordering::Relaxed),
        0,
        "zero-timeout attempts on a free name failed during {rounds} listings"
    );
    if lease_mode {
        let lost = held.lost_signal().expect("a lease reports losses");
        assert!(!lost.is_lost(), "the holder's lease was lost");
    }
    assert_eq!(status::held_locks(tmp.path()).unwrap().len(), 1);
    held.release().await.unwrap();
    assert!(status::held_locks(tmp.path()).unwrap().is_empty());
}

#[cfg(target_os = "linux")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flock_listing_by_kernel_table_disturbs_nobody() {
    listing_disturbs_nobody(flock, FlockProbe::KernelTable, false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lease_listing_disturbs_nobody() {
    // Lease directories are only listed, whatever the probe.
    listing_disturbs_nobody(lease, FlockProbe::TryShared, true).await;
}

/// The documented cost of `TryShared`: it never takes a held lock, but a free name probed at
/// the instant of a zero-timeout attempt looks held to that attempt. This test shows the
/// holder side only (the race itself is timing-dependent).
#[tokio::test]
async fn try_shared_probe_never_takes_a_held_lock() {
    let tmp = tempfile::tempdir().unwrap();
    let holder = flock(tmp.path());
    let other = flock(tmp.path());
    let busy = name("busy");
    let held = try_acquire(&holder, &busy).await.unwrap();
    for _ in 0..200 {
        assert_eq!(
            status::held_locks_with(tmp.path(), FlockProbe::TryShared)
                .unwrap()
                .len(),
            1
        );
        assert!(try_acquire(&other, &busy).await.is_none());
    }
    held.release().await.unwrap();
    assert!(try_acquire(&other, &busy).await.is_some());
}
