//! API token authentication (`Authorization: PVEAPIToken=USER@REALM!TOKENID=SECRET`), as
//! pve-http-server `Formatter.pm:78-88` parses it and pve-access-control
//! `AccessControl.pm:487-513` verifies it.

use std::sync::LazyLock;

use crate::acl::{split_tokenid, Access};
use crate::envelope::ApiError;

static TOKEN_RE: LazyLock<regex::Regex> = LazyLock::new(|| {
    regex::Regex::new(r"(?:^|\s)PVEAPIToken(?:=| )([^;]*)")
        .unwrap_or_else(|e| panic!("static token regex: {e}"))
});

/// Reason phrase of a 401 without credentials (pve-manager `HTTPServer.pm:93`).
pub const NO_TICKET: &str = "No ticket";
/// Reason phrase of a 401 with bad credentials.
pub const AUTH_FAILED: &str = "Authentication failed!";

/// The authenticated token id (`user@realm!tokenid`) or a 401.
pub fn authenticate(access: &Access, header: Option<&str>) -> Result<String, ApiError> {
    let header = header.ok_or(ApiError::Unauthorized(NO_TICKET))?;
    let raw = TOKEN_RE
        .captures(header)
        .map(|c| c[1].to_string())
        .ok_or(ApiError::Unauthorized(NO_TICKET))?;
    let value = percent_encoding::percent_decode_str(&raw)
        .decode_utf8()
        .map_err(|_| ApiError::Unauthorized(AUTH_FAILED))?
        .into_owned();
    // The token id never contains '=', the secret may: split at the last '='.
    let (tokenid, secret) = value
        .rsplit_once('=')
        .ok_or(ApiError::Unauthorized(AUTH_FAILED))?;
    let (user, name) = split_tokenid(tokenid).ok_or(ApiError::Unauthorized(AUTH_FAILED))?;
    let token = access
        .users
        .get(user)
        .and_then(|u| u.tokens.get(name))
        .ok_or(ApiError::Unauthorized(AUTH_FAILED))?;
    if !constant_time_eq(token.secret.as_bytes(), secret.as_bytes()) {
        return Err(ApiError::Unauthorized(AUTH_FAILED));
    }
    Ok(tokenid.to_string())
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::State;

    #[test]
    fn token_header_forms() {
        let st = State::seed("pve", 0, 1_700_000_000).expect("seed");
        let secret = st.access.users["felhom-agent@pve"].tokens["agent"]
            .secret
            .clone();
        let ok = authenticate(
            &st.access,
            Some(&format!("PVEAPIToken=felhom-agent@pve!agent={secret}")),
        );
        assert_eq!(ok.as_deref(), Ok("felhom-agent@pve!agent"));
        let spaced = authenticate(
            &st.access,
            Some(&format!("PVEAPIToken felhom-agent@pve!agent={secret}")),
        );
        assert_eq!(spaced.as_deref(), Ok("felhom-agent@pve!agent"));
        assert_eq!(
            authenticate(&st.access, Some("PVEAPIToken=felhom-agent@pve!agent=wrong")),
            Err(ApiError::Unauthorized(AUTH_FAILED))
        );
        assert_eq!(
            authenticate(&st.access, None),
            Err(ApiError::Unauthorized(NO_TICKET))
        );
    }
}
