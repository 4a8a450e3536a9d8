//! `hub`: hub protocol v1 of felhom-agent, its client and its poll loop.
//!
//! It owns the wire types of the box-initiated exchange (seed §5, `docs/hub-protocol.md`):
//! the up message [`HostReport`] and its [`ReportAck`], the down message [`Directive`]
//! (desired state and signed ops kept opaque: the reconcile and authz crates own those
//! models); the HTTPS [`HubClient`] (system roots or a SHA-256 leaf pin, Bearer key,
//! conditional GET, gzip, bounded bodies); and the [`PollLoop`] that fetches, publishes
//! accepted states on a `watch` channel, reports, backs off and tracks its [`Health`].
//!
//! It never talks to Proxmox, never verifies signatures, never decides what to reconcile:
//! the binary wires a [`ReportSource`] and consumes [`PollHandle::subscribe`].
//!
//! Start reading at `poll.rs` (the loop and its rules), then `directive.rs`, `report.rs`,
//! `client.rs`, `encode.rs` (the size bound), `backoff.rs`, `health.rs`.

#![warn(missing_docs)]

mod backoff;
mod client;
mod directive;
mod encode;
mod error;
mod health;
mod poll;
mod report;

pub use backoff::{Backoff, Rng, MIN_DELAY};
pub use client::{
    read_ack_answer, read_directive_answer, ClientOptions, HubClient, MAX_DIRECTIVE_BYTES,
};
pub use directive::{
    Directive, DirectiveProblem, HubDirectedConfig, UpdateWindow, MAX_POLL_INTERVAL,
    MIN_POLL_INTERVAL,
};
pub use encode::{
    encode_report, gunzip_bounded, gzip_bytes, EncodedReport, GunzipError, MAX_REPORT_BYTES,
};
pub use error::Error;
pub use health::{Health, HealthSnapshot};
pub use poll::{
    now_rfc3339, CollectContext, CycleOutcome, ErrorChain, Fetched, HubApi, PollHandle, PollLoop,
    PollOptions, Received, ReportSource,
};
pub use report::{
    Ack, AgentStatus, AuditEntry, AuditSection, BackupReport, CloudflaredHealth, CollectorError,
    ControllerVersion, DesiredStatus, FilesystemMetrics, GuestReport, GuestSpec, GuestUsage,
    HostMetrics, HostReport, MemoryMetrics, OmittedRange, OpOutcome, OpOutcomeKind,
    PendingSignature, PveNodeReport, ReconcileError, RejectedDesired, ReportAck, RestoreTestReport,
    SmartReport, StorageTargetReport, SwapMetrics, Versions,
};

/// The protocol version this crate speaks (the `v` of every message, `/api/v1/` in paths).
pub const PROTOCOL_VERSION: u32 = 1;
