//! The error taxonomy of the client, and the mapping from a PVE error answer to it.
//!
//! Every variant says whether a retry is safe through [`Error::is_retryable`]: only errors where
//! the request provably never reached a PVE API handler are retryable. Anything that may have
//! been processed (a request timeout after sending, a broken connection mid-answer, a 500) is
//! not, because the caller cannot know whether the change happened.

use std::collections::BTreeMap;
use std::sync::OnceLock;
use std::time::Duration;

use regex::Regex;

use crate::tls::Fingerprint;
use crate::upid::Upid;

/// Result alias of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong talking to Proxmox VE.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The connection could not be established (DNS, TCP, connect timeout): the request was
    /// never sent, so a retry is always safe.
    #[error("cannot connect to {url}")]
    Connect {
        /// The base URL of the API.
        url: String,
        /// The transport error.
        #[source]
        source: reqwest::Error,
    },
    /// The server's leaf certificate is not the pinned one.
    #[error(
        "certificate of {url} does not match the pinned fingerprint (expected {expected}, got {actual})"
    )]
    PinMismatch {
        /// The base URL of the API.
        url: String,
        /// The configured pin.
        expected: Fingerprint,
        /// SHA-256 of the certificate the server presented.
        actual: Fingerprint,
    },
    /// The TLS handshake failed for another reason than the pin (for example a server that
    /// presents the pinned certificate without holding its key).
    #[error("tls handshake with {url} failed")]
    Tls {
        /// The base URL of the API.
        url: String,
        /// The transport error.
        #[source]
        source: reqwest::Error,
    },
    /// The request was sent but no complete answer arrived in time: it may have been processed.
    #[error("{method} {path}: no answer within {timeout:?}")]
    Timeout {
        /// HTTP method.
        method: &'static str,
        /// API path (below `/api2/json`).
        path: String,
        /// The configured request timeout.
        timeout: Duration,
    },
    /// The connection broke after the request was (possibly) sent.
    #[error("{method} {path}: transport failed")]
    Transport {
        /// HTTP method.
        method: &'static str,
        /// API path.
        path: String,
        /// The transport error.
        #[source]
        source: reqwest::Error,
    },
    /// 401: the token is missing, wrong, expired or disabled. PVE delays every 401 by about
    /// 3 s (pve-http-server `AnyEvent.pm:1036-1040`), so never retry this in a loop.
    #[error("{method} {path}: authentication failed: {message}")]
    Unauthorized {
        /// HTTP method.
        method: &'static str,
        /// API path.
        path: String,
        /// PVE's reason ("Authentication failed!", "No ticket").
        message: String,
    },
    /// 403: the token lacks a privilege. PVE names the ACL path and privilege as
    /// "Permission check failed (/vms/101, VM.PowerMgmt)" (pve-access-control `RPCEnvironment.pm`).
    #[error("{method} {path}: permission denied: {message}")]
    Forbidden {
        /// HTTP method.
        method: &'static str,
        /// API path.
        path: String,
        /// The ACL path that was checked, when PVE named it.
        acl_path: Option<String>,
        /// The missing privilege, when PVE named it.
        privilege: Option<String>,
        /// PVE's message, first line.
        message: String,
    },
    /// 400: parameter verification failed; `errors` maps each parameter to PVE's reason.
    #[error(
        "{method} {path}: invalid parameters: {}",
        format_param_errors(errors, message)
    )]
    InvalidParameters {
        /// HTTP method.
        method: &'static str,
        /// API path.
        path: String,
        /// PVE's message ("Parameter verification failed.").
        message: String,
        /// Per-parameter reasons.
        errors: BTreeMap<String, String>,
    },
    /// 500 "CT is locked (backup)": a guest lock blocked the call before it changed anything.
    #[error("{method} {path}: guest is locked ({lock})")]
    Locked {
        /// HTTP method.
        method: &'static str,
        /// API path.
        path: String,
        /// The lock kind (`backup`, `snapshot`, `create`, ...).
        lock: String,
    },
    /// 500 "detected modified configuration": the `digest` sent no longer matches.
    #[error("{method} {path}: configuration was modified concurrently (digest mismatch)")]
    DigestMismatch {
        /// HTTP method.
        method: &'static str,
        /// API path.
        path: String,
    },
    /// 500 "Configuration file 'nodes/pve/lxc/101.conf' does not exist": no such guest on
    /// this node (pve-guest-common AbstractConfig.pm load_config).
    #[error("{method} {path}: guest {vmid} does not exist on node {node}")]
    NoSuchGuest {
        /// HTTP method.
        method: &'static str,
        /// API path.
        path: String,
        /// The node the API looked on.
        node: String,
        /// The guest id.
        vmid: String,
    },
    /// Any other error answer of a PVE handler (usually 500).
    #[error("{method} {path}: proxmox answered {status}: {message}")]
    Api {
        /// HTTP method.
        method: &'static str,
        /// API path.
        path: String,
        /// HTTP status.
        status: u16,
        /// PVE's message, first line.
        message: String,
    },
    /// 501: PVE does not know this path or method (PVE never answers 404).
    #[error("{method} {path}: not implemented by proxmox: {message}")]
    NotImplemented {
        /// HTTP method.
        method: &'static str,
        /// API path.
        path: String,
        /// PVE's message.
        message: String,
    },
    /// 595/596/597/599: pveproxy could not forward the call to the node (AnyEvent::HTTP
    /// pseudo-status). This is about the hop behind pveproxy, never about our pin.
    #[error("{method} {path}: proxmox could not forward the request ({status}): {message}")]
    Proxy {
        /// HTTP method.
        method: &'static str,
        /// API path.
        path: String,
        /// The pseudo-status.
        status: u16,
        /// The reason phrase.
        message: String,
    },
    /// The answer could not be decoded (not JSON, no `data`, wrong shape).
    #[error("{method} {path}: malformed answer: {detail}")]
    Decode {
        /// HTTP method.
        method: &'static str,
        /// API path.
        path: String,
        /// What was wrong.
        detail: String,
    },
    /// A task ended with an error status.
    #[error("task {upid} failed: {exitstatus}")]
    TaskFailed {
        /// The task.
        upid: Upid,
        /// PVE's exit status (the error text).
        exitstatus: String,
        /// The last lines of the task log.
        log_tail: Vec<String>,
    },
    /// A task did not stop within the wait timeout; it may still be running.
    #[error("task {upid} still running after {waited:?}")]
    TaskTimeout {
        /// The task.
        upid: Upid,
        /// How long we waited.
        waited: Duration,
    },
    /// Waiting for a task was cancelled by the caller; the task itself keeps running.
    #[error("waiting for task {upid} was cancelled")]
    TaskWaitCancelled {
        /// The task.
        upid: Upid,
    },
    /// An argument was rejected before anything was sent.
    #[error("invalid {what}: {reason}")]
    InvalidArgument {
        /// What kind of value (`vmid`, `snapshot name`, `fingerprint`, ...).
        what: &'static str,
        /// Why it was rejected.
        reason: String,
    },
}

impl Error {
    /// True only when the request provably never reached a PVE handler, so sending it again
    /// cannot apply a change twice: a failed connect, or 595 (pveproxy could not connect to the
    /// target node). Everything else may have been processed (or will fail the same way again).
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::Connect { .. } => true,
            Error::Proxy { status, .. } => *status == 595,
            Error::PinMismatch { .. }
            | Error::Tls { .. }
            | Error::Timeout { .. }
            | Error::Transport { .. }
            | Error::Unauthorized { .. }
            | Error::Forbidden { .. }
            | Error::InvalidParameters { .. }
            | Error::Locked { .. }
            | Error::DigestMismatch { .. }
            | Error::NoSuchGuest { .. }
            | Error::Api { .. }
            | Error::NotImplemented { .. }
            | Error::Decode { .. }
            | Error::TaskFailed { .. }
            | Error::TaskTimeout { .. }
            | Error::TaskWaitCancelled { .. }
            | Error::InvalidArgument { .. } => false,
        }
    }

    /// The HTTP status of an error answer, if this error is one.
    pub fn status(&self) -> Option<u16> {
        match self {
            Error::Unauthorized { .. } => Some(401),
            Error::Forbidden { .. } => Some(403),
            Error::InvalidParameters { .. } => Some(400),
            Error::Locked { .. } | Error::DigestMismatch { .. } | Error::NoSuchGuest { .. } => {
                Some(500)
            }
            Error::NotImplemented { .. } => Some(501),
            Error::Api { status, .. } | Error::Proxy { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// The lock kind if the call was refused because the guest is locked.
    pub fn lock(&self) -> Option<&str> {
        match self {
            Error::Locked { lock, .. } => Some(lock),
            _ => None,
        }
    }

    pub(crate) fn invalid(what: &'static str, reason: impl Into<String>) -> Self {
        Error::InvalidArgument {
            what,
            reason: reason.into(),
        }
    }
}

fn format_param_errors(errors: &BTreeMap<String, String>, message: &str) -> String {
    if errors.is_empty() {
        return message.trim_end().to_owned();
    }
    errors
        .iter()
        .map(|(k, v)| format!("{k}: {}", v.trim_end().replace('\n', "; ")))
        .collect::<Vec<_>>()
        .join(", ")
}

/// An error answer as PVE sends it: status, the `message` (or the reason phrase when the
/// body is empty, as for 401 and the proxy pseudo-statuses), and the 400 `errors` object.
#[derive(Debug, Clone, Default)]
pub(crate) struct ErrorAnswer {
    pub status: u16,
    pub message: String,
    pub errors: BTreeMap<String, String>,
}

/// Maps an error answer to a variant. Pure, so every PVE message shape is unit-tested.
pub(crate) fn classify(method: &'static str, path: &str, answer: ErrorAnswer) -> Error {
    let path = path.to_owned();
    // PVE messages end with "\n" and the reason phrase repeats the first line; keep the first.
    let message = answer
        .message
        .lines()
        .next()
        .unwrap_or("")
        .trim()
        .to_owned();
    match answer.status {
        401 => Error::Unauthorized {
            method,
            path,
            message,
        },
        403 => {
            let (acl_path, privilege) = parse_permission_message(&message);
            Error::Forbidden {
                method,
                path,
                acl_path,
                privilege,
                message,
            }
        }
        400 => Error::InvalidParameters {
            method,
            path,
            message,
            errors: answer.errors,
        },
        501 => Error::NotImplemented {
            method,
            path,
            message,
        },
        595..=599 => Error::Proxy {
            method,
            path,
            status: answer.status,
            message,
        },
        status => {
            if let Some(lock) = parse_lock_message(&message) {
                Error::Locked { method, path, lock }
            } else if message.starts_with("detected modified configuration") {
                // pve-common Tools.pm:868-874 (assert_if_modified)
                Error::DigestMismatch { method, path }
            } else if let Some((node, vmid)) = parse_missing_config(&message) {
                Error::NoSuchGuest {
                    method,
                    path,
                    node,
                    vmid,
                }
            } else {
                Error::Api {
                    method,
                    path,
                    status,
                    message,
                }
            }
        }
    }
}

/// "Configuration file 'nodes/pve/lxc/101.conf' does not exist" → (node, vmid).
pub(crate) fn parse_missing_config(message: &str) -> Option<(String, String)> {
    static RE: OnceLock<Regex> = OnceLock::new();
    let re = RE.get_or_init(|| {
        Regex::new(
            r"^Configuration file 'nodes/([^/']+)/(?:lxc|qemu-server)/(\d+)\.conf' does not exist",
        )
        .unwrap_or_else(|e| unreachable!("static regex: {e}"))
    });
    let c = re.captures(message)?;
    Some((c[1].to_owned(), c[2].to_owned()))
}

/// "Permission check failed (/vms/101, VM.PowerMgmt)" → (path, privilege).
/// Other 403 texts ("Permission check failed (user != root@pam)") yield what they name.
pub(crate) fn parse_permission_message(message: &str) -> (Option<String>, Option<String>) {
    static RE: OnceLock<Regex> = OnceLock::new();
    let re = RE.get_or_init(|| {
        Regex::new(r"Permission check failed \((/[^,()]*), ([A-Za-z.]+)\)")
            .unwrap_or_else(|e| unreachable!("static regex: {e}"))
    });
    match re.captures(message) {
        Some(c) => (Some(c[1].to_owned()), Some(c[2].to_owned())),
        None => (None, None),
    }
}

/// "CT is locked (backup)" (also "VM is locked (…)") → the lock kind
/// (pve-guest-common `AbstractConfig.pm:336-340`).
pub(crate) fn parse_lock_message(message: &str) -> Option<String> {
    static RE: OnceLock<Regex> = OnceLock::new();
    let re = RE.get_or_init(|| {
        Regex::new(r"\b(?:CT|VM) is locked \(([A-Za-z0-9_-]+)\)")
            .unwrap_or_else(|e| unreachable!("static regex: {e}"))
    });
    re.captures(message).map(|c| c[1].to_owned())
}

/// Displays an error with its source chain on one line (`a: b: c`), for logging it once where
/// it is handled. The one implementation every crate of the agent uses.
pub struct ErrorChain<'a>(pub &'a (dyn std::error::Error + 'static));

impl std::fmt::Display for ErrorChain<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)?;
        let mut cur = self.0.source();
        while let Some(e) = cur {
            write!(f, ": {e}")?;
            cur = e.source();
        }
        Ok(())
    }
}

/// [`ErrorChain`] as a `String`.
pub fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    ErrorChain(err).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(status: u16, message: &str) -> ErrorAnswer {
        ErrorAnswer {
            status,
            message: message.to_owned(),
            errors: BTreeMap::new(),
        }
    }

    #[test]
    fn forbidden_names_path_and_privilege() {
        let e = classify(
            "POST",
            "/nodes/pve1/lxc/101/status/start",
            answer(403, "Permission check failed (/vms/101, VM.PowerMgmt)\n"),
        );
        match e {
            Error::Forbidden {
                acl_path,
                privilege,
                ..
            } => {
                assert_eq!(acl_path.as_deref(), Some("/vms/101"));
                assert_eq!(privilege.as_deref(), Some("VM.PowerMgmt"));
            }
            other => panic!("{other:?}"),
        }
        let e = classify(
            "GET",
            "/x",
            answer(403, "Permission check failed (user != root@pam)\n"),
        );
        assert!(matches!(
            e,
            Error::Forbidden {
                acl_path: None,
                privilege: None,
                ..
            }
        ));
        let e = classify(
            "GET",
            "/x",
            answer(
                403,
                "Permission check failed (/sdn/zones/localnetwork/vmbr0, SDN.Use)",
            ),
        );
        assert_eq!(
            parse_permission_message(&e.to_string()),
            (
                Some("/sdn/zones/localnetwork/vmbr0".into()),
                Some("SDN.Use".into())
            )
        );
    }

    #[test]
    fn lock_kind_is_parsed() {
        for kind in ["backup", "snapshot", "snapshot-delete", "create", "mounted"] {
            let e = classify(
                "PUT",
                "/nodes/pve1/lxc/101/config",
                answer(500, &format!("CT is locked ({kind})\n")),
            );
            assert_eq!(e.lock(), Some(kind), "{e:?}");
            assert!(!e.is_retryable());
        }
        assert_eq!(
            parse_lock_message("VM is locked (migrate)"),
            Some("migrate".into())
        );
        assert_eq!(parse_lock_message("CT 101 already running"), None);
    }

    #[test]
    fn digest_mismatch_and_plain_500() {
        let e = classify(
            "PUT",
            "/p",
            answer(
                500,
                "detected modified configuration - file changed by other user? Try again.\n",
            ),
        );
        assert!(matches!(e, Error::DigestMismatch { .. }));
        let e = classify(
            "GET",
            "/nodes/pve/lxc/101/status/current",
            answer(
                500,
                "Configuration file 'nodes/pve/lxc/101.conf' does not exist\n",
            ),
        );
        assert!(
            matches!(&e, Error::NoSuchGuest { node, vmid, .. } if node == "pve" && vmid == "101"),
            "{e:?}"
        );
        let e = classify("POST", "/p", answer(500, "CT 101 already running\n"));
        match e {
            Error::Api {
                status, message, ..
            } => {
                assert_eq!(status, 500);
                assert_eq!(message, "CT 101 already running");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn proxy_statuses_are_never_pin_errors() {
        for status in [595u16, 596, 597, 599] {
            let e = classify(
                "GET",
                "/nodes/pve2/status",
                answer(
                    status,
                    "Errors during connection establishment, proxy handshake: Connection refused",
                ),
            );
            assert!(matches!(e, Error::Proxy { .. }), "{e:?}");
            assert!(!matches!(e, Error::PinMismatch { .. } | Error::Tls { .. }));
            assert_eq!(e.is_retryable(), status == 595);
        }
    }

    #[test]
    fn parameter_errors_are_kept_per_key() {
        let mut errors = BTreeMap::new();
        errors.insert(
            "net0".to_owned(),
            "invalid format - format error\nnet0.mtu: value must have a minimum value of 64\n"
                .to_owned(),
        );
        errors.insert(
            "onboot".to_owned(),
            "type check ('boolean') failed - got 'true'".to_owned(),
        );
        let e = classify(
            "PUT",
            "/nodes/pve1/lxc/101/config",
            ErrorAnswer {
                status: 400,
                message: "Parameter verification failed.\n".into(),
                errors,
            },
        );
        let text = e.to_string();
        assert!(text.contains("onboot: type check"), "{text}");
        assert!(text.contains("net0.mtu: value must"), "{text}");
        match e {
            Error::InvalidParameters { errors, .. } => assert_eq!(errors.len(), 2),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn other_statuses() {
        assert!(matches!(
            classify("GET", "/x", answer(401, "Authentication failed!")),
            Error::Unauthorized { .. }
        ));
        assert!(matches!(
            classify(
                "HEAD",
                "/x",
                answer(501, "Method 'GET /nodes/x/foo' not implemented")
            ),
            Error::NotImplemented { .. }
        ));
        assert!(matches!(
            classify("GET", "/x", answer(506, "unsupported content type")),
            Error::Api { status: 506, .. }
        ));
    }

    #[test]
    fn retryable_table() {
        let upid: Upid = "UPID:pve1:0003A1F2:01B2C3D4:66F0A1B2:vzstart:101:agent@pve!hostagent:"
            .parse()
            .unwrap();
        let fp = Fingerprint::from_der(b"x");
        let cases: Vec<(Error, bool)> = vec![
            (classify("GET", "/", answer(595, "")), true),
            (classify("GET", "/", answer(596, "")), false),
            (classify("GET", "/", answer(401, "")), false),
            (classify("GET", "/", answer(403, "")), false),
            (classify("GET", "/", answer(400, "")), false),
            (
                classify("GET", "/", answer(500, "CT is locked (backup)")),
                false,
            ),
            (classify("GET", "/", answer(500, "boom")), false),
            (classify("GET", "/", answer(501, "")), false),
            (
                Error::PinMismatch {
                    url: "u".into(),
                    expected: fp,
                    actual: fp,
                },
                false,
            ),
            (
                Error::Timeout {
                    method: "POST",
                    path: "/".into(),
                    timeout: Duration::from_secs(1),
                },
                false,
            ),
            (
                Error::TaskFailed {
                    upid: upid.clone(),
                    exitstatus: "x".into(),
                    log_tail: vec![],
                },
                false,
            ),
            (
                Error::TaskTimeout {
                    upid,
                    waited: Duration::from_secs(1),
                },
                false,
            ),
            (
                Error::Decode {
                    method: "GET",
                    path: "/".into(),
                    detail: "x".into(),
                },
                false,
            ),
        ];
        for (e, want) in cases {
            assert_eq!(e.is_retryable(), want, "{e:?}");
        }
    }

    #[test]
    fn display_is_lower_case_and_has_no_source() {
        let e = classify(
            "POST",
            "/nodes/pve1/lxc",
            answer(500, "CT 101 already exists on node 'pve1'\n"),
        );
        let s = e.to_string();
        assert_eq!(
            s,
            "POST /nodes/pve1/lxc: proxmox answered 500: CT 101 already exists on node 'pve1'"
        );
    }

    #[test]
    fn error_chain_joins_every_source_on_one_line() {
        #[derive(Debug, thiserror::Error)]
        #[error("reading the journal")]
        struct Outer(#[source] std::io::Error);
        let err = Outer(std::io::Error::other("disk full"));
        assert_eq!(super::error_chain(&err), "reading the journal: disk full");
        assert_eq!(
            super::ErrorChain(&err).to_string(),
            "reading the journal: disk full"
        );
    }
}
