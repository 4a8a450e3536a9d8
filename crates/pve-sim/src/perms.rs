//! Permission checks: the schema's `permissions` object as
//! `RPCEnvironment::check_api2_permissions` evaluates it, and `GET /access/permissions`.

use serde_json::{json, Map, Value};

use crate::acl::{normalize_path, perm_message, Access};
use crate::envelope::{ApiError, Reply};
use crate::request::value_text;
use crate::server::Call;

/// Evaluate a method's `permissions` for `user` with the merged parameters.
pub fn check_api(
    access: &Access,
    perm: Option<&Value>,
    user: &str,
    params: &Map<String, Value>,
) -> Result<(), ApiError> {
    if user == "root@pam" {
        return Ok(());
    }
    let Some(perm) = perm else {
        return Err(ApiError::Forbidden(perm_message("user != root@pam")));
    };
    if matches!(
        perm.get("user").and_then(Value::as_str),
        Some("all" | "world")
    ) {
        return Ok(());
    }
    match perm.get("check") {
        Some(check) => exec(access, check, user, params, false).map(|_| ()),
        None => Err(ApiError::Forbidden(perm_message(""))),
    }
}

fn exec(
    access: &Access,
    check: &Value,
    user: &str,
    params: &Map<String, Value>,
    noerr: bool,
) -> Result<bool, ApiError> {
    let items = check.as_array().map(Vec::as_slice).unwrap_or(&[]);
    let test = items.first().and_then(Value::as_str).unwrap_or("");
    let denied = |what: &str| {
        if noerr {
            Ok(false)
        } else {
            Err(ApiError::Forbidden(perm_message(what)))
        }
    };
    match test {
        "and" => {
            for sub in &items[1..] {
                if !exec(access, sub, user, params, noerr)? {
                    return Ok(false);
                }
            }
            Ok(true)
        }
        "or" => {
            for sub in &items[1..] {
                if exec(access, sub, user, params, true)? {
                    return Ok(true);
                }
            }
            denied("")
        }
        "perm" => {
            let tmpl = items.get(1).and_then(Value::as_str).unwrap_or("/");
            let privs: Vec<&str> = items
                .get(2)
                .and_then(Value::as_array)
                .map(|a| a.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            let mut any = false;
            let mut opts = items[3.min(items.len())..].chunks(2);
            for pair in opts.by_ref() {
                if let [Value::String(k), v] = pair {
                    if k == "any" {
                        any = v.as_i64() == Some(1) || v.as_str() == Some("1");
                    } else if k == "require_param"
                        && v.as_str().is_some_and(|p| !params.contains_key(p))
                    {
                        return Ok(false);
                    }
                }
            }
            let path = normalize_path(&template_replace(tmpl, params));
            let result = if any {
                access.check_any(user, &path, &privs)
            } else {
                access.check(user, &path, &privs)
            };
            match result {
                Ok(()) => Ok(true),
                Err(_) if noerr => Ok(false),
                Err(msg) => Err(ApiError::Forbidden(msg)),
            }
        }
        // userid-param, userid-group, perm-modify: only used by methods the simulator does
        // not implement; deny like an unknown check.
        _ => denied(""),
    }
}

/// PVE's `template_replace`: `{name}` → the parameter's value (empty when missing).
fn template_replace(tmpl: &str, params: &Map<String, Value>) -> String {
    let mut out = String::new();
    let mut rest = tmpl;
    while let Some(start) = rest.find('{') {
        out.push_str(&rest[..start]);
        match rest[start..].find('}') {
            Some(end) => {
                let name = &rest[start + 1..start + end];
                out.push_str(&params.get(name).and_then(value_text).unwrap_or_default());
                rest = &rest[start + end + 1..];
            }
            None => {
                out.push_str(&rest[start..]);
                rest = "";
            }
        }
    }
    out.push_str(rest);
    out
}

fn privs_json(access: &Access, userid: &str, path: &str) -> Value {
    let privs = access.permissions(userid, path);
    Value::Object(
        privs
            .into_iter()
            .map(|(k, p)| (k, json!(if p { 1 } else { 0 })))
            .collect(),
    )
}

/// `GET /access/permissions`: own permissions, an owned token's, or anyone's with `Sys.Audit`
/// on `/access` (pve-access-control `API2/AccessControl.pm:509-574`).
pub fn get_permissions(call: &Call) -> Result<Reply, ApiError> {
    let caller = call.user.as_str();
    let userid = call.str("userid").unwrap_or_else(|| caller.to_string());
    call.sim.with_state(|st| {
        let own = userid == caller
            || userid
                .strip_prefix(caller)
                .is_some_and(|r| r.starts_with('!'));
        if !own {
            st.access
                .check(caller, "/access", &["Sys.Audit"])
                .map_err(ApiError::Forbidden)?;
        }
        if !st.access.exists(&userid) && userid != "root@pam" {
            return Err(ApiError::param(
                "userid",
                format!("no such user ('{userid}')"),
            ));
        }
        if let Some(path) = call.str("path") {
            let path = normalize_path(&path);
            let mut out = Map::new();
            out.insert(path.clone(), privs_json(&st.access, &userid, &path));
            return Ok(Reply::data(Value::Object(out)));
        }
        let mut paths: Vec<String> = [
            "/",
            "/access",
            "/access/groups",
            "/nodes",
            "/pool",
            "/sdn",
            "/storage",
            "/vms",
        ]
        .iter()
        .map(|p| p.to_string())
        .collect();
        paths.extend(st.access.acls.iter().map(|e| e.path.clone()));
        paths.sort();
        paths.dedup();
        let mut out = Map::new();
        for path in paths {
            let privs = privs_json(&st.access, &userid, &path);
            if privs.as_object().is_some_and(|o| !o.is_empty()) {
                out.insert(path, privs);
            }
        }
        Ok(Reply::data(Value::Object(out)))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::State;

    #[test]
    fn schema_checks_substitute_params() {
        let st = State::seed("pve", 0, 1_700_000_000).expect("seed");
        let perm = json!({"check": ["perm", "/vms/{vmid}", ["VM.PowerMgmt"]]});
        let params: Map<String, Value> =
            serde_json::from_value(json!({"vmid": "101"})).expect("map");
        assert!(check_api(&st.access, Some(&perm), "felhom-agent@pve!agent", &params).is_ok());
        let usb = json!({"check": ["perm", "/", ["Sys.Modify"]]});
        assert_eq!(
            check_api(&st.access, Some(&usb), "felhom-agent@pve!agent", &params),
            Err(ApiError::Forbidden(
                "Permission check failed (/, Sys.Modify)\n".into()
            ))
        );
        assert_eq!(
            check_api(&st.access, None, "root@pam!sim", &params),
            Err(ApiError::Forbidden(
                "Permission check failed (user != root@pam)\n".into()
            ))
        );
        let or = json!({"check": ["or", ["perm", "/", ["Sys.Modify"]], ["perm", "/nodes/{node}", ["Sys.Audit"]]]});
        assert!(check_api(&st.access, Some(&or), "felhom-agent@pve!agent", &params).is_ok());
    }
}
