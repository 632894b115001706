//! Lease mode in one process: the state file's life, renewal, breaking stale leases (and never
//! fresh ones), the lost signal, requests, fencing tokens, and hostile directory contents.
//! The same behaviour across real processes and two "hosts" is tested in tierlock-worker.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use tierlock_core::{ExternalLock, LockError, LockManager, LockName, Provider};
use tierlock_file::{FileError, FileLockMode, FileProvider, LeaseProblem};

fn name(s: &str) -> LockName {
    LockName::new(s).unwrap()
}

fn lease(dir: &Path, ttl_ms: u64) -> FileProvider {
    FileProvider::builder(dir)
        .mode(FileLockMode::Lease {
            ttl: Duration::from_millis(ttl_ms),
        })
        .build()
        .unwrap()
}

async fn try_acquire(provider: &FileProvider, name: &LockName) -> Option<Box<dyn ExternalLock>> {
    provider.acquire(name, Some(Instant::now())).await.unwrap()
}

/// Attempts every 2 ms until the lock is acquired (a waiter polling a stale lease).
async fn poll_until_acquired(provider: &FileProvider, name: &LockName) -> Box<dyn ExternalLock> {
    loop {
        if let Some(held) = try_acquire(provider, name).await {
            return held;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// The names in a lease directory, sorted.
fn entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    names
}

/// The one state file of a lease directory.
fn state(dir: &Path) -> String {
    let states: Vec<_> = entries(dir)
        .into_iter()
        .filter(|n| n.starts_with("free.") || n.starts_with("held."))
        .collect();
    assert_eq!(states.len(), 1, "{states:?}");
    states.into_iter().next().unwrap()
}

/// Plants a held lease of a process that is gone: `held.<token>.0.<ttl>.<owner>.1.ghost`.
fn plant_stale(dir: &Path, token: u64, ttl_ms: u64) -> String {
    let planted = format!("held.{token}.0.{ttl_ms}.00000000deadbeef.1.ghost");
    std::fs::rename(dir.join(state(dir)), dir.join(&planted)).unwrap();
    planted
}

#[tokio::test]
async fn a_lease_cycle_leaves_one_free_state_with_the_last_token() {
    let tmp = tempfile::tempdir().unwrap();
    let provider = lease(tmp.path(), 10_000);
    assert_eq!(
        provider.mode(),
        FileLockMode::Lease {
            ttl: Duration::from_secs(10)
        }
    );
    let n = name("cycle");
    let dir = provider.lease_dir_path(&n);
    assert_eq!(dir.parent(), Some(provider.dir()));
    assert!(!dir.exists(), "created at the first acquisition");
    for token in 1..=3 {
        let held = try_acquire(&provider, &n).await.unwrap();
        assert_eq!(held.fencing_token(), Some(token));
        let current = state(&dir);
        assert!(
            current.starts_with(&format!("held.{token}.0.10000.")),
            "{current}"
        );
        assert!(
            try_acquire(&provider, &n).await.is_none(),
            "excludes itself"
        );
        held.release().await.unwrap();
        assert_eq!(state(&dir), format!("free.{token}"));
    }
    // Dropping releases too.
    drop(try_acquire(&provider, &n).await.unwrap());
    assert_eq!(entries(&dir), ["free.4"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_holder_renews_so_waiters_never_break_a_live_lease() {
    let tmp = tempfile::tempdir().unwrap();
    let holder = lease(tmp.path(), 90);
    let waiter = lease(tmp.path(), 90);
    let n = name("renewed");
    let dir = holder.lease_dir_path(&n);
    let held = try_acquire(&holder, &n).await.unwrap();
    let first = state(&dir);
    let start = Instant::now();
    // Ten times the ttl of a waiter polling every millisecond.
    while start.elapsed() < Duration::from_millis(900) {
        assert!(
            try_acquire(&waiter, &n).await.is_none(),
            "a live lease was broken"
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let now = state(&dir);
    assert_ne!(now, first, "the beat moved on");
    assert!(now.starts_with("held.1."), "{now}");
    let beat: u64 = now.split('.').nth(2).unwrap().parse().unwrap();
    assert!(beat >= 5, "renewed every ttl/3: beat {beat} after 10 ttl");
    assert!(!held.lost_signal().unwrap().is_lost());
    held.release().await.unwrap();
    assert_eq!(state(&dir), "free.1");
}

#[tokio::test]
async fn a_stale_lease_is_broken_after_a_full_ttl_by_the_waiters_clock() {
    let tmp = tempfile::tempdir().unwrap();
    let provider = lease(tmp.path(), 200);
    let n = name("stale");
    let dir = provider.lease_dir_path(&n);
    drop(try_acquire(&provider, &n).await.unwrap());
    plant_stale(&dir, 41, 100);

    // The waiter's own ttl (200 ms) is longer than the planted one: it waits for that.
    let watching = Instant::now();
    let held = poll_until_acquired(&provider, &n).await;
    let waited = watching.elapsed();
    assert!(
        waited >= Duration::from_millis(200),
        "broke after {waited:?}"
    );
    assert_eq!(
        held.fencing_token(),
        Some(42),
        "a break takes the next token"
    );
    held.release().await.unwrap();
    assert_eq!(state(&dir), "free.42");
}

#[tokio::test]
async fn a_holders_longer_ttl_is_respected() {
    let tmp = tempfile::tempdir().unwrap();
    let provider = lease(tmp.path(), 20);
    let n = name("long-ttl");
    let dir = provider.lease_dir_path(&n);
    drop(try_acquire(&provider, &n).await.unwrap());
    plant_stale(&dir, 1, 300);
    let watching = Instant::now();
    drop(poll_until_acquired(&provider, &n).await);
    assert!(watching.elapsed() >= Duration::from_millis(300));
}

/// Two providers (as two processes) watch one stale lease and break it at the same instant:
/// exactly one wins, every round, and tokens go up by one per round.
#[test]
fn two_breakers_racing_on_one_stale_lease_one_wins() {
    let tmp = tempfile::tempdir().unwrap();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let n = name("race");
    let providers: Vec<_> = (0..2).map(|_| Arc::new(lease(tmp.path(), 10))).collect();
    let dir = providers[0].lease_dir_path(&n);
    runtime.block_on(async { drop(try_acquire(&providers[0], &n).await.unwrap()) });
    let mut token = 1;
    for round in 0..200 {
        plant_stale(&dir, token, 10);
        // Both watch the planted lease, then both break it once it is stale.
        for provider in &providers {
            assert!(runtime.block_on(try_acquire(provider, &n)).is_none());
        }
        std::thread::sleep(Duration::from_millis(12));
        let barrier = Arc::new(Barrier::new(2));
        let racers: Vec<_> = providers
            .iter()
            .map(|provider| {
                let (provider, barrier, n) =
                    (Arc::clone(provider), Arc::clone(&barrier), n.clone());
                let handle = runtime.handle().clone();
                std::thread::spawn(move || {
                    barrier.wait();
                    handle.block_on(try_acquire(&provider, &n))
                })
            })
            .collect();
        let won: Vec<_> = racers
            .into_iter()
            .filter_map(|racer| racer.join().unwrap())
            .collect();
        assert_eq!(won.len(), 1, "round {round}: {} breakers won", won.len());
        token += 1;
        assert_eq!(won[0].fencing_token(), Some(token));
        runtime.block_on(async { won.into_iter().next().unwrap().release().await.unwrap() });
        assert_eq!(state(&dir), format!("free.{token}"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_lease_raises_lost_and_is_not_handed_to_a_local_waiter() {
    let tmp = tempfile::tempdir().unwrap();
    let provider: Arc<dyn Provider> = Arc::new(lease(tmp.path(), 60));
    let file_provider = lease(tmp.path(), 60);
    let n = name("lost");
    let dir = file_provider.lease_dir_path(&n);
    let locks = LockManager::from_arc(provider);
    let guard = locks.lock("lost", Duration::from_secs(5)).await.unwrap();
    assert_eq!(guard.fencing_token(), Some(1));
    // Another process takes the lease over behind the holder's back (as a breaker would).
    let held = state(&dir);
    std::fs::rename(
        dir.join(&held),
        dir.join("held.2.0.60000.00000000cafebabe.1.other"),
    )
    .unwrap();
    tokio::time::timeout(Duration::from_secs(10), guard.lost())
        .await
        .expect("the renewal finds the lease gone");
    assert!(guard.is_lost());

    // A local waiter queued behind the lost holder must not inherit it: it escalates again and
    // waits for the other process.
    let waiter = tokio::spawn({
        let locks = locks.clone();
        async move { locks.lock("lost", Duration::from_millis(300)).await }
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(matches!(guard.release().await, Err(LockError::Lost { .. })));
    assert!(waiter.await.unwrap().unwrap_err().is_timeout());
    assert!(
        state(&dir).starts_with("held.2."),
        "the other holder's lease is untouched"
    );
}

#[tokio::test]
async fn releasing_a_lease_broken_before_the_monitor_noticed_reports_lost() {
    let tmp = tempfile::tempdir().unwrap();
    let provider: Arc<dyn Provider> = Arc::new(lease(tmp.path(), 10_000));
    let dir = lease(tmp.path(), 10_000).lease_dir_path(&name("late"));
    let locks = LockManager::from_arc(provider);
    let guard = locks.lock("late", Duration::from_secs(5)).await.unwrap();
    let held = state(&dir);
    let other = "held.2.0.10000.00000000cafebabe.1.other";
    std::fs::rename(dir.join(held), dir.join(other)).unwrap();
    assert!(!guard.is_lost(), "not renewed yet");
    assert!(matches!(guard.release().await, Err(LockError::Lost { .. })));
    assert_eq!(state(&dir), other);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiters_request_is_seen_by_the_holder_and_withdrawn() {
    let tmp = tempfile::tempdir().unwrap();
    let holder_side = lease(tmp.path(), 300);
    let waiter_side = lease(tmp.path(), 300);
    let n = name("asked");
    let dir = holder_side.lease_dir_path(&n);
    let held = try_acquire(&holder_side, &n).await.unwrap();
    assert!(!held.is_requested(), "the first probe starts the watch");
    let mark = waiter_side.request(&n).await.unwrap().expect("a mark");
    let requests = || {
        entries(&dir)
            .into_iter()
            .filter(|e| e.starts_with("req."))
            .count()
    };
    assert_eq!(requests(), 1);
    let start = Instant::now();
    while !held.is_requested() {
        assert!(start.elapsed() < Duration::from_secs(10), "never seen");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // The waiter keeps its request alive past its ttl.
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(requests(), 1);
    assert!(held.is_requested());
    drop(mark);
    assert_eq!(requests(), 0);
    let start = Instant::now();
    while held.is_requested() {
        assert!(start.elapsed() < Duration::from_secs(10), "never withdrawn");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    held.release().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_request_of_a_dead_waiter_expires() {
    let tmp = tempfile::tempdir().unwrap();
    let provider = lease(tmp.path(), 100);
    let n = name("dead-waiter");
    let dir = provider.lease_dir_path(&n);
    let held = try_acquire(&provider, &n).await.unwrap();
    // A request file whose waiter is gone: its name never changes.
    std::fs::write(dir.join("req.100.00000000000000aa.3"), b"").unwrap();
    let _ = held.is_requested();
    let start = Instant::now();
    while dir.join("req.100.00000000000000aa.3").exists() {
        assert!(start.elapsed() < Duration::from_secs(10), "never expired");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    tokio::time::sleep(Duration::from_millis(120)).await;
    assert!(!held.is_requested());
    held.release().await.unwrap();
}

#[tokio::test]
async fn tokens_survive_providers_and_modes_of_release() {
    let tmp = tempfile::tempdir().unwrap();
    let n = name("tokens");
    let mut last = 0;
    for _ in 0..5 {
        let provider = lease(tmp.path(), 1000);
        let held = try_acquire(&provider, &n).await.unwrap();
        let token = held.fencing_token().unwrap();
        assert!(token > last, "{token} after {last}");
        last = token;
        if token % 2 == 0 {
            held.release().await.unwrap();
        } else {
            drop(held);
        }
    }
    assert_eq!(last, 5);
}

#[test]
fn a_guard_dropped_after_its_runtime_still_frees_the_lease() {
    let tmp = tempfile::tempdir().unwrap();
    let provider = Arc::new(lease(tmp.path(), 10_000));
    let dir = provider.lease_dir_path(&name("orphan"));
    let locks = LockManager::from_arc(provider);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let guard = runtime
        .block_on(locks.lock("orphan", Duration::from_secs(5)))
        .unwrap();
    drop(runtime);
    drop(guard);
    assert_eq!(state(&dir), "free.1");
}

fn expect_state_problem(err: Box<dyn std::error::Error + Send + Sync>) -> LeaseProblem {
    match err.downcast::<FileError>().map(|e| *e) {
        Ok(FileError::LeaseState { problem, .. }) => problem,
        other => panic!("{other:?}"),
    }
}

#[cfg(unix)]
#[tokio::test]
async fn a_lease_directory_planted_as_a_symlink_is_refused_and_untouched() {
    let tmp = tempfile::tempdir().unwrap();
    let provider = lease(&tmp.path().join("locks"), 1000);
    let n = name("planted");
    let outside = tmp.path().join("outside");
    std::fs::create_dir(&outside).unwrap();
    std::fs::write(outside.join("free.7"), b"").unwrap();
    std::os::unix::fs::symlink(&outside, provider.lease_dir_path(&n)).unwrap();
    let err = provider
        .acquire(&n, Some(Instant::now()))
        .await
        .unwrap_err();
    assert_eq!(expect_state_problem(err), LeaseProblem::Symlink);
    let err = provider.request(&n).await.unwrap_err();
    assert_eq!(expect_state_problem(err), LeaseProblem::Symlink);
    assert_eq!(entries(&outside), ["free.7"], "nothing written outside");
}

#[cfg(unix)]
#[tokio::test]
async fn a_state_file_planted_as_a_symlink_is_renamed_never_followed() {
    let tmp = tempfile::tempdir().unwrap();
    let provider = lease(&tmp.path().join("locks"), 20);
    let n = name("link-state");
    let dir = provider.lease_dir_path(&n);
    drop(try_acquire(&provider, &n).await.unwrap());
    let target = tmp.path().join("precious");
    std::fs::write(&target, b"keep").unwrap();
    std::fs::remove_file(dir.join("free.1")).unwrap();
    let planted = "held.1.0.20.00000000deadbeef.1.ghost";
    std::os::unix::fs::symlink(&target, dir.join(planted)).unwrap();
    let held = poll_until_acquired(&provider, &n).await;
    assert_eq!(held.fencing_token(), Some(2));
    assert_eq!(std::fs::read(&target).unwrap(), b"keep");
    assert!(state(&dir).starts_with("held.2."));
    held.release().await.unwrap();
    assert_eq!(std::fs::read(&target).unwrap(), b"keep");
}

#[tokio::test]
async fn garbage_in_a_lease_directory_is_a_typed_error() {
    let tmp = tempfile::tempdir().unwrap();
    let provider = lease(tmp.path(), 1000);
    let n = name("garbage");
    let dir: PathBuf = provider.lease_dir_path(&n);
    drop(try_acquire(&provider, &n).await.unwrap());

    // Foreign files are ignored.
    std::fs::write(dir.join("notes.txt"), b"hello").unwrap();
    drop(try_acquire(&provider, &n).await.unwrap());

    std::fs::rename(dir.join("free.2"), dir.join("free.two")).unwrap();
    let err = provider
        .acquire(&n, Some(Instant::now()))
        .await
        .unwrap_err();
    assert_eq!(
        expect_state_problem(err),
        LeaseProblem::Unparsable("free.two".to_owned())
    );
    std::fs::write(dir.join("free.3"), b"").unwrap();
    let err = provider
        .acquire(&n, Some(Instant::now()))
        .await
        .unwrap_err();
    assert!(matches!(
        expect_state_problem(err),
        LeaseProblem::SeveralStates(_)
    ));
    std::fs::remove_file(dir.join("free.two")).unwrap();
    std::fs::remove_file(dir.join("free.3")).unwrap();
    let err = provider
        .acquire(&n, Some(Instant::now()))
        .await
        .unwrap_err();
    assert_eq!(expect_state_problem(err), LeaseProblem::NoState);

    let file_instead = provider.lease_dir_path(&name("a-file"));
    std::fs::write(&file_instead, b"").unwrap();
    let err = provider
        .acquire(&name("a-file"), Some(Instant::now()))
        .await
        .unwrap_err();
    assert_eq!(expect_state_problem(err), LeaseProblem::NotADirectory);

    // Through a manager: a provider error, and nothing stuck.
    let locks = LockManager::new(lease(tmp.path(), 1000));
    assert!(matches!(
        locks.lock("garbage", Duration::from_millis(100)).await,
        Err(LockError::Provider { .. })
    ));
    assert_eq!(locks.stats().entries, 0);
}

#[test]
fn modes_cannot_be_mixed_on_one_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let _lease = lease(tmp.path(), 1000);
    let err = FileProvider::builder(tmp.path())
        .mode(FileLockMode::Flock)
        .build()
        .unwrap_err();
    assert!(
        matches!(&err, FileError::ModeMismatch { configured: "flock", recorded, .. } if recorded == "lease"),
        "{err:?}"
    );
    assert!(err.to_string().contains(".tierlock-mode"), "{err}");
    // The same mode with another ttl is fine: each lease carries its holder's ttl.
    lease(tmp.path(), 5000);
}

#[test]
fn a_ttl_out_of_range_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    for ttl in [
        Duration::ZERO,
        Duration::from_millis(9),
        Duration::from_secs(86_401),
    ] {
        let err = FileProvider::builder(tmp.path())
            .mode(FileLockMode::Lease { ttl })
            .build()
            .unwrap_err();
        assert!(matches!(err, FileError::InvalidTtl { .. }), "{err:?}");
    }
    assert!(
        !tmp.path().join(".tierlock-mode").exists(),
        "a refused provider records nothing"
    );
}
