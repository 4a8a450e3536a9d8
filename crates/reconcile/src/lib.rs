//! reconcile: the agent's heart (DESIGN.md §3.4, §3.7, §4.2a). It converges the Proxmox node to
//! the desired state, never destroys customer data without an operator's signature, and never
//! leaves a half-done operation behind.
//!
//! It owns the desired-state v1 model and its strict parser ([`desired`]), normalization so
//! nothing diffs spuriously ([`normalize`]), actual state with a digest-keyed config cache
//! ([`actual`]), the pure planner ([`plan`]), the classifier ([`classify`]) and the
//! reversibility gate ([`gate`]: a destroy needs a [`DestroyAuthority`], obtainable only from an
//! `authz::VerifiedOp` or the agent's own provenance), per-guest serialization under a global
//! cap ([`queue`]), journaled executors ([`exec`]), crash recovery ([`recover`]), signed
//! one-shot jobs ([`jobs`]) and the level-triggered loop ([`engine`]). The local desired-state
//! source lives in [`source`].
//!
//! It never opens sockets or files of its own beyond the desired file, and never reads
//! provenance from its input: what the agent manages, created or tagged scratch comes only from
//! the journal. It talks to the world through the narrow traits in [`ports`]: [`Proxmox`] and
//! [`Store`], which the binary implements on `pve::Client` and `journal::Journal`, and
//! [`Clock`] for wall time ([`SystemClock`] in the binary); the stateful fakes of all three are
//! in [`fakes`] (feature `fakes`), and the engine's tests in `tests/` run on
//! them. Everything else that mutates a guest submits through [`EngineHandle`].
//!
//! Decisions recorded here (see also docs/desired-state-v1.md):
//! - a guest becomes managed when an accepted desired state first names it (adoption, journaled
//!   with the generation) or when the agent creates it; a guest never managed is reported and
//!   never touched, also by signed jobs;
//! - a managed guest absent from the accepted desired state is a destroy that waits in
//!   `pending_signature` until a signed `guest.destroy` for this host and vmid arrives;
//! - the accepted desired state is journaled before the engine acts on it; a lower generation
//!   is ignored, the same generation with another canonical SHA-256 is rejected;
//! - steady state costs one list read per cycle plus at most one drift-check config read;
//! - at most [`queue::DEFAULT_PARALLEL`] guests are mutated at once (pvedaemon's 3 workers).
//!
//! Start reading at [`engine::Engine::reconcile`], then [`plan::plan`], [`classify::classify`],
//! [`gate`], [`exec`] and [`recover`].

pub mod actual;
pub mod classify;
pub mod crash;
pub mod desired;
pub mod engine;
pub mod exec;
#[cfg(feature = "fakes")]
pub mod fakes;
pub mod gate;
pub mod handle;
pub mod jobs;
pub mod normalize;
pub mod plan;
pub mod ports;
pub mod preview;
pub mod queue;
pub mod recover;
pub mod source;

pub use classify::{classify, Class};
pub use desired::{
    accept, parse as parse_desired, Acceptance, DesiredError, DesiredGuest, DesiredState,
    PowerState,
};
pub use engine::{
    Action, DesiredInput, Engine, EngineConfig, EngineError, EngineStatus, Ingest, PendingStep,
    Refusal, SignedJob,
};
pub use exec::{is_internal_op_id, ExecError, Executor, OpSpec, INTERNAL_OP_ID_PREFIXES};
pub use gate::{DestroyAuthority, NotAuthorized, ProvenanceProof};
pub use handle::{EngineHandle, GuestOp, OpFailure, OpTicket, Origin, SubmitError};
pub use jobs::{JobOutcome, JobResult};
pub use plan::{plan, GuestPlan, Note, Plan, Step};
pub use ports::{
    Clock, Condition, FoundTask, GuestConfig, GuestState, Posted, Proxmox, ProxmoxError, Store,
    StoreError, SystemClock, TaskEnd,
};
pub use preview::{preview, ClassifiedOp, Preview, Verdict};
pub use queue::{Busy, GuestQueues, Reservation, Turn, DEFAULT_PARALLEL, DEFAULT_QUEUE_DEPTH};

/// An error and its causes as one line, `a: b: c`.
pub use pve::error_chain;
