//! The provider over the real tiberius driver against a fake in-process TDS server (see
//! `support/fake_tds.rs`): no SQL Server is needed, so these always run. They check the
//! provider's own machinery — statements and parameters on the wire, the pool, statement bounds,
//! cancellation, the monitor (request probe, keepalive, lost signal) — and run the conformance
//! battery through a `LockManager`. Real server semantics are tested by `server.rs`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "support/fake_tds.rs"]
mod fake_tds;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use fake_tds::{FakeServer, Held, Value};
use tierlock_core::{LockManager, LockName, Provider};
use tierlock_mssql::{MssqlError, MssqlLock, MssqlProvider, MssqlProviderBuilder};

const GENEROUS: Duration = Duration::from_secs(10);

fn fresh_namespace() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    format!("fake:{}:", NEXT.fetch_add(1, Ordering::Relaxed))
}

fn builder(server: &FakeServer) -> MssqlProviderBuilder {
    MssqlProvider::builder(&server.connection_string()).expect("valid connection string")
}

fn provider(server: &FakeServer) -> MssqlProvider {
    builder(server).build().expect("valid options")
}

fn name(s: &str) -> LockName {
    LockName::new(s).expect("valid name")
}

async fn hold(provider: &MssqlProvider, lock: &str) -> MssqlLock {
    match provider
        .lock(&name(lock), Some(Instant::now() + GENEROUS))
        .await
    {
        Ok(Some(held)) => held,
        other => panic!("could not take {lock:?}: {other:?}"),
    }
}

async fn eventually(what: &str, mut condition: impl FnMut() -> bool) {
    let start = Instant::now();
    while !condition() {
        assert!(start.elapsed() < GENEROUS, "never happened: {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

tierlock_testkit::conformance_tests!(|| async {
    let server = FakeServer::start().await;
    let provider = builder(&server)
        .namespace(fresh_namespace())
        .build()
        .expect("valid options");
    Arc::new(provider) as Arc<dyn Provider>
});

#[tokio::test]
async fn acquire_and_release_send_the_documented_statements_and_reuse_the_connection() {
    let server = FakeServer::start().await;
    let provider = builder(&server).namespace("app:").build().unwrap();
    let held = hold(&provider, "Job").await;
    assert_eq!(held.resource(), "app:Job");
    assert_eq!(
        server.locks(),
        [Held {
            resource: "app:Job".into(),
            spid: held.session_id(),
            exclusive: true
        }]
    );
    held.release().await.unwrap();
    assert!(server.locks().is_empty());
    assert_eq!(provider.idle_connections(), 1);

    let again = hold(&provider, "Job").await;
    again.release().await.unwrap();
    assert_eq!(server.logins(), 1, "the idle connection was not reused");

    let log = server.statements();
    // The provider's first connection tells SQL Server from Babelfish, once.
    assert!(
        log[0].sql.contains("SERVERPROPERTY('Babelfish')"),
        "{}",
        log[0].sql
    );
    assert_eq!(
        log.iter()
            .filter(|s| s.sql.contains("SERVERPROPERTY"))
            .count(),
        1
    );
    let log = &log[1..];
    let acquire = &log[0];
    assert!(acquire.sql.contains("sp_getapplock"), "{}", acquire.sql);
    assert_eq!(acquire.params[0], Value::Str("app:Job".into()));
    match acquire.params[1] {
        Value::Int(ms) => assert!((1..=10_000).contains(&ms), "@LockTimeout {ms}"),
        ref other => panic!("{other:?}"),
    }
    assert!(log[1].sql.contains("sp_releaseapplock"));
    assert_eq!(log[1].params, [Value::Str("app:Job".into())]);
}

#[tokio::test]
async fn lock_timeout_is_the_remaining_budget() {
    let server = FakeServer::start().await;
    let (a, b) = (provider(&server), provider(&server));
    let held = hold(&a, "t").await;
    let start = Instant::now();
    let got = b
        .lock(&name("t"), Some(start + Duration::from_millis(200)))
        .await;
    assert!(matches!(got, Ok(None)), "{got:?}");
    assert!(start.elapsed() >= Duration::from_millis(190));
    assert!(matches!(
        b.lock(&name("t"), Some(Instant::now())).await,
        Ok(None)
    ));
    // Both timed-out attempts ran on one connection, which went back to the pool.
    assert_eq!(b.idle_connections(), 1);
    assert_eq!(server.logins(), 2);
    let waited = tokio::time::timeout(Duration::from_millis(100), b.lock(&name("t"), None)).await;
    assert!(waited.is_err(), "a wait without deadline returned");

    let timeouts: Vec<Value> = server
        .statements()
        .into_iter()
        .filter(|s| s.sql.contains("sp_getapplock") && s.params[0] == Value::Str("t".into()))
        .map(|s| s.params[1].clone())
        .collect();
    assert_eq!(timeouts.len(), 4);
    assert!(matches!(timeouts[1], Value::Int(ms) if (150..=200).contains(&ms)));
    assert_eq!(timeouts[2], Value::Int(0));
    assert_eq!(timeouts[3], Value::Int(-1));
    // The cancelled wait's connection was closed, not pooled.
    assert_eq!(b.idle_connections(), 0);
    held.release().await.unwrap();
}

#[tokio::test]
async fn a_waiter_is_granted_when_the_holder_releases() {
    let server = FakeServer::start().await;
    let (a, b) = (provider(&server), provider(&server));
    let held = hold(&a, "w").await;
    let waiter = tokio::spawn(async move { b.lock(&name("w"), None).await });
    eventually("the waiter is queued", || server.waiters().len() == 1).await;
    held.release().await.unwrap();
    let got = tokio::time::timeout(GENEROUS, waiter)
        .await
        .unwrap()
        .unwrap();
    let got = got.unwrap().expect("granted after waiting");
    assert_eq!(server.locks()[0].spid, got.session_id());
    got.release().await.unwrap();
}

#[tokio::test]
async fn failure_codes_are_distinct_errors_and_close_the_connection() {
    let server = FakeServer::start().await;
    let provider = provider(&server);
    for code in [-2, -3, -999, 7] {
        server.force_next_code(code);
        let err = provider.lock(&name("f"), None).await.unwrap_err();
        let matched = match code {
            -2 => matches!(err, MssqlError::Cancelled { ref name } if name == "f"),
            -3 => matches!(err, MssqlError::DeadlockVictim { .. }),
            -999 => matches!(err, MssqlError::ParameterError { .. }),
            _ => matches!(err, MssqlError::Unexpected { code: 7, .. }),
        };
        assert!(matched, "code {code}: {err:?}");
        assert_eq!(provider.idle_connections(), 0, "code {code}");
    }
    eventually("every failed connection is closed", || {
        server.open_sessions().is_empty()
    })
    .await;
}

#[tokio::test]
async fn an_announced_wait_marks_its_request_on_its_own_session_until_it_ends() {
    let server = FakeServer::start().await;
    let holder = builder(&server)
        .request_poll_interval(Some(Duration::from_millis(10)))
        .build()
        .unwrap();
    let waiter = provider(&server);
    let held = hold(&holder, "r").await;
    assert!(!held.is_requested());
    // `request` alone announces the wait: nothing on the server yet.
    let mark = waiter
        .request(&name("r"))
        .await
        .unwrap()
        .expect("mark taken");
    assert_eq!(server.locks().len(), 1);
    assert!(!held.is_requested());
    let waiting = tokio::spawn({
        let waiter = waiter.clone();
        async move { waiter.lock(&name("r"), None).await }
    });
    eventually("the wait is queued", || server.waiters().len() == 1).await;
    let spid = server.waiters()[0].spid;
    // The mark is held by the waiting session itself.
    assert!(server.locks().contains(&Held {
        resource: "r#tierlock-request".into(),
        spid,
        exclusive: false,
    }));
    eventually("the holder sees the request", || held.is_requested()).await;
    held.release().await.unwrap();
    let got = waiting.await.unwrap().unwrap().expect("granted");
    assert_eq!(got.session_id(), spid);
    // The mark went with the wait.
    assert_eq!(
        server.locks(),
        [Held {
            resource: "r".into(),
            spid,
            exclusive: true,
        }]
    );
    drop(mark);
    got.release().await.unwrap();
    assert_eq!(waiter.sessions_opened(), 1);
}

#[tokio::test]
async fn a_killed_session_fires_the_lost_signal_in_both_monitor_modes() {
    let server = FakeServer::start().await;
    for probe in [Some(Duration::from_millis(10)), None] {
        let provider = builder(&server)
            .request_poll_interval(probe)
            .keepalive_interval(Duration::from_millis(20))
            .build()
            .unwrap();
        let held = hold(&provider, "k").await;
        server.kill(held.session_id());
        tokio::time::timeout(GENEROUS, held.lost_signal().wait())
            .await
            .unwrap_or_else(|_| panic!("no lost signal with probe {probe:?}"));
        assert!(server.locks().is_empty());
        assert!(matches!(held.release().await, Err(MssqlError::Lost { .. })));
        hold(&provider, "k").await.release().await.unwrap();
    }
}

#[tokio::test]
async fn a_stalled_server_trips_the_client_bound_and_the_connection_is_dropped() {
    let server = FakeServer::start().await;
    let provider = builder(&server)
        .command_timeout(Duration::from_millis(100))
        .request_poll_interval(None)
        .build()
        .unwrap();
    let held = hold(&provider, "s").await;
    server.stall(true);
    match held.release().await {
        Err(MssqlError::CommandTimeout { command, name, .. }) => {
            assert_eq!((command, name.as_str()), ("sp_releaseapplock", "s"));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(provider.idle_connections(), 0);
    // Closing the connection ended the session, which freed the lock.
    eventually("the session ends", || server.locks().is_empty()).await;
    server.stall(false);

    // A stalled probe makes the lock lost.
    let probing = builder(&server)
        .command_timeout(Duration::from_millis(100))
        .request_poll_interval(Some(Duration::from_millis(10)))
        .build()
        .unwrap();
    let held = hold(&probing, "s").await;
    server.stall(true);
    tokio::time::timeout(GENEROUS, held.lost_signal().wait())
        .await
        .expect("no lost signal for a stalled connection");
    server.stall(false);
}

#[tokio::test]
async fn a_broken_pooled_connection_is_replaced_once() {
    let server = FakeServer::start().await;
    let provider = provider(&server);
    let held = hold(&provider, "p").await;
    let spid = held.session_id();
    held.release().await.unwrap();
    assert_eq!(provider.idle_connections(), 1);
    server.kill(spid);
    eventually("the idle session is gone", || {
        !server.open_sessions().contains(&spid)
    })
    .await;
    let again = hold(&provider, "p").await;
    assert_ne!(again.session_id(), spid);
    assert_eq!(server.logins(), 2);
    again.release().await.unwrap();
}

#[tokio::test]
async fn dropping_a_held_lock_releases_it_and_pools_its_session() {
    let server = FakeServer::start().await;
    let provider = provider(&server);
    let held = hold(&provider, "d").await;
    let spid = held.session_id();
    drop(held);
    // The next acquisition of the name waits for that release, and reuses the session.
    let again = provider
        .lock(&name("d"), Some(Instant::now()))
        .await
        .unwrap()
        .expect("the dropped lock was released first");
    assert_eq!(again.session_id(), spid);
    again.release().await.unwrap();
    assert_eq!(server.logins(), 1);
    let released = server
        .statements()
        .iter()
        .filter(|s| s.sql.contains("sp_releaseapplock"))
        .count();
    assert_eq!(released, 2);
}

#[tokio::test]
async fn a_busy_manager_hands_over_to_another_process() {
    let server = FakeServer::start().await;
    let (one, two) = (
        LockManager::new(provider(&server)),
        LockManager::new(provider(&server)),
    );
    let guard = one.lock("busy", GENEROUS).await.unwrap();
    let other = tokio::spawn(async move { two.lock("busy", GENEROUS).await.map(drop) });
    // A local waiter keeps `one` busy; the request signal must still make it hand over.
    let local = {
        let one = one.clone();
        tokio::spawn(async move { one.lock("busy", GENEROUS).await.map(drop) })
    };
    eventually("the other manager marked its request", || {
        server
            .locks()
            .iter()
            .any(|h| h.resource == "busy#tierlock-request")
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
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
}

#[tokio::test]
async fn a_pooled_connection_the_server_closed_is_skipped_without_a_round_trip() {
    let server = FakeServer::start().await;
    let provider = provider(&server);
    let held = hold(&provider, "q").await;
    let spid = held.session_id();
    held.release().await.unwrap();
    server.kill(spid);
    eventually("the idle session is gone", || {
        !server.open_sessions().contains(&spid)
    })
    .await;
    let sent = server.statements().len();
    let again = hold(&provider, "q").await;
    assert_ne!(again.session_id(), spid);
    // Nothing was sent on the dead connection: the pool saw it closed.
    assert!(server.statements()[sent..].iter().all(|s| s.spid != spid));
    again.release().await.unwrap();
}

#[tokio::test]
async fn an_idle_connection_is_closed_after_the_idle_timeout() {
    let server = FakeServer::start().await;
    let provider = builder(&server)
        .idle_timeout(Duration::from_millis(50))
        .build()
        .unwrap();
    hold(&provider, "i").await.release().await.unwrap();
    hold(&provider, "i").await.release().await.unwrap();
    assert_eq!(server.logins(), 1, "reused while fresh");
    tokio::time::sleep(Duration::from_millis(120)).await;
    hold(&provider, "i").await.release().await.unwrap();
    assert_eq!(server.logins(), 2, "an expired idle connection was reused");
}

#[tokio::test]
async fn request_polling_off_never_sees_a_request() {
    let server = FakeServer::start().await;
    let holder = builder(&server)
        .request_poll_interval(None)
        .keepalive_interval(Duration::from_millis(10))
        .build()
        .unwrap();
    let held = hold(&holder, "quiet").await;
    let waiter = provider(&server);
    let mark = waiter.request(&name("quiet")).await.unwrap();
    assert!(mark.is_some());
    let waiting = tokio::spawn(async move { waiter.lock(&name("quiet"), None).await });
    eventually("the marked wait is queued", || {
        server.locks().iter().any(|h| !h.exclusive) && server.waiters().len() == 1
    })
    .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!held.is_requested());
    // Only keepalives ran on the holder's session.
    let on_holder: Vec<String> = server
        .statements()
        .into_iter()
        .filter(|s| s.spid == held.session_id())
        .map(|s| s.sql)
        .skip_while(|sql| !sql.contains("sp_getapplock"))
        .skip(1)
        .collect();
    assert!(on_holder.len() >= 5, "{on_holder:?}");
    assert!(
        on_holder.iter().all(|sql| sql == "SELECT 1;"),
        "{on_holder:?}"
    );
    waiting.abort();
    held.release().await.unwrap();
}

fn fencing(server: &FakeServer) -> MssqlProvider {
    builder(server)
        .fencing(true)
        .build()
        .expect("valid options")
}

#[tokio::test]
async fn fencing_tokens_strictly_increase_across_providers_and_killed_sessions() {
    let server = FakeServer::start().await;
    let (a, b) = (fencing(&server), fencing(&server));
    assert!(a.fencing());
    assert!(server.fences().is_none(), "the table starts missing");
    let mut last = 0;
    for i in 0..20 {
        let provider = if i % 2 == 0 { &a } else { &b };
        let held = hold(provider, "ledger").await;
        let token = held.fencing_token().expect("fencing is on");
        assert!(token > last, "acquisition {i}: {token} after {last}");
        last = token;
        held.release().await.unwrap();
    }
    assert_eq!(
        server.fences().unwrap()["ledger"],
        20,
        "created on first use"
    );
    // The holder's session is killed: the next holder's token is larger.
    let held = hold(&a, "ledger").await;
    let old = held.fencing_token().unwrap();
    server.kill(held.session_id());
    tokio::time::timeout(GENEROUS, held.lost_signal().wait())
        .await
        .expect("lost");
    let taken = hold(&b, "ledger").await;
    assert!(taken.fencing_token().unwrap() > old);
    taken.release().await.unwrap();
    // Without fencing: no token, no statement on the table.
    let plain = hold(&provider(&server), "ledger").await;
    assert_eq!(plain.fencing_token(), None);
    plain.release().await.unwrap();
    assert_eq!(server.fences().unwrap()["ledger"], 22);
}

#[tokio::test]
async fn the_counter_advance_runs_in_the_holding_session_right_after_the_grant() {
    let server = FakeServer::start().await;
    let provider = builder(&server)
        .namespace("app:")
        .fencing(true)
        .fencing_table("locks.fence")
        .build()
        .unwrap();
    let held = hold(&provider, "Job").await;
    let log: Vec<_> = server
        .statements()
        .into_iter()
        .filter(|s| s.spid == held.session_id())
        .collect();
    let kinds: Vec<&str> = log
        .iter()
        .map(|s| s.sql.split_whitespace().next().unwrap_or(""))
        .collect();
    // The server kind (first connection), grant, MERGE (no table yet), CREATE, MERGE: then
    // the lock is handed out.
    assert_eq!(
        kinds,
        ["SELECT", "DECLARE", "MERGE", "IF", "MERGE"],
        "{log:?}"
    );
    assert!(log[2].sql.starts_with("MERGE locks.fence WITH (HOLDLOCK)"));
    assert!(log[3].sql.contains("CREATE TABLE locks.fence"));
    assert_eq!(log[4].params, [Value::Str("app:Job".into())]);
    assert_eq!(held.fencing_token(), Some(1));
    held.release().await.unwrap();
}

#[tokio::test]
async fn a_concurrent_creation_of_the_table_is_no_error() {
    let server = FakeServer::start().await;
    server.create_races(true);
    let held = hold(&fencing(&server), "race").await;
    assert_eq!(held.fencing_token(), Some(1));
    held.release().await.unwrap();
}

#[tokio::test]
async fn a_failing_counter_advance_is_a_typed_error_and_releases_the_lock() {
    let server = FakeServer::start().await;
    let provider = fencing(&server);
    let check = |err: MssqlError, cause: &str| {
        match &err {
            MssqlError::Fencing { name, table, .. } => {
                assert_eq!(
                    (name.as_str(), table.as_str()),
                    ("doomed", "dbo.tierlock_fence")
                );
            }
            other => panic!("{other:?}"),
        }
        let source = std::error::Error::source(&err).map(ToString::to_string);
        assert!(
            source.as_deref().is_some_and(|s| s.contains(cause)),
            "{source:?}"
        );
    };
    // The table is missing and may not be created.
    server.deny_create(true);
    let err = provider.lock(&name("doomed"), None).await.unwrap_err();
    check(err, "creating the fencing table");
    assert!(server.locks().is_empty(), "the lock stayed held");
    server.deny_create(false);
    // The table exists, the statement fails (a constraint, a permission, …).
    hold(&provider, "doomed").await.release().await.unwrap();
    server.fail_next_fence(229, "The MERGE permission was denied");
    let err = provider
        .lock(&name("doomed"), Some(Instant::now()))
        .await
        .unwrap_err();
    check(err, "the fencing counter advance");
    assert!(server.locks().is_empty());
    // A counter edited into nonsense is refused rather than handed out.
    server.set_fence("doomed", -5);
    let err = provider.lock(&name("doomed"), None).await.unwrap_err();
    check(err, "not a positive token");
    assert!(server.locks().is_empty());
    // Each time the session was clean: released with sp_releaseapplock and pooled.
    assert_eq!(provider.idle_connections(), 1);
    assert_eq!(server.logins(), 1);
    // Through a manager: a provider error naming the lock.
    let locks = LockManager::new(provider);
    let err = locks.lock("doomed", GENEROUS).await.unwrap_err();
    assert!(
        matches!(err, tierlock_core::LockError::Provider { ref name, .. } if name == "doomed"),
        "{err:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelled_fencing_acquisitions_never_leak_a_lock_or_repeat_a_token() {
    let server = FakeServer::start().await;
    let provider = fencing(&server);
    hold(&provider, "cut").await.release().await.unwrap(); // creates the table
    let counter = || u64::try_from(server.fences().unwrap()["cut"]).unwrap();
    let mut last = counter();
    let mut completed = 0;
    let cut_name = name("cut");
    for step in 0..120u64 {
        let cut = Duration::from_micros(step * 50);
        let attempt = provider.lock(&cut_name, Some(Instant::now() + GENEROUS));
        match tokio::time::timeout(cut, attempt).await {
            Ok(held) => {
                let held = held.unwrap().expect("free");
                let token = held.fencing_token().unwrap();
                assert!(token > last, "{token} after {last}");
                last = token;
                completed += 1;
                held.release().await.unwrap();
            }
            Err(_) => {
                eventually("a cut acquisition leaves nothing held", || {
                    server.locks().is_empty()
                })
                .await;
                // A counter advanced by a cut acquisition is skipped, never handed out again.
                last = last.max(counter());
            }
        }
    }
    assert!(completed > 0, "no acquisition completed");
}
