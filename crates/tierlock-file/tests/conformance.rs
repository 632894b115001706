//! The shared conformance battery, run on the file provider.
//!
//! Each factory call makes a fresh lock directory under cargo's per-target temporary directory
//! (kept after the test: providers outlive the factory; `cargo clean` removes them).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use tierlock_core::Provider;
use tierlock_file::FileProvider;

fn fresh_provider() -> Arc<dyn Provider> {
    let dir = tempfile::Builder::new()
        .prefix("conformance-")
        .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
        .unwrap()
        .keep();
    Arc::new(FileProvider::new(dir).unwrap())
}

tierlock_testkit::conformance_tests!(|| async { fresh_provider() });
