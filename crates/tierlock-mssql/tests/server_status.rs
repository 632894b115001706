//! `MssqlProvider::held_locks` against a real SQL Server (`TIERLOCK_MSSQL_URL`; the login needs
//! `VIEW SERVER STATE`): skipped, with a message, when the variable is not set. The same code
//! runs against the fake server in `fake_status.rs`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tierlock_core::{LockName, Provider};
use tierlock_mssql::MssqlProvider;
use tierlock_testkit::server_url;

const VAR: &str = "TIERLOCK_MSSQL_URL";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lists_a_held_applock_and_its_waiter() {
    let Some(url) = server_url(VAR) else { return };
    // Short enough that the view shows namespace and name whole (32 characters).
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let namespace = format!("st{}:{nanos:x}:", std::process::id() % 10_000);
    let provider = || {
        MssqlProvider::builder(&url)
            .unwrap()
            .namespace(namespace.clone())
            .build()
            .unwrap()
    };
    let (holder, waiter, lister) = (provider(), provider(), provider());
    let lock = LockName::new("job").unwrap();
    let held = holder
        .lock(&lock, Some(Instant::now()))
        .await
        .unwrap()
        .expect("free");
    let mine = |list: &[tierlock_core::HeldLock]| {
        list.iter()
            .find(|h| h.name.as_deref() == Some("job") && h.key.contains(&namespace))
            .cloned()
    };
    let listed = lister.held_locks().await.unwrap();
    let seen = mine(&listed).unwrap_or_else(|| panic!("{listed:#?}"));
    assert!(
        seen.holder.as_deref().unwrap().starts_with("session "),
        "{seen:?}"
    );
    assert_eq!(seen.waiters, Some(0));

    let wait = {
        let waiter = waiter.clone();
        let lock = lock.clone();
        tokio::spawn(async move {
            waiter
                .acquire(&lock, Some(Instant::now() + Duration::from_secs(30)))
                .await
        })
    };
    let start = Instant::now();
    while mine(&lister.held_locks().await.unwrap()).and_then(|h| h.waiters) != Some(1) {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "the waiter was never counted"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    held.release().await.unwrap();
    let next = wait.await.unwrap().unwrap().expect("the waiter gets it");
    next.release().await.unwrap();
    assert!(mine(&lister.held_locks().await.unwrap()).is_none());
}
