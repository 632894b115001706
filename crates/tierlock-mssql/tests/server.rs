//! Tests against a real SQL Server, named by `TIERLOCK_MSSQL_URL` (an ADO.NET or JDBC
//! connection string, e.g. `server=tcp:127.0.0.1,1433;user id=sa;password=…;
//! TrustServerCertificate=true`). Without it every test prints that it was skipped (and fails
//! when `TIERLOCK_REQUIRE_SERVERS=1`).
//!
//! The lost-lock test runs `KILL`, so the login needs `ALTER ANY CONNECTION` (e.g. `sa` on a
//! throwaway server).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tierlock_core::{LockName, Provider};
use tierlock_mssql::{MssqlError, MssqlProvider, ServerKind};
use tokio_util::compat::TokioAsyncWriteCompatExt;

const VAR: &str = "TIERLOCK_MSSQL_URL";
const GENEROUS: Duration = Duration::from_secs(10);

/// A namespace no other test, run or process uses.
fn fresh_namespace() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!(
        "tierlock-test:{}:{nanos}:{}:",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

fn provider_in(url: &str, namespace: &str) -> MssqlProvider {
    MssqlProvider::builder(url)
        .expect("TIERLOCK_MSSQL_URL does not parse")
        .namespace(namespace)
        .build()
        .expect("default options are valid")
}

tierlock_testkit::conformance_tests!(requires_env = "TIERLOCK_MSSQL_URL", || async {
    let url = std::env::var("TIERLOCK_MSSQL_URL").expect("checked by the battery");
    Arc::new(provider_in(&url, &fresh_namespace())) as Arc<dyn Provider>
});

fn name(s: &str) -> LockName {
    LockName::new(s).expect("valid test name")
}

async fn hold(provider: &MssqlProvider, lock: &str) -> tierlock_mssql::MssqlLock {
    match provider
        .lock(&name(lock), Some(Instant::now() + GENEROUS))
        .await
    {
        Ok(Some(held)) => held,
        other => panic!("could not take {lock:?}: {other:?}"),
    }
}

async fn is_free(provider: &MssqlProvider, lock: &str) -> bool {
    match provider.lock(&name(lock), Some(Instant::now())).await {
        Ok(Some(held)) => {
            held.release().await.expect("release failed");
            true
        }
        Ok(None) => false,
        Err(err) => panic!("try-lock of {lock:?} failed: {err}"),
    }
}

/// Waits until `condition` holds, failing after [`GENEROUS`].
async fn eventually(what: &str, mut condition: impl FnMut() -> bool) {
    let start = Instant::now();
    while !condition() {
        assert!(start.elapsed() < GENEROUS, "never happened: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A separate administrative connection, to kill sessions.
async fn admin(url: &str) -> tiberius::Client<tokio_util::compat::Compat<tokio::net::TcpStream>> {
    let config = tierlock_mssql::parse_connection_string(url).expect("valid URL");
    let tcp = tokio::net::TcpStream::connect(config.get_addr())
        .await
        .expect("admin TCP connection");
    tcp.set_nodelay(true).expect("nodelay");
    tiberius::Client::connect(config, tcp.compat_write())
        .await
        .expect("admin login")
}

#[tokio::test]
async fn held_elsewhere_times_out_and_keeps_the_connection() {
    let Some(url) = tierlock_testkit::server_url(VAR) else {
        return;
    };
    let ns = fresh_namespace();
    let (a, b) = (provider_in(&url, &ns), provider_in(&url, &ns));
    let held = hold(&a, "timeout").await;
    let budget = Duration::from_millis(300);
    let start = Instant::now();
    let got = b.lock(&name("timeout"), Some(start + budget)).await;
    assert!(matches!(got, Ok(None)), "{got:?}");
    assert!(
        start.elapsed() >= budget,
        "gave up early: {:?}",
        start.elapsed()
    );
    // The waiting connection did nothing wrong: it went back to the pool (on Babelfish a
    // session that had a request refused is closed instead).
    let pooled = usize::from(b.server_kind() != Some(ServerKind::Babelfish));
    assert_eq!(b.idle_connections(), pooled);
    held.release().await.expect("release");
    assert_eq!(a.idle_connections(), 1);
    assert!(is_free(&b, "timeout").await);
}

#[tokio::test]
async fn long_names_are_hashed_and_stay_distinct() {
    let Some(url) = tierlock_testkit::server_url(VAR) else {
        return;
    };
    let ns = fresh_namespace();
    let (a, b) = (provider_in(&url, &ns), provider_in(&url, &ns));
    let shared_prefix = "p".repeat(300);
    let first = hold(&a, &format!("{shared_prefix}-1")).await;
    assert!(is_free(&b, &format!("{shared_prefix}-2")).await);
    assert!(!is_free(&b, &format!("{shared_prefix}-1")).await);
    assert_eq!(first.resource().encode_utf16().count(), 255);
    first.release().await.expect("release");

    // Without a namespace, 255 characters pass through and 256 are hashed: two locks.
    let (c, d) = (provider_in(&url, ""), provider_in(&url, ""));
    let at_limit = format!("{}{}", ns.replace(':', "-"), "x".repeat(255 - ns.len()));
    let over = format!("{at_limit}x");
    assert_eq!(c.resource_name(&at_limit), at_limit);
    assert_ne!(c.resource_name(&over), over);
    let held = hold(&c, &at_limit).await;
    assert!(is_free(&d, &over).await);
    assert!(!is_free(&d, &at_limit).await);
    held.release().await.expect("release");
}

#[tokio::test]
async fn an_announced_wait_marks_its_request_and_the_holder_sees_it() {
    let Some(url) = tierlock_testkit::server_url(VAR) else {
        return;
    };
    let ns = fresh_namespace();
    let (holder, waiter) = (provider_in(&url, &ns), provider_in(&url, &ns));
    let held = hold(&holder, "requested").await;
    assert!(!held.is_requested());
    let mark = waiter
        .request(&name("requested"))
        .await
        .expect("request failed")
        .expect("request mark not taken");
    let waiting = tokio::spawn({
        let waiter = waiter.clone();
        async move { waiter.lock(&name("requested"), None).await }
    });
    eventually("the holder sees the request", || held.is_requested()).await;
    held.release().await.expect("release");
    let got = tokio::time::timeout(GENEROUS, waiting)
        .await
        .expect("the waiter was not granted")
        .expect("the waiter panicked")
        .expect("lock failed")
        .expect("granted");
    drop(mark);
    // Mark and wait took one session: the first attempt's, reused.
    assert!(
        waiter.sessions_opened()
            <= 1 + u64::from(waiter.server_kind() == Some(ServerKind::Babelfish))
    );
    got.release().await.expect("release");
}

#[tokio::test]
async fn killed_session_fires_the_lost_signal() {
    let Some(url) = tierlock_testkit::server_url(VAR) else {
        return;
    };
    let mut admin = admin(&url).await;
    // Both monitor modes: the request probe, and the plain keepalive.
    for probe in [Some(Duration::from_millis(100)), None] {
        let ns = fresh_namespace();
        let holder = MssqlProvider::builder(&url)
            .expect("valid URL")
            .namespace(&ns)
            .request_poll_interval(probe)
            .keepalive_interval(Duration::from_millis(200))
            .build()
            .expect("valid options");
        let other = provider_in(&url, &ns);
        let held = hold(&holder, "killed").await;
        assert!(!is_free(&other, "killed").await);
        let kill = format!("KILL {};", held.session_id());
        let killed = async { admin.simple_query(kill).await?.into_results().await }.await;
        killed.expect("KILL failed: the test login needs ALTER ANY CONNECTION");
        tokio::time::timeout(GENEROUS, held.lost_signal().wait())
            .await
            .unwrap_or_else(|_| panic!("no lost signal (probe {probe:?})"));
        // The server freed the lock with the session: another party takes it.
        let taken = hold(&other, "killed").await;
        match held.release().await {
            Err(MssqlError::Lost { name }) => assert_eq!(name, "killed"),
            other => panic!("release of a lost lock: {other:?}"),
        }
        taken.release().await.expect("release");
        // The next acquisition by the holder's provider starts cleanly.
        assert!(is_free(&holder, "killed").await);
    }
}

#[tokio::test]
async fn dropped_waiter_leaves_nothing_held() {
    let Some(url) = tierlock_testkit::server_url(VAR) else {
        return;
    };
    let ns = fresh_namespace();
    let (a, b, c) = (
        provider_in(&url, &ns),
        provider_in(&url, &ns),
        provider_in(&url, &ns),
    );
    let held = hold(&a, "dropped").await;
    let waited =
        tokio::time::timeout(Duration::from_millis(300), b.lock(&name("dropped"), None)).await;
    assert!(waited.is_err(), "the waiter should still be waiting");
    // Its connection was closed, not pooled.
    assert_eq!(b.idle_connections(), 0);
    held.release().await.expect("release");
    let next = hold(&c, "dropped").await;
    next.release().await.expect("release");
    assert!(is_free(&b, "dropped").await);
}

#[tokio::test]
async fn dropping_a_held_lock_frees_it() {
    let Some(url) = tierlock_testkit::server_url(VAR) else {
        return;
    };
    let ns = fresh_namespace();
    let (a, b) = (provider_in(&url, &ns), provider_in(&url, &ns));
    drop(hold(&a, "dropped-holder").await);
    // The connection is closed in the background; the server then ends the session.
    let got = b
        .lock(&name("dropped-holder"), Some(Instant::now() + GENEROUS))
        .await
        .expect("lock failed")
        .expect("the dropped lock stayed held");
    got.release().await.expect("release");
    // Released in the background, and its connection pooled.
    assert_eq!(
        a.idle_connections(),
        1,
        "a dropped lock's connection was not pooled"
    );
}

#[tokio::test]
async fn fencing_tokens_strictly_increase_across_providers_and_a_killed_session() {
    let Some(url) = tierlock_testkit::server_url(VAR) else {
        return;
    };
    let mut admin = admin(&url).await;
    // A table of this test's own, created on first use and dropped at the end.
    let table = format!(
        "dbo.tierlock_fence_test_{}",
        fresh_namespace().replace(|c: char| !c.is_ascii_alphanumeric(), "_")
    );
    let ns = fresh_namespace();
    let fencing = || {
        MssqlProvider::builder(&url)
            .expect("valid URL")
            .namespace(&ns)
            .fencing(true)
            .fencing_table(&table)
            .build()
            .expect("valid options")
    };
    let (a, b) = (fencing(), fencing());
    let mut last = 0;
    for i in 0..20 {
        let provider = if i % 2 == 0 { &a } else { &b };
        let held = hold(provider, "ledger").await;
        let token = held.fencing_token().expect("fencing is on");
        assert!(token > last, "acquisition {i}: {token} after {last}");
        last = token;
        held.release().await.expect("release");
    }
    let held = hold(&a, "ledger").await;
    let old = held.fencing_token().expect("a token");
    let kill = format!("KILL {};", held.session_id());
    let killed = async { admin.simple_query(kill).await?.into_results().await }.await;
    killed.expect("KILL failed: the test login needs ALTER ANY CONNECTION");
    tokio::time::timeout(GENEROUS, held.lost_signal().wait())
        .await
        .expect("no lost signal");
    let taken = hold(&b, "ledger").await;
    assert!(taken.fencing_token().expect("a token") > old);
    taken.release().await.expect("release");
    let drop_table = format!("DROP TABLE {table};");
    let dropped = async { admin.simple_query(drop_table).await?.into_results().await }.await;
    dropped.expect("DROP TABLE failed");
}
