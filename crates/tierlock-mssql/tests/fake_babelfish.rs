//! The provider against the fake TDS server in Babelfish mode (see `support/fake_tds.rs`), which
//! reproduces what Babelfish for PostgreSQL 4.2 does differently from SQL Server: the provider
//! must tell it apart once, never send `@LockTimeout = 0`, never reuse a session that had a
//! request refused (the 5th refusal in one session brings the whole server down), keep
//! resources within 255 bytes, and take a failed release of an unheld lock as "not held".

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "support/fake_tds.rs"]
mod fake_tds;
#[path = "support/helpers.rs"]
mod helpers;

use std::time::{Duration, Instant};

use fake_tds::{FakeServer, Value};
use helpers::{GENEROUS, builder, eventually, hold, is_free, name, provider};
use tierlock_core::LockManager;
use tierlock_mssql::{MssqlError, ServerKind, map_resource_utf8, tiberius};
use tokio_util::compat::TokioAsyncWriteCompatExt;

#[tokio::test]
async fn the_server_kind_is_told_once_on_the_first_connection() {
    for (server, kind) in [
        (FakeServer::babelfish().await, ServerKind::Babelfish),
        (FakeServer::start().await, ServerKind::SqlServer),
    ] {
        let provider = builder(&server).connect().await.unwrap();
        assert_eq!(provider.server_kind(), Some(kind));
        let held = [hold(&provider, "a").await, hold(&provider, "b").await];
        for held in held {
            held.release().await.unwrap();
        }
        let detections = server
            .statements()
            .iter()
            .filter(|s| s.sql.contains("SERVERPROPERTY('Babelfish')"))
            .count();
        assert_eq!((detections, server.logins()), (1, 2), "{kind:?}");
    }
}

/// 30 single attempts on a held lock: none sends `@LockTimeout = 0`, each is refused on a
/// session that is then closed, and the server survives (with reuse, the 5th refusal on one
/// session would have dropped every lock, the holder's included).
#[tokio::test]
async fn single_attempts_send_one_millisecond_and_retire_refused_sessions() {
    let server = FakeServer::babelfish().await;
    let holder = provider(&server);
    let held = hold(&holder, "busy").await;
    let other = provider(&server);
    for _ in 0..30 {
        assert!(!is_free(&other, "busy").await);
        assert_eq!(other.idle_connections(), 0, "a refused session was pooled");
    }
    let locks = LockManager::new(other.clone());
    for _ in 0..10 {
        assert!(locks.try_lock("busy").await.unwrap().is_none());
        let waited = locks.lock("busy", Duration::from_millis(20)).await;
        assert!(waited.is_err());
    }
    assert_eq!(server.crashes(), 0);
    assert!(!held.lost_signal().is_lost());
    for statement in server.statements() {
        if statement.sql.contains("sp_getapplock") {
            assert_ne!(statement.params[1], Value::Int(0), "{statement:?}");
        }
        assert!(server.refusals(statement.spid) <= 1, "{statement:?}");
    }
    eprintln!(
        "50 refused acquisitions on Babelfish opened {} sessions",
        other.sessions_opened()
    );
    held.release().await.unwrap();
    // A granted session is reused as usual.
    assert!(is_free(&other, "busy").await);
    assert!(is_free(&other, "busy").await);
    assert_eq!(other.idle_connections(), 1);
}

/// What the adaptation protects against: five refused requests on one session bring the fake
/// Babelfish down, and every session's locks with it.
#[tokio::test]
async fn five_refusals_on_one_session_crash_the_fake_babelfish() {
    let server = FakeServer::babelfish().await;
    let held = hold(&provider(&server), "victim").await;
    let config = tierlock_mssql::parse_connection_string(&server.connection_string()).unwrap();
    let tcp = tokio::net::TcpStream::connect(config.get_addr())
        .await
        .unwrap();
    let mut raw = tiberius::Client::connect(config, tcp.compat_write())
        .await
        .unwrap();
    let sql = "DECLARE @r int; EXEC @r = sp_getapplock @Resource = @P1, \
               @LockMode = 'Exclusive', @LockOwner = 'Session', @LockTimeout = @P2; SELECT @r;";
    for attempt in 1..=5 {
        let answer = async { raw.query(sql, &[&"victim", &0i32]).await?.into_row().await }.await;
        if attempt < 5 {
            let code: Option<i32> = answer.unwrap().and_then(|row| row.get(0));
            assert_eq!(code, Some(-999), "a held lock with @LockTimeout = 0");
        } else {
            assert!(answer.is_err(), "the 5th refusal was answered");
        }
    }
    assert_eq!(server.crashes(), 1);
    tokio::time::timeout(GENEROUS, held.lost_signal().wait())
        .await
        .expect("the holder did not notice the crash");
    assert!(server.locks().is_empty());
}

#[tokio::test]
async fn long_names_are_kept_within_255_bytes() {
    let server = FakeServer::babelfish().await;
    let provider = builder(&server).connect().await.unwrap();
    // 200 characters, 400 bytes: within SQL Server's limit, beyond Babelfish's.
    let (a, b) = (
        format!("{}a", "é".repeat(200)),
        format!("{}b", "é".repeat(200)),
    );
    assert_eq!(provider.resource_name(&a), map_resource_utf8(&a));
    assert!(provider.resource_name(&a).len() <= 255);
    let first = hold(&provider, &a).await;
    // The two names share their first 255 bytes: cut by the server they would be one lock.
    assert!(is_free(&provider, &b).await);
    assert!(!is_free(&builder(&server).build().unwrap(), &a).await);
    first.release().await.unwrap();
}

#[tokio::test]
async fn a_granted_wait_answers_zero_and_holds_the_lock() {
    let server = FakeServer::babelfish().await;
    let (a, b) = (provider(&server), provider(&server));
    let held = hold(&a, "w").await;
    let waiter = tokio::spawn(async move { b.lock(&name("w"), None).await });
    eventually("the waiter is queued", || server.waiters().len() == 1).await;
    held.release().await.unwrap();
    let got = waiter.await.unwrap().unwrap().expect("granted");
    assert_eq!(server.locks()[0].spid, got.session_id());
    got.release().await.unwrap();
}

#[tokio::test]
async fn releasing_a_lock_the_server_dropped_is_not_held() {
    for (server, pooled) in [
        (FakeServer::babelfish().await, 0),
        (FakeServer::start().await, 1),
    ] {
        let provider = provider(&server);
        let held = hold(&provider, "gone").await;
        server.forget("gone");
        match held.release().await {
            Err(MssqlError::NotHeld { name }) => assert_eq!(name, "gone"),
            other => panic!("{other:?}"),
        }
        // On SQL Server the session is clean and reused; on Babelfish it is retired.
        assert_eq!(provider.idle_connections(), pooled);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_manager_hands_over_on_babelfish() {
    let server = FakeServer::babelfish().await;
    let (one, two) = (
        LockManager::new(provider(&server)),
        LockManager::new(provider(&server)),
    );
    let guard = one.lock("busy", GENEROUS).await.unwrap();
    let local = {
        let one = one.clone();
        tokio::spawn(async move { one.lock("busy", GENEROUS).await.map(drop) })
    };
    let started = Instant::now();
    let other = tokio::spawn(async move { two.lock("busy", GENEROUS).await.map(drop) });
    eventually("the other manager marked its request", || {
        server
            .locks()
            .iter()
            .any(|h| h.resource == "busy#tierlock-request")
    })
    .await;
    drop(guard);
    tokio::time::timeout(GENEROUS, other)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    tokio::time::timeout(GENEROUS, local)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(started.elapsed() < GENEROUS);
    assert_eq!(server.crashes(), 0);
}
