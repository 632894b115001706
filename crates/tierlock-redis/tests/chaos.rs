//! The provider when its server misbehaves: restarted while waiters wait, frozen longer than
//! the `ttl` (`DEBUG SLEEP`), its connections killed (`CLIENT KILL`), paused while an
//! acquisition is in flight (`CLIENT PAUSE`). Each test runs a private `redis-server` of its own
//! (see `tierlock_testkit::redis_server`), so the tests sharing `TIERLOCK_REDIS_URL` are not
//! disturbed; like them, they run only when `TIERLOCK_REDIS_URL` is set (`scripts/test` sets it
//! and installs `redis-server`).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use common::{admin, builder, eventually, fresh_prefix, query};
use tierlock_core::{LockError, LockManager, LockName, Provider};
use tierlock_redis::{RedisError, RedisProvider};
use tierlock_testkit::redis_server::RedisServer;

/// A private server, if the run has Redis at all.
fn server() -> Option<RedisServer> {
    RedisServer::for_test()
}

fn manager(url: &str, prefix: &str, ttl_ms: u64) -> LockManager {
    LockManager::new(
        builder(url, prefix)
            .ttl(Duration::from_millis(ttl_ms))
            .command_timeout(Duration::from_millis(500))
            .poll(Duration::from_millis(20), Duration::from_millis(200))
            .build()
            .unwrap(),
    )
}

fn is_redis_error(err: &LockError) -> bool {
    matches!(err, LockError::Provider { source, .. } if source.downcast_ref::<RedisError>().is_some())
}

#[tokio::test]
async fn a_server_restart_while_waiters_wait_is_recovered_or_a_typed_error_in_time() {
    let Some(mut server) = server() else { return };
    let url = server.url();
    let prefix = fresh_prefix("restart");
    let holder = manager(&url, &prefix, 1000);
    let guard = holder.lock("x", Duration::ZERO).await.unwrap();
    let old = guard.fencing_token().unwrap();

    // A patient waiter (recovers after the restart) and an impatient one (its budget ends
    // while the server is down).
    let patient = {
        let locks = manager(&url, &prefix, 1000);
        tokio::spawn(async move {
            let guard = locks.lock("x", Duration::from_secs(30)).await;
            guard.map(|g| g.fencing_token())
        })
    };
    let impatient_budget = Duration::from_millis(1500);
    let impatient = {
        let locks = manager(&url, &prefix, 1000);
        tokio::spawn(async move {
            let start = Instant::now();
            let result = locks.lock("x", impatient_budget).await.map(drop);
            (result, start.elapsed())
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    server.stop();
    let down = Instant::now();
    // A waiter that starts while the server is down fails at once with a typed error.
    let late = manager(&url, &prefix, 1000);
    let start = Instant::now();
    let err = late.lock("x", Duration::from_secs(1)).await.unwrap_err();
    assert!(is_redis_error(&err), "{err:?}");
    assert!(
        start.elapsed() < Duration::from_secs(3),
        "{:?}",
        start.elapsed()
    );

    tokio::time::timeout(Duration::from_secs(5), guard.lost())
        .await
        .expect("the holder did not notice it lost the lock");
    tokio::time::sleep(Duration::from_millis(2500).saturating_sub(down.elapsed())).await;
    server.restart();

    let (result, took) = impatient.await.unwrap();
    let err = result.unwrap_err();
    assert!(
        is_redis_error(&err) || matches!(err, LockError::Timeout { .. }),
        "{err:?}"
    );
    // Its budget, plus one command timeout for the attempt in flight, plus slack.
    assert!(took < impatient_budget + Duration::from_secs(2), "{took:?}");

    let token = patient
        .await
        .unwrap()
        .expect("the patient waiter did not recover")
        .unwrap();
    // The restarted server lost the counter: the token is still larger.
    assert!(token > old, "{token} after {old}");
    assert!(matches!(guard.release().await, Err(LockError::Lost { .. })));
}

#[tokio::test]
async fn a_server_frozen_longer_than_the_ttl_loses_the_lock_to_a_waiter() {
    let Some(server) = server() else { return };
    let url = server.url();
    let prefix = fresh_prefix("debug-sleep");
    let holder = manager(&url, &prefix, 1000);
    let guard = holder.lock("x", Duration::ZERO).await.unwrap();
    let old = guard.fencing_token().unwrap();
    let waiter = {
        let locks = manager(&url, &prefix, 1000);
        tokio::spawn(async move {
            let guard = locks.lock("x", Duration::from_secs(30)).await.unwrap();
            let token = guard.fencing_token().unwrap();
            guard.release().await.unwrap();
            token
        })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut admin = admin(&url).await;
    let frozen = Instant::now();
    let sleep = tokio::spawn(async move {
        let _: () = query(&mut admin, &["DEBUG", "SLEEP", "2.5"]).await;
    });
    tokio::time::timeout(Duration::from_secs(5), guard.lost())
        .await
        .expect("no lost signal");
    // Raised while the server was still frozen: before the key could expire and be taken.
    assert!(
        frozen.elapsed() < Duration::from_millis(2500),
        "{:?}",
        frozen.elapsed()
    );
    let token = waiter.await.unwrap();
    assert!(token > old, "{token} after {old}");
    sleep.await.unwrap();
    assert!(matches!(guard.release().await, Err(LockError::Lost { .. })));
    drop(server);
}

#[tokio::test]
async fn killed_connections_alone_do_not_lose_the_lock() {
    let Some(server) = server() else { return };
    let url = server.url();
    let prefix = fresh_prefix("client-kill");
    let holder = manager(&url, &prefix, 900);
    let other = manager(&url, &prefix, 900);
    let guard = holder.lock("x", Duration::ZERO).await.unwrap();
    let mut admin = admin(&url).await;
    let kill = |admin: &mut redis::aio::MultiplexedConnection| {
        let mut admin = admin.clone();
        async move {
            query::<i64>(
                &mut admin,
                &["CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes"],
            )
            .await
        }
    };
    let start = Instant::now();
    let mut killed = 0;
    while start.elapsed() < Duration::from_secs(3) {
        killed += kill(&mut admin).await;
        assert!(other.try_lock("x").await.ok().flatten().is_none());
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(killed >= 6, "only {killed} connections killed");
    assert!(!guard.is_lost(), "a reconnecting holder lost its lock");
    // One-shot attempts and releases on a connection that was killed while idle are retried
    // on a new one, not reported as errors.
    assert!(kill(&mut admin).await >= 1);
    let y = holder.try_lock("y").await.unwrap().expect("y is free");
    assert!(kill(&mut admin).await >= 1);
    y.release().await.unwrap();
    assert!(kill(&mut admin).await >= 1);
    guard.release().await.unwrap();
    drop(server);
}

#[tokio::test]
async fn killed_connections_that_cannot_come_back_lose_the_lock_to_a_higher_token() {
    let Some(server) = server() else { return };
    let url = server.url();
    let mut admin = admin(&url).await;
    let _: () = query(
        &mut admin,
        &["ACL", "SETUSER", "holder", "on", ">pw", "~*", "&*", "+@all"],
    )
    .await;
    let holder_url = format!("redis://holder:pw@127.0.0.1:{}/0", server.port());
    let prefix = fresh_prefix("acl");
    let holder = manager(&holder_url, &prefix, 1000);
    let guard = holder.lock("x", Duration::ZERO).await.unwrap();
    let old = guard.fencing_token().unwrap();
    let waiter = {
        let locks = manager(&url, &prefix, 1000);
        tokio::spawn(async move {
            let start = Instant::now();
            let guard = locks.lock("x", Duration::from_secs(30)).await.unwrap();
            (guard.fencing_token().unwrap(), start.elapsed(), guard)
        })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    let _: () = query(&mut admin, &["ACL", "SETUSER", "holder", "off"]).await;
    let _: i64 = query(&mut admin, &["CLIENT", "KILL", "USER", "holder"]).await;
    tokio::time::timeout(Duration::from_secs(5), guard.lost())
        .await
        .expect("no lost signal");
    let (token, took, taken) = waiter.await.unwrap();
    assert!(token > old, "{token} after {old}");
    assert!(took < Duration::from_secs(5), "{took:?}");
    // The holder comes back: its release finds the key taken.
    let _: () = query(&mut admin, &["ACL", "SETUSER", "holder", "on"]).await;
    assert!(matches!(guard.release().await, Err(LockError::Lost { .. })));
    assert!(!taken.is_lost());
    taken.release().await.unwrap();
    drop(server);
}

#[tokio::test]
async fn a_cancelled_acquisition_that_reached_the_server_leaves_no_key() {
    let Some(server) = server() else { return };
    let url = server.url();
    let prefix = fresh_prefix("cancel");
    let p: RedisProvider = builder(&url, &prefix)
        .ttl(Duration::from_secs(60))
        .build()
        .unwrap();
    let keys = p.key_names("x");
    let name = LockName::new("x").unwrap();
    let mut admin = admin(&url).await;
    // Connect first, so the attempt below is only the script.
    let warm = p
        .acquire(&name, Some(Instant::now()))
        .await
        .unwrap()
        .unwrap();
    warm.release().await.unwrap();
    for round in 0..5 {
        let fence_before: u64 = query(&mut admin, &["GET", &keys.fence]).await;
        // Write commands (and scripts) are held back for 300 ms: the attempt is sent, and
        // dropped before the server runs it.
        let _: () = query(&mut admin, &["CLIENT", "PAUSE", "300", "WRITE"]).await;
        let attempt = tokio::time::timeout(
            Duration::from_millis(100),
            p.acquire(&name, Some(Instant::now())),
        )
        .await;
        assert!(
            attempt.is_err(),
            "round {round}: the pause did not hold the script back"
        );
        // After the pause the script runs (and takes a fencing token) and sets the key...
        eventually(Duration::from_secs(5), "the script runs", || {
            let mut admin = admin.clone();
            let key = keys.fence.clone();
            async move { query::<u64>(&mut admin, &["GET", &key]).await > fence_before }
        })
        .await;
        // ...and the compare-and-delete that followed it on the same connection removes it
        // again, long before its 60 s ttl.
        eventually(Duration::from_secs(5), "the key is removed", || {
            let mut admin = admin.clone();
            let key = keys.lock.clone();
            async move { query::<i64>(&mut admin, &["EXISTS", &key]).await == 0 }
        })
        .await;
    }
    drop(server);
}

/// The ACL rule in `docs/providers/redis.md` is enough for every operation: lock, wait (pub/sub
/// and marks), hand over, renew, release — and a script cache flushed under it (`SCRIPT LOAD`).
#[tokio::test]
async fn a_user_with_only_the_documented_permissions_can_lock() {
    let Some(server) = server() else { return };
    let mut admin = admin(&server.url()).await;
    let rule = "on >pw resetkeys resetchannels ~tierlock:* &tierlock:* -@all \
                +eval +evalsha +script|load +ping +zrem +subscribe +unsubscribe \
                +get +set +del +exists +pttl +pexpire +incr +time +publish \
                +zadd +zrangebyscore +zremrangebyscore";
    let mut args = vec!["ACL", "SETUSER", "locker"];
    args.extend(rule.split_whitespace());
    let _: () = query(&mut admin, &args).await;
    let _: () = query(&mut admin, &["SCRIPT", "FLUSH"]).await;
    let url = format!("redis://locker:pw@127.0.0.1:{}/0", server.port());
    let prefix = "tierlock:acl:";
    let (a, b) = (manager(&url, prefix, 600), manager(&url, prefix, 600));
    let guard = a.lock("x", Duration::ZERO).await.unwrap();
    let waiter = tokio::spawn(async move {
        let guard = b.lock("x", Duration::from_secs(10)).await.unwrap();
        guard.release().await.unwrap();
    });
    // Renewals run meanwhile (ttl 600 ms), and the waiter's mark is refreshed.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert!(!guard.is_lost());
    let keys = tierlock_redis::key_names(prefix, "x");
    let (_, subscribers): (String, i64) =
        query(&mut admin, &["PUBSUB", "NUMSUB", &keys.channel]).await;
    assert_eq!(subscribers, 1, "the waiter is not subscribed");
    let marks: i64 = query(&mut admin, &["ZCARD", &keys.waiters]).await;
    assert_eq!(marks, 1, "the waiter's mark is missing");
    guard.release().await.unwrap();
    tokio::time::timeout(Duration::from_secs(10), waiter)
        .await
        .expect("the waiter was not woken")
        .unwrap();
    // Outside the prefix: refused, and reported as an error.
    let other = manager(&url, "elsewhere:", 600);
    let err = other.try_lock("x").await.unwrap_err();
    assert!(is_redis_error(&err), "{err:?}");
    drop(server);
}

#[tokio::test]
async fn waiters_subscribe_again_after_their_pubsub_connection_is_killed() {
    let Some(server) = server() else { return };
    let url = server.url();
    let prefix = fresh_prefix("resubscribe");
    let holder = LockManager::new(
        builder(&url, &prefix)
            .ttl(Duration::from_secs(30))
            .build()
            .unwrap(),
    );
    let slow_poll = Duration::from_secs(10);
    let waiter = LockManager::new(
        builder(&url, &prefix)
            .poll(slow_poll, slow_poll)
            .build()
            .unwrap(),
    );
    let guard = holder.lock("x", Duration::ZERO).await.unwrap();
    let task = tokio::spawn(async move {
        let guard = waiter.lock("x", Duration::from_secs(30)).await.unwrap();
        let at = Instant::now();
        guard.release().await.unwrap();
        at
    });
    let channel = tierlock_redis::key_names(&prefix, "x").channel;
    let mut admin = admin(&url).await;
    let subscribed = |admin: &redis::aio::MultiplexedConnection| {
        let (mut admin, channel) = (admin.clone(), channel.clone());
        async move {
            let (_, n): (String, i64) = query(&mut admin, &["PUBSUB", "NUMSUB", &channel]).await;
            n == 1
        }
    };
    eventually(Duration::from_secs(5), "the waiter subscribes", || {
        subscribed(&admin)
    })
    .await;
    let killed: i64 = query(&mut admin, &["CLIENT", "KILL", "TYPE", "pubsub"]).await;
    assert_eq!(killed, 1);
    eventually(
        Duration::from_secs(5),
        "the waiter subscribes again",
        || subscribed(&admin),
    )
    .await;
    let released = Instant::now();
    guard.release().await.unwrap();
    let acquired = task.await.unwrap();
    let took = acquired.duration_since(released);
    assert!(
        took < Duration::from_secs(3),
        "woken after {took:?}: not by the release"
    );
    drop(server);
}
