//! The SQL Server provider in separate OS processes against the fake TDS server of the
//! provider's own tests (`crates/tierlock-mssql/tests/support/fake_tds.rs`), which this test
//! process runs on a loopback port: no SQL Server is needed, so these always run. The fake
//! keeps applocks per session and frees them when a connection closes, as SQL Server does, so
//! a SIGKILLed worker's lock is freed by the kernel closing its socket. Real-server semantics
//! are tested by `servers.rs` when `TIERLOCK_MSSQL_URL` is set.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../../tierlock-mssql/tests/support/fake_tds.rs"]
mod fake_tds;

use std::path::Path;

use fake_tds::FakeServer;
use tierlock_testkit::multiprocess::{self, PATIENCE, Worker};

fn worker() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_tierlock-worker"))
}

async fn provider(kind: &str) -> (FakeServer, Vec<String>) {
    let server = FakeServer::start().await;
    let args = vec![
        kind.to_owned(),
        server.connection_string(),
        "mp:".to_owned(),
    ];
    (server, args)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fencing_tokens_strictly_increase_across_processes() {
    let (server, provider) = provider("mssql-fencing").await;
    multiprocess::tokens_increase_across_processes(worker(), &provider, &provider, 100).await;
    assert_eq!(
        server.fences().expect("the table was created")["mp:mp:tokens"],
        100
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fencing_tokens_strictly_increase_across_a_killed_holder() {
    let (_server, provider) = provider("mssql-fencing").await;
    let tokens = multiprocess::tokens_increase_across_a_killed_holder(worker(), &provider).await;
    assert_eq!(tokens, [1, 2, 3]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_holder_frees_the_lock() {
    let (_server, provider) = provider("mssql").await;
    let took = multiprocess::killed_holder_is_released(worker(), &provider).await;
    eprintln!("the waiter got the lock {took:?} after the holder was killed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_holder_frees_the_lock_on_babelfish() {
    let server = FakeServer::babelfish().await;
    let provider = vec![
        "mssql".to_owned(),
        server.connection_string(),
        "mp:".to_owned(),
    ];
    let took = multiprocess::killed_holder_is_released(worker(), &provider).await;
    eprintln!("the waiter got the lock {took:?} after the holder was killed");
    assert_eq!(server.crashes(), 0);
}

/// A busy process hands the lock over to a fresh process whose sessions are slow to start
/// (300 ms per login, as on a real server): within 1 s plus the measured set-up time, which
/// holds only if the waiter's one session is opened before its mark becomes visible.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_process_hands_the_lock_over_to_a_cold_process() {
    let (server, provider) = provider("mssql").await;
    server.delay_session_start(std::time::Duration::from_millis(300));
    let took = multiprocess::busy_process_hands_over(worker(), &provider).await;
    eprintln!("the asking process waited {took:?}");
}

/// A process killed with SIGKILL while it waits leaves no ghost: the server ends its session
/// when the connection closes, with its queued request and its request mark, and the lock is
/// never granted to it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_waiter_leaves_no_ghost_waiter() {
    for babelfish in [false, true] {
        let server = if babelfish {
            FakeServer::babelfish().await
        } else {
            FakeServer::start().await
        };
        let args = vec![
            "mssql".to_owned(),
            server.connection_string(),
            "mp:".to_owned(),
        ];
        let holder = tierlock_mssql::MssqlProvider::builder(&server.connection_string())
            .unwrap()
            .namespace("mp:")
            .build()
            .unwrap();
        let name = tierlock_core::LockName::new("mp:ghost").unwrap();
        let held = holder.lock(&name, None).await.unwrap().expect("free");
        let mut waiting = Worker::spawn(
            worker(),
            &args,
            &["hold".into(), "mp:ghost".into(), "60000".into()],
        );
        waiting.expect("waiting", PATIENCE).await;
        // Queued with its mark: the marked wait. (On Babelfish the worker's first, no-wait
        // attempt is sent as a 1 ms wait, which queues briefly without a mark.)
        let marked_wait = || {
            let waiters = server.waiters();
            let locks = server.locks();
            match waiters.as_slice() {
                [w] if locks.iter().any(|h| h.spid == w.spid && !h.exclusive) => Some(w.spid),
                _ => None,
            }
        };
        let queued = until(|| marked_wait().is_some()).await;
        assert!(
            queued,
            "the worker never queued with its mark, babelfish={babelfish}"
        );
        let ghost = marked_wait().expect("still queued: only the kill below ends the wait");
        waiting.kill().await;
        assert!(
            until(|| !server.open_sessions().contains(&ghost)).await,
            "the dead waiter's session stayed"
        );
        assert!(server.waiters().is_empty(), "babelfish={babelfish}");
        assert!(server.locks().iter().all(|h| h.spid != ghost));
        held.release().await.unwrap();
        let next = holder.lock(&name, None).await.unwrap().expect("free again");
        assert!(server.locks().iter().all(|h| h.spid != ghost));
        next.release().await.unwrap();
    }
}

/// Polls `condition` for up to 10 s.
async fn until(mut condition: impl FnMut() -> bool) -> bool {
    let start = std::time::Instant::now();
    while !condition() {
        if start.elapsed() > std::time::Duration::from_secs(10) {
            return false;
        }
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    true
}
