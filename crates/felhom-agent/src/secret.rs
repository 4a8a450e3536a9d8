//! [`Secret`]: a value that never prints or serializes in clear.

use std::fmt;

use serde::{Serialize, Serializer};

/// The text every redacted value is shown as.
pub const REDACTED: &str = "<redacted>";

/// A secret value (API token, hub key, …). `Debug`, `Display` and `Serialize` all produce
/// `<redacted>`; the only way to the value is [`Secret::expose`], so every read is greppable.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret<T>(T);

impl<T> Secret<T> {
    /// Wraps a value.
    pub fn new(value: T) -> Self {
        Secret(value)
    }

    /// The value in clear. Call it only where the value is used (an HTTP header), never to log.
    pub fn expose(&self) -> &T {
        &self.0
    }
}

impl<T> fmt::Debug for Secret<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl<T> fmt::Display for Secret<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl<T> Serialize for Secret<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(REDACTED)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const VALUE: &str = "felhom-agent@pve!agent=8d9f0b1e-hunter2";

    #[test]
    fn debug_and_display_are_redacted() {
        let secret = Secret::new(VALUE.to_owned());
        assert_eq!(format!("{secret:?}"), REDACTED);
        assert_eq!(format!("{secret}"), REDACTED);
        assert_eq!(
            format!("{:#?}", Some(&secret)),
            format!("Some(\n    {REDACTED},\n)")
        );
        assert_eq!(secret.expose(), VALUE);
    }

    #[test]
    fn serialization_is_redacted() {
        #[derive(Serialize)]
        struct Holder {
            token: Secret<String>,
        }
        let json = serde_json::to_string(&Holder {
            token: Secret::new(VALUE.to_owned()),
        })
        .unwrap();
        assert_eq!(json, r#"{"token":"<redacted>"}"#);
        assert!(!json.contains("hunter2"));
    }

    #[test]
    fn debug_of_a_containing_struct_is_redacted() {
        #[derive(Debug)]
        #[allow(dead_code)]
        struct Holder {
            token: Secret<String>,
        }
        let text = format!(
            "{:?}",
            Holder {
                token: Secret::new(VALUE.to_owned())
            }
        );
        assert!(!text.contains("hunter2"), "{text}");
    }
}
