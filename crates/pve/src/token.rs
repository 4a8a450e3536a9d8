//! The API token (`user@realm!tokenid=secret`) and the `Authorization` header built from it.
//!
//! The secret never leaves this type except inside the header value, which is marked sensitive
//! so HTTP-level logging does not print it. `Debug` and `Display` show `<redacted>`.

use std::fmt;
use std::str::FromStr;

use reqwest::header::HeaderValue;

use crate::error::Error;

/// A PVE API token. Parse it from `user@realm!tokenid=secret`.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiToken {
    user: String,
    realm: String,
    token_name: String,
    secret: String,
}

impl ApiToken {
    /// The full token id, `user@realm!tokenid`, as PVE names it in UPIDs, ACLs and
    /// `/access/permissions?userid=`.
    pub fn token_id(&self) -> String {
        format!("{}@{}!{}", self.user, self.realm, self.token_name)
    }

    /// The owning user, `user@realm`.
    pub fn user_id(&self) -> String {
        format!("{}@{}", self.user, self.realm)
    }

    /// The value for the `Authorization` header: `PVEAPIToken=user@realm!tokenid=secret`
    /// (pve-http-server `AnyEvent.pm:2084`), marked sensitive.
    pub fn header_value(&self) -> Result<HeaderValue, Error> {
        let mut value =
            HeaderValue::from_str(&format!("PVEAPIToken={}={}", self.token_id(), self.secret))
                .map_err(|_| {
                    Error::invalid("api token", "contains characters not allowed in a header")
                })?;
        value.set_sensitive(true);
        Ok(value)
    }
}

impl FromStr for ApiToken {
    type Err = Error;

    /// Parses `user@realm!tokenid=secret`. Errors never include the input (it holds a secret).
    fn from_str(s: &str) -> Result<Self, Error> {
        let s = s.trim();
        // PVE splits at the last '=' (pve-access-control AccessControl.pm:487-513); the token
        // id itself cannot contain '='.
        let (id, secret) = s
            .rsplit_once('=')
            .ok_or_else(|| Error::invalid("api token", "expected user@realm!tokenid=secret"))?;
        let (user_realm, token_name) = id
            .split_once('!')
            .ok_or_else(|| Error::invalid("api token", "missing '!tokenid' after user@realm"))?;
        let (user, realm) = user_realm
            .rsplit_once('@')
            .ok_or_else(|| Error::invalid("api token", "missing '@realm' in the user"))?;
        if user.is_empty() || realm.is_empty() {
            return Err(Error::invalid(
                "api token",
                "user and realm must not be empty",
            ));
        }
        // pve-access-control: token names match [A-Za-z][A-Za-z0-9.\-_]+
        let name_ok = token_name.len() >= 2
            && token_name.starts_with(|c: char| c.is_ascii_alphabetic())
            && token_name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'));
        if !name_ok {
            return Err(Error::invalid(
                "api token",
                "token name must match [A-Za-z][A-Za-z0-9._-]+",
            ));
        }
        if secret.is_empty() {
            return Err(Error::invalid("api token", "the secret is empty"));
        }
        if secret.chars().any(|c| c.is_control() || c.is_whitespace()) {
            return Err(Error::invalid(
                "api token",
                "the secret contains blanks or control characters",
            ));
        }
        Ok(ApiToken {
            user: user.to_owned(),
            realm: realm.to_owned(),
            token_name: token_name.to_owned(),
            secret: secret.to_owned(),
        })
    }
}

impl fmt::Display for ApiToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}=<redacted>", self.token_id())
    }
}

impl fmt::Debug for ApiToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ApiToken({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "0b1c2d3e-aaaa-bbbb-cccc-1234567890ab";

    #[test]
    fn parses_and_redacts() {
        let t: ApiToken = format!("felhom-agent@pve!agent={SECRET}").parse().unwrap();
        assert_eq!(t.token_id(), "felhom-agent@pve!agent");
        assert_eq!(t.user_id(), "felhom-agent@pve");
        assert_eq!(t.to_string(), "felhom-agent@pve!agent=<redacted>");
        assert!(!format!("{t:?}").contains(SECRET));
        assert!(!format!("{t:#?}").contains(SECRET));
        let h = t.header_value().unwrap();
        assert!(h.is_sensitive());
        assert_eq!(
            h.to_str().unwrap(),
            format!("PVEAPIToken=felhom-agent@pve!agent={SECRET}")
        );
    }

    #[test]
    fn rejects_malformed_without_echoing() {
        for bad in [
            "felhom-agent@pve!agentS3CR3T",
            "felhom-agent@pve=S3CR3T",
            "felhom-agent!agent=S3CR3T",
            "@pve!agent=S3CR3T",
            "a@pve!x=S3CR3T",
            "a@pve!9bad=S3CR3T",
            "a@pve!agent=",
            "a@pve!agent=S3C R3T",
        ] {
            let e = bad.parse::<ApiToken>().unwrap_err().to_string();
            assert!(e.starts_with("invalid api token"), "{bad}: {e}");
            assert!(!e.contains("S3C"), "{bad}: {e}");
        }
    }

    #[test]
    fn realm_with_at_in_user_is_split_at_last_at() {
        let t: ApiToken = "a@b@pam!tok=s".parse().unwrap();
        assert_eq!(t.user_id(), "a@b@pam");
    }
}
