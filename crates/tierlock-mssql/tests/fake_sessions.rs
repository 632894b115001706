//! How many sessions a waiter costs, and that a hand-back reaches the remote waiter, against the
//! fake TDS server (see `support/fake_tds.rs`), whose logins can be made slow to stand for cold
//! sessions on a real server (0.1–0.4 s per login on Babelfish, plus the first statement).
//!
//! Sessions are counted twice: by the server (`logins`) and by the provider
//! (`sessions_opened`).

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "support/fake_tds.rs"]
mod fake_tds;
#[path = "support/helpers.rs"]
mod helpers;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use fake_tds::FakeServer;
use helpers::{GENEROUS, builder, eventually, hold, name, provider, timed};
use tierlock_core::{LockManager, Provider};

/// A cold waiter: its first attempt finds the lock held, then it waits. One session for both,
/// and the mark lives on that session for exactly as long as the wait.
#[tokio::test]
async fn a_cold_waiter_costs_one_session() {
    let server = FakeServer::start().await;
    let holder = provider(&server);
    let held = hold(&holder, "cold").await;
    let logins_before = server.logins();
    let waiter = provider(&server);
    let locks = LockManager::new(waiter.clone());
    let waiting = tokio::spawn(async move {
        let guard = locks.lock("cold", GENEROUS).await?;
        guard.release().await
    });
    eventually("the marked wait is queued", || server.waiters().len() == 1).await;
    let spid = server.waiters()[0].spid;
    assert!(
        server
            .locks()
            .iter()
            .any(|h| h.spid == spid && h.resource == "cold#tierlock-request")
    );
    held.release().await.unwrap();
    waiting.await.unwrap().unwrap();
    let opened = server.logins() - logins_before;
    eprintln!("sessions opened by a cold waiter: {opened}");
    assert_eq!(opened, 1);
    assert_eq!(waiter.sessions_opened(), 1);
    // The try, the marked wait and the release all ran on that one session.
    let on_waiter: Vec<_> = server
        .statements()
        .into_iter()
        .filter(|s| s.spid == spid)
        .map(|s| {
            s.sql
                .split_whitespace()
                .take(2)
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect();
    assert_eq!(
        on_waiter,
        ["SELECT CAST(CASE", "DECLARE @r", "DECLARE @m", "DECLARE @r"],
        "{on_waiter:?}"
    );
}

/// A busy process (local waiters keep the lock in the process) hands the lock back to a remote
/// waiter whose sessions are slow to start. The remote wait is queued in the same batch that
/// shows the mark, so the first hand-back reaches it: the busy process's own next waiter cannot
/// take the lock back in between. The busy process then re-acquires on the session it released
/// (no new login).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hand_back_reaches_a_remote_waiter_whose_sessions_are_cold() {
    let server = FakeServer::start().await;
    let busy_provider = builder(&server)
        .request_poll_interval(Duration::from_millis(10))
        .build()
        .unwrap();
    let busy = LockManager::new(busy_provider.clone());
    busy.lock("busy", GENEROUS)
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
                let guard = busy.lock("busy", GENEROUS).await.unwrap();
                sections.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_micros(100)).await;
                drop(guard);
            }
        }));
    }
    eventually("the busy process runs", || {
        sections.load(Ordering::SeqCst) >= 20
    })
    .await;

    // From now on every new session takes 300 ms to start; measure what one costs.
    server.delay_session_start(Duration::from_millis(300));
    let (setup, probe) = timed(builder(&server).connect()).await;
    probe.unwrap();
    let asker_provider = provider(&server);
    let asker = LockManager::new(asker_provider.clone());
    let (waited, guard) = timed(asker.lock("busy", GENEROUS)).await;
    let guard = guard.unwrap();
    stop.store(true, Ordering::SeqCst);
    let handbacks = busy.stats().handbacks;
    guard.release().await.unwrap();
    for task in tasks {
        tokio::time::timeout(GENEROUS, task).await.unwrap().unwrap();
    }
    eprintln!(
        "asker waited {waited:?} (one session start: {setup:?}); hand-backs: {handbacks}; \
         asker sessions: {}; busy sessions: {}",
        asker_provider.sessions_opened(),
        busy_provider.sessions_opened()
    );
    assert_eq!(handbacks, 1, "the first hand-back did not reach the asker");
    assert_eq!(asker_provider.sessions_opened(), 1);
    assert_eq!(
        busy_provider.sessions_opened(),
        1,
        "re-acquiring after the hand-back logged in again"
    );
    assert!(
        waited < setup + Duration::from_secs(1),
        "waited {waited:?}, one session start {setup:?}"
    );
}

/// After a hand-back the manager releases the external lock in the background; the same
/// provider's next acquisition of the name waits for that release and reuses its session.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn re_acquiring_after_a_hand_back_reuses_the_released_session() {
    let server = FakeServer::start().await;
    let a_provider = builder(&server)
        .request_poll_interval(Duration::from_millis(10))
        .build()
        .unwrap();
    let a = LockManager::new(a_provider.clone());
    let b_provider = provider(&server);
    let b = LockManager::new(b_provider.clone());
    for round in 0..20 {
        let guard = a.lock("pingpong", GENEROUS).await.unwrap();
        let waiting = tokio::spawn({
            let b = b.clone();
            async move { b.lock("pingpong", GENEROUS).await }
        });
        eventually("b waits", || server.waiters().len() == 1).await;
        // A local waiter makes the release a turn boundary; b's mark makes it a hand-back.
        let local = tokio::spawn({
            let a = a.clone();
            async move { a.lock("pingpong", GENEROUS).await.map(drop) }
        });
        eventually("a sees the request", || a.stats().waiting == 1).await;
        tokio::time::sleep(Duration::from_millis(30)).await;
        drop(guard);
        let b_guard = waiting.await.unwrap().unwrap();
        eventually("a's local waiter waits on the server", || {
            server.waiters().len() == 1
        })
        .await;
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
    assert_eq!(server.logins(), 2);
}

/// A waiter whose client goes away (its connection closes) leaves the server's queue at once:
/// its mark and its wait go with the session, and the lock is never granted to it.
#[tokio::test]
async fn a_waiter_whose_connection_closes_leaves_no_ghost() {
    let server = FakeServer::start().await;
    let holder = provider(&server);
    let held = hold(&holder, "ghost").await;
    let waiter = provider(&server);
    let mark = waiter.request(&name("ghost")).await.unwrap();
    let waiting = tokio::spawn({
        let waiter = waiter.clone();
        async move { waiter.lock(&name("ghost"), None).await }
    });
    eventually("the wait is queued", || server.waiters().len() == 1).await;
    let ghost = server.waiters()[0].spid;
    waiting.abort(); // drops the connection, as a killed process's kernel would close it
    drop(mark);
    eventually("the session ends", || {
        !server.open_sessions().contains(&ghost)
    })
    .await;
    assert!(server.waiters().is_empty());
    assert!(server.locks().iter().all(|h| h.spid != ghost));
    held.release().await.unwrap();
    let next = hold(&provider(&server), "ghost").await;
    assert_ne!(next.session_id(), ghost);
    let started = Instant::now();
    next.release().await.unwrap();
    assert!(started.elapsed() < GENEROUS);
}
