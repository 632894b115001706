//! The shared conformance battery on the SQLite provider: each provider gets a database file
//! of its own, and a short `ttl` so that renewals run many times during the battery.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use tierlock_core::Provider;
use tierlock_sqlite::SqliteProvider;

fn fresh_provider() -> Arc<dyn Provider> {
    let dir = tempfile::Builder::new()
        .prefix("conformance-sqlite-")
        .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
        .unwrap()
        .keep();
    let provider = SqliteProvider::builder(dir.join("locks.db"))
        .ttl(Duration::from_millis(600))
        .build()
        .unwrap();
    Arc::new(provider)
}

tierlock_testkit::conformance_tests!(|| async { fresh_provider() });
