//! The conformance battery over the fake TDS server in Babelfish mode (see `fake_babelfish.rs`):
//! with the provider's adaptations, every case passes there too (a refusal-driven crash of the
//! fake server would drop every lock and fail them).

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "support/fake_tds.rs"]
mod fake_tds;

use std::sync::Arc;

use fake_tds::FakeServer;
use tierlock_core::Provider;
use tierlock_mssql::MssqlProvider;

tierlock_testkit::conformance_tests!(|| async {
    let server = FakeServer::babelfish().await;
    let provider = MssqlProvider::builder(&server.connection_string())
        .expect("valid connection string")
        .fencing(true)
        .build()
        .expect("valid options");
    Arc::new(provider) as Arc<dyn Provider>
});
