//! `RedisProvider::held_locks` against the shared server `TIERLOCK_REDIS_URL`: held keys with
//! name, expiry, fencing token and waiters; only the provider's prefix; nothing after release.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use common::{eventually, fresh_prefix, provider, url};
use tierlock_core::{LockName, Provider};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lists_held_keys_under_the_prefix() {
    let Some(url) = url() else { return };
    let prefix = fresh_prefix("status");
    let (holder, waiter, lister) = (
        provider(&url, &prefix),
        provider(&url, &prefix),
        provider(&url, &prefix),
    );
    // Another prefix, a prefix of this one plus more: not listed.
    let other = provider(&url, &format!("{prefix}other:"));
    assert!(lister.held_locks().await.unwrap().is_empty());

    let readable = LockName::new("job:nightly").unwrap();
    let hashed = LockName::new("order 7").unwrap();
    let now = || Some(Instant::now());
    let a = holder.acquire(&readable, now()).await.unwrap().unwrap();
    let b = holder.acquire(&hashed, now()).await.unwrap().unwrap();
    let c = other.acquire(&readable, now()).await.unwrap().unwrap();

    let held = lister.held_locks().await.unwrap();
    assert_eq!(held.len(), 2, "{held:#?}");
    let first = held
        .iter()
        .find(|h| h.key == holder.key_names("job:nightly").lock)
        .unwrap_or_else(|| panic!("{held:#?}"));
    assert_eq!(first.name.as_deref(), Some("job:nightly"));
    assert_eq!(first.fencing_token, a.fencing_token());
    let left = first.expires_in.expect("a lease has a time to live");
    assert!(
        left > Duration::ZERO && left <= Duration::from_secs(30),
        "{left:?}"
    );
    assert_eq!(first.waiters, Some(0));
    let second = held
        .iter()
        .find(|h| h.key == holder.key_names("order 7").lock)
        .unwrap_or_else(|| panic!("{held:#?}"));
    assert_eq!(second.name, None, "a hashed name is not recoverable");
    assert_eq!(second.fencing_token, b.fencing_token());

    // A waiting process marks itself: counted.
    let mark = waiter.request(&readable).await.unwrap();
    assert!(mark.is_some());
    eventually(Duration::from_secs(10), "the waiter is counted", || async {
        let held = lister.held_locks().await.unwrap();
        held.iter()
            .any(|h| h.name.as_deref() == Some("job:nightly") && h.waiters == Some(1))
    })
    .await;
    drop(mark);

    a.release().await.unwrap();
    b.release().await.unwrap();
    assert!(lister.held_locks().await.unwrap().is_empty());
    assert_eq!(other.held_locks().await.unwrap().len(), 1);
    c.release().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prefix_with_glob_characters_lists_only_its_own_keys() {
    let Some(url) = url() else { return };
    let base = fresh_prefix("status-glob");
    let star = provider(&url, &format!("{base}*:"));
    let plain = provider(&url, &format!("{base}x:"));
    let name = LockName::new("n").unwrap();
    let held = plain
        .acquire(&name, Some(Instant::now()))
        .await
        .unwrap()
        .unwrap();
    assert!(star.held_locks().await.unwrap().is_empty());
    assert_eq!(plain.held_locks().await.unwrap().len(), 1);
    held.release().await.unwrap();
}
