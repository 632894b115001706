//! `#[locked]` as users write it, through the facade: re-entry, exclusion, release on every way
//! out, lost locks, timeouts, and the shapes of functions it accepts.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tierlock::{LockError, LockManager, MemoryProvider, locked};
use tierlock_testkit::CountingProvider;

#[derive(Debug)]
enum AppError {
    Lock(LockError),
    Declined(&'static str),
}

impl From<LockError> for AppError {
    fn from(e: LockError) -> Self {
        AppError::Lock(e)
    }
}

type AppResult<T> = Result<T, AppError>;

fn memory() -> LockManager {
    LockManager::new(MemoryProvider::new())
}

/// Whether another task (another owner) can take `name` right now.
async fn is_free(locks: &LockManager, name: &str) -> bool {
    let (locks, name) = (locks.clone(), name.to_owned());
    tokio::spawn(async move { locks.try_lock(&name).await.unwrap().is_some() })
        .await
        .unwrap()
}

/// Fails the test instead of hanging if `future` deadlocks.
async fn within<F: Future>(future: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(10), future)
        .await
        .expect("deadlocked")
}

// ---- re-entry ----------------------------------------------------------------------------------

#[locked(locks, "order:{id}", timeout = "1s")]
async fn pay(locks: &LockManager, id: u64) -> AppResult<String> {
    assert!(!is_free(locks, &format!("order:{id}")).await);
    let receipt = ship(locks, id).await?; // the same name: re-enters
    Ok(format!("paid {receipt}"))
}

#[locked(locks, "order:{id}", timeout = "0")]
async fn ship(locks: &LockManager, id: u64) -> AppResult<String> {
    // A plain `lock` on the name re-enters too, even with a zero timeout.
    let again = locks.lock(&format!("order:{id}"), Duration::ZERO).await?;
    again.release().await?;
    Ok(format!("shipped {id}"))
}

/// A body that is one awaited call.
#[locked(locks, "order:{id}")]
async fn pay_again(locks: &LockManager, id: u64) -> AppResult<String> {
    pay(locks, id).await
}

#[tokio::test]
async fn nested_locked_calls_on_the_same_name_reenter() {
    let locks = memory();
    assert_eq!(within(pay(&locks, 7)).await.unwrap(), "paid shipped 7");
    assert_eq!(
        within(pay_again(&locks, 8)).await.unwrap(),
        "paid shipped 8"
    );
    assert!(is_free(&locks, "order:7").await);
    assert_eq!(locks.stats().held, 0);
}

// ---- exclusion ---------------------------------------------------------------------------------

#[locked(locks, "ledger")]
async fn critical(
    locks: Arc<LockManager>,
    inside: Arc<AtomicUsize>,
    most: Arc<AtomicUsize>,
) -> AppResult<()> {
    let now = inside.fetch_add(1, Ordering::SeqCst) + 1;
    most.fetch_max(now, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(2)).await;
    inside.fetch_sub(1, Ordering::SeqCst);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tasks_exclude_each_other() {
    let locks = Arc::new(memory());
    let (inside, most) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let tasks: Vec<_> = (0..16)
        .map(|_| {
            // Spawning needs a `Send` future: the generated code keeps the function's one.
            tokio::spawn(critical(locks.clone(), inside.clone(), most.clone()))
        })
        .collect();
    for task in tasks {
        within(task).await.unwrap().unwrap();
    }
    assert_eq!(
        most.load(Ordering::SeqCst),
        1,
        "two tasks were inside at once"
    );
    assert!(is_free(&locks, "ledger").await);
}

// ---- every way out releases --------------------------------------------------------------------

fn check(amount: u64) -> AppResult<u64> {
    if amount == 0 {
        Err(AppError::Declined("zero"))
    } else {
        Ok(amount)
    }
}

#[locked(locks, "account:{account}")]
async fn charge(locks: &LockManager, account: &str, amount: u64) -> AppResult<u64> {
    let amount = check(amount)?;
    if amount > 100 {
        return Err(AppError::Declined("too much"));
    }
    if amount == 1 {
        return Ok(1);
    }
    Ok(amount * 2)
}

#[tokio::test]
async fn question_mark_and_return_release_the_lock() {
    let locks = memory();
    assert!(matches!(
        charge(&locks, "a", 0).await,
        Err(AppError::Declined("zero"))
    ));
    assert!(is_free(&locks, "account:a").await);
    assert!(matches!(
        charge(&locks, "a", 101).await,
        Err(AppError::Declined("too much"))
    ));
    assert!(is_free(&locks, "account:a").await);
    assert_eq!(charge(&locks, "a", 1).await.unwrap(), 1);
    assert!(is_free(&locks, "account:a").await);
    assert_eq!(charge(&locks, "a", 5).await.unwrap(), 10);
    assert!(is_free(&locks, "account:a").await);
    assert_eq!(locks.stats().held, 0);
}

#[locked(locks, "forever")]
async fn never_ends(locks: &LockManager) -> AppResult<()> {
    std::future::pending::<()>().await;
    Ok(())
}

#[tokio::test]
async fn a_dropped_call_releases_the_lock() {
    let locks = memory();
    let cancelled = tokio::time::timeout(Duration::from_millis(20), never_ends(&locks)).await;
    assert!(cancelled.is_err());
    assert!(is_free(&locks, "forever").await);
}

#[locked(locks, "panics")]
async fn panics(locks: Arc<LockManager>) -> AppResult<()> {
    panic!("in the critical section");
}

#[tokio::test]
async fn a_panicking_body_releases_the_lock() {
    let locks = Arc::new(memory());
    let joined = tokio::spawn(panics(locks.clone())).await;
    assert!(joined.unwrap_err().is_panic());
    assert!(is_free(&locks, "panics").await);
}

// ---- lost locks --------------------------------------------------------------------------------

#[locked(locks, "job:{job}")]
async fn work(
    locks: &LockManager,
    counting: &CountingProvider<MemoryProvider>,
    job: u32,
    fail: bool,
) -> AppResult<u32> {
    // The provider reports the external lock lost while the body runs.
    counting.lose_held_locks();
    if fail {
        return Err(AppError::Declined("body failed"));
    }
    Ok(job)
}

#[tokio::test]
async fn a_lost_lock_turns_ok_into_the_lost_error() {
    let counting = CountingProvider::new(MemoryProvider::new());
    let locks = LockManager::new(counting.clone());
    match work(&locks, &counting, 1, false).await {
        Err(AppError::Lock(LockError::Lost { name })) => assert_eq!(name, "job:1"),
        other => panic!("expected Lost, got {other:?}"),
    }
    assert_eq!(counting.held(), 0);
    assert!(is_free(&locks, "job:1").await);
}

#[tokio::test]
async fn the_bodys_error_wins_over_a_lost_lock() {
    let counting = CountingProvider::new(MemoryProvider::new());
    let locks = LockManager::new(counting.clone());
    assert!(matches!(
        work(&locks, &counting, 2, true).await,
        Err(AppError::Declined("body failed"))
    ));
    assert_eq!(counting.held(), 0);
}

#[tokio::test]
async fn acquisition_errors_go_through_from_and_skip_the_body() {
    let counting = CountingProvider::new(MemoryProvider::new());
    let locks = LockManager::new(counting.clone());
    counting.set_failing(true);
    let ran = AtomicUsize::new(0);
    #[locked(locks, "fails")]
    async fn body(locks: &LockManager, ran: &AtomicUsize) -> AppResult<()> {
        ran.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
    assert!(matches!(
        body(&locks, &ran).await,
        Err(AppError::Lock(LockError::Provider { .. }))
    ));
    assert_eq!(ran.load(Ordering::SeqCst), 0);
}

// ---- timeouts ----------------------------------------------------------------------------------

#[locked(locks, "busy", timeout = "50ms")]
async fn short_wait(locks: &LockManager) -> AppResult<()> {
    Ok(())
}

#[locked(locks, "busy", timeout = Duration::from_millis(50))]
async fn short_wait_expr(locks: &LockManager) -> AppResult<()> {
    Ok(())
}

#[locked(locks, "busy", timeout = wait)]
async fn wait_as_given(locks: &LockManager, wait: Duration) -> AppResult<()> {
    Ok(())
}

#[locked(locks, "busy")]
async fn waits_as_long_as_it_takes(locks: &LockManager) -> AppResult<()> {
    Ok(())
}

/// Holds "busy" from another task for `hold`.
async fn hold_busy(locks: &LockManager, hold: Duration) -> tokio::task::JoinHandle<()> {
    let locks = locks.clone();
    let (taken, wait_taken) = tokio::sync::oneshot::channel();
    let holder = tokio::spawn(async move {
        let guard = locks.lock("busy", Duration::ZERO).await.unwrap();
        taken.send(()).unwrap();
        tokio::time::sleep(hold).await;
        drop(guard);
    });
    wait_taken.await.unwrap();
    holder
}

#[tokio::test]
async fn timeouts_from_a_string_or_an_expression() {
    let locks = memory();
    let holder = hold_busy(&locks, Duration::from_secs(2)).await;
    for result in [
        short_wait(&locks).await,
        short_wait_expr(&locks).await,
        wait_as_given(&locks, Duration::from_millis(10)).await,
    ] {
        match result {
            Err(AppError::Lock(e)) => assert!(e.is_timeout(), "{e:?}"),
            other => panic!("expected a timeout, got {other:?}"),
        }
    }
    holder.abort();
}

#[tokio::test]
async fn without_a_timeout_the_call_waits() {
    let locks = memory();
    let holder = hold_busy(&locks, Duration::from_millis(100)).await;
    within(waits_as_long_as_it_takes(&locks)).await.unwrap();
    holder.await.unwrap();
}

// ---- shapes of functions and managers ----------------------------------------------------------

struct Orders {
    locks: LockManager,
    shared: Arc<LockManager>,
    paid: Vec<u64>,
}

impl Orders {
    /// A method on `&self`, the manager a field; `{id:04}` pads the id.
    #[locked(self.locks, "order:{id:04}", timeout = "1s")]
    #[must_use = "the order may not be paid"]
    async fn status(&self, id: u64) -> AppResult<bool> {
        // Busy for others, under the padded name.
        Ok(!is_free(&self.locks, &format!("order:{id:04}")).await)
    }

    /// `&mut self`, the manager an expression that makes a temporary.
    #[locked(self.shared.clone(), "order:{id}")]
    pub(crate) async fn pay(&mut self, id: u64) -> AppResult<usize> {
        self.paid.push(id);
        Ok(self.paid.len())
    }

    /// `self` by value: the body may consume it.
    #[locked(&self.locks, "close")]
    async fn close(self) -> AppResult<Vec<u64>> {
        Ok(self.paid)
    }

    /// A result that borrows from `self`.
    #[locked(self.locks, "first-paid")]
    async fn first_paid(&self) -> AppResult<Option<&u64>> {
        Ok(self.paid.first())
    }

    /// An associated function, the manager by value.
    #[locked(locks, "static")]
    async fn associated(locks: LockManager) -> AppResult<()> {
        drop(locks);
        Ok(())
    }
}

#[tokio::test]
async fn methods_and_manager_expressions() {
    let mut orders = Orders {
        locks: memory(),
        shared: Arc::new(memory()),
        paid: Vec::new(),
    };
    assert!(orders.status(7).await.unwrap());
    assert!(is_free(&orders.locks, "order:0007").await);
    assert_eq!(orders.pay(1).await.unwrap(), 1);
    assert_eq!(orders.pay(2).await.unwrap(), 2);
    assert!(is_free(&orders.shared, "order:1").await);
    assert_eq!(orders.first_paid().await.unwrap(), Some(&1));
    // The generated futures are `Send` wherever the function's own would be.
    fn assert_send<T: Send>(_: &T) {}
    assert_send(&orders.status(1));
    assert_send(&orders.pay(3));
    assert_send(&pay(&orders.locks, 3));
    Orders::associated(orders.locks.clone()).await.unwrap();
    let locks = orders.locks.clone();
    assert_eq!(orders.close().await.unwrap(), vec![1, 2]);
    assert!(is_free(&locks, "close").await);
}

struct State {
    locks: Arc<LockManager>,
}

/// Generics, a where clause, `impl Trait`, a pattern parameter, a `mut` parameter.
#[locked(&state.locks, "{prefix}:{key}:{a}-{b}")]
async fn generic<K, E>(
    state: &State,
    prefix: impl std::fmt::Display + Send,
    key: K,
    (a, b): (u8, u8),
    mut tries: u32,
) -> Result<String, E>
where
    K: std::fmt::Display,
    E: From<LockError>,
{
    tries += 1;
    let name = format!("{prefix}:{key}:{a}-{b}");
    assert!(!is_free(&state.locks, &name).await);
    Ok(format!("{name} after {tries}"))
}

#[tokio::test]
async fn generics_impl_trait_and_patterns() {
    let state = State {
        locks: Arc::new(memory()),
    };
    let out: Result<String, LockError> = generic(&state, "p", 9, (1, 2), 0).await;
    assert_eq!(out.unwrap(), "p:9:1-2 after 1");
}

/// Two locks, taken outermost first.
#[locked(locks, "first")]
#[locked(locks, "second:{n}")]
async fn two_locks(locks: &LockManager, n: u8) -> AppResult<(bool, bool)> {
    Ok((
        !is_free(locks, "first").await,
        !is_free(locks, &format!("second:{n}")).await,
    ))
}

#[tokio::test]
async fn stacked_attributes_take_both_locks() {
    let locks = memory();
    assert_eq!(two_locks(&locks, 3).await.unwrap(), (true, true));
    assert!(is_free(&locks, "first").await && is_free(&locks, "second:3").await);
}

/// The escape hatch: code that names `tierlock_core` rather than the facade.
#[locked(locks, "core", crate = "tierlock_core")]
async fn through_core(locks: &tierlock_core::LockManager) -> Result<u8, tierlock_core::LockError> {
    Ok(1)
}

#[tokio::test]
async fn the_crate_option_names_another_path() {
    assert_eq!(through_core(&memory()).await.unwrap(), 1);
}

trait Jobs {
    fn locks(&self) -> &LockManager;

    /// A trait method with a default body; the manager a method call.
    #[locked(self.locks(), "job:{id}")]
    async fn run(&self, id: u32) -> AppResult<u32> {
        Ok(id + 1)
    }
}

impl Jobs for State {
    fn locks(&self) -> &LockManager {
        &self.locks
    }
}

#[tokio::test]
async fn trait_methods() {
    let state = State {
        locks: Arc::new(memory()),
    };
    assert_eq!(state.run(1).await.unwrap(), 2);
}

// ---- other attributes --------------------------------------------------------------------------

/// `#[tracing::instrument]` above `#[locked]`: the span is entered before the lock is taken.
#[tracing::instrument(skip(locks), err(Debug))]
#[locked(locks, "traced:{id}")]
async fn traced_outside(locks: &LockManager, id: u32) -> AppResult<u32> {
    Ok(id)
}

/// And below it: the span covers the body only.
#[locked(locks, "traced:{id}")]
#[tracing::instrument(skip(locks), ret)]
async fn traced_inside(locks: &LockManager, id: u32) -> AppResult<u32> {
    Ok(traced_outside(locks, id).await? + 1) // re-enters
}

#[tokio::test]
async fn composes_with_tracing_instrument() {
    let locks = memory();
    assert_eq!(within(traced_inside(&locks, 4)).await.unwrap(), 5);
    assert!(is_free(&locks, "traced:4").await);
}
