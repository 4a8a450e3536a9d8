//! The hub crate's error type.

/// What can go wrong talking to the hub. `Display` never includes the source; log the chain.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A client option is unusable.
    #[error("hub client option {key}: {reason}")]
    InvalidOption {
        /// The option (`hub.url`, `host_id`, …).
        key: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// Plain `http://` to a host that is not loopback: the API key would travel in clear text.
    #[error("refusing plain http to {url}: only loopback hubs may use http")]
    InsecureUrl {
        /// The URL.
        url: String,
    },
    /// The TLS setup failed (trust store unreadable, bad configuration).
    #[error("cannot set up tls for the hub: {reason}")]
    Tls {
        /// What failed.
        reason: String,
    },
    /// The request did not complete (connect, TLS, pin mismatch, reset, timeout).
    #[error("cannot reach the hub at {url}")]
    Transport {
        /// The request URL.
        url: String,
        /// What reqwest saw.
        #[source]
        source: reqwest::Error,
    },
    /// 401: the API key is wrong or missing.
    #[error("hub refused the api key (401) at {url}")]
    Unauthorized {
        /// The request URL.
        url: String,
    },
    /// 403: the key is valid but not for this host.
    #[error("hub forbids this host (403) at {url}")]
    Forbidden {
        /// The request URL.
        url: String,
    },
    /// Any other unexpected status.
    #[error("hub answered {status} at {url}: {message}")]
    Status {
        /// The request URL.
        url: String,
        /// HTTP status.
        status: u16,
        /// The start of the body, for the log.
        message: String,
    },
    /// The hub answered something that is not a valid v1 message. The caller keeps its last
    /// good directive.
    #[error("hub answered garbage for the {what} at {url}: {reason}")]
    Garbage {
        /// Which message (`directive`, `report ack`).
        what: &'static str,
        /// The request URL.
        url: String,
        /// What was wrong.
        reason: String,
    },
    /// The hub speaks another protocol version.
    #[error("hub speaks protocol v{version} at {url}, this agent speaks v1")]
    UnsupportedVersion {
        /// The request URL.
        url: String,
        /// The version it sent.
        version: u64,
    },
    /// A body exceeds its bound (an answer from the hub, or a report that cannot be trimmed
    /// under the limit).
    #[error("{what} is larger than {limit} bytes")]
    TooLarge {
        /// Which body.
        what: &'static str,
        /// The bound.
        limit: usize,
    },
}

impl Error {
    /// Whether trying again later can help without anyone changing the configuration.
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::Transport { .. } | Error::Garbage { .. } => true,
            Error::Status { status, .. } => *status >= 500 || *status == 429 || *status == 408,
            Error::InvalidOption { .. }
            | Error::InsecureUrl { .. }
            | Error::Tls { .. }
            | Error::Unauthorized { .. }
            | Error::Forbidden { .. }
            | Error::UnsupportedVersion { .. }
            | Error::TooLarge { .. } => false,
        }
    }

    /// A short stable code for the report's `agent.last_error` and logs.
    pub fn code(&self) -> &'static str {
        match self {
            Error::InvalidOption { .. } => "invalid-option",
            Error::InsecureUrl { .. } => "insecure-url",
            Error::Tls { .. } => "tls",
            Error::Transport { .. } => "unreachable",
            Error::Unauthorized { .. } => "unauthorized",
            Error::Forbidden { .. } => "forbidden",
            Error::Status { .. } => "status",
            Error::Garbage { .. } => "garbage",
            Error::UnsupportedVersion { .. } => "unsupported-version",
            Error::TooLarge { .. } => "too-large",
        }
    }
}
