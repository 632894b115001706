//! Observability behind two cargo features, both off by default: `tracing` (a span per
//! acquisition and events at the tier's turning points) and `metrics` (counters, histograms and
//! gauges through the [`metrics`](https://docs.rs/metrics) facade). Without the features every
//! item here is zero-sized and every call compiles to nothing.
//!
//! [`Stats`](crate::Stats) is the third view and needs no feature: a cheap snapshot of one
//! manager, counted on the slow paths only. The metrics count the same slow-path events under the
//! same names (`local_handoffs` ↔ `tierlock_handoffs_total`, …) plus what a snapshot cannot hold
//! (every acquisition's outcome, wait and hold times).
//!
//! # Metrics
//!
//! Every series carries the label `provider` (the provider's [`kind`](crate::Provider::kind)).
//! Lock names are never labels: their number is unbounded.
//!
//! | name | type | what |
//! |---|---|---|
//! | `tierlock_acquisitions_total` | counter | acquisitions by `outcome`: `acquired`, `reentered`, `timeout`, `error`, `cancelled` (the future was dropped while it waited) |
//! | `tierlock_external_acquisitions_total` | counter | external locks taken from the provider |
//! | `tierlock_handoffs_total` | counter | turn boundaries where the next local waiter got the lock and the external lock was kept |
//! | `tierlock_handbacks_total` | counter | turn boundaries where the external lock went back because another process asked (or it was lost) |
//! | `tierlock_timeouts_total` | counter | acquisitions that ended in a timeout (`try_lock` on a held name included) |
//! | `tierlock_lost_total` | counter | external locks found lost when their turn ended |
//! | `tierlock_provider_errors_total` | counter | acquisitions that failed in the provider |
//! | `tierlock_wait_seconds` | histogram | how long an acquisition that did not succeed at once waited (local queue and external lock), whatever its outcome |
//! | `tierlock_hold_seconds` | histogram | from an acquisition to the release that ended its owner's turn |
//! | `tierlock_external_acquire_seconds` | histogram | how long taking the external lock took, successful attempts only |
//! | `tierlock_held_guards` | gauge | live guards (a re-entered name counts once per guard; [`Stats::held`](crate::Stats::held) counts names) |
//! | `tierlock_waiting` | gauge | acquisitions waiting now (queued locally or taking the external lock) |
//!
//! A manager registers its handles when it is created, so install the recorder (e.g.
//! `metrics-exporter-prometheus`) before creating managers; a manager created earlier reports to
//! the recorder that was installed then (none: nothing is recorded).
//!
//! # Tracing
//!
//! Each acquisition runs in a `DEBUG` span `tierlock.acquire` with the fields `lock` (the name),
//! `provider`, and, when it ends, `outcome` (as above) and `waited_us` (for acquisitions that
//! waited). Events, target `tierlock` (inside the span, or with `lock` and `provider` fields
//! where they happen outside it, at a release): `DEBUG` when a task starts taking the external lock and
//! when it has it (with `took_us`), `TRACE` for a local hand-off, `DEBUG` for a hand-back to
//! another process, `DEBUG` for a timeout, `WARN` for a lost lock and for a provider error (with
//! the error). With the feature on and no subscriber, the cost is a few atomic loads per
//! acquisition (`docs/benchmarks.md` in the repository has the figure).

#[cfg(any(feature = "metrics", feature = "tracing"))]
use std::time::Instant;

use std::sync::atomic::Ordering;

use crate::error::BoxError;
#[cfg(any(feature = "metrics", feature = "tracing"))]
use crate::error::LockError;
#[cfg(any(feature = "metrics", feature = "tracing"))]
use crate::guard::LockGuard;
use crate::stats::{Counters, Stats};
use crate::table::{Outcome, Release};

/// How an acquisition ended, as the `outcome` label and span field say it.
#[cfg(any(feature = "metrics", feature = "tracing"))]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Ending {
    Acquired,
    Reentered,
    Timeout,
    Error,
    Cancelled,
}

#[cfg(any(feature = "metrics", feature = "tracing"))]
impl Ending {
    #[cfg_attr(not(feature = "tracing"), allow(dead_code))]
    fn as_str(self) -> &'static str {
        match self {
            Ending::Acquired => "acquired",
            Ending::Reentered => "reentered",
            Ending::Timeout => "timeout",
            Ending::Error => "error",
            Ending::Cancelled => "cancelled",
        }
    }
}

/// The instruments of one manager: the counters of [`Stats`] always, tracing and metrics with
/// their features. Every slow-path event is counted here, once, for all three.
#[derive(Debug)]
pub(crate) struct Observer {
    #[cfg_attr(not(feature = "tracing"), allow(dead_code))]
    provider: &'static str,
    counters: Counters,
    #[cfg(feature = "metrics")]
    metrics: instruments::Instruments,
}

impl Observer {
    pub(crate) fn new(provider: &'static str) -> Self {
        Observer {
            provider,
            counters: Counters::default(),
            #[cfg(feature = "metrics")]
            metrics: instruments::Instruments::new(provider),
        }
    }

    /// Whether acquisitions are watched: always with `metrics`; with `tracing` alone, while a
    /// subscriber may want `DEBUG` (one atomic load; none ever set: no).
    #[cfg(any(feature = "metrics", feature = "tracing"))]
    #[inline]
    pub(crate) fn watching(&self) -> bool {
        cfg!(feature = "metrics") || tracing_wanted()
    }

    /// Starts watching one acquisition of `name`.
    #[cfg(any(feature = "metrics", feature = "tracing"))]
    #[inline]
    pub(crate) fn start(&self, name: &str) -> Acquisition<'_> {
        let _ = name;
        Acquisition {
            observer: self,
            #[cfg(feature = "tracing")]
            span: tracing::debug_span!(
                target: "tierlock",
                "tierlock.acquire",
                lock = name,
                provider = self.provider,
                outcome = tracing::field::Empty,
                waited_us = tracing::field::Empty,
            ),
            #[cfg(any(feature = "metrics", feature = "tracing"))]
            waiting_since: None,
            reentered: false,
            finished: false,
        }
    }

    /// The snapshot of [`LockManager::stats`](crate::LockManager::stats).
    pub(crate) fn stats(&self, entries: usize, held: usize, waiting: usize) -> Stats {
        self.counters.snapshot(entries, held, waiting)
    }

    /// An acquisition ends in a timeout (`try_lock` on a held name included).
    #[inline]
    pub(crate) fn timed_out(&self) {
        self.counters.timeouts.fetch_add(1, Ordering::Relaxed);
        #[cfg(feature = "metrics")]
        self.metrics.timeouts.increment(1);
    }

    /// A task starts taking the external lock for `name`.
    #[inline]
    pub(crate) fn escalating(&self, name: &str) {
        let _ = name;
        #[cfg(feature = "tracing")]
        tracing::debug!(target: "tierlock", "taking the external lock");
    }

    /// The external lock for `name` was taken after `took`.
    #[inline]
    pub(crate) fn external_acquired(&self, name: &str, took: std::time::Duration) {
        let _ = (name, took);
        self.counters
            .external_acquisitions
            .fetch_add(1, Ordering::Relaxed);
        #[cfg(feature = "tracing")]
        tracing::debug!(
            target: "tierlock",
            took_us = u64::try_from(took.as_micros()).unwrap_or(u64::MAX),
            "took the external lock"
        );
        #[cfg(feature = "metrics")]
        {
            self.metrics.external_acquisitions.increment(1);
            self.metrics.external_acquire_seconds.record(took);
        }
    }

    /// The provider failed while `name` was being acquired.
    #[inline]
    pub(crate) fn provider_error(&self, name: &str, error: &BoxError) {
        let _ = (name, error);
        self.counters
            .provider_errors
            .fetch_add(1, Ordering::Relaxed);
        #[cfg(feature = "tracing")]
        tracing::warn!(target: "tierlock", error = %error, "the provider failed");
        #[cfg(feature = "metrics")]
        self.metrics.provider_errors.increment(1);
    }

    /// A guard was handed out.
    #[inline]
    pub(crate) fn guard_created(&self) {
        #[cfg(feature = "metrics")]
        self.metrics.held_guards.increment(1.0);
    }

    /// A guard let go of its count: `release` is what the table did, `since` when the guard was
    /// handed out.
    #[inline]
    pub(crate) fn released(&self, name: &str, release: &Release, since: Since) {
        let _ = (name, since);
        #[cfg(feature = "metrics")]
        self.metrics.held_guards.decrement(1.0);
        if release.external.is_some() {
            self.counters
                .external_releases
                .fetch_add(1, Ordering::Relaxed);
        }
        match release.outcome {
            Outcome::Nested | Outcome::NotHeld => return,
            Outcome::HandedOff => {
                self.counters.local_handoffs.fetch_add(1, Ordering::Relaxed);
                #[cfg(feature = "tracing")]
                tracing::trace!(target: "tierlock", lock = name, provider = self.provider, "handed to the next local waiter");
                #[cfg(feature = "metrics")]
                self.metrics.handoffs.increment(1);
            }
            Outcome::HandedBack => {
                self.counters.handbacks.fetch_add(1, Ordering::Relaxed);
                #[cfg(feature = "tracing")]
                tracing::debug!(target: "tierlock", lock = name, provider = self.provider, "handed back to the provider: another process asked for it");
                #[cfg(feature = "metrics")]
                self.metrics.handbacks.increment(1);
            }
            Outcome::Removed => {}
        }
        if release.lost {
            self.lost(name);
        }
        #[cfg(feature = "metrics")]
        self.metrics.hold_seconds.record(since.0.elapsed());
    }

    /// The external lock of `name` was found lost.
    #[inline]
    pub(crate) fn lost(&self, name: &str) {
        let _ = name;
        #[cfg(feature = "tracing")]
        tracing::warn!(target: "tierlock", lock = name, provider = self.provider, "the external lock was lost while it was held");
        #[cfg(feature = "metrics")]
        self.metrics.lost.increment(1);
    }
}

#[cfg(feature = "tracing")]
#[inline]
fn tracing_wanted() -> bool {
    tracing::level_enabled!(tracing::Level::DEBUG)
}

#[cfg(all(feature = "metrics", not(feature = "tracing")))]
#[inline]
fn tracing_wanted() -> bool {
    false
}

/// When a guard was handed out; read from the clock only with the `metrics` feature.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Since(#[cfg(feature = "metrics")] Instant);

impl Since {
    #[inline]
    pub(crate) fn now() -> Self {
        Since(
            #[cfg(feature = "metrics")]
            Instant::now(),
        )
    }
}

/// One acquisition being watched. Dropped unfinished (the acquiring future was dropped), it
/// counts as `cancelled` if it had started to wait.
#[cfg(any(feature = "metrics", feature = "tracing"))]
#[must_use]
pub(crate) struct Acquisition<'a> {
    #[cfg_attr(not(feature = "metrics"), allow(dead_code))]
    observer: &'a Observer,
    #[cfg(feature = "tracing")]
    span: tracing::Span,
    #[cfg(any(feature = "metrics", feature = "tracing"))]
    waiting_since: Option<Instant>,
    reentered: bool,
    finished: bool,
}

#[cfg(any(feature = "metrics", feature = "tracing"))]
impl Acquisition<'_> {
    /// The span to run the acquisition in; `None` if no subscriber wants it (then the
    /// acquisition runs without entering and leaving a span at every poll).
    #[cfg(feature = "tracing")]
    #[inline]
    pub(crate) fn span(&self) -> Option<tracing::Span> {
        (!self.span.is_disabled()).then(|| self.span.clone())
    }

    /// The acquisition did not succeed at once: it queues or takes the external lock.
    #[inline]
    pub(crate) fn waits(&mut self) {
        #[cfg(any(feature = "metrics", feature = "tracing"))]
        if self.waiting_since.is_none() {
            self.waiting_since = Some(Instant::now());
            #[cfg(feature = "metrics")]
            self.observer.metrics.waiting.increment(1.0);
        }
    }

    /// The acquisition was a re-entry.
    #[inline]
    pub(crate) fn reentered(&mut self) {
        self.reentered = true;
    }

    /// The acquisition ended with `result`.
    #[inline]
    pub(crate) fn finish(mut self, result: &Result<LockGuard, LockError>) {
        let ending = match result {
            Ok(_) if self.reentered => Ending::Reentered,
            Ok(_) => Ending::Acquired,
            Err(LockError::Timeout { .. }) => Ending::Timeout,
            Err(_) => Ending::Error,
        };
        self.end(ending);
    }

    #[inline]
    fn end(&mut self, ending: Ending) {
        let _ = ending;
        self.finished = true;
        #[cfg(any(feature = "metrics", feature = "tracing"))]
        let waited = self.waiting_since.map(|since| since.elapsed());
        #[cfg(feature = "tracing")]
        if !self.span.is_disabled() {
            self.span.record("outcome", ending.as_str());
            if let Some(waited) = waited {
                let micros = u64::try_from(waited.as_micros()).unwrap_or(u64::MAX);
                self.span.record("waited_us", micros);
            }
            if ending == Ending::Timeout {
                tracing::debug!(target: "tierlock", parent: &self.span, "timed out");
            }
        }
        #[cfg(feature = "metrics")]
        {
            let metrics = &self.observer.metrics;
            metrics.outcome(ending).increment(1);
            if let Some(waited) = waited {
                metrics.waiting.decrement(1.0);
                metrics.wait_seconds.record(waited);
            }
        }
    }
}

#[cfg(any(feature = "metrics", feature = "tracing"))]
impl Drop for Acquisition<'_> {
    fn drop(&mut self) {
        if !self.finished && self.waiting_since.is_some() {
            self.end(Ending::Cancelled);
        }
    }
}

#[cfg(feature = "metrics")]
mod instruments {
    use metrics::{Counter, Gauge, Histogram, counter, gauge, histogram};

    use super::Ending;

    /// The handles of one manager, registered with the recorder installed when it was created.
    pub(super) struct Instruments {
        acquired: Counter,
        reentered: Counter,
        timeout: Counter,
        error: Counter,
        cancelled: Counter,
        pub(super) external_acquisitions: Counter,
        pub(super) handoffs: Counter,
        pub(super) handbacks: Counter,
        pub(super) timeouts: Counter,
        pub(super) lost: Counter,
        pub(super) provider_errors: Counter,
        pub(super) wait_seconds: Histogram,
        pub(super) hold_seconds: Histogram,
        pub(super) external_acquire_seconds: Histogram,
        pub(super) held_guards: Gauge,
        pub(super) waiting: Gauge,
    }

    impl std::fmt::Debug for Instruments {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.debug_struct("Instruments").finish_non_exhaustive()
        }
    }

    impl Instruments {
        pub(super) fn new(provider: &'static str) -> Self {
            let outcome = |outcome: &'static str| counter!("tierlock_acquisitions_total", "provider" => provider, "outcome" => outcome);
            Instruments {
                acquired: outcome("acquired"),
                reentered: outcome("reentered"),
                timeout: outcome("timeout"),
                error: outcome("error"),
                cancelled: outcome("cancelled"),
                external_acquisitions: counter!("tierlock_external_acquisitions_total", "provider" => provider),
                handoffs: counter!("tierlock_handoffs_total", "provider" => provider),
                handbacks: counter!("tierlock_handbacks_total", "provider" => provider),
                timeouts: counter!("tierlock_timeouts_total", "provider" => provider),
                lost: counter!("tierlock_lost_total", "provider" => provider),
                provider_errors: counter!("tierlock_provider_errors_total", "provider" => provider),
                wait_seconds: histogram!("tierlock_wait_seconds", "provider" => provider),
                hold_seconds: histogram!("tierlock_hold_seconds", "provider" => provider),
                external_acquire_seconds: histogram!("tierlock_external_acquire_seconds", "provider" => provider),
                held_guards: gauge!("tierlock_held_guards", "provider" => provider),
                waiting: gauge!("tierlock_waiting", "provider" => provider),
            }
        }

        pub(super) fn outcome(&self, ending: Ending) -> &Counter {
            match ending {
                Ending::Acquired => &self.acquired,
                Ending::Reentered => &self.reentered,
                Ending::Timeout => &self.timeout,
                Ending::Error => &self.error,
                Ending::Cancelled => &self.cancelled,
            }
        }
    }
}
