//! The collect crate's error type.

use std::path::PathBuf;

/// A collector that could not produce its value.
#[derive(Debug, thiserror::Error)]
pub enum CollectError {
    /// A file under the proc root could not be read.
    #[error("cannot read {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A file's contents are not what the kernel writes.
    #[error("cannot parse {path}: {reason}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What was wrong.
        reason: String,
    },
    /// `statvfs` failed.
    #[error("statvfs {path} failed")]
    Statvfs {
        /// The path.
        path: PathBuf,
        /// The errno.
        #[source]
        source: std::io::Error,
    },
    /// The cloudflared probe cannot be built (bad address).
    #[error("cloudflared metrics address {address:?}: {reason}")]
    ProbeSetup {
        /// The configured address.
        address: String,
        /// What is wrong.
        reason: String,
    },
}
