//! What troth trusts on its outbound TLS connections (SMTP and HTTPS): the
//! system's CA certificates, plus the CAs of `[notify] ca_file` for a receiver or
//! relay whose certificate a private CA signed. Both clients use the same rustls
//! crypto provider, `ring`, chosen because aws-lc-rs needs cmake to build.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::ClientConfig;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

use crate::ConfigError;

/// The extra CAs of `[notify] ca_file`: PEM certificates, read and checked once at
/// start so a wrong file stops troth there rather than failing each message.
#[derive(Clone, PartialEq, Eq)]
pub struct CaFile {
    pub path: PathBuf,
    pub certificates: Vec<CertificateDer<'static>>,
}

impl std::fmt::Debug for CaFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CaFile")
            .field("path", &self.path)
            .field("certificates", &self.certificates.len())
            .finish()
    }
}

impl CaFile {
    pub fn read(path: &Path) -> Result<CaFile, ConfigError> {
        let pem = std::fs::read(path).map_err(|source| ConfigError::CaFileUnreadable {
            path: path.to_owned(),
            source,
        })?;
        let invalid = |reason: String| ConfigError::CaFileInvalid {
            path: path.to_owned(),
            reason,
        };
        let certificates = CertificateDer::pem_slice_iter(&pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| invalid(e.to_string()))?;
        if certificates.is_empty() {
            return Err(invalid(
                "it holds no PEM certificate (-----BEGIN CERTIFICATE-----)".into(),
            ));
        }
        // The same check rustls makes when the roots are used: a certificate it
        // cannot take as a trust anchor is refused now, not at the first send.
        let mut roots = rustls::RootCertStore::empty();
        for certificate in &certificates {
            roots.add(certificate.clone()).map_err(|e| invalid(e.to_string()))?;
        }
        Ok(CaFile {
            path: path.to_owned(),
            certificates,
        })
    }
}

pub(crate) fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The rustls configuration for HTTPS: the platform's verifier (the system's CAs)
/// with the extra CAs. A machine without CA certificates (a slim container) still
/// sends over `http://`: `https://` then fails with the reason given here.
pub(crate) fn client_config(ca: Option<&CaFile>) -> (ClientConfig, Option<String>) {
    let extra = ca.map(|ca| ca.certificates.clone()).unwrap_or_default();
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .expect("ring supports rustls's default protocol versions");
    match rustls_platform_verifier::Verifier::new_with_extra_roots(extra, provider()) {
        // `dangerous()` is only rustls's door for a verifier of one's own; this one
        // checks chains and names as fully as the built-in one.
        Ok(verifier) => (
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(verifier))
                .with_no_client_auth(),
            None,
        ),
        Err(e) => (
            // No anchors at all: every certificate is refused, which is the truth.
            builder
                .with_root_certificates(rustls::RootCertStore::empty())
                .with_no_client_auth(),
            Some(format!(
                "no CA certificate to check TLS servers with ({e}); install the system's CA certificates or set ca_file"
            )),
        ),
    }
}
