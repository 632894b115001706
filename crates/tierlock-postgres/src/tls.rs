//! Plain or TLS: the URL's `sslmode`, as tokio-postgres parsed it, and
//! [`PostgresProviderBuilder::tls`](crate::PostgresProviderBuilder::tls) decide.

use tokio_postgres::Config;
use tokio_postgres::config::SslMode;

use crate::conn::Connector;
use crate::error::PostgresError;

/// The connector for `config`: the given rustls configuration if there is one; else, for
/// `sslmode=require`, rustls with the *ring* provider and the system's root certificates
/// (libpq's `verify-full`); else plain (`disable`, `prefer`, or no `sslmode`).
#[cfg(feature = "rustls")]
pub(crate) fn connector(
    tls: Option<rustls::ClientConfig>,
    config: &Config,
) -> Result<Connector, PostgresError> {
    let tls = match (tls, config.get_ssl_mode()) {
        (Some(tls), _) => tls,
        (None, SslMode::Require) => system_roots()?,
        (None, _) => return Ok(Connector::Plain),
    };
    Ok(Connector::Rustls(
        tokio_postgres_rustls::MakeRustlsConnect::new(tls),
    ))
}

/// Without the `rustls` feature: plain, and `sslmode=require` is refused before any connection
/// is tried.
#[cfg(not(feature = "rustls"))]
pub(crate) fn connector(config: &Config) -> Result<Connector, PostgresError> {
    match config.get_ssl_mode() {
        SslMode::Require => Err(PostgresError::TlsNotBuilt),
        _ => Ok(Connector::Plain),
    }
}

/// A client configuration that trusts the system's root certificates (`SSL_CERT_FILE` /
/// `SSL_CERT_DIR` override them) and checks the server's name. The *ring* provider is named
/// explicitly: another crate of the build may compile in aws-lc-rs too, and then
/// `ClientConfig::builder()` (the process default) cannot choose and panics.
#[cfg(feature = "rustls")]
fn system_roots() -> Result<rustls::ClientConfig, PostgresError> {
    let mut roots = rustls::RootCertStore::empty();
    let found = rustls_native_certs::load_native_certs();
    let (added, _ignored) = roots.add_parsable_certificates(found.certs);
    if added == 0 {
        return Err(PostgresError::Tls {
            reason: "no trusted root certificates found (set SSL_CERT_FILE to a PEM file)"
                .to_owned(),
        });
    }
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|err| PostgresError::Tls {
            reason: err.to_string(),
        })?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(url: &str) -> Config {
        url.parse().unwrap()
    }

    #[cfg(feature = "rustls")]
    #[test]
    fn sslmode_decides_unless_a_tls_config_is_given() {
        let plain = ["postgres://db/app", "postgres://db/app?sslmode=disable"];
        for url in plain
            .into_iter()
            .chain(["postgres://db/app?sslmode=prefer"])
        {
            assert!(
                matches!(connector(None, &config(url)), Ok(Connector::Plain)),
                "{url}"
            );
        }
        let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
        let given = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(rustls::RootCertStore::empty())
            .with_no_client_auth();
        for url in plain {
            assert!(
                matches!(
                    connector(Some(given.clone()), &config(url)),
                    Ok(Connector::Rustls(_))
                ),
                "{url}"
            );
        }
        // Without a config, `require` takes the system's roots; a machine may have none.
        match connector(None, &config("postgres://db/app?sslmode=require")) {
            Ok(Connector::Rustls(_)) | Err(PostgresError::Tls { .. }) => {}
            Ok(Connector::Plain) => panic!("sslmode=require connects in plain text"),
            Err(other) => panic!("{other:?}"),
        }
        // A key=value connection string says it the same way.
        assert!(!matches!(
            connector(None, &config("host=db sslmode=require")),
            Ok(Connector::Plain)
        ));
    }

    #[cfg(not(feature = "rustls"))]
    #[test]
    fn without_rustls_sslmode_require_is_refused() {
        assert!(matches!(
            connector(&config("postgres://db/app?sslmode=require")),
            Err(PostgresError::TlsNotBuilt)
        ));
        assert!(matches!(
            connector(&config("host=db sslmode=require")),
            Err(PostgresError::TlsNotBuilt)
        ));
        for url in ["postgres://db/app", "postgres://db/app?sslmode=prefer"] {
            assert!(
                matches!(connector(&config(url)), Ok(Connector::Plain)),
                "{url}"
            );
        }
    }
}
