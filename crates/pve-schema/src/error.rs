//! Errors of this crate.

/// Loading a schema failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The text is not JSON.
    #[error("schema is not valid JSON")]
    Json {
        /// The parser error.
        #[source]
        source: serde_json::Error,
    },
    /// The JSON does not have the `pve-apidoc.json` shape.
    #[error("schema has an unexpected shape at {at}: {reason}")]
    Shape {
        /// The path template (or "node"/"/") where the problem was found.
        at: String,
        /// What is wrong.
        reason: &'static str,
    },
}

/// A request path or method the schema does not know. PVE answers both with
/// 501 "Method 'GET /x' not implemented" (pve-http-server `AnyEvent.pm`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FindError {
    /// No path template matches.
    #[error("no such path")]
    NoSuchPath,
    /// The path exists but not with this method.
    #[error("no such method on this path")]
    NoSuchMethod,
}
