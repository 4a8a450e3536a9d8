//! Strict SHA-256 leaf pinning: the [`Fingerprint`] type and the rustls verifier built on it.
//!
//! PVE serves a certificate signed by its own cluster CA (pve-cluster `Setup.pm:78,415,487`),
//! so public CAs mean nothing here. We accept a server exactly when the SHA-256 of its leaf
//! certificate equals the configured pin; the server name is ignored (connecting by IP is fine).
//! There is deliberately no insecure variant. The pin alone is not enough, though: the server
//! must also prove it holds the certificate's key, so the handshake signatures are still checked
//! with the ring provider's algorithms (an impostor replaying the public certificate fails).

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, OtherError, SignatureScheme};
use sha2::{Digest, Sha256};

use crate::error::Error;

/// SHA-256 fingerprint of a DER certificate, written `AA:BB:…` (32 bytes), as PVE and
/// `openssl x509 -fingerprint -sha256` show it.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Fingerprint([u8; 32]);

impl Fingerprint {
    /// The fingerprint of a DER-encoded certificate.
    pub fn from_der(der: &[u8]) -> Self {
        Fingerprint(Sha256::digest(der).into())
    }

    /// The raw digest.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl FromStr for Fingerprint {
    type Err = Error;

    /// Parses `AA:BB:…` (32 colon-separated hex bytes, any case, surrounding blanks ignored).
    fn from_str(s: &str) -> Result<Self, Error> {
        let parts: Vec<&str> = s.trim().split(':').collect();
        if parts.len() != 32 {
            return Err(Error::invalid(
                "fingerprint",
                format!(
                    "expected 32 colon-separated hex bytes (AA:BB:...), got {} part(s)",
                    parts.len()
                ),
            ));
        }
        let mut out = [0u8; 32];
        for (i, part) in parts.iter().enumerate() {
            let ok = part.len() == 2 && part.bytes().all(|b| b.is_ascii_hexdigit());
            if !ok {
                return Err(Error::invalid(
                    "fingerprint",
                    format!("byte {} ({part:?}) is not two hex digits", i + 1),
                ));
            }
            out[i] = u8::from_str_radix(part, 16)
                .map_err(|e| Error::invalid("fingerprint", e.to_string()))?;
        }
        Ok(Fingerprint(out))
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, b) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(":")?;
            }
            write!(f, "{b:02X}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Fingerprint({self})")
    }
}

impl serde::Serialize for Fingerprint {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Fingerprint {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Carried inside the rustls error so the client can report both fingerprints.
#[derive(Debug)]
pub(crate) struct PinMismatchDetail {
    pub expected: Fingerprint,
    pub actual: Fingerprint,
}

impl fmt::Display for PinMismatchDetail {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "certificate fingerprint {} does not match the pin {}",
            self.actual, self.expected
        )
    }
}

impl std::error::Error for PinMismatchDetail {}

/// Accepts exactly the pinned leaf; checks handshake signatures with the provider.
#[derive(Debug)]
struct PinnedVerifier {
    expected: Fingerprint,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for PinnedVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        // The pin replaces chain, name and validity checks: PVE's certificate is self-issued
        // and operators connect by IP; what we trust is exactly this certificate.
        let actual = Fingerprint::from_der(end_entity.as_ref());
        if actual == self.expected {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::InvalidCertificate(CertificateError::Other(
                OtherError(Arc::new(PinMismatchDetail {
                    expected: self.expected,
                    actual,
                })),
            )))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// A rustls client configuration (ring provider, TLS 1.2 and 1.3) that trusts only the
/// certificate whose SHA-256 is `pin`; handshake signatures are still verified. Public so other
/// pinned HTTPS clients of the agent (the local API's own checks, tests) share this one verifier.
pub fn pinned_client_config(pin: Fingerprint) -> Result<rustls::ClientConfig, Error> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = Arc::new(PinnedVerifier {
        expected: pin,
        provider: provider.clone(),
    });
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::invalid("tls configuration", e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    Ok(config)
}

/// Finds a pin mismatch in an error's source chain (reqwest → hyper-util → io → rustls).
pub(crate) fn find_pin_mismatch(
    err: &(dyn std::error::Error + 'static),
) -> Option<(Fingerprint, Fingerprint)> {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = cur {
        if let Some(found) = pin_mismatch_in(e) {
            return Some(found);
        }
        // io::Error::source() skips the wrapped error itself; look inside explicitly.
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            if let Some(inner) = io.get_ref() {
                if let Some(found) = find_pin_mismatch(inner) {
                    return Some(found);
                }
            }
        }
        cur = e.source();
    }
    None
}

fn pin_mismatch_in(e: &(dyn std::error::Error + 'static)) -> Option<(Fingerprint, Fingerprint)> {
    if let Some(detail) = e.downcast_ref::<PinMismatchDetail>() {
        return Some((detail.expected, detail.actual));
    }
    if let Some(rustls::Error::InvalidCertificate(CertificateError::Other(other))) =
        e.downcast_ref::<rustls::Error>()
    {
        if let Some(detail) = other.0.downcast_ref::<PinMismatchDetail>() {
            return Some((detail.expected, detail.actual));
        }
    }
    None
}

/// True if a rustls error (of any kind) is somewhere in the chain: the handshake failed.
pub(crate) fn is_tls_failure(err: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = cur {
        if e.is::<rustls::Error>() {
            return true;
        }
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            if let Some(inner) = io.get_ref() {
                if is_tls_failure(inner) {
                    return true;
                }
            }
        }
        cur = e.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    const PIN: &str = "AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89";

    #[test]
    fn parses_and_displays_upper_case() {
        let fp: Fingerprint = PIN.to_lowercase().parse().unwrap();
        assert_eq!(fp.to_string(), PIN);
        assert_eq!(fp.as_bytes()[0], 0xAB);
        let again: Fingerprint = format!("  {PIN}\n").parse().unwrap();
        assert_eq!(again, fp);
    }

    #[test]
    fn parse_errors_name_the_problem() {
        let short = &PIN[..PIN.len() - 3];
        let e = short.parse::<Fingerprint>().unwrap_err().to_string();
        assert!(
            e.contains("32 colon-separated") && e.contains("31 part"),
            "{e}"
        );

        let bad = PIN.replacen("CD", "ZZ", 1);
        let e = bad.parse::<Fingerprint>().unwrap_err().to_string();
        assert!(e.contains("byte 2") && e.contains("ZZ"), "{e}");

        let e = PIN
            .replace(':', "")
            .parse::<Fingerprint>()
            .unwrap_err()
            .to_string();
        assert!(e.contains("1 part"), "{e}");

        let e = PIN
            .replacen("AB", "ABC", 1)
            .parse::<Fingerprint>()
            .unwrap_err()
            .to_string();
        assert!(e.contains("byte 1"), "{e}");
        assert!(e.starts_with("invalid fingerprint"), "{e}");
    }

    #[test]
    fn from_der_is_sha256() {
        // sha256("abc")
        assert_eq!(
            Fingerprint::from_der(b"abc")
                .to_string()
                .replace(':', "")
                .to_lowercase(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn finds_mismatch_through_io_error() {
        let expected: Fingerprint = PIN.parse().unwrap();
        let actual = Fingerprint::from_der(b"other");
        let rustls_err = rustls::Error::InvalidCertificate(CertificateError::Other(OtherError(
            Arc::new(PinMismatchDetail { expected, actual }),
        )));
        let io = std::io::Error::new(std::io::ErrorKind::InvalidData, rustls_err);
        assert_eq!(find_pin_mismatch(&io), Some((expected, actual)));
        assert!(is_tls_failure(&io));
        let plain = std::io::Error::other("refused");
        assert_eq!(find_pin_mismatch(&plain), None);
        assert!(!is_tls_failure(&plain));
    }
}
