//! The shared conformance battery on the PostgreSQL provider with fencing tokens on
//! (`.fencing(true)`), against `TIERLOCK_PG_URL`; each case in a namespace of its own.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;

use tierlock_core::Provider;
use tierlock_postgres::PostgresProvider;

fn fresh_provider() -> Arc<dyn Provider> {
    let url = std::env::var("TIERLOCK_PG_URL").unwrap();
    let provider = PostgresProvider::builder(url)
        .namespace(common::fresh_namespace("conformance-fencing"))
        .fencing(true)
        .build()
        .unwrap();
    Arc::new(provider)
}

tierlock_testkit::conformance_tests!(requires_env = "TIERLOCK_PG_URL", || async {
    fresh_provider()
});
