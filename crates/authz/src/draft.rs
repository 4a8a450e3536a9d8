//! Building a payload for the operator to sign (`felhom-agent op new`).
//!
//! The nonce is 32 bytes from the OS random source, base64url (43 characters); the op id is
//! `op-YYYYMMDD-` plus 12 random hex digits unless the operator gives one; `issued_at` is now
//! (whole seconds, UTC) and `expires_at` is now + ttl. The result is re-parsed with the
//! verifier's own strict parser before it is returned, so `op new` never prints a payload the
//! agent would call malformed.

use std::time::Duration;

use base64::Engine;
use serde_json::{Map, Value};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::envelope::{check_op_id, parse_payload, VERSION};
use crate::{Action, ParseError, Target};

/// What the operator asks for.
#[derive(Debug, Clone)]
pub struct Draft {
    /// The action.
    pub action: Action,
    /// The target.
    pub target: Target,
    /// The host it is for.
    pub host_id: String,
    /// How long the signature stays valid.
    pub ttl: Duration,
    /// Action parameters.
    pub params: Map<String, Value>,
    /// A chosen op id (generated when `None`).
    pub op_id: Option<String>,
}

/// Builds the payload bytes (compact JSON and a final newline).
pub fn build(draft: &Draft, now: OffsetDateTime) -> Result<Vec<u8>, ParseError> {
    let rand_err = |_| ParseError::Field {
        field: "nonce",
        problem: "the OS random source failed".into(),
    };
    let mut nonce = [0u8; 32];
    getrandom::fill(&mut nonce).map_err(rand_err)?;
    let nonce = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(nonce);
    let now = now
        .to_offset(time::UtcOffset::UTC)
        .replace_nanosecond(0)
        .map_err(|_| field("issued_at", "bad time"))?;
    let op_id = match &draft.op_id {
        Some(id) => {
            check_op_id(id)?;
            id.clone()
        }
        None => {
            let mut tail = [0u8; 6];
            getrandom::fill(&mut tail).map_err(rand_err)?;
            format!(
                "op-{:04}{:02}{:02}-{}",
                now.year(),
                u8::from(now.month()),
                now.day(),
                hex::encode(tail)
            )
        }
    };
    let ttl =
        time::Duration::try_from(draft.ttl).map_err(|_| field("expires_at", "ttl too large"))?;
    let expires = now
        .checked_add(ttl)
        .ok_or_else(|| field("expires_at", "ttl too large"))?;
    let fmt = |t: OffsetDateTime| {
        t.format(&Rfc3339)
            .map_err(|_| field("issued_at", "bad time"))
    };
    let payload = serde_json::json!({
        "v": VERSION,
        "op_id": op_id,
        "nonce": nonce,
        "issued_at": fmt(now)?,
        "expires_at": fmt(expires)?,
        "host_id": draft.host_id,
        "action": draft.action.as_str(),
        "target": draft.target.to_json(),
        "params": draft.params,
    });
    let mut bytes = serde_json::to_vec(&payload).map_err(|e| ParseError::Json {
        what: "payload",
        problem: e.to_string(),
    })?;
    bytes.push(b'\n');
    parse_payload(&bytes)?;
    Ok(bytes)
}

/// Parses a TTL such as `90s`, `15m`, `2h` or `1d`.
pub fn parse_ttl(text: &str) -> Result<Duration, ParseError> {
    let bad = || field("ttl", "expected a number with s, m, h or d, e.g. 15m");
    let (number, unit) = text.split_at(text.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?);
    let n: u64 = number.parse().map_err(|_| bad())?;
    let secs = match unit {
        "s" => Some(n),
        "m" => n.checked_mul(60),
        "h" => n.checked_mul(3600),
        "d" => n.checked_mul(86_400),
        _ => None,
    }
    .ok_or_else(bad)?;
    if secs == 0 {
        return Err(bad());
    }
    Ok(Duration::from_secs(secs))
}

fn field(field: &'static str, problem: &str) -> ParseError {
    ParseError::Field {
        field,
        problem: problem.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_a_payload_the_parser_accepts_with_fresh_nonces() {
        let draft = Draft {
            action: Action::GuestDestroy,
            target: Target::Vmid(101),
            host_id: "host-1".into(),
            ttl: Duration::from_secs(900),
            params: Map::new(),
            op_id: None,
        };
        let now = time::macros::datetime!(2026-11-21 10:00:00.123 +01:00);
        let a = parse_payload(&build(&draft, now).unwrap()).unwrap();
        let b = parse_payload(&build(&draft, now).unwrap()).unwrap();
        assert_ne!(a.nonce, b.nonce);
        assert_ne!(a.op_id, b.op_id);
        assert!(a.op_id.starts_with("op-20261121-"), "{}", a.op_id);
        assert_eq!(a.nonce.len(), 43);
        assert_eq!((a.expires_at - a.issued_at).whole_seconds(), 900);
        assert_eq!(a.issued_at.offset(), time::UtcOffset::UTC);
    }

    #[test]
    fn ttl_forms() {
        assert_eq!(parse_ttl("15m").unwrap(), Duration::from_secs(900));
        assert_eq!(parse_ttl("1d").unwrap(), Duration::from_secs(86_400));
        for bad in ["", "15", "m", "0s", "1w", "-5m", "99999999999999999999d"] {
            assert!(parse_ttl(bad).is_err(), "{bad}");
        }
    }
}
