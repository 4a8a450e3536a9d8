//! Why a signed op was refused: one [`Reason`] per CLI word, plus detail for the audit log.

use crate::ports::Redelivery;

/// The rejection reasons of DESIGN.md §4.4, exactly the words `op verify` prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reason {
    /// The signature does not verify over the payload, or is for another namespace.
    BadSignature,
    /// The signing key is not in the operators file.
    UnknownKey,
    /// The signer's roles do not allow the action.
    Role,
    /// The payload names another host.
    WrongHost,
    /// Past `expires_at` (plus the clock-skew allowance).
    Expired,
    /// Before `issued_at` (minus the clock-skew allowance).
    NotYetValid,
    /// The nonce or op id was accepted before.
    Replay,
    /// Not parseable, not strict, over a limit, or outside policy (lifetime).
    Malformed,
}

impl Reason {
    /// Every reason, in check order.
    pub const ALL: [Reason; 8] = [
        Reason::Malformed,
        Reason::UnknownKey,
        Reason::BadSignature,
        Reason::WrongHost,
        Reason::NotYetValid,
        Reason::Expired,
        Reason::Role,
        Reason::Replay,
    ];

    /// The CLI word.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::BadSignature => "bad-signature",
            Reason::UnknownKey => "unknown-key",
            Reason::Role => "role",
            Reason::WrongHost => "wrong-host",
            Reason::Expired => "expired",
            Reason::NotYetValid => "not-yet-valid",
            Reason::Replay => "replay",
            Reason::Malformed => "malformed",
        }
    }
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A refused op. `Display` is exactly `rejected: WORD`; [`Rejection::detail`] says more for the
/// audit log and never contains key material or signature bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    reason: Reason,
    audit_reason: &'static str,
    detail: String,
    redelivery: Option<Redelivery>,
}

impl Rejection {
    pub(crate) fn new(reason: Reason, detail: impl Into<String>) -> Rejection {
        Rejection {
            reason,
            audit_reason: reason.as_str(),
            detail: detail.into(),
            redelivery: None,
        }
    }

    /// A replay with a more precise audit reason (`replay-nonce`, `replay-op-id`,
    /// `replay-redelivery`).
    pub(crate) fn replay(
        audit_reason: &'static str,
        detail: impl Into<String>,
        redelivery: Option<Redelivery>,
    ) -> Rejection {
        Rejection {
            reason: Reason::Replay,
            audit_reason,
            detail: detail.into(),
            redelivery,
        }
    }

    /// The reason (the CLI word).
    pub fn reason(&self) -> Reason {
        self.reason
    }

    /// The reason as recorded in the audit log: the CLI word, or for replays a more precise
    /// code telling a reused nonce, a conflicting op id and a redelivery apart.
    pub fn audit_reason(&self) -> &'static str {
        self.audit_reason
    }

    /// Human-readable detail (no secrets).
    pub fn detail(&self) -> &str {
        &self.detail
    }

    /// For an identical redelivery of an op accepted before: its recorded state and outcome,
    /// which the caller reports instead of running it again.
    pub fn redelivery(&self) -> Option<&Redelivery> {
        self.redelivery.as_ref()
    }
}

impl std::fmt::Display for Rejection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "rejected: {}", self.reason)
    }
}
