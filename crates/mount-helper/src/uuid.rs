//! The one argument the helper takes: a filesystem UUID exactly as udev names it.

use std::fmt;

use crate::Error;

/// A filesystem UUID in the form udev gives it under `/dev/disk/by-uuid/`: the 36-character form
/// of ext4/xfs/btrfs in lower-case hex, or the `XXXX-XXXX` volume serial of vfat/exfat in
/// upper-case hex.
///
/// These are the shapes of `privileged::FsUuid` *after* its case normalization, which is what the
/// agent passes (and all the sudoers rule allows). Unlike `FsUuid`, the helper does not normalize:
/// input in the other case is refused, so the string checked is byte for byte the string used
/// to build both paths. `tests/it/agreement.rs` checks the two types agree.
///
/// Neither shape can hold `/`, `.`, a space or a leading `-`, so the UUID is always one path
/// component and never an option.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct FsUuid(String);

impl FsUuid {
    /// Validates a UUID.
    pub fn parse(s: &str) -> Result<Self, Error> {
        let groups: Vec<&str> = s.split('-').collect();
        let lens: Vec<usize> = groups.iter().map(|g| g.len()).collect();
        let all = |pred: fn(&u8) -> bool| groups.iter().all(|g| g.as_bytes().iter().all(pred));
        let long =
            lens == [8, 4, 4, 4, 12] && all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(b));
        let short = lens == [4, 4] && all(|b| b.is_ascii_digit() || (b'A'..=b'F').contains(b));
        if long || short {
            Ok(FsUuid(s.to_owned()))
        } else {
            Err(Error::InvalidUuid {
                value: s.chars().take(64).collect(),
            })
        }
    }

    /// The UUID.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for FsUuid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_both_udev_forms() {
        for good in ["3f2504e0-4f89-11d3-9a0c-0305e82c3301", "1A2B-3C4D"] {
            assert_eq!(FsUuid::parse(good).unwrap().as_str(), good);
        }
    }

    #[test]
    fn refuses_everything_else() {
        for bad in [
            "",
            "-",
            "../../etc",
            "3F2504E0-4F89-11D3-9A0C-0305E82C3301",
            "1a2b-3c4d",
            "3f2504e0-4f89-11d3-9a0c-0305e82c330",
            "3f2504e0-4f89-11d3-9a0c-0305e82c3301/x",
            "3f2504e0-4f89-11d3-9a0c-0305e82c3301 ",
            "3f2504e04f8911d39a0c0305e82c3301",
            "1A2B-3C4G",
            "1A2B3C4D",
            "+1A2-3C4D",
            "1A2B-3C4D\n",
        ] {
            assert!(
                matches!(FsUuid::parse(bad), Err(Error::InvalidUuid { .. })),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn long_input_is_cut_in_the_error() {
        let err = FsUuid::parse(&"a".repeat(1000)).unwrap_err();
        assert!(err.to_string().len() < 200, "{err}");
    }
}
