//! Helpers shared by the integration tests that need a server.
#![allow(dead_code)]

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use redis::aio::MultiplexedConnection;
use tierlock_redis::{RedisProvider, RedisProviderBuilder};

#[allow(unused_imports)]
pub use tierlock_testkit::server_url;

/// The shared test server's URL, or `None` (the test prints that it was skipped).
pub fn url() -> Option<String> {
    server_url("TIERLOCK_REDIS_URL")
}

/// A key prefix no other test (or earlier run) uses.
pub fn fresh_prefix(label: &str) -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    format!("test:{label}:{}:{nanos}:{n}:", std::process::id())
}

/// A builder on `url` with `prefix`.
pub fn builder(url: &str, prefix: &str) -> RedisProviderBuilder {
    RedisProvider::builder(url).key_prefix(prefix)
}

/// A provider on `url` with `prefix`, default settings.
pub fn provider(url: &str, prefix: &str) -> RedisProvider {
    builder(url, prefix).build().unwrap()
}

/// A plain connection for looking at (and meddling with) the server.
pub async fn admin(url: &str) -> MultiplexedConnection {
    // No response timeout: `DEBUG SLEEP` answers late on purpose.
    let config = redis::AsyncConnectionConfig::new().set_response_timeout(None);
    redis::Client::open(url)
        .unwrap()
        .get_multiplexed_async_connection_with_config(&config)
        .await
        .unwrap()
}

/// Runs a command on the admin connection.
pub async fn query<T: redis::FromRedisValue>(
    admin: &mut MultiplexedConnection,
    args: &[&str],
) -> T {
    let mut cmd = redis::cmd(args[0]);
    for arg in &args[1..] {
        cmd.arg(*arg);
    }
    cmd.query_async(admin)
        .await
        .unwrap_or_else(|err| panic!("{args:?}: {err}"))
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
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
