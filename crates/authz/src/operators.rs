//! The operators file and the role → action table.
//!
//! ```json
//! {"operators":[{"principal":"alice","public_key":"ssh-ed25519 AAAA… alice@laptop","roles":["operator"]}]}
//! ```
//!
//! Loaded strictly: unknown fields, unknown roles, an empty role list, an accepted key type
//! other than ed25519 / ecdsa-p256 / their sk- variants, a duplicate principal or a key listed
//! twice are errors that name the entry. Roles come from this file only, never from a payload.
//!
//! | role | may sign |
//! |---|---|
//! | `operator` | every action |
//! | `support` | `backup.force`, `restore_test.run`, `break_glass.disable` (non-destructive one-shots) |

use std::path::Path;

use serde::Deserialize;
use ssh_key::public::KeyData;
use ssh_key::{HashAlg, PublicKey};

use crate::armor::accepted;
use crate::{Action, OperatorsError};

/// Largest operators file read.
pub const MAX_OPERATORS_FILE: u64 = 1024 * 1024;

/// A role an operator holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// May sign every action.
    Operator,
    /// May sign only non-destructive one-shots.
    Support,
}

impl Role {
    /// The file's word.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Operator => "operator",
            Role::Support => "support",
        }
    }

    fn parse(word: &str) -> Option<Role> {
        match word {
            "operator" => Some(Role::Operator),
            "support" => Some(Role::Support),
            _ => None,
        }
    }

    /// The role → action table (also in docs/operator-signing.md).
    pub fn may(self, action: Action) -> bool {
        match self {
            Role::Operator => true,
            Role::Support => matches!(
                action,
                Action::BackupForce | Action::RestoreTestRun | Action::BreakGlassDisable
            ),
        }
    }
}

/// One operator: a principal, one public key, its roles.
#[derive(Debug, Clone)]
pub struct Operator {
    principal: String,
    key: PublicKey,
    fingerprint: String,
    roles: Vec<Role>,
}

impl Operator {
    /// The principal (who signed, as the audit log names it).
    pub fn principal(&self) -> &str {
        &self.principal
    }

    /// The public key.
    pub fn key(&self) -> &PublicKey {
        &self.key
    }

    /// `SHA256:…` fingerprint of the key, as `ssh-keygen -l` prints it.
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    /// The roles.
    pub fn roles(&self) -> &[Role] {
        &self.roles
    }

    /// Whether any of the operator's roles allows `action`.
    pub fn may(&self, action: Action) -> bool {
        self.roles.iter().any(|r| r.may(action))
    }
}

/// The loaded operators file.
#[derive(Debug, Clone)]
pub struct Operators {
    operators: Vec<Operator>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    operators: Vec<RawOperator>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOperator {
    principal: String,
    public_key: String,
    roles: Vec<String>,
}

impl Operators {
    /// Reads and parses the file.
    pub fn load(path: &Path) -> Result<Operators, OperatorsError> {
        use std::io::Read;
        let read_err = |source| OperatorsError::Read {
            path: path.to_owned(),
            source,
        };
        let file = std::fs::File::open(path).map_err(read_err)?;
        // The opened file is the one checked and the one read.
        check_trusted(path, &file.metadata().map_err(read_err)?)?;
        let mut bytes = Vec::new();
        file.take(MAX_OPERATORS_FILE + 1)
            .read_to_end(&mut bytes)
            .map_err(read_err)?;
        if bytes.len() as u64 > MAX_OPERATORS_FILE {
            return Err(OperatorsError::Json {
                problem: format!("larger than {MAX_OPERATORS_FILE} bytes"),
            });
        }
        Operators::parse(&bytes)
    }

    /// Parses the file's bytes (no file checks: [`Operators::load`] makes them).
    pub fn parse(bytes: &[u8]) -> Result<Operators, OperatorsError> {
        let raw: RawFile = serde_json::from_slice(bytes).map_err(|e| OperatorsError::Json {
            problem: e.to_string(),
        })?;
        let mut operators: Vec<Operator> = Vec::with_capacity(raw.operators.len());
        for (index, entry) in raw.operators.into_iter().enumerate() {
            let bad = |problem: String| OperatorsError::Entry {
                index,
                principal: entry.principal.clone(),
                problem,
            };
            if entry.principal.is_empty()
                || entry.principal.len() > 64
                || !entry
                    .principal
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"._@-".contains(&b))
            {
                return Err(bad(
                    "principal must be 1-64 characters of [A-Za-z0-9._@-]".into()
                ));
            }
            let key = PublicKey::from_openssh(entry.public_key.trim())
                .map_err(|e| bad(format!("public_key is not an OpenSSH public key: {e}")))?;
            if !accepted(&key.algorithm()) {
                return Err(bad(format!(
                    "key type {} is not accepted (ed25519, ecdsa-sha2-nistp256 and their sk- variants only; RSA is refused, see docs/operator-signing.md)",
                    key.algorithm().as_str()
                )));
            }
            let mut roles = Vec::new();
            for word in &entry.roles {
                let role = Role::parse(word)
                    .ok_or_else(|| bad(format!("unknown role {word:?} (operator, support)")))?;
                if !roles.contains(&role) {
                    roles.push(role);
                }
            }
            if roles.is_empty() {
                return Err(bad("no roles".into()));
            }
            if operators.iter().any(|o| o.principal == entry.principal) {
                return Err(bad("principal listed twice".into()));
            }
            if operators.iter().any(|o| o.key.key_data() == key.key_data()) {
                return Err(bad("public key listed twice".into()));
            }
            let fingerprint = key.fingerprint(HashAlg::Sha256).to_string();
            operators.push(Operator {
                principal: entry.principal.clone(),
                key,
                fingerprint,
                roles,
            });
        }
        Ok(Operators { operators })
    }

    /// The operator holding this key.
    pub fn find(&self, key: &KeyData) -> Option<&Operator> {
        self.operators.iter().find(|o| o.key.key_data() == key)
    }

    /// All operators.
    pub fn iter(&self) -> impl Iterator<Item = &Operator> {
        self.operators.iter()
    }
}

/// The trust root must be a regular file that only root or the agent itself can change:
/// writable by group or others, or owned by another user, and whoever holds that account could
/// add a key and sign destroys.
fn check_trusted(path: &Path, meta: &std::fs::Metadata) -> Result<(), OperatorsError> {
    use std::os::unix::fs::MetadataExt;
    let insecure = |problem| OperatorsError::Insecure {
        path: path.to_owned(),
        mode: meta.mode() & 0o7777,
        uid: meta.uid(),
        problem,
    };
    if !meta.is_file() {
        return Err(insecure("not a regular file"));
    }
    if meta.mode() & 0o022 != 0 {
        return Err(insecure(
            "writable by group or others (chmod go-w, e.g. 0640 root:felhom-agent)",
        ));
    }
    let owner = meta.uid();
    if owner != 0 && owner != rustix::process::geteuid().as_raw() {
        return Err(insecure("owned by neither root nor the agent's user"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const ED: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOPdsnCUJcGOI1sL8KgD1TgFex2EF/y0atwtHZuW8mZS test";

    fn file(entries: serde_json::Value) -> Vec<u8> {
        serde_json::to_vec(&serde_json::json!({ "operators": entries })).unwrap()
    }

    /// Issue 11 item 12: the trust root was read whatever its mode and owner.
    #[test]
    fn an_operators_file_others_can_change_is_refused_by_name_and_mode() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("operators.json");
        std::fs::write(
            &path,
            file(serde_json::json!([{"principal": "alice", "public_key": ED, "roles": ["operator"]}])),
        )
        .unwrap();
        let chmod = |mode| std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode));
        for ok in [0o600, 0o640, 0o644, 0o400] {
            chmod(ok).unwrap();
            let loaded = Operators::load(&path);
            assert!(loaded.is_ok(), "{ok:o}: {loaded:?}");
        }
        for bad in [0o666, 0o664, 0o646, 0o620, 0o602] {
            chmod(bad).unwrap();
            let err = Operators::load(&path).unwrap_err();
            let text = err.to_string();
            assert!(
                matches!(err, OperatorsError::Insecure { mode, .. } if mode == bad),
                "{text}"
            );
            assert!(text.contains(&path.display().to_string()), "{text}");
            assert!(text.contains(&format!("{bad:04o}")), "{text}");
        }
        chmod(0o644).unwrap();
        // Another owner (only root can hand a file to someone else; skipped otherwise).
        if rustix::process::geteuid().is_root() {
            std::os::unix::fs::chown(&path, Some(65534), None).unwrap();
            let err = Operators::load(&path).unwrap_err();
            assert!(
                matches!(err, OperatorsError::Insecure { uid: 65534, .. }),
                "{err}"
            );
        }
        // A directory where the file should be.
        let err = Operators::load(dir.path()).unwrap_err();
        assert!(matches!(err, OperatorsError::Insecure { .. }), "{err}");
    }

    #[test]
    fn loads_roles_and_answers_the_table() {
        let ops = Operators::parse(&file(serde_json::json!([
            {"principal": "alice", "public_key": ED, "roles": ["support"]}
        ])))
        .unwrap();
        let alice = ops.iter().next().unwrap();
        assert!(alice.fingerprint().starts_with("SHA256:"));
        for action in Action::ALL {
            let expected = matches!(
                action,
                Action::BackupForce | Action::RestoreTestRun | Action::BreakGlassDisable
            );
            assert_eq!(alice.may(action), expected, "{action}");
            assert!(Role::Operator.may(action));
        }
    }

    #[test]
    fn refuses_bad_entries() {
        let rsa = "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAAAgQDJ8p7H0lmUFK0QuYb6n2v9Wm7y4dm6c2P7lR5cV8c8H0VJ4mL1D8bHq6sU8YpA7bXQ2t0K3WcXQ4GJ8Vz0sKc0x9B5u2b8f3uQJ4n8hZ8Y0xG2i6lW8tqzN4s9r7bV2mS2vW8p0L7a3s8Y7D5o9i7E3r9V6Z1m7Q0u9r5T5y7w2m8k1Q== x";
        for (entries, needle) in [
            (
                serde_json::json!([{"principal": "a", "public_key": ED, "roles": ["admin"]}]),
                "unknown role",
            ),
            (
                serde_json::json!([{"principal": "a", "public_key": ED, "roles": []}]),
                "no roles",
            ),
            (
                serde_json::json!([{"principal": "a b", "public_key": ED, "roles": ["operator"]}]),
                "principal",
            ),
            (
                serde_json::json!([{"principal": "a", "public_key": "garbage", "roles": ["operator"]}]),
                "public_key",
            ),
            (
                serde_json::json!([{"principal": "a", "public_key": ED, "roles": ["operator"], "x": 1}]),
                "unknown field",
            ),
            (
                serde_json::json!([
                {"principal": "a", "public_key": ED, "roles": ["operator"]},
                {"principal": "b", "public_key": ED, "roles": ["support"]}]),
                "listed twice",
            ),
            (
                serde_json::json!([{"principal": "a", "public_key": rsa, "roles": ["operator"]}]),
                "public_key",
            ),
        ] {
            let err = Operators::parse(&file(entries)).unwrap_err().to_string();
            assert!(err.contains(needle), "{err} !~ {needle}");
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        // The fuzz target `operators` feeds the same function (issue 19).
        #[test]
        fn never_panics_on_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..1024)) {
            let _ = Operators::parse(&bytes);
        }

        #[test]
        fn never_panics_on_mutated_real_files(index in 0usize..400, byte in any::<u8>()) {
            let mut bytes = file(serde_json::json!([
                {"principal": "alice@example", "public_key": ED, "roles": ["operator", "support"]}
            ]));
            let i = index % bytes.len();
            bytes[i] = byte;
            if let Ok(ops) = Operators::parse(&bytes) {
                // Whatever parses names each operator once, with at least one role.
                for op in ops.iter() {
                    prop_assert!(!op.roles().is_empty());
                }
            }
        }

        #[test]
        fn never_panics_on_arbitrary_entries(
            principal in "\\PC{0,70}",
            key in "(ssh-ed25519|ecdsa-sha2-nistp256|sk-ssh-ed25519@openssh.com|ssh-rsa) [A-Za-z0-9+/=]{0,120}( \\PC{0,10})?",
            roles in proptest::collection::vec("operator|support|\\PC{0,8}", 0..4),
        ) {
            let _ = Operators::parse(&file(serde_json::json!([
                {"principal": principal, "public_key": key, "roles": roles}
            ])));
        }
    }
}
