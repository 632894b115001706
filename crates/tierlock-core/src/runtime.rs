//! The runtime glue: how synchronous code lets go of an external lock, how blocking calls are
//! driven, and the jitter of polling back-off. Nothing here knows about the tier's state.

use std::cell::Cell;
use std::future::Future;
use std::sync::OnceLock;
use std::time::Duration;

use crate::provider::ExternalLock;

/// Releases an external lock from synchronous code: inline when dropping the handle is enough
/// and cheap, else on a background task, else (no runtime left) by dropping the handle, which
/// every provider guarantees releases the lock.
pub(crate) fn dispose_external(external: Box<dyn ExternalLock>) {
    if external.drop_releases() {
        drop(external);
        return;
    }
    let handle = tokio::runtime::Handle::try_current()
        .ok()
        .or_else(|| FALLBACK.get().map(|rt| rt.handle().clone()));
    match handle {
        Some(handle) => {
            handle.spawn(async move {
                // Nobody is left to tell; dropping the handle on error still frees the lock.
                let _ = external.release().await;
            });
        }
        None => drop(external),
    }
}

/// The runtime that drives blocking acquisitions made outside any runtime.
static FALLBACK: OnceLock<tokio::runtime::Runtime> = OnceLock::new();

/// Runs `future` to completion from synchronous code: on the current runtime (inside
/// `spawn_blocking`), else on a one-worker runtime started on first use.
pub(crate) fn block_on<F: Future>(future: F) -> F::Output {
    if let Ok(handle) = tokio::runtime::Handle::try_current() {
        return handle.block_on(future);
    }
    let runtime = FALLBACK.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("tierlock-blocking")
            .enable_all()
            .build()
            .unwrap_or_else(|err| panic!("tierlock could not start its blocking runtime: {err}"))
    });
    runtime.block_on(future)
}

/// `pause` ± 25 %, from a per-thread xorshift generator (no need for a strong RNG here).
pub(crate) fn jitter(pause: Duration) -> Duration {
    thread_local! {
        static STATE: Cell<u64> = Cell::new({
            let seed = std::collections::hash_map::RandomState::new();
            std::hash::BuildHasher::hash_one(&seed, std::thread::current().id()) | 1
        });
    }
    let random = STATE.with(|state| {
        let mut x = state.get();
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        state.set(x);
        x
    });
    let quarter = pause / 4;
    let nanos = u64::try_from(quarter.as_nanos()).unwrap_or(u64::MAX).max(1);
    pause - quarter + Duration::from_nanos(random % (2 * nanos))
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn jitter_stays_within_a_quarter() {
        let pause = Duration::from_millis(4);
        for _ in 0..1000 {
            let j = jitter(pause);
            assert!(
                j >= Duration::from_millis(3) && j <= Duration::from_millis(5),
                "{j:?}"
            );
        }
    }
}
