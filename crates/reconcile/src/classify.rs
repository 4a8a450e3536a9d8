//! The classifier (DESIGN.md §3.4): is a step benign, or does it need an operator signature?
//!
//! Decided by provenance and data-bearing-ness, never by the verb alone and never by anything
//! the desired state says about a guest (tags, description, labels): the only inputs are the
//! step and the agent's own journal record of the guest.

use authz::{Action, Target};
use journal::GuestRecord;

use crate::normalize;
use crate::plan::Step;

/// The classifier's verdict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Class {
    /// May run without a signature.
    Benign,
    /// Runs only with a verified operator signature for `action` on `target`.
    NeedsSignature {
        /// The action to sign.
        action: Action,
        /// Its target.
        target: Target,
    },
    /// Never runs (an unmanaged guest, a key outside the allowlist).
    Refused {
        /// Why.
        reason: String,
    },
}

impl Class {
    /// `benign`, `needs-signature` or `refused`.
    pub fn word(&self) -> &'static str {
        match self {
            Class::Benign => "benign",
            Class::NeedsSignature { .. } => "needs-signature",
            Class::Refused { .. } => "refused",
        }
    }
}

/// Classifies `step` on guest `vmid` given the agent's provenance record of it and, for a
/// compensating destroy, the op it runs in.
pub fn classify(
    step: &Step,
    vmid: u32,
    provenance: Option<&GuestRecord>,
    op_id: Option<&str>,
) -> Class {
    let managed = provenance.is_some_and(|r| r.managed);
    if !managed {
        return Class::Refused {
            reason: format!("guest {vmid} is not managed by this agent"),
        };
    }
    match step {
        Step::Start | Step::Shutdown | Step::Stop => Class::Benign,
        // A snapshot or a backup adds a copy; deleting a snapshot removes a copy, never the
        // primary one.
        Step::Snapshot { .. } | Step::Vzdump { .. } | Step::DeleteSnapshot { .. } => Class::Benign,
        // Pruning removes backup copies past the agent's own retention, never the primary
        // copy; only the local-API backup op plans it, after its vzdump.
        Step::Prune { .. } => Class::Benign,
        // The agent's own identity line; the description's text is kept.
        Step::MarkIdentity { .. } => Class::Benign,
        // Rollback discards what changed since the snapshot, so it is asked for only by the
        // guest's own controller through the local API (seed §6: the controller owns its app's
        // snapshot points) or by the agent's selftest on a snapshot it took moments before; the
        // planner never plans one from a desired state.
        Step::Rollback { .. } => Class::Benign,
        Step::SetConfig { changes, .. } => match changes.keys().find(|k| !normalize::allowed(k)) {
            // Mount points, protection, features…: data-bearing or root-only, never benign
            // and not signable in v1.
            Some(key) => Class::Refused {
                reason: format!("option {key} is not settable"),
            },
            None => Class::Benign,
        },
        Step::Destroy => {
            let proof =
                provenance.and_then(|r| crate::gate::ProvenanceProof::from_record(r, op_id));
            match proof {
                Some(_) => Class::Benign,
                None => Class::NeedsSignature {
                    action: Action::GuestDestroy,
                    target: Target::Vmid(vmid),
                },
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use proptest::prelude::*;

    use super::*;

    fn record(scratch: bool, created_by_op: Option<&str>) -> GuestRecord {
        GuestRecord {
            vmid: 101,
            managed: true,
            adopted_generation: Some(1),
            created_by_op: created_by_op.map(str::to_owned),
            scratch,
            first_seen: 0,
            last_seen: 0,
            ..GuestRecord::default()
        }
    }

    #[test]
    fn the_rules() {
        let adopted = record(false, None);
        assert_eq!(
            classify(&Step::Start, 101, Some(&adopted), None),
            Class::Benign
        );
        assert_eq!(
            classify(&Step::Destroy, 101, Some(&adopted), None).word(),
            "needs-signature"
        );
        assert_eq!(
            classify(&Step::Destroy, 101, Some(&record(true, None)), None),
            Class::Benign
        );
        let created = record(false, Some("op-1"));
        assert_eq!(
            classify(&Step::Destroy, 101, Some(&created), Some("op-1")),
            Class::Benign
        );
        assert_eq!(
            classify(&Step::Destroy, 101, Some(&created), Some("op-2")).word(),
            "needs-signature"
        );
        assert_eq!(classify(&Step::Start, 101, None, None).word(), "refused");
        let mut changes = BTreeMap::new();
        changes.insert("mp0".to_owned(), "x".to_owned());
        assert_eq!(
            classify(
                &Step::SetConfig {
                    changes,
                    digest: None
                },
                101,
                Some(&adopted),
                None
            )
            .word(),
            "refused"
        );
    }

    proptest! {
        /// Whatever the desired state says (tags, description: "scratch", "ephemeral", …) it
        /// never reaches the classifier: a destroy of an adopted guest always needs a signature.
        #[test]
        fn destroy_of_an_adopted_guest_always_needs_a_signature(
            vmid in 100u32..100_000, generation in 0u64..1000, op in proptest::option::of("[a-z0-9-]{1,12}"),
        ) {
            let r = GuestRecord { vmid, managed: true, adopted_generation: Some(generation),
                created_by_op: None, scratch: false, first_seen: 0, last_seen: 0, ..GuestRecord::default() };
            let is_signature = matches!(
                classify(&Step::Destroy, vmid, Some(&r), op.as_deref()),
                Class::NeedsSignature { action: Action::GuestDestroy, target: Target::Vmid(v) } if v == vmid
            );
            prop_assert!(is_signature);
        }
    }
}
