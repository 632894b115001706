//! TLS for `postgres://…?sslmode=require`: rustls with the *ring* provider and the system's
//! root certificates.

use std::sync::Arc;

use tierlock_core::BoxError;

/// A client configuration that trusts the system's root certificates (`SSL_CERT_FILE` /
/// `SSL_CERT_DIR` override them) and checks the server's name, i.e. libpq's `verify-full`.
pub(super) fn client_config() -> Result<rustls::ClientConfig, BoxError> {
    let mut roots = rustls::RootCertStore::empty();
    let found = rustls_native_certs::load_native_certs();
    let (added, _ignored) = roots.add_parsable_certificates(found.certs);
    if added == 0 {
        return Err(Box::new(NoRootCertificates));
    }
    // Several rustls crypto providers may be compiled in (another crate may bring aws-lc-rs):
    // name one explicitly rather than rely on the process default.
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(config)
}

/// `sslmode=require` but no usable root certificate on this system.
#[derive(Debug, thiserror::Error)]
#[error("sslmode=require: no trusted root certificates found (set SSL_CERT_FILE to a PEM file)")]
struct NoRootCertificates;
