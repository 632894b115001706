//! Real multi-process tests of the Redis provider: separate OS processes on the server named by
//! `TIERLOCK_REDIS_URL` (each test with a key prefix of its own), and, for the tests that
//! freeze a server or lock a user out, on a private `redis-server` of the test's own. Each test
//! prints that it was skipped when `TIERLOCK_REDIS_URL` is not set.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tierlock_testkit::multiprocess::{self, PATIENCE, Worker, field};
use tierlock_testkit::redis_server::RedisServer;
use tierlock_testkit::server_url;

fn worker() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_tierlock-worker"))
}

fn prefix(test: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("tierlock-mp:{test}:{}:{nanos}:", std::process::id())
}

/// Provider arguments on `url` with the default ttl.
fn redis(url: &str, prefix: &str) -> Vec<String> {
    vec!["redis".to_owned(), url.to_owned(), prefix.to_owned()]
}

/// Provider arguments on `url` with a ttl of `ttl_ms`.
fn redis_ttl(url: &str, prefix: &str, ttl_ms: u64) -> Vec<String> {
    vec![
        "redis-ttl".to_owned(),
        url.to_owned(),
        prefix.to_owned(),
        ttl_ms.to_string(),
    ]
}

fn hold(name: &str, timeout_ms: u64) -> Vec<String> {
    vec!["hold".to_owned(), name.to_owned(), timeout_ms.to_string()]
}

/// The shared server's URL, or `None` (skipped).
fn url() -> Option<String> {
    server_url("TIERLOCK_REDIS_URL")
}

#[tokio::test]
async fn four_processes_count_to_8000() {
    let Some(url) = url() else { return };
    let scratch = tempfile::tempdir().unwrap();
    multiprocess::mutual_exclusion(worker(), &redis(&url, &prefix("count")), scratch.path()).await;
}

#[tokio::test]
async fn a_killed_holder_is_taken_over_within_its_ttl() {
    let Some(url) = url() else { return };
    let ttl = Duration::from_millis(1500);
    let provider = redis_ttl(&url, &prefix("kill"), 1500);
    let took = multiprocess::killed_holder_is_released_to(
        worker(),
        &provider,
        &provider,
        ttl + Duration::from_secs(1),
    )
    .await;
    // Freed by the key's expiry: the holder renewed at most ttl/3 before it was killed.
    assert!(took >= ttl / 2, "taken over after {took:?}, ttl {ttl:?}");
    eprintln!("the waiter got the lock {took:?} after the holder was killed (ttl {ttl:?})");
}

#[tokio::test]
async fn a_busy_process_hands_the_lock_over() {
    let Some(url) = url() else { return };
    let provider = redis(&url, &prefix("busy"));
    let took = multiprocess::busy_process_hands_over_to(
        worker(),
        &provider,
        &provider,
        Duration::from_secs(3),
    )
    .await;
    eprintln!("the asking process waited {took:?}");
}

/// A holder and a waiting taker on `holder_url` / `taker_url`; `fault` makes the holder unable
/// to renew for longer than its 1 s ttl. The holder must report the loss, the taker must get the
/// lock with a higher fencing token, and the holder's release must find the lock lost.
async fn holder_loses_to_taker(
    holder_url: &str,
    taker_url: &str,
    fault: impl FnOnce(),
    after_fault: impl FnOnce(),
) {
    let prefix = prefix("fault");
    let mut holder = Worker::spawn(
        worker(),
        &redis_ttl(holder_url, &prefix, 1000),
        &hold("x", 10_000),
    );
    holder.expect("waiting", PATIENCE).await;
    let held = holder.expect("acquired", PATIENCE).await;
    let old = field(&held, "token").expect("a fencing token");
    let mut taker = Worker::spawn(
        worker(),
        &redis_ttl(taker_url, &prefix, 1000),
        &hold("x", 30_000),
    );
    taker.expect("waiting", PATIENCE).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let start = Instant::now();
    fault();
    let lost = holder.expect("lost", PATIENCE).await;
    assert_eq!(field(&lost, "token"), Some(old));
    let took = taker.expect("acquired", PATIENCE).await;
    let new = field(&took, "token").expect("a fencing token");
    assert!(new > old, "{new} after {old}");
    assert!(
        start.elapsed() < Duration::from_secs(20),
        "{:?}",
        start.elapsed()
    );
    after_fault();
    holder.tell_release().await;
    assert_eq!(holder.expect("released", PATIENCE).await, "released lost");
    holder.finish().await;
    taker.tell_release().await;
    assert_eq!(taker.expect("released", PATIENCE).await, "released");
    taker.finish().await;
}

#[tokio::test]
async fn a_server_frozen_past_the_ttl_hands_the_lock_to_another_process() {
    let Some(server) = RedisServer::for_test() else {
        return;
    };
    let url = server.url();
    let sleeper = std::sync::Arc::new(server);
    let frozen = {
        let sleeper = std::sync::Arc::clone(&sleeper);
        move || {
            std::thread::spawn(move || {
                let reply = sleeper.command(&["DEBUG", "SLEEP", "2.5"]);
                assert_eq!(reply.ok().as_deref(), Some("+OK"));
            });
        }
    };
    holder_loses_to_taker(&url, &url, frozen, || {}).await;
}

#[tokio::test]
async fn a_holder_whose_connections_are_killed_and_refused_loses_to_another_process() {
    let Some(server) = RedisServer::for_test() else {
        return;
    };
    let ok = |reply: std::io::Result<String>| assert_eq!(reply.ok().as_deref(), Some("+OK"));
    ok(server.command(&["ACL", "SETUSER", "holder", "on", ">pw", "~*", "&*", "+@all"]));
    let holder_url = format!("redis://holder:pw@127.0.0.1:{}/0", server.port());
    let lock_out = || {
        ok(server.command(&["ACL", "SETUSER", "holder", "off"]));
        let killed = server.command(&["CLIENT", "KILL", "USER", "holder"]);
        assert!(
            killed
                .as_deref()
                .is_ok_and(|r| r.starts_with(':') && r != ":0"),
            "{killed:?}"
        );
    };
    let let_in = || ok(server.command(&["ACL", "SETUSER", "holder", "on"]));
    holder_loses_to_taker(&holder_url, &server.url(), lock_out, let_in).await;
}

#[tokio::test]
async fn fencing_tokens_strictly_increase_across_processes() {
    let Some(url) = url() else { return };
    let provider = redis(&url, &prefix("tokens"));
    multiprocess::tokens_increase_across_processes(worker(), &provider, &provider, 200).await;
}

#[tokio::test]
async fn fencing_tokens_strictly_increase_across_a_killed_holder() {
    let Some(url) = url() else { return };
    let provider = redis_ttl(&url, &prefix("kill-token"), 1_000);
    let tokens = multiprocess::tokens_increase_across_a_killed_holder(worker(), &provider).await;
    eprintln!("tokens before and after the kill: {tokens:?}");
}
