//! TLS through rustls against the test server (`scripts/pg-start` enables TLS with a CA of its
//! own and exports its certificate as `TIERLOCK_PG_TLS_CA`). Needs `--features rustls`.
#![cfg(feature = "rustls")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Instant;

use common::{admin, holders, server_url};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use tierlock_core::{LockName, Provider};
use tierlock_postgres::{PostgresError, PostgresProvider};

fn tls_config(ca: Option<&str>) -> rustls::ClientConfig {
    let mut roots = rustls::RootCertStore::empty();
    if let Some(ca) = ca {
        for cert in CertificateDer::pem_file_iter(ca).unwrap() {
            roots.add(cert.unwrap()).unwrap();
        }
    }
    // Name the crypto provider: when several are compiled in (tiberius brings aws-lc-rs into a
    // build with every feature), `ClientConfig::builder()` cannot pick one and panics.
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("ring supports the default protocol versions")
        .with_root_certificates(roots)
        .with_no_client_auth()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn locks_work_over_tls() {
    let Some(url) = server_url("TIERLOCK_PG_URL") else {
        return;
    };
    let Some(ca) = server_url("TIERLOCK_PG_TLS_CA") else {
        return;
    };
    let provider = PostgresProvider::builder(format!("{url}?sslmode=require"))
        .namespace(common::fresh_namespace("tls"))
        .tls(tls_config(Some(&ca)))
        .connect()
        .await
        .unwrap();
    let lock = LockName::new("secure").unwrap();
    let held = provider.acquire(&lock, Some(Instant::now())).await.unwrap();
    let held = held.expect("free lock");

    let admin = admin(&url).await;
    let pid = holders(&admin, provider.lock_key("secure")).await[0].0;
    let ssl: bool = admin
        .query_one("SELECT ssl FROM pg_stat_ssl WHERE pid = $1", &[&pid])
        .await
        .unwrap()
        .get(0);
    assert!(ssl, "the holder's session is not encrypted");
    held.release().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_untrusted_server_certificate_is_a_connect_error() {
    let Some(url) = server_url("TIERLOCK_PG_URL") else {
        return;
    };
    if server_url("TIERLOCK_PG_TLS_CA").is_none() {
        return;
    }
    let err = PostgresProvider::builder(format!("{url}?sslmode=require"))
        .tls(tls_config(None))
        .connect()
        .await
        .unwrap_err();
    assert!(matches!(err, PostgresError::Connect { .. }), "{err:?}");
}
