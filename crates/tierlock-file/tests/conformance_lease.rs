//! The shared conformance battery, run on the file provider in lease mode (a short `ttl`, so
//! the background renewals run many times during the battery).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use tierlock_core::Provider;
use tierlock_file::{FileLockMode, FileProvider};

fn fresh_provider() -> Arc<dyn Provider> {
    let dir = tempfile::Builder::new()
        .prefix("conformance-lease-")
        .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
        .unwrap()
        .keep();
    let provider = FileProvider::builder(dir)
        .mode(FileLockMode::Lease {
            ttl: Duration::from_millis(300),
        })
        .build()
        .unwrap();
    Arc::new(provider)
}

tierlock_testkit::conformance_tests!(|| async { fresh_provider() });
