//! The conformance battery: what every provider must do, through a [`LockManager`].
//!
//! Each case is an async function taking a factory that returns a provider in a fresh,
//! independent scope on each call. Run them all with [`conformance_tests!`](crate::conformance_tests);
//! call one directly to debug it. "Another process" is played by a second manager on the same
//! provider: managers never share their in-process tier, so they meet only in the provider.
//!
//! Bounds on waiting are generous on purpose (seconds where milliseconds are expected): they
//! catch hangs, not slowness. Timing is measured by benchmarks.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tierlock_core::{LockError, LockGuard, LockManager, MAX_NAME_LEN, Provider};

/// How long a case waits for something that should happen at once.
pub const GENEROUS: Duration = Duration::from_secs(10);

async fn two_managers<F, Fut>(factory: &F) -> (LockManager, LockManager)
where
    F: Fn() -> Fut,
    Fut: Future<Output = Arc<dyn Provider>>,
{
    let provider = factory().await;
    (
        LockManager::from_arc(Arc::clone(&provider)),
        LockManager::from_arc(provider),
    )
}

async fn lock(manager: &LockManager, name: &str) -> LockGuard {
    match manager.lock(name, GENEROUS).await {
        Ok(guard) => guard,
        Err(err) => panic!("lock({name:?}) failed: {err}"),
    }
}

async fn release(guard: LockGuard) {
    let name = guard.name().to_owned();
    if let Err(err) = guard.release().await {
        panic!("release of {name:?} failed: {err}");
    }
}

async fn is_free_for(manager: &LockManager, name: &str) -> bool {
    match manager.try_lock(name).await {
        Ok(found) => found.is_some(),
        Err(err) => panic!("try_lock({name:?}) failed: {err}"),
    }
}

/// Two managers on one provider exclude each other, and the lock passes between them.
pub async fn two_managers_exclude<F, Fut>(factory: &F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = Arc<dyn Provider>>,
{
    let (a, b) = two_managers(factory).await;
    let held = lock(&a, "conformance:exclude").await;
    assert!(
        !is_free_for(&b, "conformance:exclude").await,
        "b took a's lock"
    );
    release(held).await;
    let taken = lock(&b, "conformance:exclude").await;
    assert!(
        !is_free_for(&a, "conformance:exclude").await,
        "a took b's lock"
    );
    release(taken).await;
}

/// The same name in two scopes (two providers from the factory) is two independent locks.
pub async fn different_scopes_are_independent<F, Fut>(factory: &F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = Arc<dyn Provider>>,
{
    let one = LockManager::from_arc(factory().await);
    let two = LockManager::from_arc(factory().await);
    let held = lock(&one, "conformance:scoped").await;
    let other = two.try_lock("conformance:scoped").await;
    assert!(matches!(other, Ok(Some(_))), "scopes interfere: {other:?}");
    drop(other);
    release(held).await;
}

/// The names a provider must map without trouble: path and shell metacharacters, spaces,
/// unicode, traversal attempts, 1024 bytes; and names differing only in case are distinct.
pub fn awkward_names() -> Vec<String> {
    vec![
        r#"/ \ : * ? " < > |"#.to_owned(),
        " leading and trailing spaces ".to_owned(),
        "ключ-🔒-鍵".to_owned(),
        "../../etc/passwd".to_owned(),
        "/absolute/path".to_owned(),
        r"C:\Windows\system32".to_owned(),
        ".".to_owned(),
        "..".to_owned(),
        "x".repeat(MAX_NAME_LEN),
        "é".repeat(MAX_NAME_LEN / 2),
        "Case".to_owned(),
        "case".to_owned(),
        "CASE".to_owned(),
    ]
}

/// Every name of [`awkward_names`] works and excludes, and case matters.
pub async fn awkward_names_work<F, Fut>(factory: &F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = Arc<dyn Provider>>,
{
    let (a, b) = two_managers(factory).await;
    for name in awkward_names() {
        let held = lock(&a, &name).await;
        assert_eq!(held.name(), name);
        assert!(!is_free_for(&b, &name).await, "{name:?} did not exclude");
        release(held).await;
        assert!(is_free_for(&b, &name).await, "{name:?} stayed held");
    }
    let upper = lock(&a, "Case").await;
    assert!(
        is_free_for(&b, "case").await,
        "names differing in case collide"
    );
    assert!(
        is_free_for(&b, "CASE").await,
        "names differing in case collide"
    );
    release(upper).await;
}

/// 1,000 acquire/release cycles with a zero timeout all succeed.
pub async fn zero_timeout_cycles<F, Fut>(factory: &F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = Arc<dyn Provider>>,
{
    let (a, _) = two_managers(factory).await;
    for cycle in 0..1000 {
        match a.lock("conformance:cycles", Duration::ZERO).await {
            Ok(guard) => release(guard).await,
            Err(err) => panic!("cycle {cycle} failed: {err}"),
        }
    }
    assert_eq!(a.stats().entries, 0);
}

/// A lock held elsewhere makes `lock` time out after its budget and `try_lock` say `None`.
pub async fn timeout_when_held_elsewhere<F, Fut>(factory: &F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = Arc<dyn Provider>>,
{
    let (a, b) = two_managers(factory).await;
    let held = lock(&a, "conformance:timeout").await;
    let budget = Duration::from_millis(200);
    let start = Instant::now();
    match b.lock("conformance:timeout", budget).await {
        Err(LockError::Timeout { name, waited }) => {
            assert_eq!(name, "conformance:timeout");
            assert!(waited >= budget, "gave up early: {waited:?}");
        }
        other => panic!("expected a timeout, got {other:?}"),
    }
    assert!(
        start.elapsed() < GENEROUS,
        "timeout overran: {:?}",
        start.elapsed()
    );
    assert!(matches!(b.try_lock("conformance:timeout").await, Ok(None)));
    assert!(matches!(
        b.lock("conformance:timeout", Duration::ZERO).await,
        Err(LockError::Timeout { .. })
    ));
    release(held).await;
    assert_eq!(b.stats().entries, 0, "a timed-out waiter left an entry");
}

/// A waiter in another manager gets the lock once it is released.
pub async fn waiter_gets_released_lock<F, Fut>(factory: &F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = Arc<dyn Provider>>,
{
    let (a, b) = two_managers(factory).await;
    let held = lock(&a, "conformance:wait").await;
    let waiter = tokio::spawn(async move {
        let guard = lock(&b, "conformance:wait").await;
        release(guard).await;
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(!waiter.is_finished(), "the waiter did not wait");
    release(held).await;
    tokio::time::timeout(GENEROUS, waiter)
        .await
        .expect("the waiter never got the lock")
        .expect("the waiter panicked");
}

/// Re-entry holds the external lock until the owner's last guard goes, in any drop order.
pub async fn reentry_across_the_provider<F, Fut>(factory: &F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = Arc<dyn Provider>>,
{
    let (a, b) = two_managers(factory).await;
    let first = lock(&a, "conformance:reentry").await;
    let second = lock(&a, "conformance:reentry").await;
    let third = a.lock("conformance:reentry", Duration::ZERO).await;
    assert!(
        third.is_ok(),
        "re-entry with zero timeout failed: {third:?}"
    );
    drop(first);
    drop(third);
    assert!(
        !is_free_for(&b, "conformance:reentry").await,
        "released before the last guard"
    );
    release(second).await;
    let after = lock(&b, "conformance:reentry").await;
    release(after).await;
}

/// Two managers × 4 tasks × 250 non-atomic increments (read, yield, write) under one lock.
pub async fn mutual_exclusion<F, Fut>(factory: &F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = Arc<dyn Provider>>,
{
    const TASKS: u64 = 4;
    const ROUNDS: u64 = 250;
    let (a, b) = two_managers(factory).await;
    let counter = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for manager in [a, b] {
        for _ in 0..TASKS {
            let manager = manager.clone();
            let counter = Arc::clone(&counter);
            tasks.push(tokio::spawn(async move {
                for _ in 0..ROUNDS {
                    let guard = lock(&manager, "conformance:counter").await;
                    let value = counter.load(Ordering::SeqCst);
                    tokio::task::yield_now().await;
                    counter.store(value + 1, Ordering::SeqCst);
                    release(guard).await;
                }
            }));
        }
    }
    for task in tasks {
        task.await.expect("a task panicked");
    }
    assert_eq!(counter.load(Ordering::SeqCst), 2 * TASKS * ROUNDS);
}

/// Acquisitions cancelled at random points (timeouts, `select!`, dropped guards) across 8
/// tasks, 4 names and two managers leave nothing behind: no entry, no held name.
pub async fn cancellation_leaves_nothing<F, Fut>(factory: &F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = Arc<dyn Provider>>,
{
    const NAMES: [&str; 4] = ["cancel:a", "cancel:b", "cancel:c", "cancel:d"];
    let (a, b) = two_managers(factory).await;
    let mut tasks = Vec::new();
    for task in 0..8u64 {
        let manager = if task % 2 == 0 { a.clone() } else { b.clone() };
        tasks.push(tokio::spawn(async move {
            let mut rng = Rng::new(task);
            for _ in 0..250 {
                let name = NAMES[rng.below(NAMES.len() as u64) as usize];
                chaos_step(&manager, name, &mut rng).await;
            }
        }));
    }
    for task in tasks {
        task.await.expect("a task panicked");
    }
    assert_eq!(
        a.stats().entries,
        0,
        "manager a kept entries: {:?}",
        a.stats()
    );
    assert_eq!(
        b.stats().entries,
        0,
        "manager b kept entries: {:?}",
        b.stats()
    );
    assert_eq!(a.stats().held + b.stats().held, 0);
    for name in NAMES {
        let start = Instant::now();
        while !is_free_for(&a, name).await {
            // Providers that release on a background task may need a moment.
            assert!(start.elapsed() < GENEROUS, "{name:?} is stuck");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

/// One random acquisition, possibly cancelled.
async fn chaos_step(manager: &LockManager, name: &str, rng: &mut Rng) {
    let micros = |rng: &mut Rng, max: u64| Duration::from_micros(rng.below(max));
    match rng.below(4) {
        // A lock with a short budget; hold it briefly, then release or drop.
        0 => {
            if let Ok(guard) = manager.lock(name, micros(rng, 3000)).await {
                tokio::time::sleep(micros(rng, 500)).await;
                if rng.below(2) == 0 {
                    drop(guard);
                } else {
                    let _ = guard.release().await;
                }
            }
        }
        // An outer timeout that may fire at any await point inside the acquisition.
        1 => {
            let budget = micros(rng, 3000);
            if let Ok(Ok(guard)) = tokio::time::timeout(budget, manager.lock(name, GENEROUS)).await
            {
                tokio::task::yield_now().await;
                drop(guard);
            }
        }
        // A select! that drops the acquisition when another branch wins.
        2 => {
            let nap = micros(rng, 2000);
            tokio::select! {
                guard = manager.lock(name, GENEROUS) => { drop(guard); }
                () = tokio::time::sleep(nap) => {}
            }
        }
        // Re-entry, then cancellation of a nested wait on another name.
        _ => {
            if let Ok(Some(outer)) = manager.try_lock(name).await {
                let inner = manager.lock(name, Duration::ZERO).await;
                assert!(inner.is_ok(), "re-entry failed: {inner:?}");
                let _ = tokio::time::timeout(micros(rng, 1000), manager.lock("cancel:a", GENEROUS))
                    .await;
                drop(outer);
                drop(inner);
            }
        }
    }
}

/// While one manager keeps 4 tasks contending on a name, another manager that asks for it gets
/// it: the request signal makes the holder hand the external lock over at a turn boundary.
pub async fn requested_lock_is_handed_over<F, Fut>(factory: &F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = Arc<dyn Provider>>,
{
    let (a, b) = two_managers(factory).await;
    let stop = Arc::new(AtomicBool::new(false));
    let sections = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let (a, stop, sections) = (a.clone(), Arc::clone(&stop), Arc::clone(&sections));
        tasks.push(tokio::spawn(async move {
            while !stop.load(Ordering::SeqCst) {
                let guard = lock(&a, "conformance:busy").await;
                sections.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_micros(100)).await;
                drop(guard);
            }
        }));
    }
    // Let the busy manager settle into handing the lock around locally.
    while sections.load(Ordering::SeqCst) < 20 {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let got = b.lock("conformance:busy", GENEROUS).await;
    stop.store(true, Ordering::SeqCst);
    let guard = match got {
        Ok(guard) => guard,
        Err(err) => panic!("the other manager starved: {err}"),
    };
    release(guard).await;
    for task in tasks {
        task.await.expect("a task panicked");
    }
}

/// Fencing tokens, for providers that make them (the case passes at once for providers whose
/// first acquisition has no token): every external acquisition's token is larger than the one
/// before, whichever manager took it; re-entrant guards and a local hand-off report the token of
/// the external acquisition they share; a provider that makes tokens makes one every time.
pub async fn fencing_tokens_increase<F, Fut>(factory: &F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = Arc<dyn Provider>>,
{
    const NAME: &str = "conformance:fence";
    let (a, b) = two_managers(factory).await;
    let first = lock(&a, NAME).await;
    let Some(mut last) = first.fencing_token() else {
        release(first).await;
        return;
    };
    let nested = lock(&a, NAME).await;
    assert_eq!(
        nested.fencing_token(),
        Some(last),
        "re-entry changed the token"
    );
    // A local waiter takes over by hand-off: same external acquisition, same token.
    let handed = tokio::spawn({
        let a = a.clone();
        async move {
            let guard = lock(&a, NAME).await;
            let token = guard.fencing_token();
            release(guard).await;
            token
        }
    });
    tokio::time::sleep(Duration::from_millis(20)).await;
    drop(nested);
    release(first).await;
    let seen = tokio::time::timeout(GENEROUS, handed)
        .await
        .expect("the local waiter never got the lock")
        .expect("the local waiter panicked");
    assert!(
        seen >= Some(last),
        "a later holder saw an older token: {seen:?} < {last}"
    );
    last = seen.unwrap_or(last);
    for turn in 0..20 {
        let manager = if turn % 2 == 0 { &b } else { &a };
        let guard = lock(manager, NAME).await;
        let token = guard.fencing_token();
        let Some(token) = token else {
            panic!("turn {turn}: a provider that makes tokens made none");
        };
        assert!(token > last, "turn {turn}: token {token} after {last}");
        last = token;
        release(guard).await;
    }
}

/// A small xorshift generator: reproducible per seed, no dependency.
#[derive(Debug)]
pub struct Rng(u64);

impl Rng {
    /// A generator for `seed`.
    pub fn new(seed: u64) -> Self {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    /// A number in `0..n` (`n > 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x % n.max(1)
    }
}
