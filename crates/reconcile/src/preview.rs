//! The preview: the plan with every step classified, and what the engine will do with each op.
//! Pure, like [`crate::plan::plan`]; the engine acts on it and `felhom-agent plan` prints it, so
//! what an operator previews is exactly what the engine decides.

use std::collections::{BTreeMap, BTreeSet};

use journal::GuestRecord;

use crate::actual::Actual;
use crate::classify::{classify, Class};
use crate::desired::DesiredState;
use crate::plan::{plan, GuestPlan, Note};
use crate::ports::GuestConfig;

/// What happens to one planned op.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Every step is benign: it runs.
    Run,
    /// A step needs an operator signature: the op waits in `pending_signature`.
    NeedsSignature {
        /// The action to sign.
        action: authz::Action,
        /// Its target.
        target: authz::Target,
    },
    /// A step is refused: nothing of the op runs.
    Refused {
        /// Why.
        reason: String,
    },
}

/// One planned op with the class of each of its steps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClassifiedOp {
    /// The op.
    pub op: GuestPlan,
    /// The class of each step, in order.
    pub classes: Vec<Class>,
    /// What the engine does with it: the first refusal, else the first signature needed.
    pub verdict: Verdict,
}

/// The classified plan of one cycle.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Preview {
    /// Ops, one per guest that needs something.
    pub ops: Vec<ClassifiedOp>,
    /// Reported conditions.
    pub notes: Vec<Note>,
}

/// Plans `desired` against `actual` and classifies every step by the agent's own provenance
/// `records` (never by anything in the desired state).
pub fn preview(
    desired: Option<&DesiredState>,
    actual: &Actual,
    configs: &dyn Fn(u32) -> Option<GuestConfig>,
    records: &BTreeMap<u32, GuestRecord>,
) -> Preview {
    let managed: BTreeSet<u32> = records
        .values()
        .filter(|r| r.managed)
        .map(|r| r.vmid)
        .collect();
    let planned = plan(desired, actual, configs, &managed);
    let ops = planned
        .ops
        .into_iter()
        .map(|op| {
            let record = records.get(&op.vmid);
            let classes: Vec<Class> = op
                .steps
                .iter()
                .map(|s| classify(s, op.vmid, record, None))
                .collect();
            let refused = classes.iter().find_map(|c| match c {
                Class::Refused { reason } => Some(Verdict::Refused {
                    reason: reason.clone(),
                }),
                _ => None,
            });
            let signature = classes.iter().find_map(|c| match c {
                Class::NeedsSignature { action, target } => Some(Verdict::NeedsSignature {
                    action: *action,
                    target: target.clone(),
                }),
                _ => None,
            });
            ClassifiedOp {
                verdict: refused.or(signature).unwrap_or(Verdict::Run),
                op,
                classes,
            }
        })
        .collect();
    Preview {
        ops,
        notes: planned.notes,
    }
}
