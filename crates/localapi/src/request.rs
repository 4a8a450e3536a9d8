//! What the gate and the handlers read from a client's request, pure and public so the fuzz
//! targets (`localapi_token`, `localapi_body`) and the property tests feed exactly these
//! functions: the `Authorization: Bearer …` header, the declared `Content-Length`, the query
//! string's parameter names, the body's fields per route, and the bodies the routes take
//! (`{"name": "…"}` for snapshot and rollback, empty or `{}` for backup).
//!
//! Everything a client controls is untrusted here: a failure is an [`ApiError`] with a stable
//! code; names from the client reach the detail only through [`printable`].

use axum::http::{header, HeaderMap, HeaderValue};
use pve::SnapshotName;
use serde_json::{Map, Value};

use crate::reply::{ApiError, Code};
use crate::token::{self, Presented};

/// Body fields each route takes; every other field is refused.
fn allowed_fields(route: &str) -> &'static [&'static str] {
    match route {
        "POST /snapshot" | "POST /rollback" => &["name"],
        _ => &[],
    }
}

/// The token of an `Authorization: Bearer fla_…` header value, well-formed but not verified;
/// `None` for anything else (the gate answers 401 without saying why).
pub fn bearer(value: &HeaderValue) -> Option<Presented> {
    value
        .to_str()
        .ok()
        .and_then(|v| v.strip_prefix("Bearer "))
        .and_then(token::parse)
}

/// The `Content-Length` a client declared, when it is a number.
pub fn declared_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
}

/// The refusal of a non-empty query string (no route takes one), naming at most eight of its
/// parameters and flagging an attempt to name a guest.
pub fn query_refusal(query: &str) -> ApiError {
    let names: Vec<String> = serde_urlencoded::from_str::<Vec<(String, String)>>(query)
        .map(|pairs| pairs.into_iter().map(|(k, _)| k).collect())
        .unwrap_or_default();
    let guest = names.iter().any(|n| looks_like_guest_id(n));
    let shown: Vec<String> = names.iter().take(8).map(|n| printable(n)).collect();
    ApiError::new(
        Code::UnexpectedParameter,
        format!("query parameters {shown:?} refused; routes take none"),
    )
    .guest_id_attempt(guest)
}

/// Refuses a body that is not empty and not a JSON object, or that has a field `route` does
/// not take (`route` is the gate's label, `"POST /snapshot"`).
pub fn check_body_fields(route: &str, body: &[u8]) -> Result<(), ApiError> {
    if body.is_empty() {
        return Ok(());
    }
    let map = json_object(body)?;
    let allowed = allowed_fields(route);
    let unexpected: Vec<&String> = map
        .keys()
        .filter(|k| !allowed.contains(&k.as_str()))
        .collect();
    if unexpected.is_empty() {
        return Ok(());
    }
    let guest = unexpected.iter().any(|k| looks_like_guest_id(k));
    let shown: Vec<String> = unexpected.iter().take(8).map(|k| printable(k)).collect();
    Err(ApiError::new(
        Code::UnexpectedParameter,
        format!("body fields {shown:?} refused by {route}"),
    )
    .guest_id_attempt(guest))
}

/// `{"name": "…"}` with a name PVE accepts (pve-configid, 2 to 40 characters, not `current`
/// or `vzdump`). Path tricks (`../x`, `a/b`, `%2e%2e`) and look-alike Unicode fail that rule.
pub fn snapshot_name(body: &[u8]) -> Result<SnapshotName, ApiError> {
    let map = json_object(body)?;
    let Some(Value::String(name)) = map.get("name") else {
        return Err(ApiError::new(
            Code::BadRequest,
            "body needs a string \"name\"",
        ));
    };
    name.parse().map_err(|_| {
        ApiError::new(
            Code::BadRequest,
            format!("snapshot name {} breaks proxmox's rule", printable(name)),
        )
    })
}

/// The body of `POST /backup`: empty or `{}` (fields were refused by the gate already).
pub fn empty_object(body: &[u8]) -> Result<(), ApiError> {
    if body.is_empty() {
        return Ok(());
    }
    json_object(body).map(drop)
}

fn json_object(body: &[u8]) -> Result<Map<String, Value>, ApiError> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(ApiError::new(Code::BadRequest, "body is not a json object")),
        Err(_) => Err(ApiError::new(Code::BadRequest, "body is not json")),
    }
}

/// Parameter names that try to pick a guest (or the host, or storage): a compromised
/// controller probing beyond its own guest. Such attempts are flagged in the audit event.
pub(crate) fn looks_like_guest_id(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    const EXACT: [&str; 14] = [
        "id",
        "vm",
        "ct",
        "lxc",
        "node",
        "host",
        "target",
        "storage",
        "pool",
        "container",
        "guest",
        "guests",
        "vmids",
        "uuid",
    ];
    EXACT.contains(&n.as_str())
        || n.contains("vmid")
        || n.contains("guest")
        || (!n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

/// A client-supplied name, safe for a log line: short names of plain characters as they are,
/// anything else only by length (a pasted token is 85 bytes and never printed).
pub(crate) fn printable(name: &str) -> String {
    let plain = name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
    if plain && name.len() <= 24 {
        name.to_owned()
    } else {
        format!("<{} bytes>", name.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn guest_like_names() {
        for n in [
            "vmid",
            "VMID",
            "vmids",
            "target_vmid",
            "guest",
            "guest_id",
            "id",
            "node",
            "101",
            "storage",
        ] {
            assert!(looks_like_guest_id(n), "{n}");
        }
        for n in ["name", "force", "description", "x"] {
            assert!(!looks_like_guest_id(n), "{n}");
        }
    }

    #[test]
    fn printable_hides_long_or_odd_names() {
        assert_eq!(printable("vmid"), "vmid");
        assert_eq!(printable("a/b"), "<3 bytes>");
        let token = format!("fla_{}_{}", "0".repeat(16), "a".repeat(64));
        assert_eq!(printable(&token), "<85 bytes>");
    }

    #[test]
    fn snapshot_names_follow_pve_rule() {
        let ok = |s: &str| {
            snapshot_name(format!("{{\"name\":{}}}", serde_json::to_string(s).unwrap()).as_bytes())
        };
        assert_eq!(ok("pre-deploy_1").unwrap().as_str(), "pre-deploy_1");
        for bad in [
            "../x",
            "a/b",
            "%2e%2e",
            "..",
            "x",
            "current",
            "vzdump",
            "ѕnap",
            "snap\u{0}",
            "snap name",
            "1snap",
            &"a".repeat(41),
        ] {
            assert!(ok(bad).is_err(), "{bad:?}");
        }
        assert!(snapshot_name(b"{\"name\":5}").is_err());
        assert!(snapshot_name(b"[]").is_err());
        assert!(snapshot_name(b"").is_err());
    }

    #[test]
    fn body_fields_are_checked_per_route() {
        assert!(check_body_fields("POST /snapshot", br#"{"name":"a1"}"#).is_ok());
        let err = check_body_fields("POST /snapshot", br#"{"name":"a1","vmid":102}"#).unwrap_err();
        assert_eq!(err.code(), Code::UnexpectedParameter);
        assert!(err.is_guest_id_attempt());
        let err = check_body_fields("POST /backup", br#"{"force":true}"#).unwrap_err();
        assert_eq!(err.code(), Code::UnexpectedParameter);
        assert!(!err.is_guest_id_attempt());
        assert!(check_body_fields("GET /storage", b"").is_ok());
        assert_eq!(
            check_body_fields("GET /storage", b"nope")
                .unwrap_err()
                .code(),
            Code::BadRequest
        );
    }

    #[test]
    fn bearer_takes_only_the_exact_scheme_and_shape() {
        let t = format!("fla_{}_{}", "0123456789abcdef", "ab".repeat(32));
        let h = |s: &str| HeaderValue::from_str(s).unwrap();
        assert_eq!(
            bearer(&h(&format!("Bearer {t}"))).unwrap().id().to_string(),
            "0123456789abcdef"
        );
        for bad in [
            t.clone(),
            format!("bearer {t}"),
            format!("Bearer  {t}"),
            format!("Bearer {t} "),
            format!("Basic {t}"),
            "Bearer ".to_owned(),
        ] {
            assert!(bearer(&h(&bad)).is_none(), "{bad:?}");
        }
        assert!(bearer(&HeaderValue::from_bytes(b"Bearer \xff").unwrap()).is_none());
    }

    fn routes() -> impl Strategy<Value = &'static str> {
        prop_oneof![
            Just("POST /snapshot"),
            Just("POST /rollback"),
            Just("POST /backup"),
            Just("GET /storage"),
            Just("other"),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        // The header parser never panics and accepts only "Bearer " and a token of the shape.
        #[test]
        fn bearer_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..120)) {
            if let Ok(v) = HeaderValue::from_bytes(&bytes) {
                if let Some(p) = bearer(&v) {
                    prop_assert!(bytes.starts_with(b"Bearer fla_"));
                    prop_assert_eq!(bytes.len(), 7 + token::TOKEN_LEN);
                    let id = p.id().to_string();
                    prop_assert_eq!(id.as_bytes(), &bytes[11..27]);
                }
            }
        }

        #[test]
        fn bodies_never_panic(
            route in routes(),
            body in prop_oneof![
                prop::collection::vec(any::<u8>(), 0..200),
                "\\{(\"[a-z_]{0,8}\":(\"\\PC{0,44}\"|[0-9]{1,3}|null|\\[\\]|\\{\\}),?){0,4}\\}"
                    .prop_map(String::into_bytes),
            ],
        ) {
            let _ = check_body_fields(route, &body);
            let _ = empty_object(&body);
            if let Ok(name) = snapshot_name(&body) {
                // What parses is a name PVE's rule accepts, and it parses again unchanged.
                prop_assert_eq!(name.as_str().parse::<SnapshotName>().unwrap(), name);
            }
        }

        #[test]
        fn queries_and_lengths_never_panic(query in "\\PC{0,80}", length in prop::collection::vec(any::<u8>(), 0..24)) {
            let err = query_refusal(&query);
            prop_assert_eq!(err.code(), Code::UnexpectedParameter);
            let mut h = HeaderMap::new();
            if let Ok(v) = HeaderValue::from_bytes(&length) {
                h.insert(header::CONTENT_LENGTH, v);
            }
            let _ = declared_length(&h);
        }
    }
}
