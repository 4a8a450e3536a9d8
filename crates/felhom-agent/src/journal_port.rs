//! The reconcile engine's [`reconcile::Store`] port on the agent's journal: each call runs one
//! journal transaction through the [`JournalHandle`] (off the async workers); a journal error
//! becomes the port's [`StoreError`] with what was being done.

use journal::{
    DesiredStateRecord, GuestRecord, JournalError, NewAuditEntry, NewDesiredState, NewOp, OpRecord,
    OpState, OpStatus, StepStatus,
};
use reconcile::{Store, StoreError};

use crate::journal_handle::JournalHandle;

/// The journal as the engine's store. Cheap to clone; every clone reaches the same connection.
#[derive(Clone, Debug)]
pub struct JournalStore {
    journal: JournalHandle,
}

impl JournalStore {
    /// The store over the agent's journal.
    pub fn new(journal: JournalHandle) -> Self {
        JournalStore { journal }
    }
}

fn err(what: &'static str) -> impl FnOnce(JournalError) -> StoreError {
    move |e| StoreError::new(what, e)
}

impl Store for JournalStore {
    fn latest_desired(&self) -> Result<Option<DesiredStateRecord>, StoreError> {
        self.journal
            .with(|j| j.latest_desired_state())
            .map_err(err("reading the desired state"))
    }
    fn accept_desired(
        &self,
        state: &NewDesiredState,
        audit: &NewAuditEntry,
    ) -> Result<(), StoreError> {
        self.journal
            .with(|j| j.accept_desired_state(state, audit))
            .map_err(err("accepting a desired state"))
    }
    fn accept_desired_after_reset(
        &self,
        state: &NewDesiredState,
        now: i64,
        audit: &NewAuditEntry,
    ) -> Result<Option<String>, StoreError> {
        self.journal
            .with(|j| j.accept_desired_state_after_reset(state, now, audit))
            .map_err(err("accepting a desired state after a reset"))
    }
    fn arm_desired_reset(
        &self,
        op_id: &str,
        signer: &str,
        at: i64,
        until: i64,
        audit: &NewAuditEntry,
    ) -> Result<(), StoreError> {
        self.journal
            .with(|j| j.arm_desired_reset(op_id, signer, at, until, audit))
            .map_err(err("arming a desired-state reset"))
    }
    fn adopt_guest(
        &self,
        vmid: u32,
        op_id: &str,
        identity: &str,
        at: i64,
        audit: &NewAuditEntry,
    ) -> Result<bool, StoreError> {
        self.journal
            .with(|j| j.adopt_guest(vmid, op_id, identity, at, audit))
            .map_err(err("adopting a guest"))
    }
    fn set_guest_identity(
        &self,
        vmid: u32,
        identity: &str,
        since: i64,
        at: i64,
    ) -> Result<bool, StoreError> {
        self.journal
            .with(|j| j.set_guest_identity(vmid, identity, since, at))
            .map_err(err("recording a guest's identity"))
    }
    fn audit(&self, entry: &NewAuditEntry) -> Result<(), StoreError> {
        self.journal
            .with(|j| j.append_audit(entry))
            .map(drop)
            .map_err(err("appending to the audit log"))
    }
    fn guests(&self) -> Result<Vec<GuestRecord>, StoreError> {
        self.journal
            .with(|j| j.guests())
            .map_err(err("reading provenance"))
    }
    fn release_guest(&self, vmid: u32, at: i64, audit: &NewAuditEntry) -> Result<(), StoreError> {
        self.journal
            .with(|j| j.release_guest(vmid, at, audit))
            .map_err(err("releasing a guest"))
    }
    fn insert_op(&self, op: &NewOp, audit: &NewAuditEntry) -> Result<bool, StoreError> {
        self.journal
            .with(|j| j.insert_op(op, audit))
            .map_err(err("recording an op"))
    }
    fn insert_op_unless_open(
        &self,
        op: &NewOp,
        exclusive_step: &str,
        audit: &NewAuditEntry,
    ) -> Result<Result<(), String>, StoreError> {
        self.journal
            .with(|j| j.insert_op_unless_open(op, exclusive_step, audit))
            .map_err(err("recording an op"))
    }
    fn step_intent(
        &self,
        op_id: &str,
        idx: u32,
        at: i64,
        audit: &NewAuditEntry,
    ) -> Result<(), StoreError> {
        self.journal
            .with(|j| j.step_intent(op_id, idx, at, audit))
            .map_err(err("recording a step's intent"))
    }
    fn step_posted(
        &self,
        op_id: &str,
        idx: u32,
        upid: Option<&str>,
        at: i64,
    ) -> Result<(), StoreError> {
        self.journal
            .with(|j| j.step_posted(op_id, idx, upid, at))
            .map_err(err("recording a step's task"))
    }
    fn step_finished(
        &self,
        op_id: &str,
        idx: u32,
        state: StepStatus,
        exitstatus: Option<&str>,
        at: i64,
        audit: Option<&NewAuditEntry>,
    ) -> Result<(), StoreError> {
        self.journal
            .with(|j| j.step_finished(op_id, idx, state, exitstatus, at, audit))
            .map_err(err("recording a step's end"))
    }
    fn finish_op(
        &self,
        op_id: &str,
        state: OpStatus,
        error: Option<&str>,
        at: i64,
        audit: &NewAuditEntry,
    ) -> Result<(), StoreError> {
        self.journal
            .with(|j| j.finish_op(op_id, state, error, at, audit))
            .map_err(err("finishing an op"))
    }
    fn unfinished_ops(&self) -> Result<Vec<OpRecord>, StoreError> {
        self.journal
            .with(|j| j.unfinished_ops())
            .map_err(err("reading unfinished ops"))
    }
    fn upid_recorded(&self, upid: &str) -> Result<bool, StoreError> {
        self.journal
            .with(|j| j.upid_recorded(upid))
            .map_err(err("reading recorded tasks"))
    }
    fn pending_ops(&self) -> Result<Vec<OpRecord>, StoreError> {
        self.journal
            .with(|j| j.pending_ops())
            .map_err(err("reading pending ops"))
    }
    fn set_signed_op_state(
        &self,
        op_id: &str,
        state: OpState,
        outcome: Option<&str>,
        at: i64,
    ) -> Result<(), StoreError> {
        self.journal
            .with(|j| j.set_signed_op_state(op_id, state, outcome, at))
            .map_err(err("recording a signed op's outcome"))
    }
}
