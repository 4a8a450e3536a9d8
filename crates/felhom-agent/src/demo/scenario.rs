//! The story's data: the two desired states the hub publishes and the operator's signed
//! adoptions and destroy. Outcomes are never written here; the demo reads them from the agent's reports and
//! the simulator.

use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use serde_json::{json, Value};

/// The guest whose memory and description generation 1 changes (and starts).
pub const RESIZED: u64 = 101;
/// Memory generation 1 gives [`RESIZED`], MiB.
pub const RESIZED_MEMORY_MIB: u64 = 1024;
/// Description generation 1 gives [`RESIZED`].
pub const RESIZED_DESCRIPTION: &str = "resized by the hub (felhom demo)";
/// The guest generation 1 stops and generation 2 drops (a destroy).
pub const DROPPED: u64 = 102;
/// The guest whose controller asks for a backup through the local API.
pub const BACKED_UP: u64 = 100;
/// The backups its policy keeps on `local` (`keep_last`).
pub const KEEP_LAST: u64 = 2;

/// One guest as a desired state names it.
#[derive(Debug, Clone, PartialEq)]
pub struct Wanted {
    /// Guest id.
    pub vmid: u64,
    /// `running` or `stopped`.
    pub state: &'static str,
    /// Memory, MiB, when the desired state sets it.
    pub memory_mib: Option<u64>,
    /// Description, when the desired state sets it.
    pub description: Option<&'static str>,
}

/// Generation 1: adopt 100 (running, as it is), 101 (running, more memory, a description),
/// 102 (stopped).
pub fn generation_1() -> Vec<Wanted> {
    vec![
        Wanted {
            vmid: 100,
            state: "running",
            memory_mib: None,
            description: None,
        },
        Wanted {
            vmid: RESIZED,
            state: "running",
            memory_mib: Some(RESIZED_MEMORY_MIB),
            description: Some(RESIZED_DESCRIPTION),
        },
        Wanted {
            vmid: DROPPED,
            state: "stopped",
            memory_mib: None,
            description: None,
        },
    ]
}

/// Generation 2: generation 1 without [`DROPPED`].
pub fn generation_2() -> Vec<Wanted> {
    generation_1()
        .into_iter()
        .filter(|w| w.vmid != DROPPED)
        .collect()
}

/// The desired state v1 document (DESIGN §4.2a) for `guests`.
pub fn desired_document(generation: u64, guests: &[Wanted]) -> Value {
    let guests: Vec<Value> = guests
        .iter()
        .map(|w| {
            let mut config = serde_json::Map::new();
            if let Some(m) = w.memory_mib {
                config.insert("memory".into(), json!(m));
            }
            if let Some(d) = w.description {
                config.insert("description".into(), json!(d));
            }
            let mut guest = json!({"vmid": w.vmid, "state": w.state});
            if !config.is_empty() {
                guest["config"] = Value::Object(config);
            }
            guest
        })
        .collect();
    json!({"v": 1, "generation": generation, "guests": guests,
           "backup": {"guests": {BACKED_UP.to_string():
               {"schedule": "daily", "target": "local", "keep_last": KEEP_LAST}}}})
}

/// A signed op ready for the hub.
pub struct SignedOp {
    /// Its op id.
    pub op_id: String,
    /// The wire form (`{"payload","signature"}`), what `felhom-agent op wrap` prints.
    pub wire: String,
}

/// What `felhom-agent op new --action ACTION --target vmid:N --host-id H --ttl 15m |
/// op sign --key KEY | op wrap` produce, through the same library calls.
pub fn sign(
    action: authz::Action,
    host_id: &str,
    vmid: u64,
    key: &Path,
) -> anyhow::Result<SignedOp> {
    let draft = authz::draft::Draft {
        action,
        target: authz::Target::parse_cli(&format!("vmid:{vmid}"))?,
        host_id: host_id.to_owned(),
        ttl: Duration::from_secs(15 * 60),
        params: serde_json::Map::new(),
        op_id: None,
    };
    let payload = authz::draft::build(&draft, time::OffsetDateTime::now_utc())
        .context("building the op payload")?;
    let op_id = authz::parse_payload(&payload)
        .context("re-reading the op payload")?
        .op_id;
    let signature = authz::sign::sign_with_key_file(key, &payload).context("signing the op")?;
    Ok(SignedOp {
        op_id,
        wire: authz::wire::wrap(&payload, &signature),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generation_1_is_a_valid_desired_state_adopting_100_to_102() {
        let doc = desired_document(1, &generation_1());
        let parsed = reconcile::parse_desired(doc.to_string().as_bytes()).unwrap();
        assert_eq!(parsed.generation, 1);
        let vmids: Vec<u64> = parsed.guests.keys().map(|&v| u64::from(v)).collect();
        assert_eq!(vmids, [100, RESIZED, DROPPED]);
        assert_eq!(parsed.guests[&101].config["memory"], "1024");
    }

    #[test]
    fn generation_2_drops_only_the_destroyed_guest() {
        let doc = desired_document(2, &generation_2());
        let parsed = reconcile::parse_desired(doc.to_string().as_bytes()).unwrap();
        let vmids: Vec<u64> = parsed.guests.keys().map(|&v| u64::from(v)).collect();
        assert_eq!(vmids, [100, RESIZED]);
    }
}
