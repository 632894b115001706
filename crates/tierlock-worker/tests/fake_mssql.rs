//! The SQL Server provider in separate OS processes against the fake TDS server of the
//! provider's own tests (`crates/tierlock-mssql/tests/support/fake_tds.rs`), which this test
//! process runs on a loopback port: no SQL Server is needed, so these always run. The fake
//! keeps applocks per session and frees them when a connection closes, as SQL Server does, so
//! a SIGKILLed worker's lock is freed by the kernel closing its socket. Real-server semantics
//! are tested by `servers.rs` when `TIERLOCK_MSSQL_URL` is set.

#[path = "../../tierlock-mssql/tests/support/fake_tds.rs"]
mod fake_tds;

use std::path::Path;

use fake_tds::FakeServer;
use tierlock_testkit::multiprocess;

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
