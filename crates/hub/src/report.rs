//! The up message: the host report of seed §5 (`POST /api/v1/hosts/{host_id}/report`).
//!
//! Every section is always present so the hub never has to guess whether a field is missing
//! or empty. Sections whose capability has not landed yet (storage targets, backups, the
//! restore test, controller versions) are present and empty (`[]` or `null`); the protocol
//! document says which. Readers ignore unknown fields: later v1 agents may add some.

use serde::{Deserialize, Serialize};

use crate::PROTOCOL_VERSION;

/// One report, as the agent sends it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HostReport {
    /// Protocol version, always 1.
    pub v: u32,
    /// This host's identity at the hub (`host_id` of the configuration).
    pub host_id: String,
    /// When the report was assembled, RFC 3339 UTC.
    pub sent_at: String,
    /// What the agent holds of the desired state.
    pub desired: DesiredStatus,
    /// The poll loop's own health.
    pub agent: AgentStatus,
    /// Host metrics.
    pub host: HostMetrics,
    /// Every guest on the node, managed or not.
    pub guests: Vec<GuestReport>,
    /// Storage targets (seed §7). Empty until the storage capability lands.
    pub storage_targets: Vec<StorageTargetReport>,
    /// Last backup per target and guest. Empty until the backup capability lands.
    pub last_backups: Vec<BackupReport>,
    /// Last self-restore-test. `null` until the backup capability lands.
    pub last_restore_test: Option<RestoreTestReport>,
    /// Tunnel health; `null` when no cloudflared probe is configured.
    pub cloudflared: Option<CloudflaredHealth>,
    /// Agent and controller versions.
    pub versions: Versions,
    /// Audit entries the hub has not acknowledged yet.
    pub audit: AuditSection,
    /// Steps held by the reversibility gate until an operator signs them.
    pub pending_signature: Vec<PendingSignature>,
    /// Outcomes of signed ops (the hub drops an op from its queue once it sees one here).
    pub op_outcomes: Vec<OpOutcome>,
    /// The last reconcile error per guest.
    pub reconcile_errors: Vec<ReconcileError>,
}

impl HostReport {
    /// An empty report for `host_id`: every section present, nothing collected yet. The
    /// binary fills the sections; the poll loop fills `v`, `host_id`, `sent_at`, `agent` and
    /// `desired.received_generation` itself.
    pub fn empty(host_id: impl Into<String>, agent_version: impl Into<String>) -> Self {
        HostReport {
            v: PROTOCOL_VERSION,
            host_id: host_id.into(),
            sent_at: String::new(),
            desired: DesiredStatus::default(),
            agent: AgentStatus::default(),
            host: HostMetrics::default(),
            guests: Vec::new(),
            storage_targets: Vec::new(),
            last_backups: Vec::new(),
            last_restore_test: None,
            cloudflared: None,
            versions: Versions {
                agent: agent_version.into(),
                protocol: PROTOCOL_VERSION,
                controllers: Vec::new(),
            },
            audit: AuditSection::default(),
            pending_signature: Vec::new(),
            op_outcomes: Vec::new(),
            reconcile_errors: Vec::new(),
        }
    }
}

/// What the agent holds of the desired state.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DesiredStatus {
    /// Highest generation received from the hub and handed to the engine (filled by the loop).
    pub received_generation: Option<u64>,
    /// Generation the engine last converged to without errors (filled by the engine).
    pub applied_generation: Option<u64>,
    /// A desired state the agent refused, with the reason.
    pub rejected: Option<RejectedDesired>,
}

/// A refused desired state (DESIGN §4.2a: an older generation, the same generation with
/// different content, or an invalid document).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RejectedDesired {
    /// Its generation (0 when the document has no readable one).
    pub generation: u64,
    /// Why it was refused.
    pub reason: String,
}

/// The poll loop's view of itself.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AgentStatus {
    /// Fetched the directive within 2× the poll interval.
    pub healthy: bool,
    /// Seconds since the last successful directive fetch (200 or 304).
    pub last_fetch_age_s: Option<u64>,
    /// Failed exchanges in a row before this report.
    pub consecutive_failures: u32,
    /// The last exchange error, if the last exchange failed.
    pub last_error: Option<String>,
    /// The poll interval in force, seconds.
    pub poll_interval_s: u64,
}

/// Host metrics from `/proc`, `statvfs`, PVE and SMART.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct HostMetrics {
    /// CPU busy percentage (0–100, all CPUs) since the previous sample; `null` on the first.
    pub cpu_percent: Option<f64>,
    /// Online CPUs.
    pub cpu_count: Option<u32>,
    /// Load averages over 1, 5 and 15 minutes.
    pub load: Option<[f64; 3]>,
    /// Seconds since boot.
    pub uptime_s: Option<u64>,
    /// RAM.
    pub memory: Option<MemoryMetrics>,
    /// Swap.
    pub swap: Option<SwapMetrics>,
    /// Configured filesystems (`statvfs`).
    pub filesystems: Vec<FilesystemMetrics>,
    /// SMART health per disk (slow cadence, cached: see `age_s`).
    pub smart: Vec<SmartReport>,
    /// PVE's own view of the node.
    pub pve: Option<PveNodeReport>,
    /// Collectors that failed this round; their fields are `null`.
    pub errors: Vec<CollectorError>,
}

/// RAM counters, bytes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MemoryMetrics {
    /// `MemTotal`.
    pub total_bytes: u64,
    /// `MemAvailable`.
    pub available_bytes: u64,
    /// `MemTotal - MemAvailable`.
    pub used_bytes: u64,
}

/// Swap counters, bytes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SwapMetrics {
    /// `SwapTotal`.
    pub total_bytes: u64,
    /// `SwapFree`.
    pub free_bytes: u64,
}

/// One filesystem, from `statvfs`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FilesystemMetrics {
    /// The configured path.
    pub path: String,
    /// Size, bytes.
    pub total_bytes: u64,
    /// Free, bytes (including root's reserve).
    pub free_bytes: u64,
    /// Available to unprivileged users, bytes.
    pub available_bytes: u64,
}

/// SMART health of one disk.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SmartReport {
    /// `/dev/sda`.
    pub device: String,
    /// Overall health self-assessment; `null` if unknown.
    pub passed: Option<bool>,
    /// Temperature, °C.
    pub temperature_c: Option<i64>,
    /// Power-on hours.
    pub power_on_hours: Option<u64>,
    /// Seconds since this reading was taken (SMART runs at a slow cadence).
    pub age_s: u64,
    /// Why the last reading failed, if it did.
    pub error: Option<String>,
}

/// `GET /nodes/{node}/status`, the fields the hub shows.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PveNodeReport {
    /// `pve-manager/9.1.x/…`.
    pub pve_version: Option<String>,
    /// Running kernel.
    pub kernel: Option<String>,
    /// CPU usage as PVE computes it, 0–1.
    pub cpu: Option<f64>,
}

/// A collector that failed this round.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CollectorError {
    /// Which one (`proc_stat`, `meminfo`, `statvfs:/var/lib/vz`, `pve_node`, …).
    pub collector: String,
    /// What went wrong.
    pub message: String,
}

/// One guest on the node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GuestReport {
    /// Guest id.
    pub vmid: u64,
    /// `lxc` or `qemu`.
    pub kind: String,
    /// Hostname / name.
    pub name: Option<String>,
    /// `running`, `stopped`, … as PVE says.
    pub status: String,
    /// The agent manages it (it is in the agent's provenance); unmanaged guests are never touched.
    pub managed: bool,
    /// A PVE lock (`backup`, `create`, …).
    pub lock: Option<String>,
    /// A template.
    pub template: bool,
    /// Spec as provisioned.
    pub spec: GuestSpec,
    /// Usage right now.
    pub usage: GuestUsage,
}

/// A guest's provisioned size.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct GuestSpec {
    /// CPU cores.
    pub cores: Option<f64>,
    /// Memory limit, bytes.
    pub memory_bytes: Option<u64>,
    /// Root disk size, bytes.
    pub disk_bytes: Option<u64>,
}

/// A guest's usage.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct GuestUsage {
    /// CPU usage, 0–cores.
    pub cpu: Option<f64>,
    /// Memory used, bytes.
    pub memory_bytes: Option<u64>,
    /// Root disk used, bytes.
    pub disk_bytes: Option<u64>,
    /// Seconds since start.
    pub uptime_s: Option<u64>,
}

/// A storage target (seed §7). Defined now; always an empty list until storage lands.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StorageTargetReport {
    /// Manifest id.
    pub id: String,
    /// `local-dir`, `usb`, `nfs`, `cifs`, `pbs`.
    pub kind: String,
    /// UUID, `server:export`, `repo+fingerprint`.
    pub durable_id: String,
    /// `fast` or `slow`.
    pub class: Option<String>,
    /// `primary`, `vzdump-target`, `pbs-offsite`, `bulk-data`.
    pub role: Option<String>,
    /// `attached`, `disconnected`, `decommissioned`.
    pub state: String,
    /// Reachable right now (USB connected, NFS/CIFS/PBS answering).
    pub reachable: Option<bool>,
    /// Size, bytes.
    pub total_bytes: Option<u64>,
    /// Available, bytes.
    pub available_bytes: Option<u64>,
}

/// The last backup of a guest to a target. Always an empty list until backups land.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BackupReport {
    /// Storage target id.
    pub target: String,
    /// Guest id.
    pub vmid: u64,
    /// When it finished, RFC 3339.
    pub finished_at: String,
    /// `ok` or `failed`.
    pub outcome: String,
    /// Archive size, bytes.
    pub size_bytes: Option<u64>,
    /// Failure reason.
    pub error: Option<String>,
}

/// The last self-restore-test. Always `null` until backups land.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RestoreTestReport {
    /// Guest whose backup was tested.
    pub vmid: u64,
    /// When it finished, RFC 3339.
    pub finished_at: String,
    /// `passed` or `failed`.
    pub outcome: String,
    /// What was checked or what failed.
    pub detail: Option<String>,
}

/// cloudflared's readiness, from its metrics server's `/ready`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CloudflaredHealth {
    /// The probed `host:port`.
    pub address: String,
    /// `/ready` answered 200 (at least one edge connection).
    pub ready: bool,
    /// `readyConnections` from `/ready`, when it answered.
    pub ready_connections: Option<u32>,
    /// Why it is not ready (connection refused, status 503, timeout, …).
    pub error: Option<String>,
}

/// Versions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Versions {
    /// `felhom-agent` version.
    pub agent: String,
    /// Hub protocol version the agent speaks.
    pub protocol: u32,
    /// Controller version per guest. Empty until the controller capability lands.
    pub controllers: Vec<ControllerVersion>,
}

/// A controller's version in one guest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ControllerVersion {
    /// Guest id.
    pub vmid: u64,
    /// Version string.
    pub version: String,
}

/// Audit entries since the hub's last acknowledgement.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AuditSection {
    /// Entries in chain order (oldest first).
    pub entries: Vec<AuditEntry>,
    /// Entries left out to keep the report under its size bound: the oldest ones go first.
    /// They stay in the host's journal (`felhom-agent audit tail`); the hub records the gap.
    pub omitted: Option<OmittedRange>,
}

/// A run of audit entries left out of the report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OmittedRange {
    /// First left-out sequence number.
    pub from_seq: u64,
    /// Last left-out sequence number.
    pub to_seq: u64,
    /// How many.
    pub count: u64,
}

/// One entry of the hash-chained audit log (the journal's `AuditEntry`, flattened).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// Position in the chain, from 1.
    pub seq: u64,
    /// Unix seconds.
    pub at: i64,
    /// Kind of event (`signed_op`, …).
    pub kind: String,
    /// Who asked.
    pub actor: Option<String>,
    /// Action asked for.
    pub action: Option<String>,
    /// Target (`vmid:101`).
    pub target: Option<String>,
    /// Operation id.
    pub op_id: Option<String>,
    /// `accepted`, `rejected`, …
    pub outcome: String,
    /// Machine-readable reason.
    pub reason: Option<String>,
    /// Human-readable detail.
    pub detail: Option<String>,
    /// Previous entry's hash (hex).
    pub prev_hash: String,
    /// This entry's hash (hex), so the hub can check the chain it receives.
    pub hash: String,
}

/// A step waiting for an operator signature.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PendingSignature {
    /// Guest concerned, if any.
    pub vmid: Option<u64>,
    /// The action the signature must name (`guest.destroy`, …).
    pub action: String,
    /// What the step would do, for the operator.
    pub step: String,
    /// Desired-state generation that asked for it, if it came from desired state.
    pub generation: Option<u64>,
    /// Since when it waits, RFC 3339.
    pub since: String,
}

/// The outcome of a signed op.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OpOutcome {
    /// The op's `op_id`.
    pub op_id: String,
    /// What became of it.
    pub outcome: OpOutcomeKind,
    /// Rejection reason (`replay`, `expired`, …) or failure detail.
    pub reason: Option<String>,
    /// When it was decided, RFC 3339.
    pub at: String,
}

/// What became of a signed op.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OpOutcomeKind {
    /// Verified and executed.
    Done,
    /// Verified, execution failed.
    Failed,
    /// Refused by verification (signature, role, host, expiry, replay, malformed).
    Rejected,
}

/// The last reconcile error of one guest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReconcileError {
    /// Guest id.
    pub vmid: u64,
    /// The error, one line.
    pub error: String,
    /// First seen, RFC 3339.
    pub since: String,
    /// Attempts so far.
    pub attempts: u32,
}

/// The hub's answer to a report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReportAck {
    /// Protocol version, always 1.
    pub v: u32,
    /// What the hub has stored.
    pub ack: Ack,
}

/// The hub's acknowledgement of audit entries.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ack {
    /// Highest audit sequence number stored; the next report starts after it.
    pub audit_seq: u64,
}
