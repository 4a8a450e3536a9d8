//! Per-option privileges for CT create and update (pve-container `src/PVE/LXC.pm:1655-1756`
//! `check_ct_modify_config_perm`), including the root-only rules a token can never pass.

use crate::acl::perm_message;
use crate::conf;
use crate::envelope::ApiError;
use crate::state::State;

/// Privilege for changing one option (pve-container `LXC.pm:1655-1756`
/// `check_ct_modify_config_perm`). `old` is the current value for feature comparisons.
pub fn check_option_perm(
    st: &State,
    user: &str,
    vmid: u32,
    key: &str,
    new: Option<&str>,
    old: Option<&str>,
) -> Result<(), ApiError> {
    if user == "root@pam" {
        return Ok(());
    }
    let vm = format!("/vms/{vmid}");
    let need = |privs: &[&str]| {
        st.access
            .check(user, &vm, privs)
            .map_err(ApiError::Forbidden)
    };
    let base = key.trim_end_matches(|c: char| c.is_ascii_digit());
    match base {
        "cores" | "cpulimit" | "cpuunits" => need(&["VM.Config.CPU"]),
        "memory" | "swap" => need(&["VM.Config.Memory"]),
        "rootfs" | "mp" | "unused" => need(&["VM.Config.Disk"]),
        "net" => {
            need(&["VM.Config.Network"])?;
            // netN needs SDN.Use on the bridge (pve-guest-common GuestHelpers.pm:397-421).
            for value in [new, old].into_iter().flatten() {
                if let Some(bridge) = conf::parse_prop(key, value)
                    .ok()
                    .and_then(|m| m.get("bridge").cloned())
                {
                    st.access
                        .check(
                            user,
                            &format!("/sdn/zones/localnetwork/{bridge}"),
                            &["SDN.Use"],
                        )
                        .map_err(ApiError::Forbidden)?;
                }
            }
            Ok(())
        }
        "hostname" | "nameserver" | "searchdomain" => need(&["VM.Config.Network"]),
        "features" => {
            let parse = |v: Option<&str>| {
                v.and_then(|v| conf::parse_prop("features", v).ok())
                    .unwrap_or_default()
            };
            let (new_f, old_f) = (parse(new), parse(old));
            let mut keys: Vec<&String> = new_f.keys().chain(old_f.keys()).collect();
            keys.sort();
            keys.dedup();
            let changed: Vec<&&String> = keys
                .iter()
                .filter(|k| new_f.get(**k) != old_f.get(**k))
                .collect();
            if changed.iter().any(|k| k.as_str() != "nesting") {
                return Err(ApiError::Forbidden(perm_message(
                    "changing feature flags (except nesting) is only allowed for root@pam",
                )));
            }
            if !changed.is_empty() {
                need(&["VM.Allocate"])?;
            }
            Ok(())
        }
        "hookscript" => Err(ApiError::Forbidden(perm_message(
            "changing the hookscript is only allowed for root@pam",
        ))),
        "dev" => Err(ApiError::Forbidden(perm_message(
            "configuring device passthrough is only allowed for root@pam",
        ))),
        _ => need(&["VM.Config.Options"]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn feature_changes_other_than_nesting_are_root_only() {
        let st = State::seed("pve", 1, 1_700_000_000).expect("seed");
        let agent = "felhom-agent@pve!agent";
        assert!(check_option_perm(&st, agent, 100, "features", Some("nesting=1"), None).is_ok());
        let denied = check_option_perm(
            &st,
            agent,
            100,
            "features",
            Some("nesting=1,keyctl=1"),
            None,
        );
        assert_eq!(
            denied,
            Err(ApiError::Forbidden(
                "Permission check failed (changing feature flags (except nesting) is only allowed for root@pam)\n".into()
            ))
        );
        // Unchanged keyctl (already set by root) is fine for the token.
        assert!(check_option_perm(
            &st,
            agent,
            100,
            "features",
            Some("keyctl=1,nesting=1"),
            Some("keyctl=1")
        )
        .is_ok());
        assert!(
            check_option_perm(&st, "root@pam", 100, "features", Some("keyctl=1"), None).is_ok()
        );
        assert!(check_option_perm(
            &st,
            "root@pam!sim",
            100,
            "hookscript",
            Some("local:snippets/x"),
            None
        )
        .is_err());
    }
}
