//! Validated arguments: the only values that can reach a privileged command line.
//!
//! Each type's constructor is the single place its shape is decided, and each shape is mirrored
//! by a regular expression in `packaging/sudoers.d/felhom-agent` (tests/it/sudoers.rs checks
//! that the two agree). Nothing here accepts a space, a comma where a tool would split on it, a
//! slash where a path could escape, or a leading `-` where a tool would read an option.

use std::fmt;
use std::str::FromStr;

use crate::Error;

fn is_alnum(c: char) -> bool {
    c.is_ascii_alphanumeric()
}

/// A guest id as PVE allows it: 100 ..= 999 999 999 (pve-common `JSONSchema.pm`, `pve-vmid`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Vmid(u32);

impl Vmid {
    /// Smallest id PVE accepts.
    pub const MIN: u32 = 100;
    /// Largest id PVE accepts.
    pub const MAX: u32 = 999_999_999;

    /// Validates a numeric id.
    pub fn new(id: u32) -> Result<Self, Error> {
        if (Self::MIN..=Self::MAX).contains(&id) {
            Ok(Vmid(id))
        } else {
            Err(Error::invalid(
                "vmid",
                &id.to_string(),
                "must be between 100 and 999999999",
            ))
        }
    }

    /// The numeric id.
    pub fn get(self) -> u32 {
        self.0
    }
}

impl FromStr for Vmid {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        // u32::from_str accepts a leading '+', which no tool should see.
        if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) || s.starts_with('0') {
            return Err(Error::invalid(
                "vmid",
                s,
                "must be a decimal number without sign or leading zero",
            ));
        }
        let id = s
            .parse::<u32>()
            .map_err(|_| Error::invalid("vmid", s, "must be between 100 and 999999999"))?;
        Vmid::new(id)
    }
}

impl fmt::Display for Vmid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A filesystem UUID as udev names it under `/dev/disk/by-uuid/`: the 36-character form of
/// ext4/xfs/btrfs (lower-case hex) or the `XXXX-XXXX` volume serial of vfat/exfat (upper-case).
///
/// Input in the other case is normalized to the case udev uses, so the link name matches.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FsUuid(String);

impl FsUuid {
    /// Validates and normalizes a UUID.
    pub fn parse(s: &str) -> Result<Self, Error> {
        let groups: Vec<&str> = s.split('-').collect();
        let hex = |g: &str| !g.is_empty() && g.bytes().all(|b| b.is_ascii_hexdigit());
        let lens: Vec<usize> = groups.iter().map(|g| g.len()).collect();
        if groups.iter().all(|g| hex(g)) {
            if lens == [8, 4, 4, 4, 12] {
                return Ok(FsUuid(s.to_ascii_lowercase()));
            }
            if lens == [4, 4] {
                return Ok(FsUuid(s.to_ascii_uppercase()));
            }
        }
        Err(Error::invalid(
            "fs uuid",
            s,
            "must be a 36-character UUID (ext4/xfs) or XXXX-XXXX (vfat)",
        ))
    }

    /// The normalized UUID.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for FsUuid {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        FsUuid::parse(s)
    }
}

impl fmt::Display for FsUuid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A PVE storage id: `[a-zA-Z][a-zA-Z0-9._-]*[a-zA-Z0-9]`, as `PVE::JSONSchema::parse_storage_id`
/// checks it (pve-common `JSONSchema.pm`), capped here at 64 characters.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct StorageId(String);

impl StorageId {
    /// Validates a storage id.
    pub fn parse(s: &str) -> Result<Self, Error> {
        if is_storage_id(s) {
            Ok(StorageId(s.to_owned()))
        } else {
            Err(Error::invalid(
                "storage id",
                s,
                "must be 2-64 characters of letters, digits, '.', '_', '-', starting with a letter and ending with a letter or digit",
            ))
        }
    }

    /// The id.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

fn is_storage_id(s: &str) -> bool {
    let first = s.chars().next();
    let last = s.chars().last();
    (2..=64).contains(&s.len())
        && first.is_some_and(|c| c.is_ascii_alphabetic())
        && last.is_some_and(is_alnum)
        && s.chars()
            .all(|c| is_alnum(c) || matches!(c, '.' | '_' | '-'))
}

impl FromStr for StorageId {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        StorageId::parse(s)
    }
}

impl fmt::Display for StorageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A container template volume, `storage:vztmpl/name.tar.(gz|xz|zst|bz2)`.
///
/// The name is one path component (no `/`), starts with a letter or digit (so never `..`), and
/// ends in one of the archive suffixes PVE accepts for templates (pve-storage `Storage.pm`,
/// `$VZTMPL_EXT_RE_1`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TemplateVolume {
    storage: StorageId,
    name: String,
}

const TEMPLATE_SUFFIXES: [&str; 4] = [".tar.gz", ".tar.xz", ".tar.zst", ".tar.bz2"];

impl TemplateVolume {
    /// Validates `storage:vztmpl/name`.
    pub fn parse(s: &str) -> Result<Self, Error> {
        let bad = |reason| Error::invalid("template volume", s, reason);
        let (storage, rest) = s
            .split_once(':')
            .ok_or_else(|| bad("must look like storage:vztmpl/name.tar.zst"))?;
        let storage =
            StorageId::parse(storage).map_err(|_| bad("the storage part is not a storage id"))?;
        let name = rest
            .strip_prefix("vztmpl/")
            .ok_or_else(|| bad("the volume must be under vztmpl/"))?;
        let stem_ok = name.len() <= 200
            && name.chars().next().is_some_and(is_alnum)
            && name
                .chars()
                .all(|c| is_alnum(c) || matches!(c, '.' | '_' | '-' | '+'));
        if !stem_ok {
            return Err(bad(
                "the file name must be letters, digits, '.', '_', '-', '+', starting with a letter or digit",
            ));
        }
        if !TEMPLATE_SUFFIXES
            .iter()
            .any(|suffix| name.len() > suffix.len() && name.ends_with(suffix))
        {
            return Err(bad(
                "the file name must end in .tar.gz, .tar.xz, .tar.zst or .tar.bz2",
            ));
        }
        Ok(TemplateVolume {
            storage,
            name: name.to_owned(),
        })
    }

    /// The storage holding the template.
    pub fn storage(&self) -> &StorageId {
        &self.storage
    }

    /// The archive's file name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl FromStr for TemplateVolume {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        TemplateVolume::parse(s)
    }
}

impl fmt::Display for TemplateVolume {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:vztmpl/{}", self.storage, self.name)
    }
}

/// A host name that is one RFC 1123 label: 1-63 letters, digits and `-`, not starting or ending
/// with `-`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Hostname(String);

impl Hostname {
    /// Validates a label.
    pub fn parse(s: &str) -> Result<Self, Error> {
        let ok = (1..=63).contains(&s.len())
            && s.chars().all(|c| is_alnum(c) || c == '-')
            && !s.starts_with('-')
            && !s.ends_with('-');
        if ok {
            Ok(Hostname(s.to_owned()))
        } else {
            Err(Error::invalid(
                "hostname",
                s,
                "must be 1-63 letters, digits or '-', not starting or ending with '-'",
            ))
        }
    }

    /// The label.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for Hostname {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        Hostname::parse(s)
    }
}

impl fmt::Display for Hostname {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A whole block device smartctl may read: `/dev/sd[a-z]{1,3}` or `/dev/nvme<N>n<M>`
/// (never a partition, never a symlink path, never anything outside `/dev`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct BlockDevice(String);

impl BlockDevice {
    /// Validates a device path.
    pub fn parse(s: &str) -> Result<Self, Error> {
        let ok = match s.strip_prefix("/dev/") {
            Some(name) => is_sd_name(name) || is_nvme_namespace(name),
            None => false,
        };
        if ok {
            Ok(BlockDevice(s.to_owned()))
        } else {
            Err(Error::invalid(
                "block device",
                s,
                "must be /dev/sd[a-z]{1,3} or /dev/nvme<N>n<M>",
            ))
        }
    }

    /// The device path.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

fn is_sd_name(name: &str) -> bool {
    name.strip_prefix("sd")
        .is_some_and(|l| (1..=3).contains(&l.len()) && l.bytes().all(|b| b.is_ascii_lowercase()))
}

fn is_nvme_namespace(name: &str) -> bool {
    let digits = |d: &str| (1..=3).contains(&d.len()) && d.bytes().all(|b| b.is_ascii_digit());
    name.strip_prefix("nvme")
        .and_then(|rest| rest.split_once('n'))
        .is_some_and(|(ctrl, ns)| digits(ctrl) && digits(ns))
}

impl FromStr for BlockDevice {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        BlockDevice::parse(s)
    }
}

impl fmt::Display for BlockDevice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A Linux bridge name for the golden image's `net0`: 1-15 characters (IFNAMSIZ - 1) of letters,
/// digits, `_`, `-` and `.` (VLAN bridges like `vmbr0.100`), starting with a letter.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Bridge(String);

impl Bridge {
    /// Validates a bridge name.
    pub fn parse(s: &str) -> Result<Self, Error> {
        let ok = (1..=15).contains(&s.len())
            && s.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
            && s.chars()
                .all(|c| is_alnum(c) || matches!(c, '_' | '-' | '.'));
        if ok {
            Ok(Bridge(s.to_owned()))
        } else {
            Err(Error::invalid(
                "bridge",
                s,
                "must be 1-15 letters, digits, '_', '-', '.', starting with a letter",
            ))
        }
    }

    /// The bridge name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Bridge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Memory for the golden image's build container, in MiB: 64 ..= 1 048 576.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MemoryMib(u32);

impl MemoryMib {
    /// Validates a size.
    pub fn new(mib: u32) -> Result<Self, Error> {
        if (64..=1_048_576).contains(&mib) {
            Ok(MemoryMib(mib))
        } else {
            Err(Error::invalid(
                "memory",
                &mib.to_string(),
                "must be 64-1048576 MiB",
            ))
        }
    }

    /// The size in MiB.
    pub fn get(self) -> u32 {
        self.0
    }
}

/// CPU cores for the golden image's build container: 1 ..= 512.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Cores(u32);

impl Cores {
    /// Validates a core count.
    pub fn new(cores: u32) -> Result<Self, Error> {
        if (1..=512).contains(&cores) {
            Ok(Cores(cores))
        } else {
            Err(Error::invalid("cores", &cores.to_string(), "must be 1-512"))
        }
    }

    /// The count.
    pub fn get(self) -> u32 {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vmid_bounds() {
        assert!(Vmid::new(99).is_err());
        assert_eq!(Vmid::new(100).unwrap().get(), 100);
        assert_eq!(Vmid::new(999_999_999).unwrap().get(), 999_999_999);
        assert!(Vmid::new(1_000_000_000).is_err());
        assert!("+101".parse::<Vmid>().is_err());
        assert!("0101".parse::<Vmid>().is_err());
        assert_eq!("101".parse::<Vmid>().unwrap().get(), 101);
    }

    #[test]
    fn fs_uuid_forms_and_case() {
        let ext4 = FsUuid::parse("3F2504E0-4F89-11D3-9A0C-0305E82C3301").unwrap();
        assert_eq!(ext4.as_str(), "3f2504e0-4f89-11d3-9a0c-0305e82c3301");
        let vfat = FsUuid::parse("1a2b-3c4d").unwrap();
        assert_eq!(vfat.as_str(), "1A2B-3C4D");
        for bad in [
            "",
            "../../etc",
            "3f2504e0-4f89-11d3-9a0c-0305e82c330",
            "3f2504e0-4f89-11d3-9a0c-0305e82c3301/x",
            "1a2b-3c4g",
            "1a2b3c4d",
            "1a2b-3c4d ",
        ] {
            let err = FsUuid::parse(bad).unwrap_err();
            assert!(err.to_string().starts_with("invalid fs uuid"), "{err}");
        }
    }

    #[test]
    fn template_volume_rejects_traversal_and_options() {
        let t =
            TemplateVolume::parse("local:vztmpl/debian-12-standard_12.7-1_amd64.tar.zst").unwrap();
        assert_eq!(t.storage().as_str(), "local");
        assert_eq!(
            t.to_string(),
            "local:vztmpl/debian-12-standard_12.7-1_amd64.tar.zst"
        );
        for bad in [
            "local:vztmpl/../../etc/shadow.tar.gz",
            "local:vztmpl/sub/x.tar.gz",
            "local:iso/x.tar.gz",
            "local:vztmpl/x.img",
            "local:vztmpl/.tar.gz",
            "-x:vztmpl/a.tar.gz",
            "local:vztmpl/a b.tar.gz",
            "/var/lib/vz/template/cache/a.tar.gz",
        ] {
            assert!(TemplateVolume::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn hostname_is_one_label() {
        assert!(Hostname::parse("golden-debian12").is_ok());
        assert!(Hostname::parse(&"a".repeat(63)).is_ok());
        for bad in [
            "",
            "-a",
            "a-",
            "a.b",
            "a b",
            &"a".repeat(64),
            "--hookscript",
        ] {
            assert!(Hostname::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn block_device_shapes() {
        for good in [
            "/dev/sda",
            "/dev/sdaa",
            "/dev/sdzzz",
            "/dev/nvme0n1",
            "/dev/nvme12n3",
        ] {
            assert!(BlockDevice::parse(good).is_ok(), "{good}");
        }
        for bad in [
            "/dev/sda1",
            "/dev/sdaaaa",
            "/dev/nvme0n1p1",
            "/dev/nvme0",
            "/dev/../dev/sda",
            "/dev/mapper/x",
            "sda",
            "/dev/sdA",
            "/dev/disk/by-id/ata-x",
        ] {
            assert!(BlockDevice::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn storage_bridge_memory_cores() {
        assert!(StorageId::parse("local-lvm").is_ok());
        assert!(StorageId::parse("l").is_err());
        assert!(StorageId::parse("1local").is_err());
        assert!(StorageId::parse("local-").is_err());
        assert!(Bridge::parse("vmbr0.100").is_ok());
        assert!(Bridge::parse("vmbr0,x=1").is_err());
        assert!(MemoryMib::new(63).is_err());
        assert!(MemoryMib::new(2048).is_ok());
        assert!(Cores::new(0).is_err());
        assert!(Cores::new(4).is_ok());
    }

    #[test]
    fn invalid_value_is_cut_in_the_message() {
        let err = Hostname::parse(&"x".repeat(1000)).unwrap_err();
        assert!(err.to_string().len() < 200, "{err}");
    }
}
