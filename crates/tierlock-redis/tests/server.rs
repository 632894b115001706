//! The provider against the shared server `TIERLOCK_REDIS_URL`: what it leaves on the server,
//! fencing tokens, the watchdog, wake-ups, request marks, releases, errors. Each test uses a
//! key prefix of its own; tests that stop, freeze or pause a server are in `chaos.rs`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::{admin, builder, eventually, fresh_prefix, provider, query, url};
use tierlock_core::{ExternalLock, LockError, LockManager, LockName, Provider};
use tierlock_redis::{RedisError, RedisProvider};

fn name(s: &str) -> LockName {
    LockName::new(s).unwrap()
}

/// One attempt without waiting.
async fn try_acquire(provider: &RedisProvider, n: &str) -> Option<Box<dyn ExternalLock>> {
    provider
        .acquire(&name(n), Some(Instant::now()))
        .await
        .unwrap()
}

/// Waits up to `timeout`.
async fn acquire_within(
    provider: &RedisProvider,
    n: &str,
    timeout: Duration,
) -> Option<Box<dyn ExternalLock>> {
    provider
        .acquire(&name(n), Some(Instant::now() + timeout))
        .await
        .unwrap()
}

/// The server's clock in µs.
async fn server_micros(admin: &mut redis::aio::MultiplexedConnection) -> u64 {
    let (secs, micros): (u64, u64) = query(admin, &["TIME"]).await;
    secs * 1_000_000 + micros
}

#[tokio::test]
async fn a_held_lock_is_a_key_with_a_token_and_a_ttl() {
    let Some(url) = url() else { return };
    let p = builder(&url, &fresh_prefix("key"))
        .ttl(Duration::from_secs(5))
        .build()
        .unwrap();
    let keys = p.key_names("job:nightly");
    let mut admin = admin(&url).await;
    let lock = try_acquire(&p, "job:nightly").await.expect("free");
    let token: String = query(&mut admin, &["GET", &keys.lock]).await;
    assert_eq!(token.len(), 32, "{token}");
    assert!(token.bytes().all(|b| b.is_ascii_hexdigit()), "{token}");
    let pttl: i64 = query(&mut admin, &["PTTL", &keys.lock]).await;
    assert!(pttl > 0 && pttl <= 5000, "{pttl}");
    let fence: u64 = query(&mut admin, &["GET", &keys.fence]).await;
    assert_eq!(lock.fencing_token(), Some(fence));
    let fence_ttl: i64 = query(&mut admin, &["PTTL", &keys.fence]).await;
    assert!(
        fence_ttl > 23 * 3600 * 1000,
        "the counter lives a day: {fence_ttl}"
    );
    lock.release().await.unwrap();
    let exists: i64 = query(&mut admin, &["EXISTS", &keys.lock]).await;
    assert_eq!(exists, 0, "the release deletes the key");
}

#[tokio::test]
async fn fencing_tokens_increase_across_providers_and_a_lost_counter() {
    let Some(url) = url() else { return };
    let prefix = fresh_prefix("fence");
    let (a, b) = (provider(&url, &prefix), provider(&url, &prefix));
    let keys = a.key_names("x");
    let mut admin = admin(&url).await;
    let before = server_micros(&mut admin).await;
    let mut last = 0;
    for round in 0..40 {
        let p = if round % 2 == 0 { &a } else { &b };
        let lock = try_acquire(p, "x").await.expect("free");
        let token = lock.fencing_token().unwrap();
        assert!(token > last, "round {round}: {token} after {last}");
        if round == 0 {
            // A fresh counter starts at the server's clock.
            assert!(token >= before, "{token} < {before}");
        }
        last = token;
        lock.release().await.unwrap();
    }
    // The counter is lost (a restart without persistence, eviction): still larger.
    let _: i64 = query(&mut admin, &["DEL", &keys.fence]).await;
    let lock = try_acquire(&a, "x").await.unwrap();
    assert!(lock.fencing_token().unwrap() > last);
    last = lock.fencing_token().unwrap();
    lock.release().await.unwrap();
    // A counter ahead of the clock wins over it.
    let ahead = (last + 1_000_000_000).to_string();
    let _: () = query(&mut admin, &["SET", &keys.fence, &ahead]).await;
    let lock = try_acquire(&b, "x").await.unwrap();
    assert_eq!(lock.fencing_token(), Some(last + 1_000_000_001));
    lock.release().await.unwrap();
}

#[tokio::test]
async fn a_counter_that_is_not_a_number_is_an_error_and_leaves_no_key() {
    let Some(url) = url() else { return };
    let p = provider(&url, &fresh_prefix("garbage"));
    let keys = p.key_names("x");
    let mut admin = admin(&url).await;
    let _: () = query(&mut admin, &["SET", &keys.fence, "not a number"]).await;
    let err = p
        .acquire(&name("x"), Some(Instant::now()))
        .await
        .unwrap_err();
    let err = err.downcast::<RedisError>().unwrap();
    assert!(
        matches!(*err, RedisError::Command { ref name, operation: "acquire", .. } if name == "x"),
        "{err:?}"
    );
    let exists: i64 = query(&mut admin, &["EXISTS", &keys.lock]).await;
    assert_eq!(exists, 0);
}

#[tokio::test]
async fn the_watchdog_keeps_a_short_lease_alive() {
    let Some(url) = url() else { return };
    let prefix = fresh_prefix("watchdog");
    let ttl = Duration::from_millis(300);
    let holder = LockManager::new(builder(&url, &prefix).ttl(ttl).build().unwrap());
    let other = LockManager::new(provider(&url, &prefix));
    let guard = holder.lock("x", Duration::ZERO).await.unwrap();
    let start = Instant::now();
    while start.elapsed() < ttl * 5 {
        assert!(
            other.try_lock("x").await.unwrap().is_none(),
            "taken after {:?}",
            start.elapsed()
        );
        assert!(!guard.is_lost());
        tokio::time::sleep(ttl / 4).await;
    }
    guard.release().await.unwrap();
    assert!(other.try_lock("x").await.unwrap().is_some());
}

#[tokio::test]
async fn a_key_deleted_behind_the_holders_back_is_reported_lost() {
    let Some(url) = url() else { return };
    let prefix = fresh_prefix("lost");
    let ttl = Duration::from_millis(600);
    let holder = LockManager::new(builder(&url, &prefix).ttl(ttl).build().unwrap());
    let other = LockManager::new(provider(&url, &prefix));
    let keys = provider(&url, &prefix).key_names("x");
    let guard = holder.lock("x", Duration::ZERO).await.unwrap();
    let old = guard.fencing_token().unwrap();
    let mut admin = admin(&url).await;
    let _: i64 = query(&mut admin, &["DEL", &keys.lock]).await;
    let taken = other.lock("x", Duration::from_secs(5)).await.unwrap();
    assert!(taken.fencing_token().unwrap() > old);
    tokio::time::timeout(Duration::from_secs(5), guard.lost())
        .await
        .expect("the holder never noticed");
    assert!(matches!(guard.release().await, Err(LockError::Lost { .. })));
    // The new holder was not disturbed by the old one's release.
    assert!(!taken.is_lost());
    taken.release().await.unwrap();
}

#[tokio::test]
async fn waiters_are_woken_by_the_release_not_the_poll() {
    let Some(url) = url() else { return };
    let prefix = fresh_prefix("wake");
    let slow_poll = Duration::from_secs(5);
    let holder = LockManager::new(provider(&url, &prefix));
    let waiter = LockManager::new(
        builder(&url, &prefix)
            .poll(slow_poll, slow_poll)
            .ttl(Duration::from_secs(30))
            .build()
            .unwrap(),
    );
    let guard = holder.lock("x", Duration::ZERO).await.unwrap();
    let task = tokio::spawn(async move {
        let got = waiter.lock("x", Duration::from_secs(20)).await.unwrap();
        let at = Instant::now();
        got.release().await.unwrap();
        at
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!task.is_finished());
    let released = Instant::now();
    guard.release().await.unwrap();
    let acquired = task.await.unwrap();
    let took = acquired.duration_since(released);
    assert!(
        took < Duration::from_secs(2),
        "woken after {took:?}, not by the release"
    );
}

#[tokio::test]
async fn a_waiter_wakes_when_a_dead_holders_key_expires() {
    let Some(url) = url() else { return };
    let prefix = fresh_prefix("expiry");
    let slow_poll = Duration::from_secs(10);
    let waiter = LockManager::new(
        builder(&url, &prefix)
            .poll(slow_poll, slow_poll)
            .build()
            .unwrap(),
    );
    let keys = provider(&url, &prefix).key_names("x");
    let mut admin = admin(&url).await;
    // A holder that died: its key expires in 800 ms and nobody publishes anything.
    let _: () = query(&mut admin, &["SET", &keys.lock, "dead", "PX", "800"]).await;
    let start = Instant::now();
    let guard = waiter.lock("x", Duration::from_secs(20)).await.unwrap();
    let took = start.elapsed();
    assert!(took >= Duration::from_millis(700), "{took:?}");
    assert!(
        took < Duration::from_secs(4),
        "{took:?}: not woken at the expiry"
    );
    guard.release().await.unwrap();
}

#[tokio::test]
async fn a_release_whose_message_is_lost_is_found_by_the_poll() {
    let Some(url) = url() else { return };
    let prefix = fresh_prefix("poll");
    let waiter = LockManager::new(
        builder(&url, &prefix)
            .poll(Duration::from_millis(50), Duration::from_millis(200))
            .build()
            .unwrap(),
    );
    let keys = provider(&url, &prefix).key_names("x");
    let mut admin = admin(&url).await;
    // Held without an expiry (so the waiter cannot time its wake-up by it).
    let _: () = query(&mut admin, &["SET", &keys.lock, "someone"]).await;
    let task = tokio::spawn(async move {
        let guard = waiter.lock("x", Duration::from_secs(20)).await.unwrap();
        guard.release().await.unwrap();
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!task.is_finished());
    // Freed with no message on the channel.
    let _: i64 = query(&mut admin, &["DEL", &keys.lock]).await;
    tokio::time::timeout(Duration::from_secs(3), task)
        .await
        .expect("the poll did not find the free lock")
        .unwrap();
}

#[tokio::test]
async fn a_waiting_process_is_seen_by_the_holder_and_its_mark_goes_with_it() {
    let Some(url) = url() else { return };
    let prefix = fresh_prefix("request");
    let (a, b) = (provider(&url, &prefix), provider(&url, &prefix));
    let keys = a.key_names("x");
    let mut admin = admin(&url).await;
    let held = try_acquire(&a, "x").await.unwrap();
    assert!(!held.is_requested());
    let waiter = {
        let b = b.clone();
        tokio::spawn(async move {
            let x = name("x");
            let mark = b.request(&x).await.unwrap();
            let lock = b
                .acquire(&x, Some(Instant::now() + Duration::from_secs(20)))
                .await
                .unwrap();
            drop(mark);
            lock
        })
    };
    eventually(
        Duration::from_secs(3),
        "the holder sees the request",
        || {
            let requested = held.is_requested();
            async move { requested }
        },
    )
    .await;
    let marks: i64 = query(&mut admin, &["ZCARD", &keys.waiters]).await;
    assert_eq!(marks, 1);
    held.release().await.unwrap();
    let taken = waiter.await.unwrap().expect("the waiter got the lock");
    // Its own (departing) mark is never taken for a request.
    let start = Instant::now();
    while start.elapsed() < Duration::from_millis(300) {
        assert!(!taken.is_requested());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let marks: i64 = query(&mut admin, &["ZCARD", &keys.waiters]).await;
    assert_eq!(marks, 0, "the mark was not withdrawn");
    taken.release().await.unwrap();
}

#[tokio::test]
async fn a_one_shot_attempt_yields_to_a_waiting_process() {
    let Some(url) = url() else { return };
    let p = provider(&url, &fresh_prefix("yield"));
    let keys = p.key_names("x");
    let mut admin = admin(&url).await;
    let (secs, _): (u64, u64) = query(&mut admin, &["TIME"]).await;
    let future = ((secs + 3600) * 1000).to_string();
    let past = ((secs - 10) * 1000).to_string();
    let _: i64 = query(&mut admin, &["ZADD", &keys.waiters, &past, "gone:1"]).await;
    assert!(
        try_acquire(&p, "x").await.is_some_and(|l| {
            drop(l);
            true
        }),
        "an expired mark must not count"
    );
    tokio::time::sleep(Duration::from_millis(100)).await;
    let _: i64 = query(&mut admin, &["ZADD", &keys.waiters, &future, "other:1"]).await;
    assert!(
        try_acquire(&p, "x").await.is_none(),
        "a one-shot took a lock others wait for"
    );
    // A waiting attempt competes on equal terms.
    let lock = acquire_within(&p, "x", Duration::from_secs(5))
        .await
        .unwrap();
    lock.release().await.unwrap();
    let _: i64 = query(&mut admin, &["ZREM", &keys.waiters, "other:1"]).await;
    let lock = try_acquire(&p, "x").await.expect("free again");
    lock.release().await.unwrap();
}

#[tokio::test]
async fn a_dropped_guard_is_released_before_the_next_acquisition() {
    let Some(url) = url() else { return };
    let locks = LockManager::new(provider(&url, &fresh_prefix("dropped")));
    for round in 0..200 {
        let guard = locks.lock("x", Duration::ZERO).await.unwrap();
        drop(guard);
        assert!(
            locks.try_lock("x").await.unwrap().is_some(),
            "round {round}: still held by the dropped guard"
        );
    }
}

#[test]
fn a_guard_dropped_outside_any_runtime_is_released_at_once() {
    let Some(url) = url() else { return };
    let p = builder(&url, &fresh_prefix("no-runtime"))
        .ttl(Duration::from_secs(60))
        .build()
        .unwrap();
    let keys = p.key_names("x");
    let locks = LockManager::new(p);
    let guard = locks.lock_blocking("x", Duration::from_secs(5)).unwrap();
    let mut admin = redis::Client::open(url.as_str())
        .unwrap()
        .get_connection()
        .unwrap();
    let exists = |admin: &mut redis::Connection| -> i64 {
        redis::cmd("EXISTS").arg(&keys.lock).query(admin).unwrap()
    };
    assert_eq!(exists(&mut admin), 1);
    drop(guard); // on this thread, outside any runtime
    assert_eq!(exists(&mut admin), 0, "left for its ttl");
}

#[tokio::test]
async fn three_providers_count_exactly_with_a_short_lease() {
    let Some(url) = url() else { return };
    let prefix = fresh_prefix("count");
    let counter = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for _ in 0..3 {
        let locks = LockManager::new(
            builder(&url, &prefix)
                .ttl(Duration::from_millis(200))
                .build()
                .unwrap(),
        );
        for _ in 0..4 {
            let (locks, counter) = (locks.clone(), Arc::clone(&counter));
            tasks.push(tokio::spawn(async move {
                for _ in 0..100 {
                    let guard = locks.lock("x", Duration::from_secs(30)).await.unwrap();
                    let value = counter.load(Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_micros(200)).await;
                    counter.store(value + 1, Ordering::SeqCst);
                    guard.release().await.unwrap();
                }
            }));
        }
    }
    for task in tasks {
        task.await.unwrap();
    }
    assert_eq!(counter.load(Ordering::SeqCst), 1200);
}

#[tokio::test]
async fn bad_settings_and_unreachable_servers_are_typed_errors_without_the_password() {
    assert!(matches!(
        RedisProvider::new("http://x"),
        Err(RedisError::Config { .. })
    ));
    assert!(matches!(
        RedisProvider::builder("redis://127.0.0.1/")
            .ttl(Duration::from_millis(5))
            .build(),
        Err(RedisError::Option { option: "ttl", .. })
    ));
    assert!(matches!(
        RedisProvider::builder("redis://127.0.0.1/")
            .poll(Duration::from_secs(2), Duration::from_secs(1))
            .build(),
        Err(RedisError::Option { option: "poll", .. })
    ));
    // Port 1 on loopback: nothing listens there.
    let url = "redis://:hunter2@127.0.0.1:1/0";
    let builder = RedisProvider::builder(url).command_timeout(Duration::from_secs(1));
    assert!(!format!("{builder:?}").contains("hunter2"));
    let start = Instant::now();
    let err = builder.connect().await.unwrap_err();
    assert!(start.elapsed() < Duration::from_secs(5));
    assert!(
        matches!(&err, RedisError::Connect { addr, .. } if addr == "127.0.0.1:1"),
        "{err:?}"
    );
    assert!(!format!("{err} {err:?}").contains("hunter2"));
    let p = RedisProvider::new(url).unwrap();
    assert!(!format!("{p:?}").contains("hunter2"));
    // Through a manager: a provider error, never "held elsewhere".
    let locks = LockManager::new(p);
    match locks.try_lock("x").await {
        Err(LockError::Provider { source, .. }) => {
            assert!(source.downcast_ref::<RedisError>().is_some(), "{source:?}");
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn only_fencing_counters_stay_on_the_server() {
    let Some(url) = url() else { return };
    let prefix = fresh_prefix("clean");
    let (a, b) = (
        LockManager::new(provider(&url, &prefix)),
        LockManager::new(provider(&url, &prefix)),
    );
    for i in 0..50 {
        let name = format!("name:{i}");
        let guard = a.lock(&name, Duration::ZERO).await.unwrap();
        // A waiter that gives up (marks, subscribes), and one cancelled from outside.
        assert!(b.lock(&name, Duration::from_millis(20)).await.is_err());
        let _ = tokio::time::timeout(Duration::from_millis(10), b.lock(&name, Duration::MAX)).await;
        if i % 2 == 0 {
            drop(guard);
        } else {
            guard.release().await.unwrap();
        }
    }
    let admin = admin(&url).await;
    let pattern = format!("{prefix}*");
    eventually(Duration::from_secs(5), "only counters are left", || {
        let (mut admin, pattern) = (admin.clone(), pattern.clone());
        async move {
            let keys: Vec<String> = query(&mut admin, &["KEYS", &pattern]).await;
            keys.len() == 50 && keys.iter().all(|k| k.ends_with(":fence"))
        }
    })
    .await;
    eventually(Duration::from_secs(5), "no subscription is left", || {
        let (mut admin, pattern) = (admin.clone(), pattern.clone());
        async move {
            let channels: Vec<String> = query(&mut admin, &["PUBSUB", "CHANNELS", &pattern]).await;
            channels.is_empty()
        }
    })
    .await;
}
