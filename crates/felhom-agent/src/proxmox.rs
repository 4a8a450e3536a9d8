//! Builds the one [`pve::Client`] of the process from the resolved configuration.

use pve::{ApiToken, Client, ClientConfig};

use crate::config::ProxmoxConfig;

/// Why a client could not be built from a configuration that already validated.
#[derive(Debug, thiserror::Error)]
pub enum ClientSetupError {
    /// The token is not `user@realm!tokenid=secret` (the message never contains the secret).
    #[error("proxmox.token: {reason}")]
    Token {
        /// What is wrong with it.
        reason: String,
    },
    /// The client refused the URL or node name.
    #[error("proxmox client")]
    Client(#[source] pve::Error),
}

/// A client pinned to `proxmox.fingerprint`, authenticating with `proxmox.token`.
pub fn client(config: &ProxmoxConfig) -> Result<Client, ClientSetupError> {
    let token: ApiToken = config
        .token
        .value
        .expose()
        .parse()
        .map_err(|e: pve::Error| ClientSetupError::Token {
            reason: e.to_string(),
        })?;
    let mut cc = ClientConfig::new(
        config.url.as_str(),
        config.node.clone(),
        token,
        config.fingerprint,
    );
    cc.connect_timeout = config.connect_timeout();
    cc.request_timeout = config.request_timeout();
    Client::new(cc).map_err(ClientSetupError::Client)
}

/// The token's `user@realm!tokenid`: how UPIDs name the agent's tasks (what recovery looks for
/// in the task list). Never the secret.
pub fn token_user(config: &ProxmoxConfig) -> String {
    let token: &str = config.token.value.expose();
    token.split_once('=').map_or(token, |(id, _)| id).to_owned()
}

/// Installs ring as the process-wide rustls provider. The client builds its TLS configuration
/// with ring explicitly; this only guards code paths that use the process default
/// (deps-notes.md, gotcha 1). Installing twice is harmless.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}
