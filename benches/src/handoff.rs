//! The hand-off workload, shared by `benches/contended.rs` and `examples/handoff.rs`: `TASKS`
//! tasks on one name, each doing `CYCLES` lock / critical section / unlock cycles, on a fresh
//! multi-thread runtime per round; the variants are tierlock, the naive keyed locks and a bare
//! tokio `Mutex`.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tierlock::LockManager;
use tokio::runtime::Runtime;

use crate::multi_thread;
use crate::naive::NaiveStd;

/// Contending tasks per round.
pub const TASKS: u64 = 8;
/// Lock / critical section / unlock cycles per task.
pub const CYCLES: u64 = 1_000;
/// The name they contend for (short: stored inline by tierlock's `SmolStr`).
pub const NAME: &str = "tenant:42:migrate";
/// The timeout of the variants that wait with one.
pub const TIMEOUT: Duration = Duration::from_secs(1);

/// What a critical section does between its read and its write of the shared counter.
#[derive(Clone, Copy, Debug, Default)]
pub struct Section {
    /// Yield to the runtime (so that every other task queues while the lock is held).
    pub yields: bool,
    /// Busy time added under the lock (zero: none, and no clock read).
    pub spin: Duration,
}

/// The critical section: an increment that is only correct under mutual exclusion.
pub async fn critical_section(counter: &AtomicU64, section: Section) {
    if !section.spin.is_zero() {
        let until = Instant::now() + section.spin;
        while Instant::now() < until {}
    }
    let value = counter.load(Ordering::Relaxed);
    if section.yields {
        tokio::task::yield_now().await;
    }
    counter.store(value + 1, Ordering::Relaxed);
}

/// The body of one contending task.
pub type Task = Pin<Box<dyn Future<Output = ()> + Send>>;
/// Makes the body of one contending task, given the shared counter.
pub type Variant = Box<dyn Fn(Arc<AtomicU64>) -> Task>;

/// One round: `TASKS` tasks each running `variant`'s body, on a fresh runtime of `workers`
/// workers built and shut down outside the timing (so no runtime's state carries over between
/// rounds or variants). Checks that no update was lost.
pub fn round(workers: usize, variant: &Variant) -> Duration {
    let rt = multi_thread(workers);
    let elapsed = round_on(&rt, variant);
    drop(rt);
    elapsed
}

/// One round on `rt`, a runtime that other rounds share. Checks that no update was lost.
pub fn round_on(rt: &Runtime, variant: &Variant) -> Duration {
    let counter = Arc::new(AtomicU64::new(0));
    let elapsed = rt.block_on(async {
        let start = Instant::now();
        let handles: Vec<_> = (0..TASKS)
            .map(|_| tokio::spawn(variant(Arc::clone(&counter))))
            .collect();
        for handle in handles {
            handle.await.expect("bench task panicked");
        }
        start.elapsed()
    });
    assert_eq!(
        counter.load(Ordering::Relaxed),
        TASKS * CYCLES,
        "lost update: no mutual exclusion"
    );
    elapsed
}

/// Critical sections per second of a round that took `elapsed`, in millions.
pub fn rate(elapsed: Duration) -> f64 {
    (TASKS * CYCLES) as f64 / elapsed.as_secs_f64() / 1e6
}

/// Each cycle: `lock` (expression of `$state`, a clone of the variant's `$shared`), the
/// critical section, the guard dropped.
macro_rules! cycles {
    ($shared:expr, $section:expr, |$state:ident| $lock:expr) => {{
        let shared = $shared;
        let section = $section;
        Box::new(move |counter: Arc<AtomicU64>| -> Task {
            let $state = shared.clone();
            Box::pin(async move {
                for _ in 0..CYCLES {
                    let guard = $lock;
                    critical_section(&counter, section).await;
                    drop(guard);
                }
            })
        })
    }};
}

/// tierlock on `locks`, waiting up to `timeout` (`Duration::MAX`: no deadline, no timer).
pub fn tierlock(locks: LockManager, timeout: Duration, section: Section) -> Variant {
    cycles!(locks, section, |locks| locks
        .lock(NAME, timeout)
        .await
        .expect("tierlock lock"))
}

/// Which naive keyed lock (see [`crate::naive`]).
#[derive(Clone, Copy, Debug)]
pub enum Naive {
    /// A: a shared get, then an insert if missing; never removes a name.
    A,
    /// B: the entry API (allocates the key on every call).
    B,
    /// C: A, and removes the name's entry when it goes idle.
    C,
    /// A, waiting at most [`TIMEOUT`] (as tierlock's `lock` with a timeout).
    ATimeout,
}

/// A naive keyed lock of kind `which`.
pub fn naive(which: Naive, section: Section) -> Variant {
    let naive = Arc::new(NaiveStd::new());
    match which {
        Naive::A => cycles!(naive, section, |naive| naive.lock_a(NAME).await),
        Naive::B => cycles!(naive, section, |naive| naive.lock_b(NAME).await),
        Naive::C => cycles!(naive, section, |naive| naive.lock_c(NAME).await),
        Naive::ATimeout => cycles!(naive, section, |naive| tokio::time::timeout(
            TIMEOUT,
            naive.lock_a(NAME)
        )
        .await
        .expect("naive lock timed out")),
    }
}

/// A bare `tokio::sync::Mutex` (no name at all).
pub fn tokio_mutex(section: Section) -> Variant {
    let mutex = Arc::new(tokio::sync::Mutex::new(()));
    cycles!(mutex, section, |mutex| mutex.lock().await)
}
