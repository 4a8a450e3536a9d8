//! A mount table, `/proc/<pid>/mountinfo` (proc(5)): which devices are mounted, and where.

use std::path::Path;

use crate::Error;

/// A device number, `major:minor`, as sysfs `dev` files and mountinfo field 3 write it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DevNum {
    /// Major number.
    pub major: u32,
    /// Minor number.
    pub minor: u32,
}

impl DevNum {
    /// Parses `8:17` (surrounding white space, such as sysfs's trailing newline, is ignored).
    pub fn parse(s: &str) -> Option<DevNum> {
        let (major, minor) = s.trim().split_once(':')?;
        let num = |s: &str| {
            if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
                s.parse().ok()
            } else {
                None
            }
        };
        Some(DevNum {
            major: num(major)?,
            minor: num(minor)?,
        })
    }
}

/// One line of the mount table, with the fields the helper needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    /// Field 3: the device number of the mounted filesystem (for btrfs an anonymous `0:N`).
    pub dev: DevNum,
    /// Field 5: the mount point, unescaped.
    pub mount_point: String,
    /// The mount source after the ` - ` separator (`/dev/sdb1`), unescaped.
    pub source: String,
}

/// Parses a whole mount table. A line that does not have the shape proc(5) describes is an
/// error, never skipped: a check that skips lines could miss the mount it is looking for.
pub fn parse(text: &str, path: &Path) -> Result<Vec<Mount>, Error> {
    text.lines()
        .enumerate()
        .filter(|(_, line)| !line.is_empty())
        .map(|(index, line)| {
            parse_line(line).ok_or_else(|| Error::Mountinfo {
                path: path.to_owned(),
                line: index + 1,
            })
        })
        .collect()
}

/// `36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw,errors=continue`: six fixed
/// fields, zero or more optional fields, `-`, then type, source and super options.
fn parse_line(line: &str) -> Option<Mount> {
    let fields: Vec<&str> = line.split(' ').collect();
    let separator = fields.iter().skip(6).position(|f| *f == "-")? + 6;
    let dev = DevNum::parse(fields.get(2)?)?;
    let mount_point = unescape(fields.get(4)?);
    let source = unescape(fields.get(separator + 2)?);
    Some(Mount {
        dev,
        mount_point,
        source,
    })
}

/// The kernel writes space, tab, newline and backslash in paths as `\040`, `\011`, `\012`,
/// `\134` (fs/proc_namespace.c, `mangle`).
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes
            .get(i + 1..i + 4)
            .filter(|d| bytes[i] == b'\\' && d.iter().all(|b| (b'0'..=b'7').contains(b)));
        match octal {
            Some(d) => {
                let value = d.iter().fold(0u32, |acc, b| acc * 8 + u32::from(b - b'0'));
                out.push(u8::try_from(value).unwrap_or(b'?'));
                i += 4;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    const TABLE: &str = "\
22 1 252:1 / / rw,relatime shared:1 - ext4 /dev/mapper/pve-root rw,errors=remount-ro
25 22 0:21 / /proc rw,nosuid,nodev,noexec,relatime shared:12 - proc proc rw
90 22 8:17 / /media/my\\040disk rw,relatime shared:40 master:2 - vfat /dev/sdb1 rw,fmask=0022
91 22 0:45 / /srv/x rw,relatime - btrfs /dev/sdc1 rw,space_cache=v2
";

    #[test]
    fn parses_fields_and_optional_tags() {
        let mounts = parse(TABLE, Path::new("mountinfo")).unwrap();
        assert_eq!(mounts.len(), 4);
        assert_eq!(
            mounts[2],
            Mount {
                dev: DevNum {
                    major: 8,
                    minor: 17
                },
                mount_point: "/media/my disk".to_owned(),
                source: "/dev/sdb1".to_owned(),
            }
        );
        assert_eq!(mounts[0].source, "/dev/mapper/pve-root");
        assert_eq!(mounts[1].mount_point, "/proc");
        assert_eq!(
            mounts[3].dev,
            DevNum {
                major: 0,
                minor: 45
            }
        );
    }

    #[test]
    fn a_malformed_line_fails_closed() {
        for bad in [
            "garbage",
            "22 1 252:1 / / rw,relatime shared:1 ext4 /dev/x rw",
            "22 1 252 / / rw - ext4 /dev/x rw",
            "22 1 252:1 / / rw -",
        ] {
            let text = format!("{TABLE}{bad}\n");
            let err = parse(&text, Path::new("mountinfo")).unwrap_err();
            assert!(
                matches!(err, Error::Mountinfo { line: 5, .. }),
                "{bad}: {err:?}"
            );
        }
    }

    #[test]
    fn dev_numbers() {
        assert_eq!(
            DevNum::parse("8:17\n"),
            Some(DevNum {
                major: 8,
                minor: 17
            })
        );
        for bad in ["", "8", "8:", ":1", "8:1x", "-8:1", "+8:1", "8:1:2"] {
            assert_eq!(DevNum::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn unescape_octal_only() {
        assert_eq!(unescape("a\\040b\\134c\\011"), "a b\\c\t");
        assert_eq!(unescape("a\\x\\04"), "a\\x\\04");
    }
}
