//! The armored OpenSSH SSHSIG parser (`-----BEGIN SSH SIGNATURE-----`, as `ssh-keygen -Y sign`
//! writes it; format in OpenSSH's PROTOCOL.sshsig).
//!
//! Strict on top of `ssh-key`'s decoder: at most [`MAX_ARMORED_SIGNATURE`] bytes of ASCII,
//! exactly one armored block with nothing but whitespace around it, SSHSIG version 1, an empty
//! reserved field, a signature algorithm that matches the embedded key, and an accepted key
//! type. The namespace is *not* checked here: a wrong namespace is a `bad-signature`, decided
//! with the key in [`crate::verify()`].
//!
//! Accepted key types: `ssh-ed25519`, `ecdsa-sha2-nistp256`, `sk-ssh-ed25519@openssh.com`,
//! `sk-ecdsa-sha2-nistp256@openssh.com`. RSA is refused: `ssh-key` 0.6.7 verifies RSA only with
//! its `rsa` feature, which pulls the `rsa` crate flagged by RUSTSEC-2023-0071 (Marvin timing
//! attack; verification is not directly affected, but we would ship and audit-allowlist a
//! flagged crate for a key type nobody needs: operators can make an ed25519 key in a second,
//! and hardware tokens do ed25519/P-256). DSA and P-384/P-521 are likewise out.

use ssh_key::{Algorithm, EcdsaCurve, SshSig};

use crate::ParseError;

/// The SSHSIG namespace of felhom operator signatures (`ssh-keygen -Y sign -n felhom-op`).
pub const NAMESPACE: &str = "felhom-op";

/// Largest armored signature accepted. An ed25519 SSHSIG is ~300 bytes armored, a P-256 one
/// ~400; 16 KiB leaves room for sk- application strings and bounds the work.
pub const MAX_ARMORED_SIGNATURE: usize = 16 * 1024;

const BEGIN: &str = "-----BEGIN SSH SIGNATURE-----";
const END: &str = "-----END SSH SIGNATURE-----";

/// Parses an armored SSHSIG strictly (see the module docs). Never panics.
pub fn parse_armored(input: &[u8]) -> Result<SshSig, ParseError> {
    if input.len() > MAX_ARMORED_SIGNATURE {
        return Err(ParseError::TooLarge {
            what: "signature",
            len: input.len(),
            limit: MAX_ARMORED_SIGNATURE,
        });
    }
    let armor = |problem: &str| ParseError::Armor {
        problem: problem.to_owned(),
    };
    if !input.is_ascii() {
        return Err(armor("not ASCII"));
    }
    let text = std::str::from_utf8(input).map_err(|_| armor("not ASCII"))?;
    let text = text.trim_matches(|c: char| c.is_ascii_whitespace());
    if !text.starts_with(BEGIN) || !text.ends_with(END) {
        return Err(armor("missing BEGIN/END SSH SIGNATURE lines"));
    }
    if text.matches(BEGIN).count() != 1 || text.matches(END).count() != 1 {
        return Err(armor("more than one armored block"));
    }
    // ssh-key's PEM decoder wants the exact framing with a trailing newline.
    let mut framed = text.replace("\r\n", "\n");
    framed.push('\n');
    let sig = SshSig::from_pem(framed.as_bytes()).map_err(|err| ParseError::Armor {
        // ssh-key's errors name the problem (length, encoding, version); they carry no input.
        problem: err.to_string(),
    })?;
    if sig.version() != SshSig::VERSION {
        return Err(armor("unsupported SSHSIG version"));
    }
    if !sig.reserved().is_empty() {
        return Err(armor("reserved field is not empty"));
    }
    let key_algorithm = sig.public_key().algorithm();
    if !accepted(&key_algorithm) {
        return Err(ParseError::KeyType {
            algorithm: key_algorithm.as_str().to_owned(),
        });
    }
    if sig.algorithm() != key_algorithm {
        return Err(armor("signature algorithm does not match the key"));
    }
    Ok(sig)
}

/// Whether the agent accepts keys of this algorithm (see the module docs for why RSA is out).
pub fn accepted(algorithm: &Algorithm) -> bool {
    matches!(
        algorithm,
        Algorithm::Ed25519
            | Algorithm::SkEd25519
            | Algorithm::SkEcdsaSha2NistP256
            | Algorithm::Ecdsa {
                curve: EcdsaCurve::NistP256
            }
    )
}

/// OpenSSH's "user presence" flag in an sk- signature's flags byte (`SSH_SK_USER_PRESENCE_REQD`
/// in OpenSSH's sk-api.h).
const SK_USER_PRESENT: u8 = 0x01;

/// For FIDO (`sk-`) signatures: whether the authenticator reported user presence (a touch).
/// `None` for other key types. `ssh-key` verifies sk- signatures, flags byte included in the
/// signed data, but does not look at the flag; `ssh-keygen -Y verify` refuses a signature
/// without it unless the allowed-signers entry says `no-touch-required`, and so do we.
pub fn sk_user_present(sig: &SshSig) -> Option<bool> {
    match sig.algorithm() {
        Algorithm::SkEd25519 | Algorithm::SkEcdsaSha2NistP256 => {
            // The last five bytes are flags (u8) and counter (u32), as ssh-key stores them.
            let bytes = sig.signature_bytes();
            let flags = bytes.len().checked_sub(5).and_then(|i| bytes.get(i))?;
            Some(flags & SK_USER_PRESENT != 0)
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    // Made with `ssh-keygen -t ed25519` + `ssh-keygen -Y sign -n felhom-op` over "hello\n".
    pub(crate) const ED25519_SIG: &str = "-----BEGIN SSH SIGNATURE-----
U1NIU0lHAAAAAQAAADMAAAALc3NoLWVkMjU1MTkAAAAg412ycJQlwY4jWwvwqAPVOAV7HY
QX/LRq3C0dm5byZlIAAAAJZmVsaG9tLW9wAAAAAAAAAAZzaGE1MTIAAABTAAAAC3NzaC1l
ZDI1NTE5AAAAQOWgdsMGaXof7aES0NMvg1o17gHSrolTLxLjCQ9U1NhnyLOcy3vFshBc/n
ySAWFXnl5KRe4BfaDqGJ/zUDRmZwQ=
-----END SSH SIGNATURE-----
";

    #[test]
    fn parses_a_real_ssh_keygen_signature_with_crlf_and_blank_lines() {
        let sig = parse_armored(ED25519_SIG.as_bytes()).unwrap();
        assert_eq!(sig.namespace(), NAMESPACE);
        assert_eq!(sig.algorithm(), Algorithm::Ed25519);
        let crlf = format!("\r\n\n{}\r\n", ED25519_SIG.replace('\n', "\r\n"));
        assert!(parse_armored(crlf.as_bytes()).is_ok());
    }

    #[test]
    fn refuses_oversize_non_ascii_doubled_and_truncated() {
        let big = vec![b'A'; MAX_ARMORED_SIGNATURE + 1];
        assert!(matches!(
            parse_armored(&big),
            Err(ParseError::TooLarge { .. })
        ));
        let non_ascii = ED25519_SIG.replace("U1NI", "U1NÍ");
        assert!(parse_armored(non_ascii.as_bytes()).is_err());
        let doubled = format!("{ED25519_SIG}{ED25519_SIG}");
        assert!(parse_armored(doubled.as_bytes()).is_err());
        let truncated = ED25519_SIG.replace("ySAWFXnl5KRe4BfaDqGJ/zUDRmZwQ=\n", "");
        assert!(parse_armored(truncated.as_bytes()).is_err());
        assert!(parse_armored(b"").is_err());
    }

    proptest! {
        #[test]
        fn never_panics_on_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
            let _ = parse_armored(&bytes);
        }

        #[test]
        fn never_panics_on_arbitrary_base64_bodies(body in "[A-Za-z0-9+/=\n]{0,600}") {
            let text = format!("{BEGIN}\n{body}\n{END}\n");
            let _ = parse_armored(text.as_bytes());
        }

        #[test]
        fn never_panics_on_mutated_real_signatures(index in 0usize..400, byte in any::<u8>()) {
            let mut bytes = ED25519_SIG.as_bytes().to_vec();
            let i = index % bytes.len();
            bytes[i] = byte;
            let _ = parse_armored(&bytes);
        }
    }
}
