//! [`verify()`]: from an opaque signed blob to a [`VerifiedOp`], in a fixed order.
//!
//! 1. **Parse** the armored signature and (wire form) the base64 payload; limits apply.
//!    → `malformed`
//! 2. **Key**: the key embedded in the SSHSIG must be in the operators file. → `unknown-key`
//! 3. **Signature** over the EXACT payload bytes, namespace `felhom-op`; for sk- keys the
//!    user-presence flag must be set. → `bad-signature`. Nothing in the payload is trusted
//!    before this point: a re-serialized (even whitespace-changed) payload fails here.
//! 4. **Envelope**, strictly ([`crate::envelope`]). → `malformed`
//! 5. **Host**: `host_id` equals this host's. → `wrong-host`
//! 6. **Times**: a lifetime over the policy maximum → `malformed` (it is a standing grant, not
//!    a late one-shot: no amount of waiting makes it acceptable); `issued_at - skew > now` →
//!    `not-yet-valid`; `now > expires_at + skew` → `expired`.
//! 7. **Role**: one of the signer's roles (from the operators file) allows the action. → `role`
//! 8. **Replay**, durably through [`ReplayGuard`]: a known op id with the same payload is a
//!    redelivery (the recorded outcome is handed back, the op does not run again), with another
//!    payload a conflict; a known nonce is a reuse. All three → `replay`, with distinct audit
//!    reasons `replay-redelivery`, `replay-op-id`, `replay-nonce`.
//!
//! Every accept and every reject is recorded through [`AuditSink`] / [`ReplayGuard`]; if the
//! store fails, verification fails ([`VerifyError::Ledger`]), it never accepts unrecorded.
//! An expired redelivery answers `expired`, not the recorded outcome (times come first).

use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use ssh_key::HashAlg;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::armor::{parse_armored, sk_user_present, NAMESPACE};
use crate::envelope::parse_payload;
use crate::ports::{AuditOutcome, Claim};
use crate::wire::parse_wire;
use crate::{
    Action, Admission, AuditEvent, AuditSink, LedgerError, Operators, Policy, Reason, Rejection,
    ReplayGuard, Target,
};

/// The signed op as it arrived.
#[derive(Debug, Clone, Copy)]
pub enum SignedInput<'a> {
    /// The wire JSON document.
    Wire(&'a [u8]),
    /// Payload bytes and armored signature, separately (`op verify --payload --signature`).
    Parts {
        /// The exact payload bytes.
        payload: &'a [u8],
        /// The armored SSHSIG.
        signature: &'a [u8],
    },
}

/// Why [`verify()`] did not produce a [`VerifiedOp`].
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    /// The op was refused (and the refusal recorded).
    #[error("{0}")]
    Rejected(Rejection),
    /// The replay/audit store failed; nothing was accepted.
    #[error("recording the verification failed")]
    Ledger(#[source] LedgerError),
}

/// An operator-signed op that passed every check of [`verify()`] and was recorded as accepted.
///
/// It has private fields and no public constructor: holding one proves the checks ran. The
/// executor of a destructive step takes a `&VerifiedOp` and compares [`VerifiedOp::authorizes`]
/// with exactly what it is about to touch.
#[derive(Debug)]
pub struct VerifiedOp {
    op_id: String,
    nonce: String,
    action: Action,
    target: Target,
    params: Map<String, Value>,
    signer: String,
    key_fingerprint: String,
    host_id: String,
    issued_at: OffsetDateTime,
    expires_at: OffsetDateTime,
    start_by: OffsetDateTime,
    payload_sha256: String,
}

impl VerifiedOp {
    /// The op's id (its idempotency key).
    pub fn op_id(&self) -> &str {
        &self.op_id
    }

    /// The signed action.
    pub fn action(&self) -> Action {
        self.action
    }

    /// The signed target.
    pub fn target(&self) -> &Target {
        &self.target
    }

    /// The signed parameters.
    pub fn params(&self) -> &Map<String, Value> {
        &self.params
    }

    /// The signer's principal (from the operators file).
    pub fn signer(&self) -> &str {
        &self.signer
    }

    /// `SHA256:…` fingerprint of the signing key.
    pub fn key_fingerprint(&self) -> &str {
        &self.key_fingerprint
    }

    /// When it was issued, as signed.
    pub fn issued_at(&self) -> OffsetDateTime {
        self.issued_at
    }

    /// When it stops being valid, as signed.
    pub fn expires_at(&self) -> OffsetDateTime {
        self.expires_at
    }

    /// The last moment the op may start: `expires_at` plus the clock-skew allowance it was
    /// verified with, i.e. the moment [`verify()`] itself would start answering `expired`.
    pub fn start_by(&self) -> OffsetDateTime {
        self.start_by
    }

    /// Whether the op may still start at `now`. Verification happens at intake; an op can then
    /// wait (the engine's cycle, the guest's queue) past its expiry, so an executor asks this
    /// again right before its first step.
    pub fn may_start(&self, now: OffsetDateTime) -> bool {
        now <= self.start_by
    }

    /// SHA-256 (hex) of the exact payload bytes.
    pub fn payload_sha256(&self) -> &str {
        &self.payload_sha256
    }

    /// Whether this op authorizes exactly `action` on exactly `target`. A signed
    /// `backup.force` never authorizes `guest.destroy`; a signature for vmid 101 never
    /// touches 102.
    pub fn authorizes(&self, action: Action, target: &Target) -> bool {
        self.action == action && self.target == *target
    }

    /// The accepted op as JSON (what `op verify` prints).
    pub fn to_json(&self) -> Value {
        let time = |t: OffsetDateTime| t.format(&Rfc3339).unwrap_or_default();
        serde_json::json!({
            "op_id": self.op_id,
            "action": self.action.as_str(),
            "target": self.target.to_json(),
            "params": self.params,
            "signer": self.signer,
            "key_fingerprint": self.key_fingerprint,
            "host_id": self.host_id,
            "issued_at": time(self.issued_at),
            "expires_at": time(self.expires_at),
            "payload_sha256": self.payload_sha256,
        })
    }
}

/// What is known about the op when a check fails, for the audit record.
#[derive(Default)]
struct Known {
    actor: Option<String>,
    action: Option<String>,
    target: Option<String>,
    op_id: Option<String>,
    payload_sha256: Option<String>,
}

/// Verifies a signed op against the operators file and this host's policy, records the
/// outcome, and on success returns the only kind of value that authorizes a destructive step.
/// See the module docs for the order of checks.
pub fn verify<L>(
    input: SignedInput<'_>,
    operators: &Operators,
    policy: &Policy,
    ledger: &mut L,
) -> Result<VerifiedOp, VerifyError>
where
    L: ReplayGuard + AuditSink + ?Sized,
{
    let now = policy.now.unix_timestamp();
    let mut known = Known::default();
    let op = match check(input, operators, policy, &mut known) {
        Ok(op) => op,
        Err(rejection) => return reject(ledger, rejection, known, now),
    };
    let claim = Claim {
        op_id: op.op_id.clone(),
        nonce: op.nonce.clone(),
        signer: op.signer.clone(),
        payload_sha256: op.payload_sha256.clone(),
        action: op.action,
        target: op.target.clone(),
        expires_at: op.expires_at.unix_timestamp(),
        keep_until: op
            .expires_at
            .unix_timestamp()
            .saturating_add(policy.clock_skew.as_secs().try_into().unwrap_or(i64::MAX)),
        now,
    };
    let accepted = event(&known, AuditOutcome::Accepted, "accepted", "", now);
    match ledger
        .admit(&claim, &accepted)
        .map_err(VerifyError::Ledger)?
    {
        Admission::Admitted => {
            tracing::info!(
                op_id = %op.op_id,
                signer = %op.signer,
                action = %op.action,
                target = %op.target,
                "signed op accepted"
            );
            Ok(op)
        }
        Admission::Redelivery(recorded) => {
            let detail = format!(
                "op {} was accepted before (state {})",
                op.op_id, recorded.state
            );
            let rejection = Rejection::replay("replay-redelivery", detail, Some(recorded));
            reject(ledger, rejection, known, now)
        }
        Admission::OpIdConflict => {
            let detail = format!(
                "op id {} was accepted before with a different payload",
                op.op_id
            );
            reject(
                ledger,
                Rejection::replay("replay-op-id", detail, None),
                known,
                now,
            )
        }
        Admission::NonceReused { by_op_id } => {
            let detail = format!("nonce already used by op {by_op_id}");
            reject(
                ledger,
                Rejection::replay("replay-nonce", detail, None),
                known,
                now,
            )
        }
    }
}

fn reject<L>(
    ledger: &mut L,
    rejection: Rejection,
    known: Known,
    now: i64,
) -> Result<VerifiedOp, VerifyError>
where
    L: AuditSink + ?Sized,
{
    tracing::warn!(
        reason = rejection.reason().as_str(),
        audit_reason = rejection.audit_reason(),
        detail = rejection.detail(),
        op_id = known.op_id.as_deref(),
        actor = known.actor.as_deref(),
        "signed op rejected"
    );
    let event = event(
        &known,
        AuditOutcome::Rejected,
        rejection.audit_reason(),
        rejection.detail(),
        now,
    );
    ledger.record(&event).map_err(VerifyError::Ledger)?;
    Err(VerifyError::Rejected(rejection))
}

fn event(known: &Known, outcome: AuditOutcome, reason: &str, detail: &str, now: i64) -> AuditEvent {
    let mut full = String::new();
    if let Some(sha) = &known.payload_sha256 {
        full.push_str("payload sha256 ");
        full.push_str(sha);
    }
    if !detail.is_empty() {
        if !full.is_empty() {
            full.push_str("; ");
        }
        full.push_str(detail);
    }
    AuditEvent {
        at: now,
        actor: known.actor.clone(),
        action: known.action.clone(),
        target: known.target.clone(),
        op_id: known.op_id.clone(),
        outcome,
        reason: reason.to_owned(),
        detail: full,
    }
}

/// Steps 1–7: pure, no I/O.
fn check(
    input: SignedInput<'_>,
    operators: &Operators,
    policy: &Policy,
    known: &mut Known,
) -> Result<VerifiedOp, Rejection> {
    let malformed = |e: crate::ParseError| Rejection::new(Reason::Malformed, e.to_string());
    // 1. parse
    let (payload, signature) = match input {
        SignedInput::Wire(bytes) => {
            let wire = parse_wire(bytes).map_err(malformed)?;
            (
                std::borrow::Cow::Owned(wire.payload),
                wire.signature.into_bytes(),
            )
        }
        SignedInput::Parts { payload, signature } => {
            (std::borrow::Cow::Borrowed(payload), signature.to_vec())
        }
    };
    if payload.len() > crate::envelope::MAX_PAYLOAD {
        return Err(malformed(crate::ParseError::TooLarge {
            what: "payload",
            len: payload.len(),
            limit: crate::envelope::MAX_PAYLOAD,
        }));
    }
    known.payload_sha256 = Some(hex::encode(Sha256::digest(&payload[..])));
    let sig = parse_armored(&signature).map_err(malformed)?;
    // 2. key
    let Some(operator) = operators.find(sig.public_key()) else {
        let fingerprint = sig.public_key().fingerprint(HashAlg::Sha256);
        known.actor = Some(format!("key {fingerprint}"));
        return Err(Rejection::new(
            Reason::UnknownKey,
            format!("key {fingerprint} is not in the operators file"),
        ));
    };
    known.actor = Some(operator.principal().to_owned());
    // 3. signature over the exact bytes
    operator
        .key()
        .verify(NAMESPACE, &payload, &sig)
        .map_err(|err| {
            let why = match err {
                ssh_key::Error::Namespace => "signature is for another namespace",
                _ => "signature does not verify over the payload",
            };
            Rejection::new(Reason::BadSignature, why)
        })?;
    if sk_user_present(&sig) == Some(false) {
        return Err(Rejection::new(
            Reason::BadSignature,
            "security-key signature without user presence",
        ));
    }
    // 4. envelope
    let env = parse_payload(&payload).map_err(malformed)?;
    known.op_id = Some(env.op_id.clone());
    known.action = Some(env.action.as_str().to_owned());
    known.target = Some(env.target.to_string());
    // 5. host
    if env.host_id != policy.host_id {
        return Err(Rejection::new(
            Reason::WrongHost,
            format!("signed for host {:?}", env.host_id),
        ));
    }
    // 6. times
    let lifetime = env.expires_at - env.issued_at;
    if lifetime > policy.max_lifetime {
        return Err(Rejection::new(
            Reason::Malformed,
            format!(
                "lifetime {}s exceeds the maximum {}s",
                lifetime.whole_seconds(),
                policy.max_lifetime.as_secs()
            ),
        ));
    }
    if env.issued_at - policy.clock_skew > policy.now {
        return Err(Rejection::new(
            Reason::NotYetValid,
            "issued_at is in the future beyond the clock-skew allowance",
        ));
    }
    if policy.now > env.expires_at + policy.clock_skew {
        return Err(Rejection::new(Reason::Expired, "past expires_at"));
    }
    // 7. role
    if !operator.may(env.action) {
        return Err(Rejection::new(
            Reason::Role,
            format!(
                "roles of {} do not allow {}",
                operator.principal(),
                env.action
            ),
        ));
    }
    Ok(VerifiedOp {
        op_id: env.op_id,
        nonce: env.nonce,
        action: env.action,
        target: env.target,
        params: env.params,
        signer: operator.principal().to_owned(),
        key_fingerprint: operator.fingerprint().to_owned(),
        host_id: env.host_id,
        issued_at: env.issued_at,
        expires_at: env.expires_at,
        start_by: env.expires_at + policy.clock_skew,
        payload_sha256: known.payload_sha256.clone().unwrap_or_default(),
    })
}

#[cfg(test)]
mod tests;
