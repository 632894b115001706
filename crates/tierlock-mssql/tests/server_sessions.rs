//! Sessions and names against a real SQL Server or Babelfish, named by `TIERLOCK_MSSQL_URL` (see
//! `server.rs`; skipped without it): sessions per waiter and after a hand-back, single
//! attempts on a held lock (`-999` on Babelfish), and interop with .NET DistributedLock names.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tierlock_core::LockManager;
use tierlock_mssql::{MssqlProvider, Naming, ServerKind, distributed_lock_resource, tiberius};
use tokio_util::compat::{Compat, TokioAsyncWriteCompatExt};

const VAR: &str = "TIERLOCK_MSSQL_URL";
const GENEROUS: Duration = Duration::from_secs(10);

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

async fn provider(url: &str, namespace: &str) -> MssqlProvider {
    MssqlProvider::builder(url)
        .expect("TIERLOCK_MSSQL_URL does not parse")
        .namespace(namespace)
        .request_poll_interval(Duration::from_millis(20))
        .connect()
        .await
        .expect("cannot connect")
}

/// One session per cold waiter on SQL Server (two on Babelfish, whose refused first attempt's
/// session is closed), and none for re-acquiring after a hand-back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_per_waiter_and_after_a_hand_back() {
    let Some(url) = tierlock_testkit::server_url(VAR) else {
        return;
    };
    let ns = fresh_namespace();
    let a_provider = provider(&url, &ns).await;
    let a = LockManager::new(a_provider.clone());
    let b_provider = provider(&url, &ns).await;
    let b = LockManager::new(b_provider.clone());
    let babelfish = b_provider.server_kind() == Some(ServerKind::Babelfish);
    let guard = a.lock("sessions", GENEROUS).await.unwrap();
    let opened = b_provider.sessions_opened();
    let waiting = tokio::spawn({
        let b = b.clone();
        async move { b.lock("sessions", GENEROUS).await }
    });
    // A local waiter makes a's release a turn boundary; b's mark makes it a hand-back.
    let local = tokio::spawn({
        let a = a.clone();
        async move { a.lock("sessions", GENEROUS).await.map(drop) }
    });
    let started = Instant::now();
    while a.stats().waiting != 1 || started.elapsed() < Duration::from_millis(500) {
        assert!(started.elapsed() < GENEROUS);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let a_opened = a_provider.sessions_opened();
    drop(guard);
    let b_guard = waiting.await.unwrap().unwrap();
    let cold = b_provider.sessions_opened() - opened;
    eprintln!("the waiter opened {cold} sessions beyond its first (Babelfish: {babelfish})");
    assert!(cold <= if babelfish { 2 } else { 1 }, "{cold}");
    tokio::time::sleep(Duration::from_millis(200)).await;
    b_guard.release().await.unwrap();
    local.await.unwrap().unwrap();
    assert_eq!(a.stats().handbacks, 1);
    let after = a_provider.sessions_opened() - a_opened;
    eprintln!("re-acquiring after the hand-back opened {after} sessions");
    assert!(after <= if babelfish { 2 } else { 0 }, "{after}");
}

/// Single attempts on a held lock are refusals, never errors — on Babelfish too, where
/// `@LockTimeout = 0` would answer -999 and the 5th refusal on one session would crash the
/// server — and the holder keeps its lock.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_attempts_on_a_held_lock_are_refusals() {
    let Some(url) = tierlock_testkit::server_url(VAR) else {
        return;
    };
    let ns = fresh_namespace();
    let holder = LockManager::new(provider(&url, &ns).await);
    let guard = holder.lock("held", GENEROUS).await.unwrap();
    let other = LockManager::new(provider(&url, &ns).await);
    for _ in 0..12 {
        assert!(other.try_lock("held").await.unwrap().is_none());
    }
    assert!(!guard.is_lost());
    guard.release().await.unwrap();
    let got = other.try_lock("held").await.unwrap().expect("free");
    got.release().await.unwrap();
}

/// A session standing for a .NET process (DistributedLock's `sp_getapplock`, on the resource
/// its mapping gives) and the provider with `Naming::DistributedLock` exclude each other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn distributed_lock_naming_meets_a_dotnet_style_session() {
    let Some(url) = tierlock_testkit::server_url(VAR) else {
        return;
    };
    let long = format!("{}{}", fresh_namespace(), "x".repeat(300));
    let resource = distributed_lock_resource(&long).into_owned();
    let provider = MssqlProvider::builder(&url)
        .unwrap()
        .naming(Naming::DistributedLock)
        .build()
        .unwrap();
    let locks = LockManager::new(provider);
    let mut dotnet = raw(&url).await;
    let sql = "DECLARE @r int; EXEC @r = sp_getapplock @Resource = @P1, @LockMode = 'Exclusive', \
               @LockOwner = 'Session', @LockTimeout = @P2; SELECT @r;";
    let guard = locks.lock(&long, GENEROUS).await.unwrap();
    let code = async {
        dotnet
            .query(sql, &[&resource.as_str(), &100i32])
            .await?
            .into_row()
            .await
    }
    .await
    .unwrap()
    .and_then(|row| row.get::<i32, _>(0));
    assert!(code.is_some_and(|code| code < 0), "{code:?}");
    guard.release().await.unwrap();
    let code = async {
        dotnet
            .query(sql, &[&resource.as_str(), &1000i32])
            .await?
            .into_row()
            .await
    }
    .await
    .unwrap()
    .and_then(|row| row.get::<i32, _>(0));
    assert!(code.is_some_and(|code| code >= 0), "{code:?}");
    assert!(locks.try_lock(&long).await.unwrap().is_none());
}

async fn raw(url: &str) -> tiberius::Client<Compat<tokio::net::TcpStream>> {
    let config = tierlock_mssql::parse_connection_string(url).expect("valid URL");
    let tcp = tokio::net::TcpStream::connect(config.get_addr())
        .await
        .expect("TCP connection");
    tcp.set_nodelay(true).expect("nodelay");
    tiberius::Client::connect(config, tcp.compat_write())
        .await
        .expect("login")
}
