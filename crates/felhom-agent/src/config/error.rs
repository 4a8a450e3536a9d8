//! Configuration errors: each names the file, the key or the variable at fault.

use std::path::PathBuf;

use super::Origin;

/// Why a configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// No config path on the command line or in `FELHOM_AGENT_CONFIG`.
    #[error("no configuration file: pass --config FILE or set FELHOM_AGENT_CONFIG")]
    NoPath,
    /// The file could not be read.
    #[error("cannot read configuration file {}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The file is not JSON.
    #[error("{}: invalid JSON at line {line}, column {column}: {message}", path.display())]
    Json {
        /// The file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
        /// serde_json's description, without its position suffix.
        message: String,
    },
    /// A key the agent does not know.
    #[error("{}: unknown key {key}", path.display())]
    UnknownKey {
        /// The file.
        path: PathBuf,
        /// The dotted key.
        key: String,
    },
    /// A `FELHOM_AGENT_*` variable that maps to no key.
    #[error("unknown environment variable {var}: no configuration key maps to it")]
    UnknownEnv {
        /// The variable.
        var: String,
    },
    /// Two variables set the same secret (e.g. `…_TOKEN` and `…_TOKEN_FILE`).
    #[error("{key} is set twice in the environment, by {first} and {second}")]
    EnvConflict {
        /// The key.
        key: &'static str,
        /// One variable.
        first: String,
        /// The other.
        second: String,
    },
    /// A required key is absent.
    #[error("missing required key {key} (set it in {} or with {var})", path.display())]
    Missing {
        /// The key.
        key: &'static str,
        /// The file.
        path: PathBuf,
        /// Its overlay variable.
        var: String,
    },
    /// A value of the wrong type or shape.
    #[error("invalid {key} ({origin}): {reason}")]
    Invalid {
        /// The key.
        key: String,
        /// Where the value came from.
        origin: Origin,
        /// What is wrong.
        reason: String,
    },
    /// A secret written inline in a config file that everyone on the host can read.
    #[error("{key}: an inline secret in {}, which has mode {mode:04o} (readable by everyone); make the file 0640 root:felhom-agent or less, or move the secret to a file or credential", path.display())]
    InlineSecretInReadableFile {
        /// The key.
        key: &'static str,
        /// The config file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// A secret file with group or other permission bits.
    #[error("{key}: secret file {} has mode {mode:04o}; it must not be accessible by group or others (chmod 600)", path.display())]
    SecretFileMode {
        /// The key.
        key: &'static str,
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// A secret file that is a directory, device, FIFO, ….
    #[error("{key}: secret file {} is not a regular file", path.display())]
    SecretFileNotRegular {
        /// The key.
        key: &'static str,
        /// The file.
        path: PathBuf,
    },
    /// A secret file that could not be read.
    #[error("{key}: cannot read secret file {}", path.display())]
    SecretFileRead {
        /// The key.
        key: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A credential was requested outside a unit with credentials.
    #[error("{key}: credential {name:?} requested but CREDENTIALS_DIRECTORY is not set (run under systemd with LoadCredential=)")]
    NoCredentialsDirectory {
        /// The key.
        key: &'static str,
        /// The credential.
        name: String,
    },
}
