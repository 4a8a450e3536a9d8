//! A minimal `ssh-agent` client (draft-miller-ssh-agent): list identities, sign.
//!
//! This is how keys on hardware tokens (FIDO `sk-` keys, PIV/PKCS#11 keys loaded with
//! `ssh-add -s`) and passphrase-protected keys sign: the private key never reaches this
//! process. Only the two requests needed are implemented, over the UNIX socket in
//! `SSH_AUTH_SOCK`, with a bounded reply size and a timeout (a touch-required key waits for
//! the user, so the timeout is generous).

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ssh_key::{HashAlg, PublicKey, Signature};

use crate::armor::accepted;
use crate::sign::{assemble, signed_data};
use crate::SignError;

const SSH_AGENT_FAILURE: u8 = 5;
const SSH2_AGENTC_REQUEST_IDENTITIES: u8 = 11;
const SSH2_AGENT_IDENTITIES_ANSWER: u8 = 12;
const SSH2_AGENTC_SIGN_REQUEST: u8 = 13;
const SSH2_AGENT_SIGN_RESPONSE: u8 = 14;

/// Largest agent reply read.
const MAX_REPLY: usize = 256 * 1024;

/// How long to wait for the agent (and a token touch).
const TIMEOUT: Duration = Duration::from_secs(120);

/// A connection to ssh-agent.
#[derive(Debug)]
pub struct AgentClient {
    stream: UnixStream,
    socket: PathBuf,
}

/// One key the agent holds.
#[derive(Debug, Clone)]
pub struct AgentIdentity {
    /// The public key.
    pub key: PublicKey,
    /// The agent's comment for it.
    pub comment: String,
}

impl AgentClient {
    /// Connects to the agent socket.
    pub fn connect(socket: &Path) -> Result<AgentClient, SignError> {
        let io = |source| SignError::AgentIo {
            socket: socket.to_owned(),
            source,
        };
        let stream = UnixStream::connect(socket).map_err(io)?;
        stream.set_read_timeout(Some(TIMEOUT)).map_err(io)?;
        stream.set_write_timeout(Some(TIMEOUT)).map_err(io)?;
        Ok(AgentClient {
            stream,
            socket: socket.to_owned(),
        })
    }

    /// The keys the agent holds (of every type; unparseable ones are skipped).
    pub fn identities(&mut self) -> Result<Vec<AgentIdentity>, SignError> {
        let reply = self.request(&[SSH2_AGENTC_REQUEST_IDENTITIES])?;
        let mut r = Cursor(&reply);
        if r.byte()? != SSH2_AGENT_IDENTITIES_ANSWER {
            return Err(agent_err("agent refused to list identities"));
        }
        let count = r.u32()?;
        let mut out = Vec::new();
        for _ in 0..count {
            let blob = r.string()?;
            let comment = String::from_utf8_lossy(r.string()?).into_owned();
            if let Ok(key) = PublicKey::from_bytes(blob) {
                out.push(AgentIdentity { key, comment });
            }
        }
        Ok(out)
    }

    /// Asks the agent to sign `data` with `key`.
    pub fn sign(&mut self, key: &PublicKey, data: &[u8]) -> Result<Signature, SignError> {
        let blob = key.to_bytes().map_err(|e| agent_err(&e.to_string()))?;
        let mut msg = vec![SSH2_AGENTC_SIGN_REQUEST];
        put_string(&mut msg, &blob)?;
        put_string(&mut msg, data)?;
        msg.extend_from_slice(&0u32.to_be_bytes()); // flags: none (no RSA here)
        let reply = self.request(&msg)?;
        let mut r = Cursor(&reply);
        match r.byte()? {
            SSH2_AGENT_SIGN_RESPONSE => {}
            SSH_AGENT_FAILURE => {
                return Err(agent_err(
                    "agent refused to sign (key not loaded, confirmation denied or no touch)",
                ))
            }
            _ => return Err(agent_err("unexpected reply to sign request")),
        }
        Signature::try_from(r.string()?).map_err(|e| agent_err(&format!("bad signature: {e}")))
    }

    fn request(&mut self, body: &[u8]) -> Result<Vec<u8>, SignError> {
        let io = |source| SignError::AgentIo {
            socket: self.socket.clone(),
            source,
        };
        let len = u32::try_from(body.len()).map_err(|_| agent_err("request too large"))?;
        let mut frame = len.to_be_bytes().to_vec();
        frame.extend_from_slice(body);
        self.stream.write_all(&frame).map_err(io)?;
        let mut len = [0u8; 4];
        self.stream.read_exact(&mut len).map_err(io)?;
        let len = u32::from_be_bytes(len) as usize;
        if len == 0 || len > MAX_REPLY {
            return Err(agent_err("reply length out of range"));
        }
        let mut reply = vec![0u8; len];
        self.stream.read_exact(&mut reply).map_err(io)?;
        Ok(reply)
    }
}

/// Signs `payload` through the agent at `socket`. With `key` the agent must hold exactly that
/// key; without, it must hold exactly one key of an accepted type.
pub fn sign_with_agent(
    socket: &Path,
    key: Option<&PublicKey>,
    payload: &[u8],
) -> Result<String, SignError> {
    let mut agent = AgentClient::connect(socket)?;
    let identities = agent.identities()?;
    let chosen = match key {
        Some(wanted) => identities
            .into_iter()
            .find(|i| i.key.key_data() == wanted.key_data())
            .ok_or_else(|| {
                agent_err(&format!(
                    "the agent does not hold key {} (ssh-add it first)",
                    wanted.fingerprint(HashAlg::Sha256)
                ))
            })?,
        None => {
            let mut usable: Vec<AgentIdentity> = identities
                .into_iter()
                .filter(|i| accepted(&i.key.algorithm()))
                .collect();
            match usable.len() {
                1 => usable.remove(0),
                0 => return Err(agent_err("the agent holds no ed25519 or ecdsa-p256 key")),
                n => {
                    let list: Vec<String> = usable
                        .iter()
                        .map(|i| i.key.fingerprint(HashAlg::Sha256).to_string())
                        .collect();
                    return Err(agent_err(&format!(
                        "the agent holds {n} usable keys ({}); choose one with --key FILE.pub",
                        list.join(", ")
                    )));
                }
            }
        }
    };
    if !accepted(&chosen.key.algorithm()) {
        return Err(agent_err(&format!(
            "key type {} is not accepted by the agent (use ed25519 or ecdsa-p256)",
            chosen.key.algorithm().as_str()
        )));
    }
    let signature = agent.sign(&chosen.key, &signed_data(payload)?)?;
    assemble(&chosen.key, signature)
}

fn agent_err(problem: &str) -> SignError {
    SignError::Agent {
        problem: problem.to_owned(),
    }
}

fn put_string(out: &mut Vec<u8>, bytes: &[u8]) -> Result<(), SignError> {
    let len = u32::try_from(bytes.len()).map_err(|_| agent_err("field too large"))?;
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(bytes);
    Ok(())
}

/// A bounds-checked reader over an agent reply.
struct Cursor<'a>(&'a [u8]);

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], SignError> {
        if self.0.len() < n {
            return Err(agent_err("truncated reply"));
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }
    fn byte(&mut self) -> Result<u8, SignError> {
        Ok(self.take(1)?[0])
    }
    fn u32(&mut self) -> Result<u32, SignError> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn string(&mut self) -> Result<&'a [u8], SignError> {
        let n = self.u32()? as usize;
        self.take(n)
    }
}

/// Reads an OpenSSH public key file (`KEY.pub`, one line).
pub fn read_public_key(path: &Path) -> Result<PublicKey, SignError> {
    let text = std::fs::read_to_string(path).map_err(|source| SignError::ReadKey {
        path: path.to_owned(),
        source,
    })?;
    PublicKey::from_openssh(text.trim()).map_err(|e| SignError::Key {
        path: path.to_owned(),
        problem: format!("not an OpenSSH public key ({e})"),
    })
}
