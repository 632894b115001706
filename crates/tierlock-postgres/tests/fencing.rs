//! Fencing tokens (`.fencing(true)`) against a real server (`TIERLOCK_PG_URL`): strictly
//! increasing across providers, terminated holders, cancelled acquisitions; shared by
//! re-entrant guards and local hand-offs; the counter table created on first use; a failing
//! upsert releases the lock.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{admin, eventually, fresh_namespace, holders, server_url};
use tierlock_core::{LockError, LockManager, LockName, Provider};
use tierlock_postgres::{PostgresError, PostgresProvider};

const URL: &str = "TIERLOCK_PG_URL";
const BOUND: Duration = Duration::from_secs(10);

async fn fencing(url: &str, namespace: &str) -> PostgresProvider {
    PostgresProvider::builder(url)
        .namespace(namespace)
        .fencing(true)
        .connect()
        .await
        .unwrap()
}

fn name(s: &str) -> LockName {
    LockName::new(s).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_strictly_increase_across_providers() {
    let Some(url) = server_url(URL) else { return };
    let ns = fresh_namespace("fence-alternate");
    let (a, b) = (fencing(&url, &ns).await, fencing(&url, &ns).await);
    assert!(a.fencing());
    let lock = name("ledger");
    let mut last = 0;
    for i in 0..50 {
        let provider = if i % 2 == 0 { &a } else { &b };
        let held = provider.acquire(&lock, Some(Instant::now() + BOUND)).await;
        let held = held.unwrap().expect("free");
        let token = held.fencing_token().expect("fencing is on");
        assert!(token > last, "acquisition {i}: {token} after {last}");
        last = token;
        held.release().await.unwrap();
    }
    // Another name has a counter of its own; without fencing there is no token.
    let other = a.acquire(&name("other"), Some(Instant::now())).await;
    let other = other.unwrap().unwrap();
    assert_eq!(other.fencing_token(), Some(1));
    other.release().await.unwrap();
    let plain = common::provider(&url, &ns).await;
    let held = plain.acquire(&lock, Some(Instant::now())).await.unwrap();
    let held = held.unwrap();
    assert_eq!(held.fencing_token(), None);
    held.release().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_terminated_holder_is_followed_by_a_larger_token() {
    let Some(url) = server_url(URL) else { return };
    let ns = fresh_namespace("fence-terminate");
    let a = LockManager::new(fencing(&url, &ns).await);
    let b = LockManager::new(fencing(&url, &ns).await);
    let admin = admin(&url).await;
    let key = tierlock_postgres::lock_key(&ns, "ledger");

    let guard = a.lock("ledger", BOUND).await.unwrap();
    let old = guard.fencing_token().expect("a token");
    let pid = holders(&admin, key).await[0].0;
    let _: bool = admin
        .query_one("SELECT pg_terminate_backend($1)", &[&pid])
        .await
        .unwrap()
        .get(0);
    tokio::time::timeout(BOUND, guard.lost()).await.unwrap();
    // The paused holder still has its old token; the new holder's is larger.
    let taken = b.lock("ledger", BOUND).await.unwrap();
    let new = taken.fencing_token().expect("a token");
    assert!(new > old, "{new} after {old}");
    assert_eq!(guard.fencing_token(), Some(old));
    assert!(matches!(guard.release().await, Err(LockError::Lost { .. })));
    taken.release().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reentrant_guards_and_local_hand_offs_share_the_external_token() {
    let Some(url) = server_url(URL) else { return };
    let ns = fresh_namespace("fence-reentry");
    let locks = LockManager::new(fencing(&url, &ns).await);
    let outer = locks.lock("doc", BOUND).await.unwrap();
    let token = outer.fencing_token().expect("a token");
    let inner = locks.lock("doc", BOUND).await.unwrap();
    assert_eq!(inner.fencing_token(), Some(token));
    // A local waiter gets the lock by hand-off, without a new external acquisition.
    let waiter = tokio::spawn({
        let locks = locks.clone();
        async move {
            let guard = locks.lock("doc", BOUND).await.unwrap();
            let seen = guard.fencing_token();
            guard.release().await.unwrap();
            seen
        }
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    drop(outer);
    assert_eq!(inner.fencing_token(), Some(token));
    inner.release().await.unwrap();
    assert_eq!(waiter.await.unwrap(), Some(token));
    assert_eq!(locks.stats().external_acquisitions, 1);
    // The next external acquisition takes the next token.
    let again = locks.lock("doc", BOUND).await.unwrap();
    assert!(again.fencing_token() > Some(token));
    again.release().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelled_acquisitions_never_leak_a_lock_and_never_repeat_a_token() {
    let Some(url) = server_url(URL) else { return };
    let ns = fresh_namespace("fence-cancel");
    let provider = Arc::new(fencing(&url, &ns).await);
    let admin = admin(&url).await;
    let lock = name("cut");
    let key = provider.lock_key("cut");
    // How long a whole acquisition takes when it must open its connection, as a cut one does.
    let cold = PostgresProvider::builder(&url)
        .namespace(&ns)
        .fencing(true)
        .build()
        .unwrap();
    let started = Instant::now();
    let held = cold.acquire(&lock, Some(Instant::now())).await.unwrap();
    let whole = started.elapsed();
    let mut last = held.unwrap().fencing_token().unwrap();
    drop(cold); // The held lock is released in the background; the loop's first try waits.
    // Cut the acquisition at every point: connecting, the grant, the upsert, after them.
    let steps = 80;
    for step in 0..=steps {
        let cut = whole * 5 / 4 * step / steps;
        let attempt = provider.acquire(&lock, Some(Instant::now() + BOUND));
        match tokio::time::timeout(cut, attempt).await {
            Ok(held) => {
                let held = held.unwrap().expect("free");
                let token = held.fencing_token().unwrap();
                assert!(token > last, "{token} after {last}");
                last = token;
                held.release().await.unwrap();
            }
            Err(_) => {
                eventually(BOUND, "a cut acquisition leaves nothing held", || async {
                    holders(&admin, key).await.is_empty()
                })
                .await;
            }
        }
    }
    assert!(last > 0, "no acquisition ever completed");
    let held = provider.acquire(&lock, Some(Instant::now())).await.unwrap();
    assert!(held.unwrap().fencing_token() > Some(last));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_counter_table_is_created_on_first_use_by_racing_providers() {
    let Some(url) = server_url(URL) else { return };
    let admin = admin(&url).await;
    let table = format!("public.fence_test_{}", std::process::id());
    let ns = fresh_namespace("fence-create");
    // Each round, 8 providers find the table missing at once and race to create it.
    for round in 0..10 {
        admin
            .batch_execute(&format!("DROP TABLE IF EXISTS {table}"))
            .await
            .unwrap();
        let mut tasks = Vec::new();
        for i in 0..8 {
            let provider = PostgresProvider::builder(&url)
                .namespace(&ns)
                .fencing(true)
                .fencing_table(&table)
                .build()
                .unwrap();
            tasks.push(tokio::spawn(async move {
                let lock = name(&format!("first-use-{i}"));
                let held = provider.acquire(&lock, Some(Instant::now())).await;
                let held = held.unwrap_or_else(|err| panic!("round {round}: {err:?}"));
                let held = held.expect("free");
                let token = held.fencing_token();
                held.release().await.unwrap();
                token
            }));
        }
        for task in tasks {
            assert_eq!(task.await.unwrap(), Some(1), "round {round}");
        }
        let rows: i64 = admin
            .query_one(&format!("SELECT count(*) FROM {table}"), &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(rows, 8);
    }
    admin
        .batch_execute(&format!("DROP TABLE {table}"))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_upsert_is_a_typed_error_and_releases_the_lock() {
    let Some(url) = server_url(URL) else { return };
    let ns = fresh_namespace("fence-fail");
    let admin = admin(&url).await;
    // A schema that does not exist: the table can neither be used nor created.
    let broken = PostgresProvider::builder(&url)
        .namespace(&ns)
        .fencing(true)
        .fencing_table("no_such_schema.tierlock_fence")
        .build()
        .unwrap();
    let plain = common::provider(&url, &ns).await;
    let lock = name("doomed");
    for deadline in [Some(Instant::now()), Some(Instant::now() + BOUND), None] {
        let err = broken.acquire(&lock, deadline).await.unwrap_err();
        let err = err
            .downcast_ref::<PostgresError>()
            .expect("a PostgresError");
        match err {
            PostgresError::Fencing { name, table, .. } => {
                assert_eq!(
                    (name.as_str(), table.as_str()),
                    ("doomed", "no_such_schema.tierlock_fence")
                );
            }
            other => panic!("{other:?}"),
        }
        let cause = std::error::Error::source(err).map(ToString::to_string);
        assert!(
            cause.is_some_and(|c| c.contains("creating the fencing table")),
            "{err:?}"
        );
        // Released at once, on the same session: the lock is free for anyone.
        assert!(holders(&admin, plain.lock_key("doomed")).await.is_empty());
        let taken = plain.acquire(&lock, Some(Instant::now())).await.unwrap();
        taken.expect("released").release().await.unwrap();
    }
    // The session was clean: its connection went back to the pool.
    assert_eq!(broken.idle_connections(), 1);
    // Through a manager: a provider error naming the lock, and nothing held.
    let locks = LockManager::new(broken);
    let err = locks.lock("doomed", BOUND).await.unwrap_err();
    assert!(
        matches!(err, LockError::Provider { ref name, .. } if name == "doomed"),
        "{err:?}"
    );
    assert!(locks.try_lock("other").await.is_err());
}
