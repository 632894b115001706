//! `tierlock_sqlite::status`: the leases that stand, with holder, token, expiry and waiters;
//! expired rows left out; nothing created or changed.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use tierlock_core::{LockName, Provider};
use tierlock_sqlite::{SqliteError, SqliteProvider, status};

fn provider(path: &std::path::Path) -> SqliteProvider {
    SqliteProvider::builder(path)
        .ttl(Duration::from_secs(10))
        .build()
        .unwrap()
}

#[test]
fn a_missing_or_empty_file_has_no_held_locks_and_is_not_created() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("locks.db");
    assert!(status::held_locks(&path).unwrap().is_empty());
    assert!(!path.exists());
    std::fs::write(&path, b"").unwrap();
    assert!(status::held_locks(&path).unwrap().is_empty());
    assert_eq!(
        std::fs::metadata(&path).unwrap().len(),
        0,
        "the listing changed the file"
    );
}

#[test]
fn another_applications_database_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("app.db");
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.execute_batch("CREATE TABLE t (x)").unwrap();
    drop(conn);
    assert!(matches!(
        status::held_locks(&path),
        Err(SqliteError::Foreign { .. })
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lists_standing_leases_with_holder_token_expiry_and_waiters() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("locks.db");
    let (holder, waiter) = (provider(&path), provider(&path));
    let name = LockName::new("job:nightly").unwrap();
    let held = holder
        .acquire(&name, Some(Instant::now()))
        .await
        .unwrap()
        .unwrap();

    let listed = holder.held_locks().unwrap();
    assert_eq!(listed.len(), 1, "{listed:#?}");
    let lock = &listed[0];
    assert_eq!(lock.name.as_deref(), Some("job:nightly"));
    assert_eq!(lock.key, "job:nightly");
    assert_eq!(lock.fencing_token, held.fencing_token());
    let me = format!("pid {}", std::process::id());
    assert!(lock.holder.as_deref().unwrap().starts_with(&me), "{lock:?}");
    let left = lock.expires_in.unwrap();
    assert!(
        left > Duration::ZERO && left <= Duration::from_secs(10),
        "{left:?}"
    );
    assert_eq!(lock.waiters, Some(0));

    let mark = waiter.request(&name).await.unwrap();
    assert!(mark.is_some());
    assert_eq!(status::held_locks(&path).unwrap()[0].waiters, Some(1));
    drop(mark);

    // Listing disturbs nobody: the holder still holds.
    assert!(
        waiter
            .acquire(&name, Some(Instant::now()))
            .await
            .unwrap()
            .is_none()
    );
    held.release().await.unwrap();
    assert!(status::held_locks(&path).unwrap().is_empty());
}

#[tokio::test]
async fn expired_rows_are_left_out() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("locks.db");
    drop(provider(&path)); // creates the schema
    let conn = rusqlite::Connection::open(&path).unwrap();
    let insert = "INSERT INTO tierlock_leases (name, token, owner, host, pid, ttl_ms, clock, \
                  expires_ns, acquired_at, renewed_at, expires_at) \
                  VALUES (?1, 7, 'o', 'elsewhere', 42, 10000, 'wall', 0, \
                  unixepoch('subsec'), unixepoch('subsec'), unixepoch('subsec') + ?2)";
    conn.execute(insert, rusqlite::params!["dead", -5.0])
        .unwrap();
    conn.execute(insert, rusqlite::params!["alive", 60.0])
        .unwrap();
    drop(conn);
    let listed = status::held_locks(&path).unwrap();
    assert_eq!(listed.len(), 1, "{listed:#?}");
    assert_eq!(listed[0].name.as_deref(), Some("alive"));
    assert_eq!(listed[0].holder.as_deref(), Some("pid 42 on elsewhere"));
    assert_eq!(listed[0].fencing_token, Some(7));
    let left = listed[0].expires_in.unwrap();
    assert!(left > Duration::from_secs(50), "{left:?}");
}
