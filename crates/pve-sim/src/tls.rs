//! The simulator's self-signed certificate (like `/etc/pve/local/pve-ssl.pem`): created once
//! per state directory so the fingerprint is stable across restarts.

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use sha2::{Digest, Sha256};

use crate::state::{write_atomic, StoreError};

/// Certificate file name inside the state directory.
pub const CERT_FILE: &str = "pve-ssl.pem";
/// Private key file name inside the state directory.
pub const KEY_FILE: &str = "pve-ssl.key";

/// Errors while preparing TLS.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// Generating the certificate failed.
    #[error("cannot generate certificate")]
    Generate(#[from] rcgen::Error),
    /// Reading or writing the PEM files failed.
    #[error("cannot store certificate")]
    Store(#[from] StoreError),
    /// Reading the PEM files failed.
    #[error("cannot read certificate files in {dir}")]
    Read {
        /// The state directory.
        dir: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The PEM files do not parse.
    #[error("certificate files are corrupt")]
    Pem(#[from] rustls::pki_types::pem::Error),
    /// rustls refused the certificate or key.
    #[error("rustls rejected the certificate")]
    Rustls(#[from] rustls::Error),
}

/// The leaf certificate and its key.
pub struct Identity {
    /// DER of the leaf certificate.
    pub cert: CertificateDer<'static>,
    /// The private key.
    pub key: PrivateKeyDer<'static>,
}

impl Identity {
    /// Load `pve-ssl.pem`/`pve-ssl.key` from `dir`, or create them (SANs 127.0.0.1, ::1,
    /// localhost).
    pub fn load_or_create(dir: &Path) -> Result<Identity, TlsError> {
        let cert_path = dir.join(CERT_FILE);
        let key_path = dir.join(KEY_FILE);
        if !cert_path.exists() || !key_path.exists() {
            let ck = rcgen::generate_simple_self_signed(vec![
                "127.0.0.1".to_string(),
                "::1".to_string(),
                "localhost".to_string(),
            ])?;
            write_atomic(&key_path, ck.signing_key.serialize_pem().as_bytes())?;
            write_atomic(&cert_path, ck.cert.pem().as_bytes())?;
        }
        let read = |p: &Path| {
            std::fs::read(p).map_err(|source| TlsError::Read {
                dir: dir.display().to_string(),
                source,
            })
        };
        let cert = CertificateDer::from_pem_slice(&read(&cert_path)?)?;
        let key = PrivateKeyDer::from_pem_slice(&read(&key_path)?)?;
        Ok(Identity { cert, key })
    }

    /// SHA-256 of the leaf DER as `AA:BB:...` (the form `openssl x509 -fingerprint -sha256`
    /// and the PVE GUI show).
    pub fn fingerprint(&self) -> String {
        fingerprint(&self.cert)
    }

    /// A rustls server config with the ring provider.
    pub fn server_config(&self) -> Result<Arc<rustls::ServerConfig>, TlsError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_single_cert(vec![self.cert.clone()], self.key.clone_key())?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Arc::new(config))
    }
}

/// SHA-256 fingerprint of a DER certificate, uppercase hex with colons.
pub fn fingerprint(der: &[u8]) -> String {
    Sha256::digest(der)
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_is_stable_across_loads() {
        let dir = tempfile::tempdir().expect("tempdir");
        let a = Identity::load_or_create(dir.path()).expect("create");
        let b = Identity::load_or_create(dir.path()).expect("load");
        assert_eq!(a.fingerprint(), b.fingerprint());
        assert_eq!(a.fingerprint().len(), 32 * 3 - 1);
        assert!(a.server_config().is_ok());
    }
}
