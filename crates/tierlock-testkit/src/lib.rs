//! Test kit for tierlock providers: the conformance battery every provider must pass, an
//! instrumented provider, and helpers for tests that need a server.
//!
//! A provider crate runs the whole battery from one integration test file:
//!
//! ```
//! use std::sync::Arc;
//! use tierlock_core::{MemoryProvider, Provider};
//!
//! // Each call must return a provider in a fresh, independent scope.
//! tierlock_testkit::conformance_tests!(|| async {
//!     Arc::new(MemoryProvider::new()) as Arc<dyn Provider>
//! });
//! ```
//!
//! Providers that need a server name the environment variable that points at it; the tests
//! then print that they were skipped when it is unset, and fail instead when
//! `TIERLOCK_REQUIRE_SERVERS` names the variable (as the project's `scripts/test` does for the
//! servers it starts) or is `1`:
//!
//! ```ignore
//! tierlock_testkit::conformance_tests!(requires_env = "TIERLOCK_PG_URL", || async {
//!     let url = std::env::var("TIERLOCK_PG_URL").unwrap();
//!     /* build the provider on `url` in a fresh namespace */
//! });
//! ```

#![allow(clippy::unwrap_used, clippy::expect_used)]
#![forbid(unsafe_code)]

pub mod conformance;
mod counting;
pub mod multiprocess;
pub mod redis_server;
pub mod rig;
pub mod worker;

pub use counting::{CountingProvider, InjectedFailure};

#[doc(hidden)]
pub use tokio as __tokio;

/// The environment variable that turns skipped server tests into failures: `1` for every
/// server, or a comma-separated list of the variables that must be set
/// (`TIERLOCK_REQUIRE_SERVERS=TIERLOCK_PG_URL`).
pub const REQUIRE_SERVERS_VAR: &str = "TIERLOCK_REQUIRE_SERVERS";

/// Whether the run demands the server named by `var` (see [`REQUIRE_SERVERS_VAR`]).
fn required(var: &str) -> bool {
    std::env::var(REQUIRE_SERVERS_VAR)
        .is_ok_and(|v| v.trim() == "1" || v.split(',').any(|item| item.trim() == var))
}

/// The value of the environment variable `var` (the address of a test server), or `None` after
/// printing that the calling test is skipped.
///
/// # Panics
///
/// If `var` is unset but required by [`REQUIRE_SERVERS_VAR`]: a run that is meant to test against
/// real servers must not pass by skipping them.
pub fn server_url(var: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            if required(var) {
                panic!(
                    "{var} is not set but {REQUIRE_SERVERS_VAR} requires it: the server tests must run"
                );
            }
            eprintln!("skipped: {var} not set");
            None
        }
    }
}

/// Whether a battery case may run: always without `var`, else only if [`server_url`] has it.
#[doc(hidden)]
pub fn __server_available(var: Option<&str>) -> bool {
    var.is_none_or(|var| server_url(var).is_some())
}

/// Runs a battery case on a fresh multi-thread runtime (4 workers).
#[doc(hidden)]
pub fn __run<F: std::future::Future>(future: F) -> F::Output {
    match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime.block_on(future),
        Err(err) => panic!("cannot start a test runtime: {err}"),
    }
}

/// Generates `mod conformance`, one `#[test]` per case of the [battery](conformance).
///
/// `conformance_tests!(FACTORY)` or `conformance_tests!(requires_env = "VAR", FACTORY)`, where
/// `FACTORY: Fn() -> impl Future<Output = Arc<dyn Provider>>` returns a provider in a fresh
/// scope on each call. Items of the calling module are in scope inside the factory.
#[macro_export]
macro_rules! conformance_tests {
    (requires_env = $var:literal, $factory:expr $(,)?) => {
        $crate::__conformance_tests!(::core::option::Option::Some($var), $factory);
    };
    ($factory:expr $(,)?) => {
        $crate::__conformance_tests!(::core::option::Option::None, $factory);
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __conformance_tests {
    ($var:expr, $factory:expr) => {
        mod conformance {
            #[allow(unused_imports)]
            use super::*;
            $crate::__conformance_case!(
                $var,
                $factory,
                two_managers_exclude,
                different_scopes_are_independent,
                awkward_names_work,
                zero_timeout_cycles,
                timeout_when_held_elsewhere,
                waiter_gets_released_lock,
                reentry_across_the_provider,
                mutual_exclusion,
                cancellation_leaves_nothing,
                requested_lock_is_handed_over,
                fencing_tokens_increase,
            );
        }
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __conformance_case {
    ($var:expr, $factory:expr, $($case:ident),+ $(,)?) => {
        $(
            #[test]
            fn $case() {
                if $crate::__server_available($var) {
                    $crate::__run($crate::conformance::$case(&$factory));
                }
            }
        )+
    };
}
