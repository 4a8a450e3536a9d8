//! The local API's TLS identity: an ECDSA P-256 key and a self-signed certificate, made on
//! first start in `state_dir/localapi/{key.pem,cert.pem}` (directory 0700, files 0600) and
//! reused afterwards, so the fingerprint a controller pinned stays valid across restarts.
//!
//! Controllers pin the certificate's SHA-256 (`felhom-agent localapi fingerprint`), so the
//! subject alternative names (listen addresses, `localhost`) are informational: changing
//! `local_api.listen` later does not need a new certificate. To re-key, delete the directory
//! and re-bootstrap every controller with the new fingerprint.

use std::collections::BTreeSet;
use std::fs;
use std::io::Write;
use std::net::SocketAddr;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use pve::Fingerprint;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::error::Error;

/// Directory under `state_dir`.
pub const DIR: &str = "localapi";
/// Private key file.
pub const KEY_FILE: &str = "key.pem";
/// Certificate file.
pub const CERT_FILE: &str = "cert.pem";

/// The server's certificate and key.
pub struct Identity {
    cert: CertificateDer<'static>,
    key: PrivateKeyDer<'static>,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Identity({}, key: <redacted>)", self.fingerprint())
    }
}

impl Identity {
    /// Loads the identity from `state_dir/localapi`, creating it first if either file is
    /// missing (a half-written pair from a crash is replaced: no controller can have pinned a
    /// certificate whose key was never stored).
    pub fn load_or_create(state_dir: &Path, listen: &[SocketAddr]) -> Result<Identity, Error> {
        let dir = state_dir.join(DIR);
        ensure_private_dir(state_dir, &dir)?;
        let key_path = dir.join(KEY_FILE);
        let cert_path = dir.join(CERT_FILE);
        if !key_path.exists() || !cert_path.exists() {
            let (cert_pem, key_pem) = generate(listen)?;
            // Key first: a crash between the two leaves no certificate, so the next start
            // regenerates both.
            write_private(&key_path, key_pem.as_bytes())?;
            write_private(&cert_path, cert_pem.as_bytes())?;
            tracing::info!(dir = %dir.display(), "local api certificate created");
        }
        check_private(&key_path)?;
        let cert =
            CertificateDer::from_pem_slice(&read(&cert_path)?).map_err(|source| Error::Pem {
                path: cert_path.clone(),
                what: "certificate",
                source,
            })?;
        let key =
            PrivateKeyDer::from_pem_slice(&read(&key_path)?).map_err(|source| Error::Pem {
                path: key_path.clone(),
                what: "private key",
                source,
            })?;
        Ok(Identity { cert, key })
    }

    /// SHA-256 of the certificate, `AA:BB:…`: what a controller pins.
    pub fn fingerprint(&self) -> Fingerprint {
        Fingerprint::from_der(&self.cert)
    }

    /// A rustls server configuration: ring provider, TLS 1.2 and 1.3, HTTP/1.1 only (ALPN).
    pub fn server_config(&self) -> Result<Arc<rustls::ServerConfig>, Error> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|source| Error::Rustls { source })?
            .with_no_client_auth()
            .with_single_cert(vec![self.cert.clone()], self.key.clone_key())
            .map_err(|source| Error::Rustls { source })?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Arc::new(config))
    }
}

/// The fingerprint for `felhom-agent localapi fingerprint`: creates the identity if the daemon
/// never ran, so a controller can be bootstrapped before the first start.
pub fn fingerprint(state_dir: &Path, listen: &[SocketAddr]) -> Result<Fingerprint, Error> {
    Ok(Identity::load_or_create(state_dir, listen)?.fingerprint())
}

fn generate(listen: &[SocketAddr]) -> Result<(String, String), Error> {
    let mut names: BTreeSet<String> = ["localhost", "127.0.0.1", "::1"]
        .into_iter()
        .map(str::to_owned)
        .collect();
    for addr in listen {
        if !addr.ip().is_unspecified() {
            names.insert(addr.ip().to_string());
        }
    }
    let gen = |source| Error::Generate { source };
    let mut params =
        rcgen::CertificateParams::new(names.into_iter().collect::<Vec<_>>()).map_err(gen)?;
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "felhom-agent local api");
    let key = rcgen::KeyPair::generate().map_err(gen)?;
    let cert = params.self_signed(&key).map_err(gen)?;
    Ok((cert.pem(), key.serialize_pem()))
}

fn ensure_private_dir(state_dir: &Path, dir: &Path) -> Result<(), Error> {
    fs::create_dir_all(state_dir).map_err(|source| Error::CreateDir {
        path: state_dir.to_owned(),
        source,
    })?;
    match fs::DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(source) => {
            return Err(Error::CreateDir {
                path: dir.to_owned(),
                source,
            })
        }
    }
    check_private(dir)
}

/// Group and others must have no access (the key is the server's identity).
fn check_private(path: &Path) -> Result<(), Error> {
    let meta = fs::metadata(path).map_err(|source| Error::Read {
        path: path.to_owned(),
        source,
    })?;
    let mode = meta.permissions().mode() & 0o7777;
    if mode & 0o077 != 0 {
        return Err(Error::Permissions {
            path: path.to_owned(),
            mode,
        });
    }
    Ok(())
}

fn read(path: &Path) -> Result<Vec<u8>, Error> {
    fs::read(path).map_err(|source| Error::Read {
        path: path.to_owned(),
        source,
    })
}

/// Writes `bytes` to `path` with mode 0600 via a temporary file and a rename, so a reader
/// never sees half a file.
fn write_private(path: &Path, bytes: &[u8]) -> Result<(), Error> {
    let tmp: PathBuf = path.with_extension("pem.tmp");
    let werr = |source| Error::Write {
        path: path.to_owned(),
        source,
    };
    // A leftover from a crash; create_new below must not trip over it.
    let _ = fs::remove_file(&tmp);
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(werr)?;
    f.write_all(bytes).map_err(werr)?;
    f.sync_all().map_err(werr)?;
    fs::rename(&tmp, path).map_err(werr)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listen() -> Vec<SocketAddr> {
        vec![
            "10.0.0.1:7443".parse().unwrap(),
            "0.0.0.0:7444".parse().unwrap(),
        ]
    }

    #[test]
    fn created_once_with_private_modes_then_reused() {
        let state = tempfile::tempdir().unwrap();
        let a = Identity::load_or_create(state.path(), &listen()).unwrap();
        let dir = state.path().join(DIR);
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&dir.join(KEY_FILE)), 0o600);
        assert_eq!(mode(&dir.join(CERT_FILE)), 0o600);
        let b = Identity::load_or_create(state.path(), &[]).unwrap();
        assert_eq!(a.fingerprint(), b.fingerprint());
        assert_eq!(fingerprint(state.path(), &[]).unwrap(), a.fingerprint());
        a.server_config().unwrap();
        assert!(!format!("{a:?}").contains("PRIVATE"));
    }

    #[test]
    fn certificate_names_the_listen_addresses() {
        let state = tempfile::tempdir().unwrap();
        Identity::load_or_create(state.path(), &listen()).unwrap();
        let pem = fs::read_to_string(state.path().join(DIR).join(CERT_FILE)).unwrap();
        let der = CertificateDer::from_pem_slice(pem.as_bytes()).unwrap();
        // IP SANs are stored as raw octets in the DER.
        let has = |needle: &[u8]| der.windows(needle.len()).any(|w| w == needle);
        assert!(has(&[10, 0, 0, 1]));
        assert!(has(b"localhost"));
    }

    #[test]
    fn half_written_pair_is_replaced() {
        let state = tempfile::tempdir().unwrap();
        let a = Identity::load_or_create(state.path(), &[]).unwrap();
        fs::remove_file(state.path().join(DIR).join(CERT_FILE)).unwrap();
        let b = Identity::load_or_create(state.path(), &[]).unwrap();
        assert_ne!(a.fingerprint(), b.fingerprint());
    }

    #[test]
    fn readable_key_is_refused() {
        let state = tempfile::tempdir().unwrap();
        Identity::load_or_create(state.path(), &[]).unwrap();
        let key = state.path().join(DIR).join(KEY_FILE);
        fs::set_permissions(&key, fs::Permissions::from_mode(0o644)).unwrap();
        let err = Identity::load_or_create(state.path(), &[]).unwrap_err();
        assert!(
            matches!(err, Error::Permissions { mode: 0o644, .. }),
            "{err:?}"
        );
    }
}
