//! Signing a payload (operator tooling): with an OpenSSH private key file, or through
//! `ssh-agent` ([`crate::agent`]) for keys that never leave a hardware token.
//!
//! Both produce the armored SSHSIG `ssh-keygen -Y sign -n felhom-op` produces (SHA-512 message
//! hash, as ssh-keygen uses by default), so `ssh-keygen -Y verify` accepts our output and we
//! accept its. Signing never canonicalizes: the exact bytes of the file are signed.

use std::path::Path;

use ssh_key::{HashAlg, LineEnding, PrivateKey, PublicKey, Signature, SshSig};

use crate::armor::{accepted, NAMESPACE};
use crate::SignError;

/// The message hash used in signatures we make (ssh-keygen's default).
pub const HASH_ALG: HashAlg = HashAlg::Sha512;

/// Signs `payload` with the unencrypted OpenSSH private key in `key_file`; returns the armored
/// signature. An encrypted key is refused with a pointer to ssh-agent (this tool never asks
/// for passphrases).
pub fn sign_with_key_file(key_file: &Path, payload: &[u8]) -> Result<String, SignError> {
    std::fs::metadata(key_file).map_err(|source| SignError::ReadKey {
        path: key_file.to_owned(),
        source,
    })?;
    // ssh-key reads the file into a buffer it zeroizes on drop.
    let key = PrivateKey::read_openssh_file(key_file).map_err(|e| SignError::Key {
        path: key_file.to_owned(),
        problem: format!("not an OpenSSH private key ({e})"),
    })?;
    if key.is_encrypted() {
        return Err(SignError::Encrypted {
            path: key_file.to_owned(),
        });
    }
    if !accepted(&key.algorithm()) {
        return Err(SignError::Key {
            path: key_file.to_owned(),
            problem: format!(
                "key type {} is not accepted by the agent (use ed25519 or ecdsa-p256)",
                key.algorithm().as_str()
            ),
        });
    }
    let sig = key
        .sign(NAMESPACE, HASH_ALG, payload)
        .map_err(|e| SignError::Build {
            problem: e.to_string(),
        })?;
    armor(&sig)
}

/// The bytes an SSHSIG signature is made over (what to hand to `ssh-agent`).
pub fn signed_data(payload: &[u8]) -> Result<Vec<u8>, SignError> {
    SshSig::signed_data(NAMESPACE, HASH_ALG, payload).map_err(|e| SignError::Build {
        problem: e.to_string(),
    })
}

/// Assembles the armored SSHSIG from a public key and the signature an agent returned over
/// [`signed_data`].
pub fn assemble(public_key: &PublicKey, signature: Signature) -> Result<String, SignError> {
    let sig = SshSig::new(
        public_key.key_data().clone(),
        NAMESPACE,
        HASH_ALG,
        signature,
    )
    .map_err(|e| SignError::Build {
        problem: e.to_string(),
    })?;
    armor(&sig)
}

fn armor(sig: &SshSig) -> Result<String, SignError> {
    sig.to_pem(LineEnding::LF).map_err(|e| SignError::Build {
        problem: e.to_string(),
    })
}
