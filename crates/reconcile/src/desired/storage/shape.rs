//! The shape checks of a target's `durable_id` (by type) and of its `creds` (an age file to
//! an X25519 recipient, never decrypted here).

use base64::Engine as _;

use super::{DurableId, SealedCreds, TargetType};
use crate::desired::{field, DesiredError};

/// The largest `creds` text accepted; an age file for one small JSON object is under 1 KiB.
pub const MAX_CREDS_BYTES: usize = 16 << 10;

pub(super) fn parse_durable_id(
    path: &str,
    kind: TargetType,
    s: &str,
) -> Result<DurableId, DesiredError> {
    let bad = |want: &str| {
        field(
            path,
            format!("{s:?} is not {want} (type {})", kind.as_str()),
        )
    };
    match kind {
        TargetType::LocalDir => {
            // PVE's dir `path` rule (DirPlugin.pm): `^/[-/a-zA-Z0-9_.@]+$`; no `..` on top.
            let ok = s.len() > 1
                && s.starts_with('/')
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-/_.@".contains(&b))
                && s.split('/').all(|c| c != "." && c != "..");
            ok.then(|| DurableId::Dir(s.to_owned()))
                .ok_or_else(|| bad("an absolute directory path"))
        }
        TargetType::Usb => is_fs_uuid(s)
            .then(|| DurableId::FsUuid(s.to_owned()))
            .ok_or_else(|| bad("a filesystem UUID")),
        TargetType::Nfs | TargetType::Cifs => {
            let (server, export) = split_server(s).ok_or_else(|| bad("server:export"))?;
            let ok = if kind == TargetType::Nfs {
                export.len() > 1
                    && export.starts_with('/')
                    && export
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"-/_.@".contains(&b))
            } else {
                !export.is_empty()
                    && export.len() <= 80
                    && export
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"-_.$".contains(&b))
            };
            if !ok {
                return Err(bad(if kind == TargetType::Nfs {
                    "server:/export"
                } else {
                    "server:share"
                }));
            }
            Ok(DurableId::Share {
                server: server.to_owned(),
                export: export.to_owned(),
            })
        }
        TargetType::Pbs => {
            let want = "server:datastore@FINGERPRINT (SHA-256, 32 pairs AA:BB:…)";
            let (rest, fingerprint) = s.rsplit_once('@').ok_or_else(|| bad(want))?;
            let (server, datastore) = split_server(rest).ok_or_else(|| bad(want))?;
            // PBS's datastore name is a SAFE_ID: `[A-Za-z0-9_][A-Za-z0-9._\-]*`.
            let ds_ok = datastore.len() <= 32
                && datastore
                    .bytes()
                    .next()
                    .is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_')
                && datastore
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
            if !ds_ok || !is_sha256_fingerprint(fingerprint) {
                return Err(bad(want));
            }
            Ok(DurableId::Pbs {
                server: server.to_owned(),
                datastore: datastore.to_owned(),
                fingerprint: fingerprint.to_owned(),
            })
        }
    }
}

/// `server:rest` where server is a host name, an IPv4 address or a bracketed IPv6 address.
fn split_server(s: &str) -> Option<(&str, &str)> {
    let (server, rest) = if s.starts_with('[') {
        let end = s.find("]:")?;
        (&s[..=end], &s[end + 2..])
    } else {
        s.split_once(':')?
    };
    let host_ok = if let Some(inner) = server.strip_prefix('[').and_then(|x| x.strip_suffix(']')) {
        inner.parse::<std::net::Ipv6Addr>().is_ok()
    } else {
        !server.is_empty()
            && server.len() <= 253
            && server.split('.').all(|label| {
                !label.is_empty()
                    && label.len() <= 63
                    && !label.starts_with('-')
                    && !label.ends_with('-')
                    && label
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-')
            })
    };
    host_ok.then_some((server, rest))
}

/// The names `/dev/disk/by-uuid` uses: a 8-4-4-4-12 UUID (ext4, xfs, btrfs), `XXXX-XXXX`
/// (vfat, exfat) or 16 hex digits (ntfs). Case is kept: the entry names are case-sensitive.
fn is_fs_uuid(s: &str) -> bool {
    let groups: Vec<&str> = s.split('-').collect();
    let lens: Vec<usize> = groups.iter().map(|g| g.len()).collect();
    let hex = groups
        .iter()
        .all(|g| !g.is_empty() && g.bytes().all(|b| b.is_ascii_hexdigit()));
    hex && matches!(lens.as_slice(), [8, 4, 4, 4, 12] | [4, 4] | [16])
}

/// PBS's fingerprint format: `([A-Fa-f0-9]{2}:){31}[A-Fa-f0-9]{2}`.
fn is_sha256_fingerprint(s: &str) -> bool {
    let pairs: Vec<&str> = s.split(':').collect();
    pairs.len() == 32
        && pairs
            .iter()
            .all(|p| p.len() == 2 && p.bytes().all(|b| b.is_ascii_hexdigit()))
}

pub(super) const AGE_ARMOR_BEGIN: &str = "-----BEGIN AGE ENCRYPTED FILE-----";
pub(super) const AGE_ARMOR_END: &str = "-----END AGE ENCRYPTED FILE-----";
const AGE_HEADER: &[u8] = b"age-encryption.org/v1\n";

/// Checks that `text` is an age file encrypted to an X25519 recipient, armored (the age
/// spec's PEM-like armor) or as one base64 string. Not decrypted: that needs the host's
/// identity and is the storage reconciler's job; this only refuses what can never decrypt
/// (plain text, a passphrase-encrypted file), early and without echoing it.
pub(super) fn parse_creds(path: &str, text: &str) -> Result<SealedCreds, DesiredError> {
    let not_age = |why: &str| field(path, format!("not an age-encrypted file: {why}"));
    if text.len() > MAX_CREDS_BYTES {
        return Err(not_age(&format!("longer than {MAX_CREDS_BYTES} bytes")));
    }
    let body: String = if let Some(rest) = text.trim().strip_prefix(AGE_ARMOR_BEGIN) {
        let inner = rest
            .strip_suffix(AGE_ARMOR_END)
            .ok_or_else(|| not_age("armor without its end line"))?;
        inner.split_whitespace().collect()
    } else {
        text.trim().to_owned()
    };
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(body.as_bytes())
        .map_err(|_| not_age("neither age armor nor base64"))?;
    if !bytes.starts_with(AGE_HEADER) {
        return Err(not_age("no age-encryption.org/v1 header"));
    }
    // The recipient stanzas precede the `---` MAC line; one of them must be X25519 (the host's
    // `age1…` recipient), or this host can never open it.
    let header_end =
        find(&bytes, b"\n---").ok_or_else(|| not_age("header without its MAC line"))?;
    if find(&bytes[..header_end], b"\n-> X25519 ").is_none() {
        return Err(not_age(
            "no X25519 recipient (encrypt to this host's age1… recipient)",
        ));
    }
    Ok(SealedCreds(text.to_owned()))
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}
