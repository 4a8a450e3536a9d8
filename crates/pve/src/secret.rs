//! `Secret`: a string that never shows itself in `Debug` or `Display` (DESIGN.md §3.8).

use std::fmt;

use serde::{Serialize, Serializer};

/// The text a secret is shown and serialized as.
pub const REDACTED: &str = "<redacted>";

/// A secret value (storage password, PBS token secret, encryption key). Prints `<redacted>`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The secret itself, for the one place that must send it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl From<String> for Secret {
    fn from(s: String) -> Self {
        Secret(s)
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Secret({REDACTED})")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

/// Serializes as `"<redacted>"`, so a configuration can be printed (`check-config`) with the
/// secret's source but never its value.
impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(REDACTED)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_prints_itself() {
        let s = Secret::new("hunter2");
        assert_eq!(s.to_string(), "<redacted>");
        assert!(!format!("{s:?}").contains("hunter2"));
        assert_eq!(s.expose(), "hunter2");
    }

    #[test]
    fn never_serializes_or_debug_prints_inside_a_holder() {
        #[derive(Debug, serde::Serialize)]
        struct Holder {
            token: Secret,
        }
        let holder = Holder {
            token: Secret::new("felhom-agent@pve!agent=hunter2"),
        };
        let json = serde_json::to_string(&holder).expect("serialize");
        assert_eq!(json, r#"{"token":"<redacted>"}"#);
        let debug = format!("{holder:?} {holder:#?}");
        assert!(!debug.contains("hunter2"), "{debug}");
    }
}
