//! A process killed with SIGKILL while it waits for a PostgreSQL advisory lock must not leave a
//! ghost waiter behind (`TIERLOCK_PG_URL`; skipped without it).
//!
//! A backend blocked in `pg_advisory_lock` does not read its socket, so it does not notice that
//! its client is gone: it stays queued and, when its turn comes, is granted the lock, which it
//! holds until it tries to answer and finds the socket closed. With
//! `client_connection_check_interval` (PostgreSQL 14 and later, which the provider sets to 1 s
//! on its sessions) the backend checks the socket while it waits and exits.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tierlock_core::{LockName, Provider};
use tierlock_postgres::{PostgresProvider, lock_key, request_key};
use tierlock_testkit::multiprocess::{PATIENCE, Worker};
use tierlock_testkit::server_url;
use tokio_postgres::{Client, NoTls};

fn worker() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_tierlock-worker"))
}

fn namespace(test: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("tierlock-ghost:{test}:{}:{nanos}", std::process::id())
}

async fn admin(url: &str) -> Client {
    let (client, connection) = tokio_postgres::connect(url, NoTls).await.unwrap();
    tokio::spawn(connection);
    client
}

/// `(pid, granted)` of the sessions with an advisory lock on `key`.
async fn on_key(admin: &Client, key: i64) -> Vec<(i32, bool)> {
    let bits = key as u64;
    let (classid, objid) = ((bits >> 32) as u32, bits as u32);
    admin
        .query(
            "SELECT pid, granted FROM pg_locks WHERE locktype = 'advisory' \
             AND classid = $1 AND objid = $2 AND objsubid = 1 ORDER BY pid",
            &[&classid, &objid],
        )
        .await
        .unwrap()
        .into_iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect()
}

/// The wait event of backend `pid`, or `None` if it is gone.
async fn backend(admin: &Client, pid: i32) -> Option<(Option<String>, Option<String>)> {
    admin
        .query_opt(
            "SELECT wait_event_type, wait_event FROM pg_stat_activity WHERE pid = $1",
            &[&pid],
        )
        .await
        .unwrap()
        .map(|row| (row.get(0), row.get(1)))
}

async fn within<F, Fut>(limit: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    while !check().await {
        if start.elapsed() > limit {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    true
}

/// Holds `mp:ghost` in this process, starts a worker (provider `kind`) that waits for it, and
/// kills the worker once its wait (and request mark) are queued. Returns the dead waiter's pid.
async fn kill_a_waiter(
    url: &str,
    ns: &str,
    kind: &str,
) -> (
    Client,
    PostgresProvider,
    Box<dyn tierlock_core::ExternalLock>,
    i32,
) {
    let admin = admin(url).await;
    let holder = PostgresProvider::builder(url)
        .namespace(ns)
        .build()
        .unwrap();
    let name = LockName::new("mp:ghost").unwrap();
    let held = holder
        .acquire(&name, Some(Instant::now()))
        .await
        .unwrap()
        .expect("free");
    let args = vec![kind.to_owned(), url.to_owned(), ns.to_owned()];
    let mode = ["hold", "mp:ghost", "600000"].map(str::to_owned);
    let mut waiting = Worker::spawn(worker(), &args, &mode);
    waiting.expect("waiting", PATIENCE).await;
    let key = lock_key(ns, "mp:ghost");
    let queued = within(PATIENCE, || async {
        on_key(&admin, key)
            .await
            .iter()
            .any(|(_, granted)| !granted)
    })
    .await;
    assert!(queued, "the worker never queued");
    let ghost = on_key(&admin, key)
        .await
        .into_iter()
        .find(|(_, granted)| !granted)
        .map(|(pid, _)| pid)
        .expect("a waiter");
    // Its request mark is on the same session.
    let marks = on_key(&admin, request_key(ns, "mp:ghost")).await;
    assert_eq!(marks, [(ghost, true)]);
    waiting.kill().await;
    (admin, holder, held, ghost)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_waiter_leaves_the_queue_within_the_client_check_interval() {
    let Some(url) = server_url("TIERLOCK_PG_URL") else {
        return;
    };
    let ns = namespace("checked");
    let (admin, holder, held, ghost) = kill_a_waiter(&url, &ns, "postgres").await;
    let killed = Instant::now();
    let gone = within(Duration::from_secs(5), || async {
        backend(&admin, ghost).await.is_none()
    })
    .await;
    let after = killed.elapsed();
    assert!(
        gone,
        "the dead waiter's backend stayed: {:?}",
        backend(&admin, ghost).await
    );
    eprintln!("the dead waiter's backend exited {after:?} after the kill");
    let key = lock_key(&ns, "mp:ghost");
    assert_eq!(
        on_key(&admin, key).await.len(),
        1,
        "only the holder is left"
    );
    assert!(
        on_key(&admin, request_key(&ns, "mp:ghost"))
            .await
            .is_empty()
    );
    held.release().await.unwrap();
    // Nobody was granted the lock: it is free at once.
    let name = LockName::new("mp:ghost").unwrap();
    let again = holder.acquire(&name, Some(Instant::now())).await.unwrap();
    again
        .expect("free after the holder released")
        .release()
        .await
        .unwrap();
}

/// What happens without the setting (and on PostgreSQL 13 and older): the dead waiter stays
/// queued, and is granted the lock when the holder releases it, until its backend notices.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_client_check_a_killed_waiter_stays_queued_until_its_turn() {
    let Some(url) = server_url("TIERLOCK_PG_URL") else {
        return;
    };
    let ns = namespace("unchecked");
    let (admin, holder, held, ghost) = kill_a_waiter(&url, &ns, "postgres-unchecked").await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let waiting = backend(&admin, ghost).await;
    assert_eq!(
        waiting,
        Some((Some("Lock".to_owned()), Some("advisory".to_owned()))),
        "the dead waiter left the queue by itself"
    );
    held.release().await.unwrap();
    // The ghost is granted the lock, then finds its client gone and exits.
    let name = LockName::new("mp:ghost").unwrap();
    let started = Instant::now();
    let freed = within(PATIENCE, || async {
        backend(&admin, ghost).await.is_none()
    })
    .await;
    assert!(freed, "the ghost never exited");
    let again = holder
        .acquire(&name, Some(Instant::now() + Duration::from_secs(10)))
        .await;
    again
        .unwrap()
        .expect("free after the ghost went")
        .release()
        .await
        .unwrap();
    eprintln!(
        "without the check, the ghost held the queue until its turn, then exited {:?} after the release",
        started.elapsed()
    );
}
