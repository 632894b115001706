//! Behaviour of the file provider in one process: exclusion between managers and providers,
//! the request signal, zero-timeout cycles, release, lifecycle and construction errors.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use tierlock_core::{LockError, LockManager, LockName, Provider};
use tierlock_file::{FileError, FileProvider};

fn name(s: &str) -> LockName {
    LockName::new(s).unwrap()
}

async fn try_acquire(
    provider: &FileProvider,
    name: &LockName,
) -> Option<Box<dyn tierlock_core::ExternalLock>> {
    provider.acquire(name, Some(Instant::now())).await.unwrap()
}

#[tokio::test]
async fn two_managers_on_one_provider_exclude_each_other() {
    let tmp = tempfile::tempdir().unwrap();
    let provider: Arc<dyn Provider> = Arc::new(FileProvider::new(tmp.path()).unwrap());
    let a = LockManager::from_arc(Arc::clone(&provider));
    let b = LockManager::from_arc(provider);

    let held = a.lock("shared", Duration::from_secs(5)).await.unwrap();
    assert!(b.try_lock("shared").await.unwrap().is_none());
    assert!(
        b.lock("shared", Duration::from_millis(50))
            .await
            .unwrap_err()
            .is_timeout()
    );
    // Other names are independent.
    assert!(b.try_lock("other").await.unwrap().is_some());
    held.release().await.unwrap();
    assert!(b.try_lock("shared").await.unwrap().is_some());
}

#[tokio::test]
async fn two_providers_on_one_directory_exclude_each_other() {
    let tmp = tempfile::tempdir().unwrap();
    let p1 = FileProvider::new(tmp.path()).unwrap();
    let p2 = FileProvider::new(tmp.path()).unwrap();
    let n = name("job:nightly");

    let held = try_acquire(&p1, &n).await.expect("free at first");
    assert!(try_acquire(&p2, &n).await.is_none());
    assert!(
        try_acquire(&p1, &n).await.is_none(),
        "one provider excludes itself too"
    );
    drop(held); // dropping the handle releases
    let held = try_acquire(&p2, &n).await.expect("free after drop");
    assert!(try_acquire(&p1, &n).await.is_none());
    held.release().await.unwrap();
    assert!(try_acquire(&p1, &n).await.is_some());
}

#[tokio::test]
async fn flock_excludes_between_two_open_files_of_one_process() {
    // The property the provider relies on for in-process exclusion, checked on this platform.
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("raw.lock");
    let open = || {
        std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .unwrap()
    };
    let (first, second) = (open(), open());
    fs2::FileExt::try_lock_exclusive(&first).unwrap();
    assert!(fs2::FileExt::try_lock_exclusive(&second).is_err());
    assert!(fs2::FileExt::try_lock_shared(&second).is_err());
    drop(first);
    fs2::FileExt::try_lock_exclusive(&second).unwrap();
}

/// Waits until the holder's background probe reports `expected` (generously bounded).
async fn requested_becomes(held: &dyn tierlock_core::ExternalLock, expected: bool) {
    let start = Instant::now();
    while held.is_requested() != expected {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "is_requested never became {expected}"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// Checks that the probe keeps reporting `expected` over many probe intervals (8 ms each).
async fn requested_stays(held: &dyn tierlock_core::ExternalLock, expected: bool) {
    for _ in 0..10 {
        assert_eq!(held.is_requested(), expected);
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test]
async fn request_mark_is_seen_by_the_holder_until_it_is_dropped() {
    let tmp = tempfile::tempdir().unwrap();
    let holder_side = FileProvider::new(tmp.path()).unwrap();
    let waiter_side = FileProvider::new(tmp.path()).unwrap();
    let n = name("orders");

    let held = try_acquire(&holder_side, &n).await.unwrap();
    assert!(!held.is_requested(), "no answer before the first probe");
    requested_stays(&*held, false).await;

    let mark = waiter_side.request(&n).await.unwrap().expect("a mark");
    requested_becomes(&*held, true).await;
    requested_stays(&*held, true).await; // probing does not consume the mark
    assert!(try_acquire(&waiter_side, &n).await.is_none());

    let second = waiter_side
        .request(&n)
        .await
        .unwrap()
        .expect("marks are shared");
    drop(mark);
    requested_stays(&*held, true).await; // one mark is left
    drop(second);
    requested_becomes(&*held, false).await;

    // Marks on other names are not seen.
    let _other = waiter_side
        .request(&name("invoices"))
        .await
        .unwrap()
        .unwrap();
    requested_stays(&*held, false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_manager_hands_the_lock_to_a_waiting_one() {
    let tmp = tempfile::tempdir().unwrap();
    let busy = LockManager::new(FileProvider::new(tmp.path()).unwrap());
    let other = LockManager::new(FileProvider::new(tmp.path()).unwrap());
    let stop = Arc::new(AtomicBool::new(false));

    // Four tasks keep the name busy: without the request signal the busy manager would pass
    // the lock from task to task forever.
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let (busy, stop) = (busy.clone(), Arc::clone(&stop));
        tasks.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let guard = busy.lock("hot", Duration::from_secs(30)).await.unwrap();
                tokio::time::sleep(Duration::from_micros(100)).await;
                drop(guard);
            }
        }));
    }
    while busy.stats().local_handoffs < 20 {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }

    let got = other.lock("hot", Duration::from_secs(10)).await;
    stop.store(true, Ordering::Relaxed);
    let guard = got.expect("the waiting manager gets the lock");
    assert!(busy.stats().handbacks >= 1, "{:?}", busy.stats());
    drop(guard);
    for task in tasks {
        task.await.unwrap();
    }
}

#[tokio::test]
async fn zero_timeout_cycles_each_take_the_file_lock() {
    let tmp = tempfile::tempdir().unwrap();
    let locks = LockManager::new(FileProvider::new(tmp.path()).unwrap());
    let rival = LockManager::new(FileProvider::new(tmp.path()).unwrap());
    for i in 0..1000 {
        let guard = locks.lock("cycle", Duration::ZERO).await.unwrap();
        if i % 100 == 0 {
            assert!(rival.try_lock("cycle").await.unwrap().is_none());
        }
        if i % 2 == 0 {
            guard.release().await.unwrap();
        } else {
            drop(guard);
        }
    }
    let stats = locks.stats();
    assert_eq!(stats.external_acquisitions, 1000);
    assert_eq!(stats.external_releases, 1000);
    assert_eq!(stats.entries, 0);

    let held = rival.lock("cycle", Duration::ZERO).await.unwrap();
    for _ in 0..100 {
        assert!(locks.try_lock("cycle").await.unwrap().is_none());
    }
    assert_eq!(locks.stats().provider_errors, 0);
    drop(held);
}

#[tokio::test]
async fn lock_files_are_kept_after_release() {
    let tmp = tempfile::tempdir().unwrap();
    let provider = FileProvider::new(tmp.path()).unwrap();
    let n = name("kept");
    let lock_path = provider.lock_file_path(&n);
    assert!(!lock_path.exists());
    let request_path = lock_path.with_extension("req");
    let held = try_acquire(&provider, &n).await.unwrap();
    held.release().await.unwrap();
    assert!(lock_path.is_file());
    assert!(
        !request_path.exists(),
        "request files appear only on contention"
    );

    let held = try_acquire(&provider, &n).await.unwrap();
    let mark = provider.request(&n).await.unwrap().unwrap();
    let _ = held.is_requested();
    requested_becomes(&*held, true).await;
    drop(mark);
    held.release().await.unwrap();
    assert!(lock_path.is_file());
    assert!(request_path.is_file());
    // The lock file holds the fencing counter, the request file nothing.
    assert_eq!(
        std::fs::read_to_string(&lock_path).unwrap(),
        "00000000000000000002\n"
    );
    assert_eq!(std::fs::metadata(&request_path).unwrap().len(), 0);
}

#[tokio::test]
async fn an_unopenable_lock_file_is_an_error_not_a_timeout() {
    let tmp = tempfile::tempdir().unwrap();
    let provider = FileProvider::new(tmp.path()).unwrap();
    std::fs::create_dir(provider.lock_file_path(&name("blocked"))).unwrap();
    let locks = LockManager::new(provider);
    let err = locks.lock("blocked", Duration::ZERO).await.unwrap_err();
    let LockError::Provider {
        provider,
        name,
        source,
    } = &err
    else {
        panic!("expected a provider error, got {err:?}");
    };
    assert_eq!((*provider, name.as_str()), ("file", "blocked"));
    assert!(matches!(
        source.downcast_ref::<FileError>(),
        Some(FileError::Open { name, .. }) if name == "blocked"
    ));
    assert_eq!(locks.stats().entries, 0, "nothing stuck after the error");
}

#[test]
fn new_creates_missing_directories() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("a/b/locks");
    let provider = FileProvider::new(&dir).unwrap();
    assert!(dir.is_dir());
    assert_eq!(provider.dir(), dir);
}

#[test]
fn relative_directories_are_made_absolute() {
    // A relative path to a temporary directory (the provider leaves a mode file behind, so not
    // the current directory itself).
    let tmp = tempfile::tempdir().unwrap();
    let cwd = std::env::current_dir().unwrap();
    let mut relative = std::path::PathBuf::new();
    for _ in cwd.components().skip(1) {
        relative.push("..");
    }
    relative.push(tmp.path().strip_prefix("/").unwrap_or(tmp.path()));
    assert!(relative.is_relative());
    let provider = FileProvider::new(&relative).unwrap();
    assert!(provider.dir().is_absolute());
    assert_eq!(
        provider.dir().canonicalize().unwrap(),
        tmp.path().canonicalize().unwrap()
    );
}

#[cfg(unix)]
#[test]
fn created_directories_and_files_get_exact_modes() {
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    let tmp = tempfile::tempdir().unwrap();

    let default = FileProvider::new(tmp.path().join("default")).unwrap();
    assert_eq!(mode(default.dir()), 0o770);

    let custom = FileProvider::builder(tmp.path().join("custom"))
        .dir_mode(0o700)
        .file_mode(0o600)
        .build()
        .unwrap();
    assert_eq!(mode(custom.dir()), 0o700);
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let n = name("moded");
    rt.block_on(async {
        drop(try_acquire(&custom, &n).await.unwrap());
        drop(try_acquire(&default, &n).await.unwrap());
    });
    assert_eq!(mode(&custom.lock_file_path(&n)), 0o600);
    assert_eq!(mode(&default.lock_file_path(&n)), 0o660);

    // An existing directory keeps its mode.
    let existing = tmp.path().join("existing");
    std::fs::create_dir(&existing).unwrap();
    std::fs::set_permissions(&existing, std::fs::Permissions::from_mode(0o755)).unwrap();
    FileProvider::new(&existing).unwrap();
    assert_eq!(mode(&existing), 0o755);
}

#[test]
fn a_file_is_not_a_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("file");
    std::fs::write(&file, b"").unwrap();
    let err = FileProvider::new(&file).unwrap_err();
    assert!(
        matches!(&err, FileError::NotADirectory { path } if *path == file),
        "{err:?}"
    );
    assert!(err.to_string().contains("not a directory"), "{err}");

    let below = file.join("locks");
    let err = FileProvider::new(&below).unwrap_err();
    assert!(
        matches!(&err, FileError::CreateDir { path, .. } if *path == below),
        "{err:?}"
    );
}

#[cfg(target_os = "linux")]
#[test]
fn an_unwritable_directory_is_refused() {
    // /proc refuses new files even to root, unlike a directory with mode 0o555.
    let err = FileProvider::new("/proc").unwrap_err();
    assert!(matches!(&err, FileError::NotWritable { .. }), "{err:?}");
    assert!(err.to_string().contains("/proc"), "{err}");
}

#[tokio::test]
async fn an_unopenable_request_file_fails_the_request_and_never_signals() {
    let tmp = tempfile::tempdir().unwrap();
    let provider = FileProvider::new(tmp.path()).unwrap();
    let n = name("odd");
    std::fs::create_dir(provider.lock_file_path(&n).with_extension("req")).unwrap();

    let held = try_acquire(&provider, &n).await.unwrap();
    let err = provider.request(&n).await.unwrap_err();
    assert!(
        matches!(err.downcast_ref::<FileError>(), Some(FileError::Open { name, .. }) if name == "odd"),
        "{err:?}"
    );
    // Cannot tell: keep the lock.
    assert!(!held.is_requested());
    requested_stays(&*held, false).await;
}

#[tokio::test]
async fn flock_mode_fencing_tokens_grow_across_providers() {
    let tmp = tempfile::tempdir().unwrap();
    let n = name("fenced");
    let mut last = 0;
    for round in 0..6 {
        let provider = FileProvider::builder(tmp.path())
            .mode(tierlock_file::FileLockMode::Flock)
            .build()
            .unwrap();
        let held = try_acquire(&provider, &n).await.unwrap();
        let token = held.fencing_token().unwrap();
        assert_eq!(token, last + 1, "round {round}");
        last = token;
        if round % 2 == 0 {
            held.release().await.unwrap();
        } else {
            drop(held);
        }
    }
    // Through a guard.
    let locks = LockManager::new(FileProvider::new(tmp.path()).unwrap());
    let guard = locks.lock("fenced", Duration::from_secs(1)).await.unwrap();
    assert_eq!(guard.fencing_token(), Some(7));
}

#[tokio::test]
async fn a_lock_file_with_garbage_is_an_error_and_stays_unlocked() {
    let tmp = tempfile::tempdir().unwrap();
    let provider = FileProvider::new(tmp.path()).unwrap();
    let n = name("scribbled");
    std::fs::write(provider.lock_file_path(&n), b"not a counter").unwrap();
    let err = provider
        .acquire(&n, Some(Instant::now()))
        .await
        .unwrap_err();
    match err.downcast_ref::<FileError>() {
        Some(FileError::FenceCounter { content, name, .. }) => {
            assert_eq!(
                (content.as_str(), name.as_str()),
                ("not a counter", "scribbled")
            );
        }
        other => panic!("{other:?}"),
    }
    // The OS lock was not kept: the file can be locked by anyone.
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(provider.lock_file_path(&n))
        .unwrap();
    fs2::FileExt::try_lock_exclusive(&file).unwrap();
}

#[tokio::test]
async fn without_fencing_flock_mode_leaves_the_lock_file_alone_and_tokens_still_grow_beside_it() {
    let tmp = tempfile::tempdir().unwrap();
    let n = name("unfenced");
    let plain = FileProvider::builder(tmp.path())
        .mode(tierlock_file::FileLockMode::Flock)
        .fencing(false)
        .build()
        .unwrap();
    let fenced = FileProvider::new(tmp.path()).unwrap();
    let held = try_acquire(&plain, &n).await.unwrap();
    assert_eq!(held.fencing_token(), None);
    held.release().await.unwrap();
    assert_eq!(
        std::fs::metadata(plain.lock_file_path(&n)).unwrap().len(),
        0
    );
    let mut last = 0;
    for provider in [&fenced, &plain, &fenced, &plain, &fenced] {
        let held = try_acquire(provider, &n).await.unwrap();
        if let Some(token) = held.fencing_token() {
            assert!(token > last, "{token} after {last}");
            last = token;
        }
        held.release().await.unwrap();
    }
    assert_eq!(last, 3);
}
