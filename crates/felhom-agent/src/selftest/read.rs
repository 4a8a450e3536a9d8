//! `selftest read`: read-only health checks of the API, the token's rights and the node.

use pve::{missing_privileges, Client, Error, FELHOM_AGENT_PRIVILEGES};

use super::{describe, Report};

/// Runs every read-only check; never stops at the first failure so the operator sees all of
/// them at once. Changes nothing on the node.
pub async fn read(client: &Client) -> Report {
    let mut report = Report::default();

    match client.version().await {
        Ok(v) => report.ok("version", format!("Proxmox VE {}", v.version)),
        // Nothing else can work when the API itself is unreachable or refuses the token.
        Err(e) => {
            report.fail("version", describe(&e));
            return report;
        }
    }

    match client.node_status().await {
        Ok(s) => {
            let load = s.loadavg.first().copied().unwrap_or_default();
            report.ok(
                "node",
                format!(
                    "{}: up {} s, load {load:.2}, memory {} of {} MiB used",
                    client.node(),
                    s.uptime.unwrap_or_default(),
                    s.memory.used.unwrap_or_default() / (1 << 20),
                    s.memory.total.unwrap_or_default() / (1 << 20)
                ),
            )
        }
        Err(e) => report.fail("node", describe(&e)),
    }

    match client.permissions(Some("/")).await {
        Ok(map) => {
            let missing = missing_privileges(&map, "/");
            if missing.is_empty() {
                report.ok(
                    "permissions",
                    format!(
                        "all {} FelhomAgent privileges on /",
                        FELHOM_AGENT_PRIVILEGES.len()
                    ),
                );
            } else {
                report.fail(
                    "permissions",
                    format!(
                        "token lacks {} of the FelhomAgent privileges on /: {} \
                         (grant the role to both the user and the token; see docs/proxmox-token.md)",
                        missing.len(),
                        missing.join(", ")
                    ),
                );
            }
        }
        Err(e) => report.fail("permissions", describe(&e)),
    }

    match client.list_node_storage(None).await {
        Ok(list) => {
            let names: Vec<String> = list
                .iter()
                .map(|s| {
                    let id = s.storage.clone().unwrap_or_else(|| "?".into());
                    if s.active == Some(false) {
                        format!("{id} (inactive)")
                    } else {
                        id
                    }
                })
                .collect();
            report.ok(
                "storage",
                format!("{} storage(s): {}", list.len(), names.join(", ")),
            );
        }
        Err(e) => report.fail("storage", describe(&e)),
    }

    match client.list_lxc().await {
        Ok(guests) => {
            let running = guests.iter().filter(|g| g.status == "running").count();
            let locked: Vec<String> = guests
                .iter()
                .filter_map(|g| g.lock.as_ref().map(|l| format!("{} ({l})", g.vmid)))
                .collect();
            let mut text = format!("{} container(s), {running} running", guests.len());
            if !locked.is_empty() {
                text.push_str(&format!(", locked: {}", locked.join(", ")));
            }
            report.ok("guests", text);
        }
        Err(e) => report.fail("guests", describe(&e)),
    }

    match client.list_disks(false).await {
        Ok(disks) => {
            let unhealthy: Vec<String> = disks
                .iter()
                .filter(|d| {
                    d.health
                        .as_deref()
                        .is_some_and(|h| !matches!(h, "PASSED" | "OK"))
                })
                .map(|d| format!("{} ({})", d.devpath, d.health.as_deref().unwrap_or("?")))
                .collect();
            if unhealthy.is_empty() {
                report.ok("disks", format!("{} disk(s), SMART healthy", disks.len()));
            } else {
                report.fail(
                    "disks",
                    format!("SMART not healthy: {}", unhealthy.join(", ")),
                );
            }
        }
        Err(e) => report.fail("disks", describe(&e)),
    }

    // GET /nodes/{node}/hardware/usb needs Sys.Modify on `/`, which FelhomAgent deliberately
    // lacks (docs/proxmox-token.md); the agent finds USB targets through /dev/disk/by-uuid.
    match client.usb_devices().await {
        Ok(devices) => report.ok("usb", format!("{} USB device(s)", devices.len())),
        Err(Error::Forbidden { .. }) => report.skip(
            "usb",
            "needs Sys.Modify on /, deliberately not granted (USB targets come from /dev/disk/by-uuid)",
        ),
        Err(e) => report.fail("usb", describe(&e)),
    }

    report
}
