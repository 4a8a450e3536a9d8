//! [`Store`] backed by the journal database.

use journal::{
    DesiredStateRecord, GuestRecord, Journal, JournalError, NewAuditEntry, NewDesiredState, NewOp,
    OpRecord, OpStatus, StepStatus,
};

use crate::ports::Store;

impl Store for Journal {
    fn latest_desired(&self) -> Result<Option<DesiredStateRecord>, JournalError> {
        self.latest_desired_state()
    }
    fn accept_desired(
        &mut self,
        state: &NewDesiredState,
        audit: &NewAuditEntry,
    ) -> Result<Vec<u32>, JournalError> {
        self.accept_desired_state(state, audit)
    }
    fn audit(&mut self, entry: &NewAuditEntry) -> Result<(), JournalError> {
        self.append_audit(entry).map(drop)
    }
    fn guests(&self) -> Result<Vec<GuestRecord>, JournalError> {
        Journal::guests(self)
    }
    fn release_guest(
        &mut self,
        vmid: u32,
        at: i64,
        audit: &NewAuditEntry,
    ) -> Result<(), JournalError> {
        Journal::release_guest(self, vmid, at, audit)
    }
    fn insert_op(&mut self, op: &NewOp, audit: &NewAuditEntry) -> Result<bool, JournalError> {
        Journal::insert_op(self, op, audit)
    }
    fn insert_op_unless_open(
        &mut self,
        op: &NewOp,
        exclusive_step: &str,
        audit: &NewAuditEntry,
    ) -> Result<Result<(), String>, JournalError> {
        Journal::insert_op_unless_open(self, op, exclusive_step, audit)
    }
    fn step_intent(
        &mut self,
        op_id: &str,
        idx: u32,
        at: i64,
        audit: &NewAuditEntry,
    ) -> Result<(), JournalError> {
        Journal::step_intent(self, op_id, idx, at, audit)
    }
    fn step_posted(
        &mut self,
        op_id: &str,
        idx: u32,
        upid: Option<&str>,
        at: i64,
    ) -> Result<(), JournalError> {
        Journal::step_posted(self, op_id, idx, upid, at)
    }
    fn step_finished(
        &mut self,
        op_id: &str,
        idx: u32,
        state: StepStatus,
        exitstatus: Option<&str>,
        at: i64,
        audit: Option<&NewAuditEntry>,
    ) -> Result<(), JournalError> {
        Journal::step_finished(self, op_id, idx, state, exitstatus, at, audit)
    }
    fn finish_op(
        &mut self,
        op_id: &str,
        state: OpStatus,
        error: Option<&str>,
        at: i64,
        audit: &NewAuditEntry,
    ) -> Result<(), JournalError> {
        Journal::finish_op(self, op_id, state, error, at, audit)
    }
    fn unfinished_ops(&self) -> Result<Vec<OpRecord>, JournalError> {
        Journal::unfinished_ops(self)
    }
    fn pending_ops(&self) -> Result<Vec<OpRecord>, JournalError> {
        Journal::pending_ops(self)
    }
    fn set_signed_op_state(
        &mut self,
        op_id: &str,
        state: journal::OpState,
        outcome: Option<&str>,
        at: i64,
    ) -> Result<(), JournalError> {
        Journal::set_signed_op_state(self, op_id, state, outcome, at)
    }
}
