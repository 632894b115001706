//! Quickstart: one manager shared by many tasks; re-entry, `try_lock`, `with_lock`, timeouts.
//!
//! `cargo run --example quickstart`

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use tierlock::{LockError, LockManager, MemoryProvider};

async fn migrate(locks: &LockManager, tenant: u32) -> Result<(), LockError> {
    let name = format!("tenant:{tenant}:migrate");
    let _guard = locks.lock(&name, Duration::from_secs(5)).await?;
    // A helper deep in the call tree takes the same lock again: re-entry, no waiting.
    bump_schema_version(locks, &name).await
}

async fn bump_schema_version(locks: &LockManager, name: &str) -> Result<(), LockError> {
    let _guard = locks.lock(name, Duration::from_secs(5)).await?;
    tokio::time::sleep(Duration::from_millis(50)).await;
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), LockError> {
    let locks = LockManager::new(MemoryProvider::new());

    // Eight tasks migrate two tenants: per tenant, one at a time.
    let started = std::time::Instant::now();
    let tasks: Vec<_> = (0..8)
        .map(|i| {
            let locks = locks.clone();
            tokio::spawn(async move { migrate(&locks, i % 2).await })
        })
        .collect();
    for task in tasks {
        task.await.expect("task panicked")?;
    }
    println!(
        "8 migrations of 2 tenants took {:?} (4 in a row per tenant, tenants in parallel)",
        started.elapsed()
    );

    // try_lock: Ok(None) when another owner holds the name.
    let held = locks.lock("job:nightly", Duration::ZERO).await?;
    let other = tokio::spawn({
        let locks = locks.clone();
        async move { locks.try_lock("job:nightly").await.map(|g| g.is_some()) }
    });
    println!(
        "another task could take job:nightly: {}",
        other.await.expect("panicked")?
    );
    drop(held);

    // with_lock: run a future under the lock.
    let total = locks
        .with_lock("order:7", Duration::from_secs(1), async { 40 + 2 })
        .await?;
    println!("with_lock returned {total}");

    // A timeout is an error that names the lock.
    let held = locks.lock("report", Duration::ZERO).await?;
    let waited = tokio::spawn({
        let locks = locks.clone();
        async move {
            locks
                .lock("report", Duration::from_millis(100))
                .await
                .map(drop)
        }
    });
    match waited.await.expect("panicked") {
        Err(err @ LockError::Timeout { .. }) => println!("as expected: {err}"),
        other => println!("unexpected: {other:?}"),
    }
    drop(held);
    println!("stats: {:?}", locks.stats());
    Ok(())
}
