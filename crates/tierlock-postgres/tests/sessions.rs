//! How many sessions a waiter costs, and that a hand-back reaches the remote waiter, on a real
//! server (`TIERLOCK_PG_URL`). Sessions are counted by the provider (`sessions_opened`) and by a
//! TCP proxy in front of the server (`common::proxy`), which can also make session start slow
//! (a cold session on a far or busy server).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::proxy::SlowStart;
use common::{admin, eventually, fresh_namespace, has_waiter, server_url};
use tierlock_core::{LockManager, Provider};
use tierlock_postgres::{PostgresProvider, lock_key};

const URL: &str = "TIERLOCK_PG_URL";
const BOUND: Duration = Duration::from_secs(10);

fn provider(url: &str, namespace: &str) -> PostgresProvider {
    PostgresProvider::builder(url)
        .namespace(namespace)
        .request_poll_interval(Duration::from_millis(10))
        .build()
        .unwrap()
}

/// A cold waiter: its first attempt finds the lock held, then it waits, marked, on the same
/// session. One session in all (two before the mark and the wait shared it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cold_waiter_costs_one_session() {
    let Some(url) = server_url(URL) else { return };
    let ns = fresh_namespace("cold");
    let admin = admin(&url).await;
    let proxy = SlowStart::start(&url, Duration::ZERO).await;
    let holder = LockManager::new(provider(&url, &ns));
    let held = holder.lock("cold", BOUND).await.unwrap();
    let waiter_provider = provider(&proxy.url(&url), &ns);
    let waiter = LockManager::new(waiter_provider.clone());
    let waiting = tokio::spawn(async move {
        let guard = waiter.lock("cold", BOUND).await?;
        guard.release().await
    });
    let key = lock_key(&ns, "cold");
    eventually(BOUND, "the wait is queued", || has_waiter(&admin, key)).await;
    held.release().await.unwrap();
    waiting.await.unwrap().unwrap();
    eprintln!("sessions opened by a cold waiter: {}", proxy.sessions());
    assert_eq!(proxy.sessions(), 1);
    assert_eq!(waiter_provider.sessions_opened(), 1);
}

/// A busy process hands the lock back to a remote waiter whose sessions take 300 ms to start:
/// the first hand-back reaches it (the mark becomes visible as its wait is queued), and the busy
/// process re-acquires on the session it released.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hand_back_reaches_a_remote_waiter_whose_sessions_are_cold() {
    let Some(url) = server_url(URL) else { return };
    let ns = fresh_namespace("busy");
    let busy_provider = provider(&url, &ns);
    let busy = LockManager::new(busy_provider.clone());
    busy.lock("busy", BOUND)
        .await
        .unwrap()
        .release()
        .await
        .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let sections = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let (busy, stop, sections) = (busy.clone(), Arc::clone(&stop), Arc::clone(&sections));
        tasks.push(tokio::spawn(async move {
            while !stop.load(Ordering::SeqCst) {
                let guard = busy.lock("busy", BOUND).await.unwrap();
                sections.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_micros(100)).await;
                drop(guard);
            }
        }));
    }
    eventually(BOUND, "the busy process runs", || async {
        sections.load(Ordering::SeqCst) >= 20
    })
    .await;

    let slow = SlowStart::start(&url, Duration::from_millis(300)).await;
    let started = Instant::now();
    provider(&slow.url(&url), &ns)
        .acquire(
            &tierlock_core::LockName::new("other").unwrap(),
            Some(Instant::now()),
        )
        .await
        .unwrap()
        .expect("free")
        .release()
        .await
        .unwrap();
    let setup = started.elapsed();
    let asker_provider = provider(&slow.url(&url), &ns);
    let asker = LockManager::new(asker_provider.clone());
    let started = Instant::now();
    let guard = asker.lock("busy", BOUND).await.unwrap();
    let waited = started.elapsed();
    stop.store(true, Ordering::SeqCst);
    let handbacks = busy.stats().handbacks;
    guard.release().await.unwrap();
    for task in tasks {
        tokio::time::timeout(BOUND, task).await.unwrap().unwrap();
    }
    eprintln!(
        "asker waited {waited:?} (one session start: {setup:?}); hand-backs: {handbacks}; \
         asker sessions: {}; busy sessions: {}",
        asker_provider.sessions_opened(),
        busy_provider.sessions_opened()
    );
    assert_eq!(handbacks, 1, "the first hand-back did not reach the asker");
    assert_eq!(asker_provider.sessions_opened(), 1);
    assert_eq!(busy_provider.sessions_opened(), 1);
    assert!(waited < setup + Duration::from_secs(1), "waited {waited:?}");
}

/// 20 hand-backs each way between two managers, each with a local waiter queued: neither side
/// opens a session after its first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn re_acquiring_after_a_hand_back_reuses_the_released_session() {
    let Some(url) = server_url(URL) else { return };
    let ns = fresh_namespace("pingpong");
    let admin = admin(&url).await;
    let (a_provider, b_provider) = (provider(&url, &ns), provider(&url, &ns));
    let (a, b) = (
        LockManager::new(a_provider.clone()),
        LockManager::new(b_provider.clone()),
    );
    let key = lock_key(&ns, "pingpong");
    for round in 0..20 {
        let guard = a.lock("pingpong", BOUND).await.unwrap();
        let waiting = tokio::spawn({
            let b = b.clone();
            async move { b.lock("pingpong", BOUND).await }
        });
        eventually(BOUND, "b waits", || has_waiter(&admin, key)).await;
        let local = tokio::spawn({
            let a = a.clone();
            async move { a.lock("pingpong", BOUND).await.map(drop) }
        });
        eventually(BOUND, "a's local waiter", || async {
            a.stats().waiting == 1
        })
        .await;
        tokio::time::sleep(Duration::from_millis(60)).await;
        drop(guard);
        let b_guard = waiting.await.unwrap().unwrap();
        eventually(BOUND, "a waits on the server", || has_waiter(&admin, key)).await;
        b_guard.release().await.unwrap();
        local.await.unwrap().unwrap();
        assert_eq!(a.stats().handbacks, round + 1);
    }
    eprintln!(
        "20 hand-backs each way: a opened {} sessions, b {}",
        a_provider.sessions_opened(),
        b_provider.sessions_opened()
    );
    assert_eq!(a_provider.sessions_opened(), 1);
    assert_eq!(b_provider.sessions_opened(), 1);
}
