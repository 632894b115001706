//! The shared conformance battery, run on the PostgreSQL provider against `TIERLOCK_PG_URL`.
//!
//! Each factory call makes a provider in a namespace of its own, so the cases (and concurrent
//! test runs on one database) never see each other's locks.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;

use tierlock_core::Provider;
use tierlock_postgres::PostgresProvider;

fn fresh_provider() -> Arc<dyn Provider> {
    let url = std::env::var("TIERLOCK_PG_URL").unwrap();
    let provider = PostgresProvider::builder(url)
        .namespace(common::fresh_namespace("conformance"))
        .build()
        .unwrap();
    Arc::new(provider)
}

tierlock_testkit::conformance_tests!(requires_env = "TIERLOCK_PG_URL", || async {
    fresh_provider()
});
