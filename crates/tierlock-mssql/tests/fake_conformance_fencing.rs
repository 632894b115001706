//! The conformance battery over the fake TDS server (see `fake_server.rs`) with fencing tokens
//! on: every case, plus the token rules of `fencing_tokens_increase`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "support/fake_tds.rs"]
mod fake_tds;

use std::sync::Arc;

use fake_tds::FakeServer;
use tierlock_core::Provider;
use tierlock_mssql::MssqlProvider;

tierlock_testkit::conformance_tests!(|| async {
    let server = FakeServer::start().await;
    let provider = MssqlProvider::builder(&server.connection_string())
        .expect("valid connection string")
        .fencing(true)
        .build()
        .expect("valid options");
    Arc::new(provider) as Arc<dyn Provider>
});
