//! `tierlock::connect(url)` against the real backends, as a user calls it: a lock taken through
//! one manager excludes another manager made from the same URL, and tierlock's parameters reach
//! the provider (`namespace=` separates, `fencing=true` makes tokens). PostgreSQL and Redis run
//! against `TIERLOCK_PG_URL` / `TIERLOCK_REDIS_URL` (skipped without them, unless
//! `TIERLOCK_REQUIRE_SERVERS` requires them); the file and SQLite cases use a temporary
//! directory; `memory:` locks within one manager's provider only.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{unique, with_param};
use tierlock::{ConnectOptions, LockManager, connect};

/// `a` holds `name`: `b` cannot take it, `other` (another namespace) can; after the release
/// `b` can.
async fn excludes(a: &LockManager, b: &LockManager, other: Option<&LockManager>) {
    let guard = a.lock("job", Duration::from_secs(10)).await.unwrap();
    assert!(
        b.try_lock("job").await.unwrap().is_none(),
        "b got a held lock"
    );
    if let Some(other) = other {
        let theirs = other.try_lock("job").await.unwrap();
        assert!(theirs.is_some(), "another namespace was blocked");
    }
    guard.release().await.unwrap();
    let again = b.lock("job", Duration::from_secs(10)).await.unwrap();
    again.release().await.unwrap();
}

#[tokio::test]
async fn memory_excludes_within_one_manager_only() {
    let a = connect("memory:").await.unwrap();
    let b = connect("memory:").await.unwrap();
    let guard = a.lock("job", Duration::from_secs(10)).await.unwrap();
    // Another task of the same manager waits for it; another `memory:` manager does not.
    let waiter = {
        let a = a.clone();
        tokio::spawn(async move { a.lock("job", Duration::from_millis(50)).await.is_err() })
    };
    assert!(
        waiter.await.unwrap(),
        "a second task got a held memory: lock"
    );
    let theirs = b.try_lock("job").await.unwrap();
    assert!(theirs.is_some(), "two memory: managers share their locks");
    drop(theirs);
    guard.release().await.unwrap();
    assert!(a.try_lock("job").await.unwrap().is_some());
}

#[tokio::test]
async fn file_url_and_bare_path() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("locks");
    let a = connect(&format!("file://{}?fencing=true", path.display()))
        .await
        .unwrap();
    let b = connect(path.to_str().unwrap()).await.unwrap();
    excludes(&a, &b, None).await;
}

#[tokio::test]
async fn sqlite_url_with_ttl() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite:{}?ttl=5s", dir.path().join("locks.db").display());
    let a = connect(&url).await.unwrap();
    let b = connect(&url).await.unwrap();
    excludes(&a, &b, None).await;
    let provider: &dyn std::any::Any = &**a.provider();
    let sqlite = provider.downcast_ref::<tierlock::SqliteProvider>().unwrap();
    assert_eq!(sqlite.ttl(), Duration::from_secs(5));
}

#[tokio::test]
async fn postgres_namespace_and_fencing_from_the_url() {
    let Some(url) = tierlock_testkit::server_url("TIERLOCK_PG_URL") else {
        return;
    };
    let ns = unique("pg");
    let url_ns = with_param(&url, &format!("namespace={ns}&fencing=true"));
    let a = connect(&url_ns).await.unwrap();
    let b = connect(&url_ns).await.unwrap();
    let other = ConnectOptions::new(&url)
        .unwrap()
        .namespace(format!("{ns}-other"))
        .connect()
        .await
        .unwrap();
    excludes(&a, &b, Some(&other)).await;
    let guard = a.lock("fenced", Duration::from_secs(10)).await.unwrap();
    assert!(
        guard.fencing_token().is_some(),
        "fencing=true made no token"
    );
    guard.release().await.unwrap();
    // The same namespace given by the setter meets the URL's.
    let c = ConnectOptions::new(&url)
        .unwrap()
        .namespace(&ns)
        .connect()
        .await
        .unwrap();
    excludes(&a, &c, None).await;
}

#[tokio::test]
async fn redis_namespace_and_ttl_from_the_url() {
    let Some(url) = tierlock_testkit::server_url("TIERLOCK_REDIS_URL") else {
        return;
    };
    let ns = unique("redis");
    let url_ns = with_param(&url, &format!("namespace={ns}&ttl=3s"));
    let a = connect(&url_ns).await.unwrap();
    let b = connect(&url_ns).await.unwrap();
    let other = connect(&with_param(&url, &format!("namespace={ns}-other")))
        .await
        .unwrap();
    excludes(&a, &b, Some(&other)).await;
    let provider: &dyn std::any::Any = &**a.provider();
    let redis = provider.downcast_ref::<tierlock::RedisProvider>().unwrap();
    assert_eq!(redis.key_prefix(), format!("tierlock:{ns}:"));
    assert_eq!(redis.ttl(), Duration::from_secs(3));
}
