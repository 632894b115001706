//! The provider against a real server (`TIERLOCK_PG_URL`, see `scripts/pg-start`).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{admin, eventually, fresh_namespace, holders, provider, server_url};
use tierlock_core::{LockManager, LockName, Provider};
use tierlock_postgres::{PostgresError, PostgresProvider};

const URL: &str = "TIERLOCK_PG_URL";
const BOUND: Duration = Duration::from_secs(10);

fn name(s: &str) -> LockName {
    LockName::new(s).unwrap()
}

fn now() -> Option<Instant> {
    Some(Instant::now())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_computes_the_same_keys() {
    let Some(url) = server_url(URL) else { return };
    let admin = admin(&url).await;
    for (namespace, name) in [("", "job:nightly"), ("a:b", "c"), ("ns", "ünïcødé 🔒")] {
        let key: i64 = admin
            .query_one(
                "SELECT ('x' || left(encode(sha256(convert_to(format('tierlock:lock:%s:%s:%s', \
                 octet_length($1::text), $1::text, $2::text), 'UTF8')), 'hex'), 16))::bit(64)::bigint",
                &[&namespace, &name],
            )
            .await
            .unwrap()
            .get(0);
        assert_eq!(key, tierlock_postgres::lock_key(namespace, name));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_lock_is_an_exclusive_advisory_lock_on_its_key() {
    let Some(url) = server_url(URL) else { return };
    let ns = fresh_namespace("pg_locks");
    let (a, b) = (provider(&url, &ns).await, provider(&url, &ns).await);
    let admin = admin(&url).await;
    let lock = name("invoice:9");
    let key = a.lock_key("invoice:9");

    let held = a.acquire(&lock, now()).await.unwrap().expect("free lock");
    let seen = holders(&admin, key).await;
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!((seen[0].1.as_str(), seen[0].2), ("ExclusiveLock", true));
    assert!(b.acquire(&lock, now()).await.unwrap().is_none());

    held.release().await.unwrap();
    assert!(holders(&admin, key).await.is_empty());
    let again = b.acquire(&lock, now()).await.unwrap().expect("released");
    again.release().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_are_reused_up_to_max_idle_connections() {
    let Some(url) = server_url(URL) else { return };
    let ns = fresh_namespace("pool");
    let p = PostgresProvider::builder(&url)
        .namespace(&ns)
        .max_idle_connections(2)
        .build()
        .unwrap();
    assert_eq!(p.idle_connections(), 0);
    let (x, y, z) = (name("x"), name("y"), name("z"));
    let held = [
        p.acquire(&x, now()).await.unwrap().unwrap(),
        p.acquire(&y, now()).await.unwrap().unwrap(),
        p.acquire(&z, now()).await.unwrap().unwrap(),
    ];
    assert_eq!(
        p.idle_connections(),
        0,
        "each held lock owns its connection"
    );
    for lock in held {
        lock.release().await.unwrap();
    }
    assert_eq!(p.idle_connections(), 2);
    // Sequential cycles keep reusing the same idle connections.
    for _ in 0..20 {
        let lock = p.acquire(&x, now()).await.unwrap().unwrap();
        assert_eq!(p.idle_connections(), 1);
        lock.release().await.unwrap();
    }
    assert_eq!(p.idle_connections(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn namespaces_are_independent() {
    let Some(url) = server_url(URL) else { return };
    let a = provider(&url, &fresh_namespace("ns-a")).await;
    let b = provider(&url, &fresh_namespace("ns-b")).await;
    let lock = name("shared-name");
    let held_a = a.acquire(&lock, now()).await.unwrap().expect("free in a");
    let held_b = b.acquire(&lock, now()).await.unwrap().expect("free in b");
    held_a.release().await.unwrap();
    held_b.release().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blocked_acquire_is_granted_when_the_holder_releases() {
    let Some(url) = server_url(URL) else { return };
    let ns = fresh_namespace("wait");
    let (a, b) = (
        provider(&url, &ns).await,
        Arc::new(provider(&url, &ns).await),
    );
    let admin = admin(&url).await;
    let lock = name("queue");
    let key = a.lock_key("queue");
    // Without a deadline (no lock_timeout) and with one (lock_timeout = the budget).
    for deadline in [None, Some(Instant::now() + 3 * BOUND)] {
        let held = a.acquire(&lock, now()).await.unwrap().expect("free");
        let waiter = tokio::spawn({
            let (b, lock) = (Arc::clone(&b), lock.clone());
            async move { b.acquire(&lock, deadline).await }
        });
        eventually(BOUND, "waiter queued on the server", || async {
            holders(&admin, key).await.iter().any(|h| !h.2)
        })
        .await;
        assert!(!waiter.is_finished());
        held.release().await.unwrap();
        let granted = tokio::time::timeout(BOUND, waiter).await.unwrap().unwrap();
        let granted = granted.unwrap().expect("granted after release");
        let seen = holders(&admin, key).await;
        assert_eq!(seen.len(), 1, "{seen:?}");
        granted.release().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_announced_wait_marks_its_request_on_its_own_session() {
    let Some(url) = server_url(URL) else { return };
    let ns = fresh_namespace("request");
    let (a, b) = (provider(&url, &ns).await, provider(&url, &ns).await);
    let admin = admin(&url).await;
    let lock = name("handoff");
    let held = a.acquire(&lock, now()).await.unwrap().unwrap();
    assert!(!held.is_requested());

    // `request` alone only announces the wait: nothing on the server yet.
    let mark = b.request(&lock).await.unwrap().expect("request mark");
    assert!(holders(&admin, a.request_key("handoff")).await.is_empty());
    let waiting = tokio::spawn({
        let (b, lock) = (b.clone(), lock.clone());
        // The granted lock is returned, not dropped: a dropped handle releases in the
        // background, and the checks below must see it held.
        async move { b.acquire(&lock, None).await }
    });
    eventually(BOUND, "the wait is queued", || async {
        holders(&admin, a.lock_key("handoff")).await.len() == 2
    })
    .await;
    let waiter_pid = holders(&admin, a.lock_key("handoff"))
        .await
        .into_iter()
        .find(|(_, _, granted)| !granted)
        .expect("a waiting session")
        .0;
    // The mark is held by the waiting session itself.
    let marks = holders(&admin, a.request_key("handoff")).await;
    assert_eq!(marks, [(waiter_pid, "ShareLock".to_owned(), true)]);
    eventually(BOUND, "holder sees the request", || async {
        held.is_requested()
    })
    .await;

    held.release().await.unwrap();
    let granted = waiting.await.unwrap().unwrap().expect("granted");
    drop(mark);
    // The mark went with the wait; the one session the waiter opened holds the lock.
    assert!(holders(&admin, a.request_key("handoff")).await.is_empty());
    let seen = holders(&admin, a.lock_key("handoff")).await;
    assert_eq!(seen, [(waiter_pid, "ExclusiveLock".to_owned(), true)]);
    granted.release().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_managers_hand_over_between_processes() {
    let Some(url) = server_url(URL) else { return };
    let ns = fresh_namespace("managers");
    let a = LockManager::new(provider(&url, &ns).await);
    let b = LockManager::new(provider(&url, &ns).await);
    let guard = a.lock("report", BOUND).await.unwrap();
    assert!(b.try_lock("report").await.unwrap().is_none());
    let waiter = tokio::spawn({
        let b = b.clone();
        async move { b.lock("report", 3 * BOUND).await.map(drop) }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!waiter.is_finished());
    guard.release().await.unwrap();
    tokio::time::timeout(BOUND, waiter)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_server_is_a_connect_error() {
    let Some(url) = server_url(URL) else { return };
    // The test server's port, on an address nothing listens on in the loopback range.
    let config: tokio_postgres::Config = url.parse().unwrap();
    let port = config.get_ports().first().copied().unwrap_or(5432);
    let bad = format!(
        "postgres://tierlock@127.0.0.1:{}/tierlock",
        port.wrapping_add(1)
    );
    let err = PostgresProvider::connect(bad).await.unwrap_err();
    assert!(matches!(err, PostgresError::Connect { .. }), "{err:?}");

    let lazy = PostgresProvider::builder(format!("{url}?user=no_such_role"))
        .build()
        .unwrap();
    let err = lazy.acquire(&name("x"), now()).await.unwrap_err();
    let err = err
        .downcast_ref::<PostgresError>()
        .expect("a PostgresError");
    assert!(matches!(err, PostgresError::Connect { .. }), "{err:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn contended_native_waits_exclude_each_other_and_never_fail() {
    let Some(url) = server_url(URL) else { return };
    let ns = fresh_namespace("stress");
    // Few idle connections, so connections that waited are reused for later waits.
    let providers: Vec<Arc<PostgresProvider>> = (0..2)
        .map(|_| {
            let p = PostgresProvider::builder(&url)
                .namespace(&ns)
                .max_idle_connections(1);
            Arc::new(p.build().unwrap())
        })
        .collect();
    let inside = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for provider in &providers {
        for _ in 0..3 {
            let (provider, inside) = (Arc::clone(provider), Arc::clone(&inside));
            tasks.push(tokio::spawn(async move {
                let lock = name("hot");
                for turn in 0..20u32 {
                    let deadline = (turn % 2 == 0).then(|| Instant::now() + 3 * BOUND);
                    let held = provider.acquire(&lock, deadline).await.unwrap().unwrap();
                    assert_eq!(inside.fetch_add(1, std::sync::atomic::Ordering::SeqCst), 0);
                    tokio::task::yield_now().await;
                    inside.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
                    held.release().await.unwrap();
                }
            }));
        }
    }
    for task in tasks {
        tokio::time::timeout(6 * BOUND, task)
            .await
            .unwrap()
            .unwrap();
    }
}

/// `sslmode=require` without a TLS configuration never falls back to plain text: without the
/// `rustls` feature it is refused before connecting; with it, the server's certificate is
/// checked against the system's root certificates, which do not hold the test server's CA (or
/// the server has no TLS at all).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sslmode_require_without_a_tls_config_is_refused() {
    let Some(url) = server_url(URL) else { return };
    let err = PostgresProvider::connect(format!("{url}?sslmode=require"))
        .await
        .unwrap_err();
    if cfg!(feature = "rustls") {
        assert!(
            matches!(
                err,
                PostgresError::Connect { .. } | PostgresError::Tls { .. }
            ),
            "{err:?}"
        );
    } else {
        assert!(matches!(err, PostgresError::TlsNotBuilt), "{err:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_lock_is_free_at_once_for_the_same_provider() {
    let Some(url) = server_url(URL) else { return };
    let ns = fresh_namespace("drop-settle");
    let p = provider(&url, &ns).await;
    let lock = name("again");
    // The unlock runs in the background; the next try-lock through the same provider waits for
    // it instead of finding its own lock still held.
    for i in 0..200 {
        let held = p.acquire(&lock, now()).await.unwrap().expect("free");
        drop(held);
        let again = p.acquire(&lock, now()).await.unwrap();
        assert!(again.is_some(), "round {i}: still held by the dropped lock");
    }
    // The dropped locks' connections were unlocked and reused, not closed.
    eventually(
        BOUND,
        "the last dropped lock's connection is pooled",
        || async { p.idle_connections() >= 1 },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_polling_off_means_never_requested_and_keepalive_runs_alone() {
    let Some(url) = server_url(URL) else { return };
    let ns = fresh_namespace("poll-off");
    let holder = PostgresProvider::builder(&url)
        .namespace(&ns)
        .request_poll_interval(None)
        .keepalive_interval(Duration::from_millis(50))
        .connect()
        .await
        .unwrap();
    let waiter = provider(&url, &ns).await;
    let admin = admin(&url).await;
    let lock = name("quiet");
    let held = holder.acquire(&lock, now()).await.unwrap().unwrap();
    let mark = waiter.request(&lock).await.unwrap().expect("request mark");
    let waiting = tokio::spawn({
        let (waiter, lock) = (waiter.clone(), lock.clone());
        async move { waiter.acquire(&lock, None).await.map(|got| got.is_some()) }
    });
    eventually(BOUND, "the marked wait is queued", || async {
        holders(&admin, holder.request_key("quiet")).await.len() == 1
    })
    .await;
    let pid = holders(&admin, holder.lock_key("quiet"))
        .await
        .into_iter()
        .find(|(_, _, granted)| *granted)
        .expect("the holder")
        .0;
    // The keepalive is what the holder's session runs now.
    eventually(BOUND, "the holder's session sends SELECT 1", || async {
        let query: Option<String> = admin
            .query_one("SELECT query FROM pg_stat_activity WHERE pid = $1", &[&pid])
            .await
            .unwrap()
            .get(0);
        query.as_deref() == Some("SELECT 1")
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!held.is_requested(), "polling is off");
    held.release().await.unwrap();
    assert!(waiting.await.unwrap().unwrap());
    drop(mark);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_are_closed_after_the_idle_timeout_or_when_the_server_closes_them() {
    let Some(url) = server_url(URL) else { return };
    let ns = fresh_namespace("idle");
    let admin = admin(&url).await;
    let lock = name("idle");
    let pid_of = async |p: &PostgresProvider| {
        let held = p.acquire(&lock, now()).await.unwrap().unwrap();
        let pid = holders(&admin, p.lock_key("idle")).await[0].0;
        held.release().await.unwrap();
        pid
    };

    let p = PostgresProvider::builder(&url)
        .namespace(&ns)
        .idle_timeout(Duration::from_millis(100))
        .build()
        .unwrap();
    let first = pid_of(&p).await;
    assert_eq!(pid_of(&p).await, first, "reused while fresh");
    tokio::time::sleep(Duration::from_millis(250)).await;
    assert_ne!(
        pid_of(&p).await,
        first,
        "an expired idle connection was reused"
    );

    // A pooled connection whose backend was terminated is skipped, without an error.
    let q = provider(&url, &ns).await;
    let first = pid_of(&q).await;
    let _: bool = admin
        .query_one("SELECT pg_terminate_backend($1)", &[&first])
        .await
        .unwrap()
        .get(0);
    eventually(BOUND, "the backend is gone", || async {
        admin
            .query_opt("SELECT 1 FROM pg_stat_activity WHERE pid = $1", &[&first])
            .await
            .unwrap()
            .is_none()
    })
    .await;
    assert_ne!(pid_of(&q).await, first);
}
