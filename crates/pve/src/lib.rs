//! `pve`: the Proxmox VE API client of felhom-agent.
//!
//! It owns everything said to the PVE API: `PVEAPIToken` authentication, HTTPS with a strict
//! SHA-256 pin of the leaf certificate (no insecure mode exists), typed calls for the
//! endpoints the agent uses, the [`TaskRef`]/[`Client::wait_task`] model (a POST is not
//! success), and an error taxonomy whose [`Error::is_retryable`] separates "never sent" from
//! "may have been processed". PVE quirks (0/1 booleans, numbers as strings, the description's
//! trailing newline, `netN` needing its `hwaddr` resent, vzdump's `"OK"`, `WARNINGS: N`) are
//! handled here once.
//!
//! It never spawns a process and never touches the host: no `std::process`, no `tokio`
//! "process" feature (enforced by `clippy.toml` and `tests/it/fence.rs`). It has no workspace
//! dependencies.
//!
//! Start reading at [`Client::new`] (`client.rs`: transport, envelope, error mapping), then
//! `task.rs` (waiting), then the domain modules (`lxc.rs`, `lxc_config.rs`, `snapshot.rs`, `vzdump.rs`,
//! `storage.rs`, `node.rs`, `access.rs`). The PVE behaviour behind each choice is cited from
//! `reference/pve-api-notes.md`.

#![warn(missing_docs)]

mod access;
mod client;
mod error;
mod lenient;
mod lxc;
mod lxc_config;
mod node;
mod privileges;
mod prune;
mod secret;
mod snapshot;
mod storage;
mod task;
mod tls;
mod token;
mod upid;
mod vmid;
mod vzdump;

pub use access::PermissionMap;
pub use client::{decode_answer, decode_data, decode_task_ref, Client, ClientConfig};
pub use error::{error_chain, Error, ErrorChain, Result};
pub use lxc::{CreateLxc, DestroyOptions, LxcStatus, RestoreLxc};
pub use lxc_config::{append_property, property_value, ConfigUpdate, LxcConfig};
pub use node::{
    ClusterResource, DiskInfo, MemoryCounters, NodeStatus, ResourceType, SmartAttribute, SmartInfo,
    UsbDevice, VersionInfo,
};
pub use privileges::{missing_privileges, FELHOM_AGENT_PRIVILEGES};
pub use prune::{PruneMark, Retention};
pub use secret::Secret;
pub use snapshot::{SnapshotInfo, SnapshotName};
pub use storage::{
    CreatedStorage, NewStorage, StorageConfig, StorageContent, StorageKind, StorageStatus,
};
pub use task::{
    PollPolicy, TaskListEntry, TaskListQuery, TaskLogLine, TaskOutcome, TaskRef, TaskState,
    TaskStatus, WaitOptions,
};
pub use tls::{pinned_client_config, Fingerprint};
pub use token::ApiToken;
pub use upid::Upid;
pub use vmid::Vmid;
pub use vzdump::{VzdumpMode, VzdumpOutcome, VzdumpRequest};
