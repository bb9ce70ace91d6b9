//! HTTPS for the listener (feature `tls`): rustls with the ring provider.

use std::path::Path;
use std::sync::Arc;

use rustls_pki_types::pem::{self, PemObject};
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::error::ExporterError;

/// Loads a PEM certificate chain and private key into a server configuration that
/// speaks HTTP/1.1 over TLS 1.2 or 1.3.
pub(crate) fn load(cert: &Path, key: &Path) -> Result<Arc<rustls::ServerConfig>, ExporterError> {
    let fail = |path: &Path, reason: String| ExporterError::Tls {
        path: path.to_owned(),
        reason,
    };
    let certs = CertificateDer::pem_file_iter(cert)
        .and_then(|items| items.collect::<Result<Vec<_>, _>>())
        .map_err(|e| fail(cert, pem_reason(&e, "CERTIFICATE")))?;
    if certs.is_empty() {
        return Err(fail(cert, "no CERTIFICATE block found".to_owned()));
    }
    let private_key =
        PrivateKeyDer::from_pem_file(key).map_err(|e| fail(key, pem_reason(&e, "PRIVATE KEY")))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| fail(cert, e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, private_key)
        // Mismatched or unsupported key; rustls' message names no key material.
        .map_err(|e| fail(key, format!("unusable certificate or key: {e}")))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Describes a PEM error without quoting the file: the key file's lines are secret.
fn pem_reason(error: &pem::Error, wanted: &str) -> String {
    match error {
        pem::Error::Io(io) => format!("cannot read: {io}"),
        pem::Error::NoItemsFound => format!("no {wanted} block found"),
        _ => "malformed PEM".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_that_cannot_be_read_says_so() {
        let missing = Path::new("/nonexistent/llm-span-cert.pem");
        let err = load(missing, missing)
            .map(|_| ())
            .expect_err("missing file");
        let text = err.to_string();
        assert!(
            text.starts_with("TLS file /nonexistent/llm-span-cert.pem: cannot read: "),
            "{text}"
        );
    }
}
