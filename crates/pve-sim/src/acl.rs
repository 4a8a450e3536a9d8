//! Users, API tokens, roles and ACLs, and the privilege computation of
//! pve-access-control (`AccessControl.pm:1788-1880` roles, `RPCEnvironment.pm:99-176`
//! permissions with the privilege-separated token intersection).

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::roles;

/// Privilege name → propagate flag, as `RPCEnvironment::permissions` returns it.
pub type Privs = BTreeMap<String, bool>;

/// An API token of a user.
#[derive(Clone, Serialize, Deserialize)]
pub struct Token {
    /// The secret (a UUID, like PVE's).
    pub secret: String,
    /// Privilege separation: effective privileges are the owner's ∩ the token's ACLs.
    pub privsep: bool,
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Token")
            .field("secret", &"<redacted>")
            .field("privsep", &self.privsep)
            .finish()
    }
}

/// A user of the `pam` or `pve` realm.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct User {
    /// Token name (the part after `!`) → token.
    pub tokens: BTreeMap<String, Token>,
}

/// One ACL entry (`/etc/pve/user.cfg` `acl:` line).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct AclEntry {
    /// Normalised path (`/`, `/vms/101`, `/storage/local`).
    pub path: String,
    /// A user id (`felhom-agent@pve`) or a full token id (`felhom-agent@pve!agent`).
    pub ugid: String,
    /// Role name.
    pub role: String,
    /// Whether the role applies below `path` too.
    pub propagate: bool,
}

/// The access-control configuration of the simulated cluster.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Access {
    /// User id → user.
    pub users: BTreeMap<String, User>,
    /// Custom roles (name → privileges); built-in roles come from [`roles::builtin`].
    pub custom_roles: BTreeMap<String, Vec<String>>,
    /// ACL entries in insertion order.
    pub acls: Vec<AclEntry>,
}

/// PVE's `normalize_path`: collapse repeated slashes, drop a trailing slash.
pub fn normalize_path(path: &str) -> String {
    let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
    format!("/{}", parts.join("/"))
}

/// Split `user@realm!token` into (`user@realm`, `token`).
pub fn split_tokenid(id: &str) -> Option<(&str, &str)> {
    id.split_once('!')
}

impl Access {
    /// Privileges of a role (custom roles shadow nothing: built-in names win).
    pub fn role_privs(&self, role: &str) -> Vec<String> {
        roles::builtin(role)
            .or_else(|| self.custom_roles.get(role).cloned())
            .unwrap_or_default()
    }

    /// Set (or with `delete`, remove) an ACL entry.
    pub fn set_acl(&mut self, entry: AclEntry, delete: bool) {
        let path = normalize_path(&entry.path);
        self.acls
            .retain(|e| !(e.path == path && e.ugid == entry.ugid && e.role == entry.role));
        if !delete {
            self.acls.push(AclEntry { path, ..entry });
        }
    }

    /// Whether the id names an existing user or token.
    pub fn exists(&self, id: &str) -> bool {
        match split_tokenid(id) {
            Some((user, token)) => self
                .users
                .get(user)
                .is_some_and(|u| u.tokens.contains_key(token)),
            None => self.users.contains_key(id),
        }
    }

    /// `AccessControl::roles`: role → propagate for `ugid` on `path`. The walk goes from `/`
    /// down; at each level the id's own entries (token entries for a token id) replace what was
    /// inherited, and only propagating roles survive to deeper levels.
    fn roles(&self, ugid: &str, path: &str) -> BTreeMap<String, bool> {
        if ugid == "root@pam" {
            return BTreeMap::from([("Administrator".to_string(), true)]);
        }
        if let Some((user, token)) = split_tokenid(ugid) {
            match self.users.get(user).and_then(|u| u.tokens.get(token)) {
                None => return BTreeMap::new(),
                Some(t) if !t.privsep => return self.roles(user, path),
                Some(_) => {}
            }
        }
        let path = normalize_path(path);
        let comps: Vec<&str> = path.split('/').filter(|c| !c.is_empty()).collect();
        let mut levels = vec!["/".to_string()];
        for i in 0..comps.len() {
            levels.push(format!("/{}", comps[..=i].join("/")));
        }
        let mut roles = BTreeMap::new();
        let last = levels.len() - 1;
        for (i, level) in levels.iter().enumerate() {
            let is_final = i == last;
            let mut new: Option<BTreeMap<String, bool>> = None;
            for e in self
                .acls
                .iter()
                .filter(|e| &e.path == level && e.ugid == ugid)
            {
                if is_final || e.propagate {
                    new.get_or_insert_with(BTreeMap::new)
                        .insert(e.role.clone(), e.propagate);
                }
            }
            if let Some(new) = new {
                roles = new;
            }
        }
        if let Some(p) = roles.get("NoAccess") {
            return BTreeMap::from([("NoAccess".to_string(), *p)]);
        }
        roles
    }

    /// Effective privileges of `userid` (user or token id) on `path`. For a privsep token this
    /// is the intersection of the owner's and the token's privileges, propagate flags ANDed.
    pub fn permissions(&self, userid: &str, path: &str) -> Privs {
        let mut privs = Privs::new();
        for (role, propagate) in self.roles(userid, path) {
            for p in self.role_privs(&role) {
                let e = privs.entry(p).or_insert(false);
                *e = *e || propagate;
            }
        }
        if let Some((user, token)) = split_tokenid(userid) {
            let privsep = self
                .users
                .get(user)
                .and_then(|u| u.tokens.get(token))
                .is_some_and(|t| t.privsep);
            if privsep {
                let owner = self.permissions(user, path);
                privs.retain(|p, _| owner.contains_key(p));
                for (p, prop) in privs.iter_mut() {
                    *prop = *prop && owner.get(p).copied().unwrap_or(false);
                }
            }
        }
        privs
    }

    /// Whether `userid` holds every privilege in `privs` on `path`.
    pub fn has_all(&self, userid: &str, path: &str, privs: &[&str]) -> bool {
        let have = self.permissions(userid, path);
        privs.iter().all(|p| have.contains_key(*p))
    }

    /// Whether `userid` holds at least one privilege in `privs` on `path`.
    pub fn has_any(&self, userid: &str, path: &str, privs: &[&str]) -> bool {
        let have = self.permissions(userid, path);
        privs.iter().any(|p| have.contains_key(*p))
    }

    /// `check`: `Ok` or the 403 text "Permission check failed (<path>, <priv>)\n" naming the
    /// first missing privilege (pve-access-control `RPCEnvironment.pm` `check`).
    pub fn check(&self, userid: &str, path: &str, privs: &[&str]) -> Result<(), String> {
        let path = normalize_path(path);
        let have = self.permissions(userid, &path);
        match privs.iter().find(|p| !have.contains_key(**p)) {
            Some(missing) => Err(perm_message(&format!("{path}, {missing}"))),
            None => Ok(()),
        }
    }

    /// `check_any`: the 403 text names all privileges joined with `|`.
    pub fn check_any(&self, userid: &str, path: &str, privs: &[&str]) -> Result<(), String> {
        let path = normalize_path(path);
        if self.has_any(userid, &path, privs) {
            Ok(())
        } else {
            Err(perm_message(&format!("{path}, {}", privs.join("|"))))
        }
    }
}

/// `raise_perm_exc`: "Permission check failed (<what>)\n".
pub fn perm_message(what: &str) -> String {
    if what.is_empty() {
        "Permission check failed\n".to_string()
    } else {
        format!("Permission check failed ({what})\n")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn access() -> Access {
        let mut a = Access::default();
        let mut user = User::default();
        user.tokens.insert(
            "agent".into(),
            Token {
                secret: "s".into(),
                privsep: true,
            },
        );
        a.users.insert("agent@pve".into(), user);
        a
    }

    fn acl(path: &str, ugid: &str, role: &str, propagate: bool) -> AclEntry {
        AclEntry {
            path: path.into(),
            ugid: ugid.into(),
            role: role.into(),
            propagate,
        }
    }

    #[test]
    fn privsep_token_gets_intersection_of_user_and_token() {
        let mut a = access();
        a.set_acl(acl("/", "agent@pve", "PVEAuditor", true), false);
        assert!(a.permissions("agent@pve!agent", "/vms/101").is_empty());
        a.set_acl(acl("/", "agent@pve!agent", "FelhomAgent", true), false);
        let p = a.permissions("agent@pve!agent", "/vms/101");
        assert!(p.contains_key("VM.Audit"));
        assert!(
            !p.contains_key("VM.PowerMgmt"),
            "user lacks it, so the token must too"
        );
    }

    #[test]
    fn deeper_entry_replaces_inherited_roles_and_propagate_matters() {
        let mut a = access();
        a.set_acl(acl("/", "agent@pve", "FelhomAgent", true), false);
        a.set_acl(acl("/vms/101", "agent@pve", "PVEAuditor", false), false);
        assert!(!a
            .permissions("agent@pve", "/vms/101")
            .contains_key("VM.PowerMgmt"));
        assert!(a
            .permissions("agent@pve", "/vms/102")
            .contains_key("VM.PowerMgmt"));
        a.set_acl(acl("/", "agent@pve", "FelhomAgent", false), false);
        assert!(a.permissions("agent@pve", "/vms/102").is_empty());
        assert!(a.permissions("agent@pve", "/").contains_key("Sys.Audit"));
    }

    #[test]
    fn check_messages_match_pve() {
        let a = access();
        assert_eq!(
            a.check("agent@pve!agent", "/vms/101", &["VM.PowerMgmt"]),
            Err("Permission check failed (/vms/101, VM.PowerMgmt)\n".into())
        );
        assert_eq!(
            a.check_any("agent@pve", "/storage/local", &["Datastore.Audit", "Datastore.AllocateSpace"]),
            Err("Permission check failed (/storage/local, Datastore.Audit|Datastore.AllocateSpace)\n".into())
        );
        assert!(a.check("root@pam", "/", &["Sys.Modify"]).is_ok());
    }
}
