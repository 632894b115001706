//! `PostgresProvider::held_locks` against a real server (`TIERLOCK_PG_URL`, see
//! `scripts/pg-start`): held keys with their holder, waiters and fencing token; request marks
//! left out; nothing after the release.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use common::{eventually, fresh_namespace, server_url};
use tierlock_core::{HeldLock, LockName, Provider};
use tierlock_postgres::PostgresProvider;

const URL: &str = "TIERLOCK_PG_URL";
const BOUND: Duration = Duration::from_secs(10);

async fn listed(lister: &PostgresProvider, key: i64) -> Option<HeldLock> {
    let key = key.to_string();
    lister
        .held_locks()
        .await
        .unwrap()
        .into_iter()
        .find(|held| held.key == key)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lists_held_keys_with_holder_waiters_and_token() {
    let Some(url) = server_url(URL) else { return };
    let ns = fresh_namespace("status");
    let connect = |fencing| {
        PostgresProvider::builder(url.clone())
            .namespace(ns.clone())
            .fencing(fencing)
            .connect()
    };
    let (holder, waiter, lister) = (
        connect(true).await.unwrap(),
        connect(true).await.unwrap(),
        connect(true).await.unwrap(),
    );
    let name = LockName::new("invoice:9").unwrap();
    let key = holder.lock_key("invoice:9");
    assert!(listed(&lister, key).await.is_none());

    let held = holder
        .acquire(&name, Some(Instant::now()))
        .await
        .unwrap()
        .expect("a free lock");
    let seen = listed(&lister, key).await.expect("the held key is listed");
    assert_eq!(seen.name, None, "PostgreSQL keeps no names");
    assert!(
        seen.holder.as_deref().unwrap().starts_with("pid "),
        "{seen:?}"
    );
    assert_eq!(seen.fencing_token, held.fencing_token());
    assert!(seen.fencing_token.is_some());
    assert_eq!(seen.waiters, Some(0));

    // A process that asks for it marks a request (a shared lock on another key) and waits.
    let mark = waiter.request(&name).await.unwrap();
    let wait = {
        let waiter = waiter.clone();
        let name = name.clone();
        tokio::spawn(async move {
            waiter
                .acquire(&name, Some(Instant::now() + Duration::from_secs(30)))
                .await
        })
    };
    eventually(BOUND, "the waiter is counted", || async {
        listed(&lister, key).await.and_then(|h| h.waiters) == Some(1)
    })
    .await;
    let request = waiter.request_key("invoice:9");
    assert!(
        listed(&lister, request).await.is_none(),
        "a request mark is not a held lock"
    );
    // Listing disturbs nobody: the holder still holds, the waiter still waits.
    assert!(!wait.is_finished());

    held.release().await.unwrap();
    let next = wait.await.unwrap().unwrap().expect("the waiter gets it");
    drop(mark);
    let seen = listed(&lister, key).await.expect("held by the waiter now");
    assert_eq!(seen.fencing_token, next.fencing_token());
    assert_eq!(seen.waiters, Some(0));
    next.release().await.unwrap();
    assert!(listed(&lister, key).await.is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_fencing_there_are_no_tokens() {
    let Some(url) = server_url(URL) else { return };
    let ns = fresh_namespace("status-plain");
    let provider = common::provider(&url, &ns).await;
    let name = LockName::new("plain").unwrap();
    let held = provider
        .acquire(&name, Some(Instant::now()))
        .await
        .unwrap()
        .unwrap();
    let seen = listed(&provider, provider.lock_key("plain")).await.unwrap();
    assert_eq!(seen.fencing_token, None);
    held.release().await.unwrap();
}
