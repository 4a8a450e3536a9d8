//! The wire form the hub relays (DESIGN.md §4.4):
//! `{"payload":"<base64 of payload bytes>","signature":"-----BEGIN SSH SIGNATURE-----…"}`.
//!
//! Strict: a JSON object with exactly those two string fields, standard base64 with padding,
//! and the size limits of the payload and the armored signature.

use base64::Engine;
use serde::{Deserialize, Serialize};

use crate::armor::MAX_ARMORED_SIGNATURE;
use crate::envelope::MAX_PAYLOAD;
use crate::ParseError;

/// Largest wire document: both parts at their limits, base64 growth, JSON escaping of the
/// armor's newlines.
pub const MAX_WIRE: usize = MAX_PAYLOAD / 3 * 4 + 4 + 2 * MAX_ARMORED_SIGNATURE + 256;

/// The two parts of a signed op.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wire {
    /// The exact payload bytes.
    pub payload: Vec<u8>,
    /// The armored signature.
    pub signature: String,
}

#[derive(Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct RawWire {
    payload: String,
    signature: String,
}

/// Parses the wire form. Never panics.
pub fn parse_wire(bytes: &[u8]) -> Result<Wire, ParseError> {
    if bytes.len() > MAX_WIRE {
        return Err(ParseError::TooLarge {
            what: "wire document",
            len: bytes.len(),
            limit: MAX_WIRE,
        });
    }
    let raw: RawWire = serde_json::from_slice(bytes).map_err(|e| ParseError::Json {
        what: "wire document",
        problem: e.to_string(),
    })?;
    let payload = base64::engine::general_purpose::STANDARD
        .decode(raw.payload.as_bytes())
        .map_err(|_| ParseError::Field {
            field: "payload",
            problem: "not standard base64".into(),
        })?;
    Ok(Wire {
        payload,
        signature: raw.signature,
    })
}

/// Builds the wire form (one line of JSON).
pub fn wrap(payload: &[u8], signature: &str) -> String {
    let raw = RawWire {
        payload: base64::engine::general_purpose::STANDARD.encode(payload),
        signature: signature.to_owned(),
    };
    // Serializing two strings cannot fail.
    serde_json::to_string(&raw).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn round_trips_exact_bytes() {
        let payload = b"{\"v\":1}\n\xff";
        let wire = wrap(
            payload,
            "-----BEGIN SSH SIGNATURE-----\nx\n-----END SSH SIGNATURE-----\n",
        );
        let parsed = parse_wire(wire.as_bytes()).unwrap();
        assert_eq!(parsed.payload, payload);
        assert!(parsed.signature.ends_with("-----\n"));
    }

    #[test]
    fn refuses_extra_fields_and_bad_base64() {
        assert!(parse_wire(br#"{"payload":"e30=","signature":"x","hint":"y"}"#).is_err());
        assert!(parse_wire(br#"{"payload":"e30","signature":"x"}"#).is_err());
        assert!(parse_wire(br#"{"payload":"e3-_","signature":"x"}"#).is_err());
        assert!(parse_wire(br#"{"signature":"x"}"#).is_err());
    }

    proptest! {
        #[test]
        fn never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = parse_wire(&bytes);
        }
    }
}
