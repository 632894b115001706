//! The shared conformance battery, run on the Redis provider against `TIERLOCK_REDIS_URL`.
//!
//! Each factory call makes a provider with a key prefix of its own, so the cases (and
//! concurrent test runs on one server) never see each other's locks.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use tierlock_core::Provider;

fn fresh_provider() -> Arc<dyn Provider> {
    let url = std::env::var("TIERLOCK_REDIS_URL").unwrap();
    // A short ttl, so the battery also exercises renewals.
    let provider = common::builder(&url, &common::fresh_prefix("conformance"))
        .ttl(Duration::from_millis(900))
        .build()
        .unwrap();
    Arc::new(provider)
}

tierlock_testkit::conformance_tests!(requires_env = "TIERLOCK_REDIS_URL", || async {
    fresh_provider()
});
