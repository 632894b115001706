//! `MssqlProvider::held_locks` against the fake TDS server (see `support/fake_tds.rs`), which
//! answers `sys.dm_tran_locks` from its applock table the way SQL Server describes APPLICATION
//! resources (`0:[<first 32 characters>]:(<hash>)`). The query's text and the parsing of the
//! view are tested here; that SQL Server's view says the same is for `server.rs` to confirm.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "support/fake_tds.rs"]
mod fake_tds;

use std::time::{Duration, Instant};

use fake_tds::FakeServer;
use tierlock_core::{LockName, Provider};
use tierlock_mssql::MssqlProvider;

const GENEROUS: Duration = Duration::from_secs(10);

fn provider(server: &FakeServer, namespace: &str) -> MssqlProvider {
    MssqlProvider::builder(&server.connection_string())
        .expect("valid connection string")
        .namespace(namespace)
        .build()
        .expect("valid options")
}

fn name(s: &str) -> LockName {
    LockName::new(s).expect("valid name")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lists_held_applocks_with_session_and_waiters() {
    let server = FakeServer::start().await;
    let (holder, waiter, lister) = (
        provider(&server, "app:"),
        provider(&server, "app:"),
        provider(&server, "app:"),
    );
    assert!(lister.held_locks().await.unwrap().is_empty());

    let job = holder
        .lock(&name("job"), Some(Instant::now()))
        .await
        .unwrap()
        .expect("free");
    let long_name = "x".repeat(40);
    let long = holder
        .lock(&name(&long_name), Some(Instant::now()))
        .await
        .unwrap()
        .expect("free");
    let other_ns = provider(&server, "other:")
        .lock(&name("job"), Some(Instant::now()))
        .await
        .unwrap()
        .expect("free");

    let held = lister.held_locks().await.unwrap();
    assert_eq!(held.len(), 3, "{held:#?}");
    let mine = held
        .iter()
        .find(|h| h.name.as_deref() == Some("job"))
        .unwrap_or_else(|| panic!("{held:#?}"));
    let spid = server
        .locks()
        .into_iter()
        .find(|h| h.resource == "app:job")
        .unwrap()
        .spid;
    assert_eq!(mine.holder, Some(format!("session {spid}")));
    assert!(mine.key.starts_with("0:[app:job]:("), "{mine:?}");
    assert_eq!(mine.waiters, Some(0));
    assert_eq!(mine.fencing_token, None);
    let cut = held
        .iter()
        .find(|h| {
            h.name_hint
                .as_deref()
                .is_some_and(|n| n.starts_with("app:x"))
        })
        .unwrap_or_else(|| panic!("{held:#?}"));
    assert_eq!(
        cut.name, None,
        "SQL Server shows 32 characters of a resource"
    );
    assert_eq!(cut.name_hint.as_deref().unwrap().chars().count(), 32);
    assert!(
        held.iter()
            .any(|h| h.name.is_none() && h.name_hint.as_deref() == Some("other:job")),
        "{held:#?}"
    );

    // A waiting process: its request mark (a shared applock) is not listed, its wait counted.
    let mark = waiter.request(&name("job")).await.unwrap();
    let wait = {
        let waiter = waiter.clone();
        tokio::spawn(async move {
            waiter
                .lock(&name("job"), Some(Instant::now() + GENEROUS))
                .await
        })
    };
    let start = Instant::now();
    loop {
        let held = lister.held_locks().await.unwrap();
        assert_eq!(held.len(), 3, "{held:#?}");
        let mine = held
            .iter()
            .find(|h| h.name.as_deref() == Some("job"))
            .unwrap();
        if mine.waiters == Some(1) {
            break;
        }
        assert!(start.elapsed() < GENEROUS, "the waiter was never counted");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(!wait.is_finished(), "listing disturbed the holder");

    job.release().await.unwrap();
    let next = wait.await.unwrap().unwrap().expect("the waiter gets it");
    drop(mark);
    long.release().await.unwrap();
    other_ns.release().await.unwrap();
    let held = lister.held_locks().await.unwrap();
    assert_eq!(held.len(), 1, "{held:#?}");
    assert_ne!(held[0].holder, Some(format!("session {spid}")));
    next.release().await.unwrap();
    assert!(lister.held_locks().await.unwrap().is_empty());
    assert!(
        server
            .statements()
            .iter()
            .any(|s| s.sql.contains("sys.dm_tran_locks")),
    );
}
