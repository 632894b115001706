//! Helpers shared by the integration tests that need a server.
#![allow(dead_code)]

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio_postgres::{Client, NoTls};

pub mod proxy;

#[allow(unused_imports)]
pub use tierlock_testkit::server_url;

/// A provider on `url` in `namespace`, connected.
pub async fn provider(url: &str, namespace: &str) -> tierlock_postgres::PostgresProvider {
    tierlock_postgres::PostgresProvider::builder(url)
        .namespace(namespace)
        .connect()
        .await
        .unwrap()
}

/// A namespace no other test (or earlier run) uses.
pub fn fresh_namespace(label: &str) -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    format!("test:{label}:{}:{nanos}:{n}", std::process::id())
}

/// A plain connection for looking at (and meddling with) the server.
pub async fn admin(url: &str) -> Client {
    let (client, connection) = tokio_postgres::connect(url, NoTls).await.unwrap();
    tokio::spawn(connection);
    client
}

/// `(pid, mode, granted)` of every session with an advisory lock on `key`.
pub async fn holders(admin: &Client, key: i64) -> Vec<(i32, String, bool)> {
    let bits = key as u64;
    let (classid, objid) = ((bits >> 32) as u32, bits as u32);
    admin
        .query(
            "SELECT pid, mode, granted FROM pg_locks WHERE locktype = 'advisory' \
             AND classid = $1 AND objid = $2 AND objsubid = 1 ORDER BY pid",
            &[&classid, &objid],
        )
        .await
        .unwrap()
        .into_iter()
        .map(|row| (row.get(0), row.get(1), row.get(2)))
        .collect()
}

/// Whether some session waits for the advisory lock `key`.
pub async fn has_waiter(admin: &Client, key: i64) -> bool {
    holders(admin, key)
        .await
        .iter()
        .any(|(_, _, granted)| !granted)
}

/// Polls `check` until it is true; panics after `limit`.
pub async fn eventually<F, Fut>(limit: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    while !check().await {
        assert!(start.elapsed() < limit, "{what}: not within {limit:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
