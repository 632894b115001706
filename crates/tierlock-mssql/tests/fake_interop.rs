//! Interop with .NET's DistributedLock through the fake TDS server: with
//! `naming(Naming::DistributedLock)` the provider sends the resource a .NET
//! `SqlDistributedLock` would for the same name, so a session standing for the .NET process
//! (a raw `sp_getapplock`, as DistributedLock sends it) and the provider exclude each other.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "support/fake_tds.rs"]
mod fake_tds;
#[path = "support/helpers.rs"]
mod helpers;

use fake_tds::{FakeServer, Value};
use helpers::{builder, hold, is_free};
use tierlock_mssql::{MssqlProvider, Naming, tiberius};
use tokio::net::TcpStream;
use tokio_util::compat::{Compat, TokioAsyncWriteCompatExt};

/// The resource DistributedLock uses for `"x" × 300` (computed with Python, see `naming.rs`).
const DOTNET_RESOURCE_TAIL: &str =
    "DcJArkOxjurO9NfY1kuUWt5DyYm3JNfHBiqAKfM0PKoyK5+/Qtn/DNqY89esWlYMohmy5zzAQfNwUt+k6ErmJA==";

type Raw = tiberius::Client<Compat<TcpStream>>;

/// A session standing for the .NET process.
async fn dotnet(server: &FakeServer) -> Raw {
    let config = tierlock_mssql::parse_connection_string(&server.connection_string()).unwrap();
    let tcp = TcpStream::connect(config.get_addr()).await.unwrap();
    tiberius::Client::connect(config, tcp.compat_write())
        .await
        .unwrap()
}

/// `sp_getapplock` as DistributedLock sends it (session owner, exclusive, `public`).
async fn dotnet_try_lock(raw: &mut Raw, resource: &str) -> i32 {
    let sql = "DECLARE @r int; EXEC @r = sp_getapplock @Resource = @P1, @LockMode = 'Exclusive', \
               @LockOwner = 'Session', @LockTimeout = @P2; SELECT @r;";
    let row = async { raw.query(sql, &[&resource, &0i32]).await?.into_row().await }
        .await
        .unwrap();
    row.and_then(|row| row.get::<i32, _>(0)).unwrap()
}

fn dotnet_named(server: &FakeServer) -> MssqlProvider {
    builder(server)
        .naming(Naming::DistributedLock)
        .build()
        .unwrap()
}

#[tokio::test]
async fn a_rust_and_a_dotnet_process_exclude_each_other_on_long_names() {
    let server = FakeServer::start().await;
    let provider = dotnet_named(&server);
    let long = "x".repeat(300);
    let dotnet_resource = format!("{}{DOTNET_RESOURCE_TAIL}", "x".repeat(167));
    assert_eq!(provider.resource_name(&long), dotnet_resource);

    // Rust holds: the .NET side is refused.
    let held = hold(&provider, &long).await;
    let mut raw = dotnet(&server).await;
    assert_eq!(dotnet_try_lock(&mut raw, &dotnet_resource).await, -1);
    let on_wire = server
        .statements()
        .into_iter()
        .find(|s| s.sql.contains("sp_getapplock") && s.spid == held.session_id())
        .unwrap();
    assert_eq!(on_wire.params[0], Value::Str(dotnet_resource.clone()));
    held.release().await.unwrap();

    // .NET holds: the Rust side is refused; with tierlock's own naming it would not be.
    assert_eq!(dotnet_try_lock(&mut raw, &dotnet_resource).await, 0);
    assert!(!is_free(&provider, &long).await);
    assert!(is_free(&builder(&server).build().unwrap(), &long).await);
}

#[tokio::test]
async fn short_names_are_the_same_resource_under_both_namings() {
    let server = FakeServer::start().await;
    let mut raw = dotnet(&server).await;
    assert_eq!(dotnet_try_lock(&mut raw, "invoice-run").await, 0);
    assert!(!is_free(&dotnet_named(&server), "invoice-run").await);
    assert!(!is_free(&builder(&server).build().unwrap(), "invoice-run").await);
}
