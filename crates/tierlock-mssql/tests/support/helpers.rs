//! Helpers of the tests against the fake TDS server.

#![allow(dead_code)]

use std::future::Future;
use std::time::{Duration, Instant};

use tierlock_core::LockName;
use tierlock_mssql::{MssqlLock, MssqlProvider, MssqlProviderBuilder};

use crate::fake_tds::FakeServer;

pub const GENEROUS: Duration = Duration::from_secs(10);

pub fn builder(server: &FakeServer) -> MssqlProviderBuilder {
    MssqlProvider::builder(&server.connection_string()).expect("valid connection string")
}

pub fn provider(server: &FakeServer) -> MssqlProvider {
    builder(server).build().expect("valid options")
}

pub fn name(s: &str) -> LockName {
    LockName::new(s).expect("valid name")
}

pub async fn hold(provider: &MssqlProvider, lock: &str) -> MssqlLock {
    match provider
        .lock(&name(lock), Some(Instant::now() + GENEROUS))
        .await
    {
        Ok(Some(held)) => held,
        other => panic!("could not take {lock:?}: {other:?}"),
    }
}

/// A single attempt: `true` if the lock was free (it is released again).
pub async fn is_free(provider: &MssqlProvider, lock: &str) -> bool {
    match provider.lock(&name(lock), Some(Instant::now())).await {
        Ok(Some(held)) => {
            held.release().await.expect("release");
            true
        }
        Ok(None) => false,
        Err(err) => panic!("try-lock of {lock:?} failed: {err}"),
    }
}

pub async fn eventually(what: &str, mut condition: impl FnMut() -> bool) {
    let start = Instant::now();
    while !condition() {
        assert!(start.elapsed() < GENEROUS, "never happened: {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// How long `work` took, and its output.
pub async fn timed<T>(work: impl Future<Output = T>) -> (Duration, T) {
    let start = Instant::now();
    let out = work.await;
    (start.elapsed(), out)
}
