//! The crate's error type for everything outside the request path (TLS identity, tokens,
//! listening). Request-path failures become [`crate::reply::ApiError`] codes instead.

use std::net::SocketAddr;
use std::path::PathBuf;

use crate::ports::PortError;

/// Errors of the local API's setup and administration.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Creating the key directory failed.
    #[error("cannot create directory {path}")]
    CreateDir {
        /// The directory.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// Reading a file failed.
    #[error("cannot read {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// Writing a file failed.
    #[error("cannot write {path}")]
    Write {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The private key (or its directory) is open to group or others.
    #[error("{path} has mode {mode:04o}; group and others must have no access")]
    Permissions {
        /// The file or directory.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// A PEM file does not parse.
    #[error("{path} is not a valid PEM {what}")]
    Pem {
        /// The file.
        path: PathBuf,
        /// `certificate` or `private key`.
        what: &'static str,
        /// The cause.
        #[source]
        source: rustls::pki_types::pem::Error,
    },
    /// rcgen could not make the certificate.
    #[error("cannot generate the local api certificate")]
    Generate {
        /// The cause.
        #[source]
        source: rcgen::Error,
    },
    /// rustls refused the certificate or key.
    #[error("rustls rejected the local api certificate or key")]
    Rustls {
        /// The cause.
        #[source]
        source: rustls::Error,
    },
    /// The operating system gave no randomness.
    #[error("no randomness from the operating system")]
    Random {
        /// The cause.
        #[source]
        source: getrandom::Error,
    },
    /// The token store failed.
    #[error("token store failed")]
    Store {
        /// The cause.
        #[source]
        source: PortError,
    },
    /// Binding a listen address failed.
    #[error("cannot listen on {addr}")]
    Listen {
        /// The address.
        addr: SocketAddr,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A listener stopped with an error.
    #[error("local api listener on {addr} failed")]
    Serve {
        /// The address.
        addr: SocketAddr,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

impl From<PortError> for Error {
    fn from(source: PortError) -> Self {
        Error::Store { source }
    }
}
