//! Per-guest tokens: minting, parsing, verification, rotation and revocation.
//!
//! A token is `fla_<id>_<secret>`: `id` is 8 random bytes (16 hex digits, public, the store
//! key), `secret` is 32 bytes from the OS generator (64 hex digits, 256 bits). The store keeps
//! only `SHA-256("felhom-localapi-token-v1\0" ‖ id ‖ secret)`.
//!
//! Why a plain SHA-256 and not a keyed hash or a password KDF: the secret is 256 random bits,
//! so a leaked hash cannot be brute-forced or looked up in a table, and salting or stretching
//! buys nothing (a slow KDF would only make every request expensive, a free DoS lever). A keyed
//! hash (HMAC with a key in `state_dir`) would only help if the hashes leaked without the key,
//! but both would sit in the same directory. The domain tag keeps these hashes from meaning
//! anything elsewhere; hashing the id in binds each hash to its row.
//!
//! Rotation: [`mint`] adds a token and leaves the guest's others working (rollover: mint,
//! deploy to the controller, [`revoke`] the old id); [`rotate`] mints and revokes every other
//! token of the guest at once (the compromise case). Revocation is final.

use std::fmt;

use pve::{Secret, Vmid};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::error::Error;
use crate::ports::{Clock, TokenHash, TokenId, TokenRecord, TokenState, TokenStore};

/// Every token starts with this (lets secret scanners and humans recognise one).
pub const PREFIX: &str = "fla_";
const SECRET_LEN: usize = 32;
/// Length of a well-formed token.
pub const TOKEN_LEN: usize = PREFIX.len() + TokenId::HEX_LEN + 1 + 2 * SECRET_LEN;
const DOMAIN: &[u8] = b"felhom-localapi-token-v1\0";

/// A freshly minted token. The full token exists only here, to be printed once.
#[derive(Debug)]
pub struct MintedToken {
    /// Public id.
    pub id: TokenId,
    /// The guest it acts for.
    pub vmid: Vmid,
    token: Secret,
}

impl MintedToken {
    /// The token, for the one place that hands it to the controller (the CLI's last line, the
    /// guest's bootstrap config).
    pub fn expose(&self) -> &str {
        self.token.expose()
    }
}

/// A token as a client presented it, well-formed but not yet verified.
pub struct Presented {
    pub(crate) id: TokenId,
    secret: [u8; SECRET_LEN],
}

impl Presented {
    /// The public id it claims (not verified).
    pub fn id(&self) -> TokenId {
        self.id
    }
}

impl fmt::Debug for Presented {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Presented({}, <redacted>)", self.id)
    }
}

/// Parses `fla_<16 hex>_<64 hex>` (lower-case). Anything else, truncated or padded, is `None`:
/// the caller answers 401 without saying what was wrong.
pub fn parse(s: &str) -> Option<Presented> {
    // ASCII first: `split_at` below must not land inside a multi-byte character.
    if s.len() != TOKEN_LEN || !s.is_ascii() {
        return None;
    }
    let rest = s.strip_prefix(PREFIX)?;
    let (id, secret_hex) = rest.split_at(TokenId::HEX_LEN);
    let secret_hex = secret_hex.strip_prefix('_')?;
    let id: TokenId = id.parse().ok()?;
    if !secret_hex
        .bytes()
        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return None;
    }
    let mut secret = [0u8; SECRET_LEN];
    hex::decode_to_slice(secret_hex, &mut secret).ok()?;
    Some(Presented { id, secret })
}

/// The stored hash of a token's secret.
pub fn hash(id: TokenId, secret: &[u8; SECRET_LEN]) -> TokenHash {
    let mut h = Sha256::new();
    h.update(DOMAIN);
    h.update(id.as_bytes());
    h.update(secret);
    TokenHash(h.finalize().into())
}

/// Why a presented token was refused (for the log and audit; the client sees only 401).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// No such id.
    UnknownId,
    /// The id exists but the secret does not match.
    WrongSecret,
    /// Revoked.
    Revoked,
}

impl Refusal {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Refusal::UnknownId => "unknown token id",
            Refusal::WrongSecret => "wrong token secret",
            Refusal::Revoked => "revoked token",
        }
    }
}

/// Checks a presented token against the store.
pub(crate) fn verify(
    store: &dyn TokenStore,
    presented: &Presented,
) -> Result<Result<TokenRecord, Refusal>, Error> {
    let Some(record) = store.lookup(presented.id)? else {
        return Ok(Err(Refusal::UnknownId));
    };
    let actual = hash(presented.id, &presented.secret);
    // Constant time, so response timing says nothing about how much of a guess matched.
    let equal: bool = actual.0.ct_eq(&record.hash.0).into();
    if !equal {
        return Ok(Err(Refusal::WrongSecret));
    }
    if record.state != TokenState::Active {
        return Ok(Err(Refusal::Revoked));
    }
    Ok(Ok(record))
}

/// Mints a token for `vmid`; the guest's other tokens keep working.
pub fn mint(store: &dyn TokenStore, clock: &dyn Clock, vmid: Vmid) -> Result<MintedToken, Error> {
    let mut id = [0u8; 8];
    let mut secret = [0u8; SECRET_LEN];
    getrandom::fill(&mut id).map_err(|source| Error::Random { source })?;
    getrandom::fill(&mut secret).map_err(|source| Error::Random { source })?;
    let id = TokenId(id);
    store.insert(&TokenRecord {
        id,
        vmid,
        hash: hash(id, &secret),
        state: TokenState::Active,
        created_at: clock.now(),
        revoked_at: None,
    })?;
    let token = Secret::new(format!("{PREFIX}{id}_{}", hex::encode(secret)));
    tracing::info!(token_id = %id, vmid = vmid.get(), "local api token minted");
    Ok(MintedToken { id, vmid, token })
}

/// Mints a token for `vmid` and revokes all its others; returns the new token and how many
/// were revoked.
pub fn rotate(
    store: &dyn TokenStore,
    clock: &dyn Clock,
    vmid: Vmid,
) -> Result<(MintedToken, usize), Error> {
    let minted = mint(store, clock, vmid)?;
    let now = clock.now();
    let mut revoked = 0;
    for record in store.list()? {
        if record.vmid == vmid && record.id != minted.id && record.state == TokenState::Active {
            revoked += usize::from(store.revoke(record.id, now)?);
        }
    }
    tracing::info!(token_id = %minted.id, vmid = vmid.get(), revoked, "local api token rotated");
    Ok((minted, revoked))
}

/// Revokes one token; `false` if it was unknown or already revoked.
pub fn revoke(store: &dyn TokenStore, clock: &dyn Clock, id: TokenId) -> Result<bool, Error> {
    let done = store.revoke(id, clock.now())?;
    tracing::info!(token_id = %id, revoked = done, "local api token revoked");
    Ok(done)
}

/// Revokes every token of `vmid`: `felhom-agent localapi revoke --vmid N`, and the gate when
/// a token names a guest that no longer exists. A guest the agent destroys does not need this:
/// the journal's `release_guest` revokes its tokens in the same transaction that unmanages it,
/// so a later guest that reuses the vmid never inherits a controller token.
pub fn revoke_guest(store: &dyn TokenStore, clock: &dyn Clock, vmid: Vmid) -> Result<usize, Error> {
    let n = store.revoke_all(vmid, clock.now())?;
    tracing::info!(
        vmid = vmid.get(),
        revoked = n,
        "local api tokens of guest revoked"
    );
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fakes::{FakeClock, MemoryTokenStore};
    use proptest::prelude::*;

    fn vmid(n: u32) -> Vmid {
        Vmid::new(n).unwrap()
    }

    #[test]
    fn minted_token_verifies_and_is_stored_only_as_hash() {
        let store = MemoryTokenStore::default();
        let clock = FakeClock::default();
        let t = mint(&store, &clock, vmid(101)).unwrap();
        assert_eq!(t.expose().len(), TOKEN_LEN);
        assert!(t.expose().starts_with("fla_"));
        assert!(
            !format!("{t:?}").contains(&t.expose()[21..]),
            "Debug shows the secret"
        );
        let p = parse(t.expose()).unwrap();
        let rec = verify(&store, &p).unwrap().unwrap();
        assert_eq!(rec.vmid, vmid(101));
        // The store never saw the secret.
        let secret_hex = &t.expose()[21..];
        let stored = format!("{:?}", store.list().unwrap());
        assert!(!stored.contains(secret_hex));
        assert_ne!(rec.hash.0[..], hex::decode(secret_hex).unwrap()[..]);
    }

    #[test]
    fn two_mints_differ() {
        let store = MemoryTokenStore::default();
        let clock = FakeClock::default();
        let a = mint(&store, &clock, vmid(101)).unwrap();
        let b = mint(&store, &clock, vmid(101)).unwrap();
        assert_ne!(a.id, b.id);
        assert_ne!(a.expose(), b.expose());
    }

    #[test]
    fn truncated_forged_and_altered_tokens_fail() {
        let store = MemoryTokenStore::default();
        let clock = FakeClock::default();
        let t = mint(&store, &clock, vmid(101)).unwrap();
        let s = t.expose();
        // Truncations and paddings never parse.
        assert!(parse(&s[..s.len() - 1]).is_none());
        assert!(parse(&format!("{s}0")).is_none());
        assert!(parse(&s.to_uppercase()).is_none());
        assert!(parse(&s.replacen("fla_", "flb_", 1)).is_none());
        // A well-formed token with one flipped secret digit: right id, wrong secret.
        let last = s.as_bytes()[s.len() - 1];
        let flipped = format!(
            "{}{}",
            &s[..s.len() - 1],
            if last == b'0' { '1' } else { '0' }
        );
        let p = parse(&flipped).unwrap();
        assert_eq!(
            verify(&store, &p).unwrap().unwrap_err(),
            Refusal::WrongSecret
        );
        // An unknown id.
        let other = format!("fla_0000000000000000_{}", &s[21..]);
        let p = parse(&other).unwrap();
        assert_eq!(verify(&store, &p).unwrap().unwrap_err(), Refusal::UnknownId);
    }

    #[test]
    fn revoke_and_rotate() {
        let store = MemoryTokenStore::default();
        let clock = FakeClock::default();
        let a = mint(&store, &clock, vmid(101)).unwrap();
        let b = mint(&store, &clock, vmid(101)).unwrap();
        let other = mint(&store, &clock, vmid(102)).unwrap();
        let ok = |t: &MintedToken| verify(&store, &parse(t.expose()).unwrap()).unwrap();
        assert!(ok(&a).is_ok() && ok(&b).is_ok());
        let (c, revoked) = rotate(&store, &clock, vmid(101)).unwrap();
        assert_eq!(revoked, 2);
        assert_eq!(ok(&a).unwrap_err(), Refusal::Revoked);
        assert_eq!(ok(&b).unwrap_err(), Refusal::Revoked);
        assert!(ok(&c).is_ok());
        assert!(ok(&other).is_ok(), "rotation touched another guest");
        assert!(revoke(&store, &clock, c.id).unwrap());
        assert!(!revoke(&store, &clock, c.id).unwrap());
        assert_eq!(ok(&c).unwrap_err(), Refusal::Revoked);
        assert_eq!(revoke_guest(&store, &clock, vmid(102)).unwrap(), 1);
        assert_eq!(ok(&other).unwrap_err(), Refusal::Revoked);
    }

    proptest! {
        // Garbage never parses into a token, let alone panics.
        #[test]
        fn garbage_never_parses(s in "\\PC{0,100}") {
            if let Some(p) = parse(&s) {
                // Only a string of exactly the token shape may parse.
                prop_assert!(s.starts_with(PREFIX) && s.len() == TOKEN_LEN);
                prop_assert_eq!(p.id.to_string(), &s[4..20]);
            }
        }
    }
}
