//! Failure injection against a real server: killed backends, cancelled waiters, lock timeouts.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{admin, eventually, fresh_namespace, holders, provider, server_url};
use tierlock_core::{LockError, LockManager, LockName, Provider};

const URL: &str = "TIERLOCK_PG_URL";
const BOUND: Duration = Duration::from_secs(10);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_terminated_holder_backend_fires_lost_and_another_process_acquires() {
    let Some(url) = server_url(URL) else { return };
    let ns = fresh_namespace("terminate");
    let a = LockManager::new(provider(&url, &ns).await);
    let b = LockManager::new(provider(&url, &ns).await);
    let admin = admin(&url).await;
    let key = tierlock_postgres::lock_key(&ns, "tenant:42:migrate");

    let guard = a.lock("tenant:42:migrate", BOUND).await.unwrap();
    assert!(!guard.is_lost());
    let seen = holders(&admin, key).await;
    assert_eq!(seen.len(), 1, "{seen:?}");
    let terminated: bool = admin
        .query_one("SELECT pg_terminate_backend($1)", &[&seen[0].0])
        .await
        .unwrap()
        .get(0);
    assert!(terminated);

    tokio::time::timeout(BOUND, guard.lost())
        .await
        .expect("lost signal within the bound");
    assert!(guard.is_lost());
    let other = b.lock("tenant:42:migrate", BOUND).await.unwrap();
    assert!(matches!(guard.release().await, Err(LockError::Lost { .. })));

    // The first manager recovers on fresh connections once the other process lets go.
    other.release().await.unwrap();
    let again = a.lock("tenant:42:migrate", BOUND).await.unwrap();
    assert!(!again.is_lost());
    again.release().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_server_side_waiter_leaves_nothing_held() {
    let Some(url) = server_url(URL) else { return };
    let ns = fresh_namespace("cancel");
    let holder = provider(&url, &ns).await;
    let waiter = provider(&url, &ns).await;
    let admin = admin(&url).await;
    let lock = LockName::new("nightly").unwrap();
    let key = holder.lock_key("nightly");

    let held = holder
        .acquire(&lock, Some(Instant::now()))
        .await
        .unwrap()
        .unwrap();
    for deadline in [None, Some(Instant::now() + 6 * BOUND)] {
        let attempt =
            tokio::time::timeout(Duration::from_millis(300), waiter.acquire(&lock, deadline)).await;
        assert!(attempt.is_err(), "the waiter cannot have been granted");
        // The backend that was waiting is cancelled: only the holder remains.
        eventually(BOUND, "cancelled waiter gone from pg_locks", || async {
            let seen = holders(&admin, key).await;
            seen.len() == 1 && seen[0].2
        })
        .await;
    }
    held.release().await.unwrap();
    assert!(holders(&admin, key).await.is_empty());
    let fresh = waiter.acquire(&lock, Some(Instant::now())).await.unwrap();
    let fresh = fresh.expect("free after the holder released");
    fresh.release().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelling_a_manager_lock_racing_the_grant_never_leaks() {
    let Some(url) = server_url(URL) else { return };
    let ns = fresh_namespace("race");
    let a = LockManager::new(provider(&url, &ns).await);
    let b = LockManager::new(provider(&url, &ns).await);
    let admin = admin(&url).await;
    let key = tierlock_postgres::lock_key(&ns, "race");
    // The holder releases while the waiter's future is being dropped at various moments.
    for i in 0..20u64 {
        let guard = a.lock("race", BOUND).await.unwrap();
        let release = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(i % 7)).await;
            guard.release().await
        });
        let cut = Duration::from_millis(1 + (i * 3) % 11);
        if let Ok(Ok(won)) = tokio::time::timeout(cut, b.lock("race", BOUND)).await {
            won.release().await.unwrap();
        }
        release.await.unwrap().unwrap();
        eventually(BOUND, "nothing held after the race", || async {
            holders(&admin, key).await.is_empty()
        })
        .await;
    }
    let last = b.try_lock("race").await.unwrap();
    assert!(last.is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lock_timeout_is_a_timeout_not_an_error() {
    let Some(url) = server_url(URL) else { return };
    let ns = fresh_namespace("timeout");
    let holder = provider(&url, &ns).await;
    let waiter = Arc::new(provider(&url, &ns).await);
    let lock = LockName::new("busy").unwrap();
    let held = holder
        .acquire(&lock, Some(Instant::now()))
        .await
        .unwrap()
        .unwrap();

    // Straight through the provider: lock_timeout fires on the server (SQLSTATE 55P03).
    let idle_before = waiter.idle_connections();
    let start = Instant::now();
    let outcome = waiter
        .acquire(&lock, Some(start + Duration::from_millis(200)))
        .await
        .unwrap();
    assert!(outcome.is_none());
    assert!(start.elapsed() >= Duration::from_millis(200));
    assert!(
        waiter.idle_connections() >= idle_before.max(1),
        "clean connection reused"
    );

    // Through a manager: LockError::Timeout.
    let locks = LockManager::from_arc(Arc::clone(&waiter) as Arc<dyn Provider>);
    let err = locks
        .lock("busy", Duration::from_millis(150))
        .await
        .unwrap_err();
    assert!(err.is_timeout(), "{err:?}");

    // The connection that timed out has its lock_timeout reset: a wait without a deadline
    // on it still waits (and is granted) past the earlier budget.
    let forever = tokio::spawn({
        let (waiter, lock) = (Arc::clone(&waiter), lock.clone());
        async move { waiter.acquire(&lock, None).await }
    });
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(!forever.is_finished());
    held.release().await.unwrap();
    let granted = tokio::time::timeout(BOUND, forever).await.unwrap().unwrap();
    granted.unwrap().expect("granted").release().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_a_held_lock_frees_it_on_the_server() {
    let Some(url) = server_url(URL) else { return };
    let ns = fresh_namespace("drop");
    let (a, b) = (provider(&url, &ns).await, provider(&url, &ns).await);
    let lock = LockName::new("dropped").unwrap();
    let held = a
        .acquire(&lock, Some(Instant::now()))
        .await
        .unwrap()
        .unwrap();
    drop(held);
    let taken = b
        .acquire(&lock, Some(Instant::now() + BOUND))
        .await
        .unwrap();
    taken
        .expect("freed by closing the session")
        .release()
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_release_abandoned_half_way_still_frees_the_lock() {
    let Some(url) = server_url(URL) else { return };
    let ns = fresh_namespace("abandoned-release");
    let (a, b) = (provider(&url, &ns).await, provider(&url, &ns).await);
    let lock = LockName::new("abandoned").unwrap();
    // Dropped before it ran at all, and dropped while its unlock may be in flight.
    for cut in [None, Some(Duration::from_micros(50))] {
        let held = a
            .acquire(&lock, Some(Instant::now()))
            .await
            .unwrap()
            .unwrap();
        let release = held.release();
        if let Some(cut) = cut {
            let _ = tokio::time::timeout(cut, release).await;
        } else {
            drop(release);
        }
        let taken = b
            .acquire(&lock, Some(Instant::now() + BOUND))
            .await
            .unwrap();
        taken.expect("freed").release().await.unwrap();
    }
}

#[test]
fn a_lock_dropped_after_its_runtime_is_gone_is_freed() {
    let Some(url) = server_url(URL) else { return };
    let ns = fresh_namespace("no-runtime");
    let lock = LockName::new("orphan").unwrap();
    let first = tokio::runtime::Runtime::new().unwrap();
    let held = first.block_on(async {
        let p = provider(&url, &ns).await;
        p.acquire(&lock, Some(Instant::now()))
            .await
            .unwrap()
            .unwrap()
    });
    drop(first);
    drop(held); // No runtime at all here: must not panic, must free the lock.
    let second = tokio::runtime::Runtime::new().unwrap();
    second.block_on(async {
        let p = provider(&url, &ns).await;
        let again = p
            .acquire(&lock, Some(Instant::now() + BOUND))
            .await
            .unwrap();
        again
            .expect("freed with its session")
            .release()
            .await
            .unwrap();
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_release_racing_a_terminated_backend_never_hangs_or_leaks() {
    let Some(url) = server_url(URL) else { return };
    let ns = fresh_namespace("release-race");
    let (a, b) = (provider(&url, &ns).await, provider(&url, &ns).await);
    let admin = admin(&url).await;
    let lock = LockName::new("raced").unwrap();
    let key = a.lock_key("raced");
    let (mut released, mut lost) = (0, 0);
    for i in 0..30u64 {
        let held = a
            .acquire(&lock, Some(Instant::now()))
            .await
            .unwrap()
            .expect("free");
        let pid = holders(&admin, key).await[0].0;
        // The backend is terminated while the release asks the monitor for the connection,
        // unlocks, or returns it to the pool.
        let terminate = async {
            tokio::time::sleep(Duration::from_micros(i * 37 % 700)).await;
            let _: bool = admin
                .query_one("SELECT pg_terminate_backend($1)", &[&pid])
                .await
                .unwrap()
                .get(0);
        };
        let (outcome, ()) = tokio::join!(tokio::time::timeout(BOUND, held.release()), terminate);
        match outcome.expect("a release hung") {
            Ok(()) => released += 1,
            Err(err) => {
                let err = err
                    .downcast_ref::<tierlock_postgres::PostgresError>()
                    .expect("a PostgresError");
                assert!(
                    matches!(
                        err,
                        tierlock_postgres::PostgresError::Lost { .. }
                            | tierlock_postgres::PostgresError::Query { .. }
                    ),
                    "{err:?}"
                );
                lost += 1;
            }
        }
        // Whatever happened, the lock is free for another process at once or very soon, and
        // the provider's next acquisition works (a terminated pooled connection is skipped).
        let taken = b
            .acquire(&lock, Some(Instant::now() + BOUND))
            .await
            .unwrap();
        taken.expect("freed").release().await.unwrap();
        let again = a.acquire(&lock, Some(Instant::now() + BOUND)).await;
        again.unwrap().expect("free").release().await.unwrap();
    }
    eprintln!("{released} releases completed, {lost} found the session gone");
}
