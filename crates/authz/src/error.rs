//! The crate's error types (rejections of a signed op are [`crate::Rejection`], not errors).

use std::path::PathBuf;

/// Why bytes could not be parsed as a signature, envelope or wire form. Every variant maps to
/// the rejection word `malformed`. Messages never quote the input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// The input is larger than its limit.
    #[error("{what} is {len} bytes, over the {limit}-byte limit")]
    TooLarge {
        /// What was parsed.
        what: &'static str,
        /// Its length.
        len: usize,
        /// The limit.
        limit: usize,
    },
    /// The armored signature is not a well-formed SSHSIG.
    #[error("signature is not an armored SSHSIG: {problem}")]
    Armor {
        /// What is wrong (never the input itself).
        problem: String,
    },
    /// The signature uses a key type the agent refuses.
    #[error("signature key type {algorithm} is not accepted (ed25519, ecdsa-sha2-nistp256 and their sk- variants only)")]
    KeyType {
        /// The algorithm name.
        algorithm: String,
    },
    /// The payload or wire form is not the strict JSON expected.
    #[error("{what}: {problem}")]
    Json {
        /// What was parsed.
        what: &'static str,
        /// What is wrong.
        problem: String,
    },
    /// A field is present but its value is not allowed.
    #[error("field {field}: {problem}")]
    Field {
        /// The field.
        field: &'static str,
        /// What is wrong.
        problem: String,
    },
}

/// Why the operators file could not be loaded. The agent refuses to start verifying with a
/// half-understood operators file.
#[derive(Debug, thiserror::Error)]
pub enum OperatorsError {
    /// The file could not be read.
    #[error("cannot read operators file {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The file could be changed by someone other than root or the agent: it is the trust
    /// root of every destructive action, so it is not read at all.
    #[error("operators file {path} (mode {mode:04o}, owner uid {uid}) is not trusted: {problem}")]
    Insecure {
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
        /// Its owner.
        uid: u32,
        /// What is wrong.
        problem: &'static str,
    },
    /// The file is not the expected JSON.
    #[error("operators file: {problem}")]
    Json {
        /// What is wrong.
        problem: String,
    },
    /// One operator entry is invalid.
    #[error("operators file, operator {index} ({principal:?}): {problem}")]
    Entry {
        /// Position in the list, from 0.
        index: usize,
        /// Its principal as written.
        principal: String,
        /// What is wrong.
        problem: String,
    },
}

/// Why signing failed (operator tooling).
#[derive(Debug, thiserror::Error)]
pub enum SignError {
    /// The key file could not be read.
    #[error("cannot read key file {path}")]
    ReadKey {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The key file is not an OpenSSH key this tool can use.
    #[error("key file {path}: {problem}")]
    Key {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        problem: String,
    },
    /// The private key is passphrase-protected.
    #[error("key file {path} is encrypted; load it into ssh-agent (`ssh-add {path}`) and sign with --agent, or pass its .pub file with SSH_AUTH_SOCK set")]
    Encrypted {
        /// The file.
        path: PathBuf,
    },
    /// Talking to ssh-agent failed.
    #[error("ssh-agent: {problem}")]
    Agent {
        /// What went wrong.
        problem: String,
    },
    /// ssh-agent I/O failed.
    #[error("ssh-agent at {socket}")]
    AgentIo {
        /// The socket.
        socket: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// Building the SSHSIG failed.
    #[error("building the signature failed: {problem}")]
    Build {
        /// What went wrong.
        problem: String,
    },
}
