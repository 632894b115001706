//! The SQLite provider on its own: the database file, leases and their expiry, fencing tokens,
//! the request signal, cancellation, and the errors a bad file or a busy database give.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rusqlite::{Connection, OptionalExtension};
use tierlock_core::{LockError, LockManager, LockName, Provider};
use tierlock_sqlite::{APPLICATION_ID, MountClass, SCHEMA_VERSION, SqliteError, SqliteProvider};

const PATIENCE: Duration = Duration::from_secs(10);

fn temp_db() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("locks.db");
    (dir, path)
}

/// A connection as a person (or another program) would open one.
fn person(path: &Path) -> Connection {
    let conn = Connection::open(path).unwrap();
    conn.busy_timeout(Duration::from_secs(5)).unwrap();
    conn
}

fn rows(path: &Path, table: &str) -> i64 {
    person(path)
        .query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0))
        .unwrap()
}

/// Waits until `table` has `count` rows.
async fn rows_become(path: &Path, table: &str, count: i64) {
    let start = Instant::now();
    while rows(path, table) != count {
        assert!(
            start.elapsed() < PATIENCE,
            "{table} kept {} rows, expected {count}",
            rows(path, table)
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn sqlite_error(err: &LockError) -> &SqliteError {
    match err {
        LockError::Provider { source, .. } => source
            .downcast_ref::<SqliteError>()
            .unwrap_or_else(|| panic!("not an SqliteError: {err:?}")),
        other => panic!("not a provider error: {other:?}"),
    }
}

/// The host's monotonic clock in nanoseconds, as the provider stores expiry.
#[cfg(target_os = "linux")]
fn monotonic_ns() -> i64 {
    let now = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    now.tv_sec * 1_000_000_000 + now.tv_nsec
}

#[tokio::test]
async fn the_schema_is_created_on_first_use_versioned_and_readable_by_people() {
    let (_dir, path) = temp_db();
    assert!(!path.exists());
    let locks = LockManager::new(SqliteProvider::new(&path).unwrap());
    let conn = person(&path);
    let pragma = |name: &str| -> i64 { conn.pragma_query_value(None, name, |r| r.get(0)).unwrap() };
    assert_eq!(pragma("user_version"), SCHEMA_VERSION);
    assert_eq!(pragma("application_id"), APPLICATION_ID);
    let mode: String = conn
        .pragma_query_value(None, "journal_mode", |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");

    let guard = locks
        .lock("report:daily", Duration::from_secs(1))
        .await
        .unwrap();
    let (name, token, host, pid, left, waiting): (String, i64, String, u32, f64, i64) = conn
        .query_row(
            "SELECT name, token, host, pid, seconds_left, waiting FROM tierlock_holders",
            [],
            |r| {
                Ok((
                    r.get(0)?,
                    r.get(1)?,
                    r.get(2)?,
                    r.get(3)?,
                    r.get(4)?,
                    r.get(5)?,
                ))
            },
        )
        .unwrap();
    assert_eq!(name, "report:daily");
    assert_eq!(Some(token as u64), guard.fencing_token());
    assert_eq!(pid, std::process::id());
    assert!(!host.is_empty());
    assert!(left > 5.0 && left <= 10.0, "{left}");
    assert_eq!(waiting, 0);
    let times: (String, String) = conn
        .query_row("SELECT acquired, expires FROM tierlock_holders", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .unwrap();
    assert!(times.0.starts_with("20"), "{times:?}");
    guard.release().await.unwrap();
    assert_eq!(
        rows(&path, "tierlock_leases"),
        0,
        "a release deletes the row"
    );

    // A second provider on the same file (another process, say) uses the schema as it is.
    let again = SqliteProvider::new(&path).unwrap();
    assert_eq!(again.path(), path);
    assert_eq!(again.mount().class(), MountClass::Local);
}

#[test]
fn an_empty_file_is_initialised() {
    let (_dir, path) = temp_db();
    std::fs::write(&path, b"").unwrap();
    SqliteProvider::new(&path).unwrap();
    assert_eq!(rows(&path, "tierlock_fence"), 1);
}

#[test]
fn files_that_are_not_tierlock_databases_are_refused_unchanged() {
    let (dir, _) = temp_db();

    let text = dir.path().join("notes.txt");
    let content = "meeting notes\n".repeat(200);
    std::fs::write(&text, &content).unwrap();
    let err = SqliteProvider::new(&text).unwrap_err();
    assert!(matches!(err, SqliteError::NotADatabase { .. }), "{err:?}");
    assert_eq!(std::fs::read_to_string(&text).unwrap(), content);

    let app = dir.path().join("app.db");
    let conn = Connection::open(&app).unwrap();
    conn.execute_batch("CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT); INSERT INTO customers (name) VALUES ('ada');")
        .unwrap();
    drop(conn);
    let before = std::fs::read(&app).unwrap();
    let err = SqliteProvider::new(&app).unwrap_err();
    match &err {
        SqliteError::Foreign { detail, .. } => assert!(detail.contains("customers"), "{err}"),
        other => panic!("{other:?}"),
    }
    assert!(err.to_string().contains("another application"), "{err}");
    assert_eq!(std::fs::read(&app).unwrap(), before, "the file was changed");
    assert!(!dir.path().join("app.db-wal").exists());

    let other_app = dir.path().join("other.db");
    let conn = Connection::open(&other_app).unwrap();
    conn.pragma_update(None, "application_id", 0x1234).unwrap();
    drop(conn);
    let err = SqliteProvider::new(&other_app).unwrap_err();
    assert!(
        matches!(&err, SqliteError::Foreign { detail, .. } if detail.contains("0x1234")),
        "{err:?}"
    );
}

#[test]
fn a_newer_schema_is_refused() {
    let (_dir, path) = temp_db();
    drop(SqliteProvider::new(&path).unwrap());
    person(&path)
        .pragma_update(None, "user_version", SCHEMA_VERSION + 1)
        .unwrap();
    let err = SqliteProvider::new(&path).unwrap_err();
    assert!(
        matches!(err, SqliteError::SchemaVersion { found, supported, .. }
            if found == SCHEMA_VERSION + 1 && supported == SCHEMA_VERSION),
        "{err:?}"
    );
}

#[test]
fn a_damaged_database_is_a_typed_error() {
    // A table dropped by hand.
    let (_dir, path) = temp_db();
    drop(SqliteProvider::new(&path).unwrap());
    person(&path)
        .execute_batch("DROP VIEW tierlock_holders; DROP TABLE tierlock_waiters;")
        .unwrap();
    let err = SqliteProvider::new(&path).unwrap_err();
    assert!(
        matches!(&err, SqliteError::Corrupt { detail, .. } if detail.contains("tierlock_waiters")),
        "{err:?}"
    );

    // Pages overwritten behind SQLite's back (the header left intact).
    let (_dir, path) = temp_db();
    drop(SqliteProvider::new(&path).unwrap());
    let conn = person(&path);
    conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE);")
        .unwrap();
    drop(conn);
    let mut bytes = std::fs::read(&path).unwrap();
    assert!(bytes.len() >= 4096 * 3, "{} bytes", bytes.len());
    for (i, b) in bytes.iter_mut().enumerate().skip(4096) {
        *b = (i * 7 % 251) as u8;
    }
    std::fs::write(&path, &bytes).unwrap();
    let err = SqliteProvider::new(&path).unwrap_err();
    assert!(
        matches!(
            err,
            SqliteError::Corrupt { .. } | SqliteError::NotADatabase { .. }
        ),
        "{err:?}"
    );
    println!("{err}");
}

#[test]
fn bad_settings_and_a_missing_directory_are_refused() {
    let (dir, path) = temp_db();
    for ttl in [Duration::from_millis(5), Duration::from_secs(86_401)] {
        let err = SqliteProvider::builder(&path).ttl(ttl).build().unwrap_err();
        assert!(matches!(err, SqliteError::InvalidTtl { .. }), "{err:?}");
    }
    let err = SqliteProvider::new(dir.path().join("missing/locks.db")).unwrap_err();
    assert!(matches!(err, SqliteError::NoDirectory { .. }), "{err:?}");
    let err = SqliteProvider::new(dir.path()).unwrap_err();
    assert!(
        matches!(err, SqliteError::Open { .. }),
        "a directory: {err:?}"
    );
}

/// Runs `f` on a thread that cannot override file permissions (root's `CAP_DAC_OVERRIDE` and
/// friends dropped from that thread alone), so a read-only file is read-only for it.
fn without_permission_override<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    std::thread::spawn(move || {
        #[cfg(target_os = "linux")]
        if rustix::process::geteuid().is_root() {
            use rustix::thread::{CapabilitySet, capabilities, set_capabilities};
            let mut caps = capabilities(None).unwrap();
            let dropped = CapabilitySet::DAC_OVERRIDE
                | CapabilitySet::DAC_READ_SEARCH
                | CapabilitySet::FOWNER;
            caps.effective.remove(dropped);
            set_capabilities(None, caps).unwrap();
        }
        f()
    })
    .join()
    .unwrap()
}

#[cfg(unix)]
#[test]
fn a_read_only_database_is_a_typed_error() {
    use std::os::unix::fs::PermissionsExt;
    let (dir, path) = temp_db();
    drop(SqliteProvider::new(&path).unwrap());
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o444)).unwrap();
    let file = path.clone();
    let err = without_permission_override(move || SqliteProvider::new(&file).unwrap_err());
    assert!(matches!(err, SqliteError::ReadOnly { .. }), "{err:?}");
    assert!(err.to_string().contains("read-only"), "{err}");

    // A directory where the file cannot be created.
    let locked = dir.path().join("locked");
    std::fs::create_dir(&locked).unwrap();
    std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o555)).unwrap();
    let file = locked.join("locks.db");
    let err = without_permission_override(move || SqliteProvider::new(&file).unwrap_err());
    assert!(
        matches!(err, SqliteError::ReadOnly { .. } | SqliteError::Open { .. }),
        "{err:?}"
    );
    std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o755)).unwrap();
}

#[tokio::test]
async fn a_database_on_an_unknown_mount_is_refused_unless_allowed() {
    let Some(rig) = tierlock_testkit::rig::Rig::get() else {
        return;
    };
    let pair = rig.pair(tierlock_testkit::rig::Share::LocalOnlyLocks, "sqlite-mount");
    let path = pair.a.join("locks.db");
    let err = SqliteProvider::new(&path).unwrap_err();
    match &err {
        SqliteError::UnsafeMount {
            class,
            fs_type,
            mount_point,
            ..
        } => {
            assert_eq!(*class, MountClass::Unknown);
            assert_eq!(fs_type, "fuse");
            assert!(pair.a.starts_with(mount_point), "{err}");
        }
        other => panic!("{other:?}"),
    }
    assert!(err.to_string().contains("allow_unknown_mount"), "{err}");
    assert!(!path.exists(), "nothing may be created on a refused mount");
    // Allowed explicitly, it is used (here the FUSE file system is a view of a local disk,
    // and every process goes through the same mount).
    let provider = SqliteProvider::builder(&path)
        .allow_unknown_mount(true)
        .build()
        .unwrap();
    assert_eq!(provider.mount().class(), MountClass::Unknown);
    let locks = LockManager::new(provider);
    let guard = locks.lock("x", Duration::from_secs(1)).await.unwrap();
    assert!(guard.fencing_token().is_some());
    guard.release().await.unwrap();
}

#[tokio::test]
async fn fencing_tokens_never_go_back_across_releases_deleted_rows_and_restarts() {
    let (_dir, path) = temp_db();
    let mut last = 0;
    for round in 0..3 {
        let locks = LockManager::new(SqliteProvider::new(&path).unwrap());
        for name in ["a", "b", "a"] {
            let guard = locks.lock(name, Duration::from_secs(1)).await.unwrap();
            let token = guard.fencing_token().unwrap();
            assert!(token > last, "round {round}: {token} after {last}");
            last = token;
            guard.release().await.unwrap();
        }
        // A person clears the lease table and even re-creates a row by hand.
        person(&path)
            .execute_batch(
                "DELETE FROM tierlock_leases; DELETE FROM tierlock_waiters;
                 INSERT INTO tierlock_leases VALUES ('a', 1, 'x', 'h', 1, 1000, 'wall', 0, 0, 0, 0);",
            )
            .unwrap();
    }
}

#[tokio::test]
async fn a_renewal_that_finds_the_row_gone_or_taken_fires_the_lost_signal() {
    let (_dir, path) = temp_db();
    let provider = SqliteProvider::builder(&path)
        .ttl(Duration::from_millis(300))
        .build()
        .unwrap();
    let locks = LockManager::new(provider);
    let statements = [
        "DELETE FROM tierlock_leases",
        "UPDATE tierlock_leases SET owner = 'someone else'",
    ];
    for statement in statements {
        let guard = locks.lock("x", Duration::from_secs(1)).await.unwrap();
        assert!(!guard.is_lost());
        person(&path).execute_batch(statement).unwrap();
        tokio::time::timeout(PATIENCE, guard.lost())
            .await
            .unwrap_or_else(|_| panic!("no lost signal after {statement}"));
        let err = guard.release().await.unwrap_err();
        assert!(matches!(err, LockError::Lost { .. }), "{err:?}");
    }
    // The name is usable again.
    let guard = locks.lock("x", Duration::from_secs(1)).await.unwrap();
    guard.release().await.unwrap();
}

#[tokio::test]
async fn an_expired_lease_is_taken_over_and_a_live_one_is_not() {
    let (_dir, path) = temp_db();
    let locks = LockManager::new(SqliteProvider::new(&path).unwrap());
    let plant = |name: &str, token: i64, clock: &str, expires_ns: i64, expires_at: &str| {
        person(&path)
            .execute(
                &format!(
                    "INSERT INTO tierlock_leases VALUES (?1, ?2, 'ghost', 'gone', 1, 1000, ?3, ?4,
                     unixepoch('subsec'), unixepoch('subsec'), {expires_at})"
                ),
                rusqlite::params![name, token, clock, expires_ns],
            )
            .unwrap();
    };
    #[cfg(target_os = "linux")]
    let (here, now) = {
        let boot = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").unwrap();
        (format!("boot:{}", boot.trim()), monotonic_ns())
    };
    #[cfg(not(target_os = "linux"))]
    let (here, now) = ("wall".to_owned(), 0);

    // Expired on this host's clock: taken over, with a larger token than the ghost's.
    plant("expired", 40, &here, now - 1, "0");
    let guard = locks
        .try_lock("expired")
        .await
        .unwrap()
        .expect("taken over");
    assert!(guard.fencing_token().unwrap() > 40);
    drop(guard);

    // Live for a minute: held.
    plant(
        "live",
        50,
        &here,
        now + 60_000_000_000,
        "unixepoch('subsec') + 60",
    );
    assert!(locks.try_lock("live").await.unwrap().is_none());

    // From an earlier boot of this host: its holder is dead, whatever the numbers say.
    #[cfg(target_os = "linux")]
    {
        plant(
            "old-boot",
            60,
            "boot:00000000-0000-0000-0000-000000000000",
            i64::MAX,
            "unixepoch('subsec') + 60",
        );
        let guard = locks
            .try_lock("old-boot")
            .await
            .unwrap()
            .expect("taken over");
        assert!(guard.fencing_token().unwrap() > 60);
    }
}

#[cfg(target_os = "linux")]
#[tokio::test]
async fn a_holder_that_cannot_renew_counts_its_lease_lost_before_it_expires() {
    let (_dir, path) = temp_db();
    let ttl = Duration::from_millis(600);
    let provider = SqliteProvider::builder(&path).ttl(ttl).build().unwrap();
    let locks = LockManager::new(provider);
    let guard = locks.lock("x", Duration::from_secs(1)).await.unwrap();
    // Another program takes the write lock and keeps it: no renewal can happen.
    let blocker = person(&path);
    blocker.execute_batch("BEGIN IMMEDIATE").unwrap();
    let blocked = Instant::now();
    tokio::time::timeout(PATIENCE, guard.lost())
        .await
        .expect("the lost signal never fired");
    let lost_after = blocked.elapsed();
    let expires_ns: i64 = blocker
        .query_row("SELECT expires_ns FROM tierlock_leases", [], |r| r.get(0))
        .unwrap();
    let left = expires_ns - monotonic_ns();
    // Nobody else could have taken the lease over yet: it stands for a while longer.
    assert!(
        left > 0,
        "the lease expired {}ms before the lost signal",
        -left / 1_000_000
    );
    assert!(lost_after <= ttl, "lost after {lost_after:?}");
    blocker.execute_batch("ROLLBACK").unwrap();
    assert!(matches!(guard.release().await, Err(LockError::Lost { .. })));
}

#[tokio::test]
async fn a_waiting_process_shows_in_the_waiters_table_until_it_stops_waiting() {
    let (_dir, path) = temp_db();
    let a = LockManager::new(SqliteProvider::new(&path).unwrap());
    let b = LockManager::new(SqliteProvider::new(&path).unwrap());
    let held = a.lock("x", Duration::from_secs(1)).await.unwrap();
    let waiter = tokio::spawn(async move {
        let guard = b.lock("x", PATIENCE).await.unwrap();
        guard.release().await.unwrap();
    });
    rows_become(&path, "tierlock_waiters", 1).await;
    let (name, pid): (String, u32) = person(&path)
        .query_row("SELECT name, pid FROM tierlock_waiters", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .unwrap();
    assert_eq!((name.as_str(), pid), ("x", std::process::id()));
    let waiting: i64 = person(&path)
        .query_row("SELECT waiting FROM tierlock_holders", [], |r| r.get(0))
        .unwrap();
    assert_eq!(waiting, 1);
    held.release().await.unwrap();
    waiter.await.unwrap();
    rows_become(&path, "tierlock_waiters", 0).await;
    rows_become(&path, "tierlock_leases", 0).await;
}

#[test]
fn cancelled_acquisitions_leave_no_row_behind() {
    use std::task::{Context, Poll, Waker};
    let (_dir, path) = temp_db();
    let provider = SqliteProvider::new(&path).unwrap();
    let name = LockName::new("cancel").unwrap();
    let mut cx = Context::from_waker(Waker::noop());
    let (mut acquired, mut cancelled) = (0, 0);
    for i in 0..2000u64 {
        // Polled once (the job is sent), then dropped after a pause of 0 to 150 µs: before
        // the job runs, while it runs, after it committed with the reply unread.
        let mut attempt = provider.acquire(&name, Some(Instant::now()));
        let mut result = attempt.as_mut().poll(&mut cx);
        std::thread::sleep(Duration::from_micros(i * 37 % 150));
        if result.is_pending() && i % 3 == 0 {
            result = attempt.as_mut().poll(&mut cx);
        }
        drop(attempt);
        match result {
            Poll::Ready(Ok(Some(lock))) => {
                acquired += 1;
                drop(lock);
            }
            Poll::Ready(Ok(None)) => {}
            Poll::Ready(Err(err)) => panic!("{err}"),
            Poll::Pending => cancelled += 1,
        }
    }
    println!("{acquired} acquired, {cancelled} cancelled");
    assert!(cancelled > 100, "{acquired} / {cancelled}");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        rows_become(&path, "tierlock_leases", 0).await;
        let lock = provider
            .acquire(&name, Some(Instant::now()))
            .await
            .unwrap()
            .expect("the name is free");
        lock.release().await.unwrap();
    });
}

#[tokio::test]
async fn an_acquisition_dropped_while_the_database_is_busy_leaves_nothing() {
    let (_dir, path) = temp_db();
    let locks = LockManager::new(SqliteProvider::new(&path).unwrap());
    let blocker = person(&path);
    blocker.execute_batch("BEGIN IMMEDIATE").unwrap();
    // The attempt waits for the write lock on the database thread; the caller gives up.
    let attempt = tokio::time::timeout(Duration::from_millis(50), locks.lock("x", PATIENCE)).await;
    assert!(attempt.is_err());
    blocker.execute_batch("ROLLBACK").unwrap();
    // Its job stopped waiting and took nothing: the name is free at once.
    let guard = tokio::time::timeout(Duration::from_secs(1), locks.try_lock("x"))
        .await
        .expect("the database thread is still stuck")
        .unwrap()
        .expect("free");
    drop(guard);
    rows_become(&path, "tierlock_leases", 0).await;
}

#[tokio::test]
async fn a_busy_database_is_a_typed_error_but_waiters_poll_without_the_write_lock() {
    let (_dir, path) = temp_db();
    let busy_timeout = Duration::from_millis(200);
    let a = LockManager::new(SqliteProvider::new(&path).unwrap());
    let b = LockManager::new(
        SqliteProvider::builder(&path)
            .busy_timeout(busy_timeout)
            .build()
            .unwrap(),
    );
    let held = a.lock("held", Duration::from_secs(1)).await.unwrap();
    let blocker = person(&path);
    blocker.execute_batch("BEGIN IMMEDIATE").unwrap();

    // A name held elsewhere is seen with a read: no write lock needed, no wait.
    let start = Instant::now();
    assert!(b.try_lock("held").await.unwrap().is_none());
    assert!(start.elapsed() < busy_timeout, "{:?}", start.elapsed());

    // A free name needs the write lock, which another program keeps: an error, not "held".
    let start = Instant::now();
    let err = b.try_lock("free").await.unwrap_err();
    let waited = start.elapsed();
    match sqlite_error(&err) {
        SqliteError::Busy {
            operation, name, ..
        } => {
            assert_eq!(*operation, "acquire");
            assert_eq!(name.as_deref(), Some("free"));
        }
        other => panic!("{other:?}"),
    }
    assert!(waited >= busy_timeout && waited < PATIENCE, "{waited:?}");
    blocker.execute_batch("ROLLBACK").unwrap();
    assert!(b.try_lock("free").await.unwrap().is_some());
    held.release().await.unwrap();
}

#[test]
fn the_database_never_blocks_a_runtime_worker() {
    let (_dir, path) = temp_db();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let locks = LockManager::new(
        SqliteProvider::builder(&path)
            .busy_timeout(Duration::from_millis(500))
            .build()
            .unwrap(),
    );
    let blocker = person(&path);
    blocker.execute_batch("BEGIN IMMEDIATE").unwrap();
    let ticks = Arc::new(AtomicU64::new(0));
    runtime.block_on(async {
        let ticker = tokio::spawn({
            let ticks = Arc::clone(&ticks);
            async move {
                loop {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    ticks.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
        // Half a second of busy waiting on the database thread, on a one-thread runtime.
        let result = locks.try_lock("x").await;
        assert!(result.is_err());
        ticker.abort();
    });
    let ticks = ticks.load(Ordering::Relaxed);
    assert!(
        ticks >= 20,
        "the runtime stalled: {ticks} ticks of 5 ms in 500 ms"
    );
}

#[test]
fn a_guard_dropped_after_its_runtime_is_gone_frees_the_row() {
    let (_dir, path) = temp_db();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let locks = LockManager::new(SqliteProvider::new(&path).unwrap());
    let guard = runtime
        .block_on(locks.lock("x", Duration::from_secs(1)))
        .unwrap();
    drop(runtime);
    assert_eq!(rows(&path, "tierlock_leases"), 1);
    drop(guard);
    drop(locks);
    let start = Instant::now();
    while rows(&path, "tierlock_leases") != 0 {
        assert!(start.elapsed() < PATIENCE, "the row stayed");
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[tokio::test]
async fn concurrent_first_use_of_a_new_file_creates_the_schema_once() {
    let (_dir, path) = temp_db();
    let handles: Vec<_> = (0..4)
        .map(|_| {
            let path = path.clone();
            std::thread::spawn(move || SqliteProvider::new(&path).map(drop))
        })
        .collect();
    for handle in handles {
        handle.join().unwrap().unwrap();
    }
    assert_eq!(rows(&path, "tierlock_fence"), 1);
    let version: Option<i64> = person(&path)
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .optional()
        .unwrap();
    assert_eq!(version, Some(SCHEMA_VERSION));
}
