//! The reversibility gate (DESIGN.md §3.4): what may destroy a guest.
//!
//! [`Proxmox::destroy`](crate::Proxmox::destroy) takes a [`DestroyAuthority`], and there are
//! exactly two ways to get one: [`DestroyAuthority::signed`] from an operator's
//! [`authz::VerifiedOp`] for `guest.destroy` on exactly this vmid (host binding, expiry and
//! replay were checked by `authz::verify`, the only constructor of a `VerifiedOp`), or
//! [`DestroyAuthority::by_provenance`] from a [`ProvenanceProof`], which only this crate can
//! build and only from the agent's own journal record (a guest it created in the same op, or
//! one it tagged scratch itself). Nothing read from the desired state (tags, description,
//! "scratch", "ephemeral") can produce either. An unsigned destroy does not compile:
//!
//! ```compile_fail
//! let authority = reconcile::DestroyAuthority { vmid: 101, basis: String::new() };
//! ```
//!
//! ```compile_fail
//! let proof = reconcile::ProvenanceProof { vmid: 101, why: "scratch" };
//! ```

use authz::{Action, Target, VerifiedOp};
use journal::GuestRecord;

/// Evidence from the agent's own journal that a guest holds no customer data it did not put
/// there itself. Built only inside this crate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProvenanceProof {
    vmid: u32,
    why: &'static str,
}

impl ProvenanceProof {
    /// From a provenance record: the agent created the guest in `op_id` (compensating
    /// rollback of that same transaction), or the agent tagged it scratch.
    pub(crate) fn from_record(record: &GuestRecord, op_id: Option<&str>) -> Option<Self> {
        if !record.managed {
            return None;
        }
        if record.scratch {
            return Some(ProvenanceProof {
                vmid: record.vmid,
                why: "tagged scratch by the agent",
            });
        }
        match (op_id, record.created_by_op.as_deref()) {
            (Some(op), Some(created)) if op == created => Some(ProvenanceProof {
                vmid: record.vmid,
                why: "created by this same op (compensation)",
            }),
            _ => None,
        }
    }

    /// The guest.
    pub fn vmid(&self) -> u32 {
        self.vmid
    }
}

/// The right to destroy one guest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DestroyAuthority {
    vmid: u32,
    basis: String,
}

/// A signed op does not authorize destroying this guest.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("signed op {op_id} ({action} on {target}) does not authorize destroying guest {vmid}")]
pub struct NotAuthorized {
    /// The op.
    pub op_id: String,
    /// Its action.
    pub action: String,
    /// Its target.
    pub target: String,
    /// The guest asked for.
    pub vmid: u32,
}

impl DestroyAuthority {
    /// From an operator-signed op: only `guest.destroy` with target exactly `{"vmid": vmid}`.
    pub fn signed(op: &VerifiedOp, vmid: u32) -> Result<Self, NotAuthorized> {
        if op.authorizes(Action::GuestDestroy, &Target::Vmid(vmid)) {
            Ok(DestroyAuthority {
                vmid,
                basis: format!("signed op {} by {}", op.op_id(), op.signer()),
            })
        } else {
            Err(NotAuthorized {
                op_id: op.op_id().to_owned(),
                action: op.action().as_str().to_owned(),
                target: op.target().to_string(),
                vmid,
            })
        }
    }

    /// From the agent's own provenance record.
    pub fn by_provenance(proof: ProvenanceProof) -> Self {
        DestroyAuthority {
            vmid: proof.vmid,
            basis: format!("provenance: {}", proof.why),
        }
    }

    /// The guest this authorizes destroying.
    pub fn vmid(&self) -> u32 {
        self.vmid
    }

    /// Why (for the audit log).
    pub fn basis(&self) -> &str {
        &self.basis
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(vmid: u32, scratch: bool, created_by_op: Option<&str>) -> GuestRecord {
        GuestRecord {
            vmid,
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
    fn provenance_proofs_come_only_from_agent_records() {
        assert!(ProvenanceProof::from_record(&record(101, false, None), None).is_none());
        assert!(ProvenanceProof::from_record(&record(101, true, None), None).is_some());
        let created = record(102, false, Some("op-a"));
        assert!(ProvenanceProof::from_record(&created, Some("op-a")).is_some());
        assert!(ProvenanceProof::from_record(&created, Some("op-b")).is_none());
        assert!(ProvenanceProof::from_record(&created, None).is_none());
        let mut released = record(103, true, None);
        released.managed = false;
        assert!(ProvenanceProof::from_record(&released, None).is_none());
        let proof = ProvenanceProof::from_record(&record(104, true, None), None).unwrap();
        let authority = DestroyAuthority::by_provenance(proof);
        assert_eq!(authority.vmid(), 104);
        assert!(authority.basis().contains("scratch"));
    }
}
