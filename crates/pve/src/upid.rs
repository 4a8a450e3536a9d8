//! The UPID, PVE's task id: `UPID:node:PID:PSTART:STARTTIME:type:id:user:`.
//!
//! Parsed with PVE's own decode regex (pve-common `src/PVE/UPID.pm:7-58`). The original text
//! is kept verbatim, so `Display` round-trips exactly what PVE sent: task paths are looked up by
//! that string, and re-formatting (hex case, a 9-digit pstart) must never change it.

use std::fmt;
use std::str::FromStr;
use std::sync::{Arc, OnceLock};

use regex::Regex;

use crate::error::Error;

/// A parsed task id. Equality is on the exact text. Cheap to clone (shared).
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Upid(Arc<UpidFields>);

#[derive(PartialEq, Eq, Hash)]
struct UpidFields {
    raw: String,
    node: String,
    pid: u32,
    pstart: u64,
    starttime: u64,
    task_type: String,
    id: String,
    user: String,
}

impl Upid {
    /// Builds a UPID the way PVE formats one (`%08X` for pid, pstart and starttime).
    pub fn new(
        node: &str,
        pid: u32,
        pstart: u64,
        starttime: u64,
        task_type: &str,
        id: &str,
        user: &str,
    ) -> Result<Self, Error> {
        format!("UPID:{node}:{pid:08X}:{pstart:08X}:{starttime:08X}:{task_type}:{id}:{user}:")
            .parse()
    }

    /// The node the task runs on; task status and log must be read from this node.
    pub fn node(&self) -> &str {
        &self.0.node
    }
    /// Worker process id.
    pub fn pid(&self) -> u32 {
        self.0.pid
    }
    /// Worker process start time (clock ticks since boot).
    pub fn pstart(&self) -> u64 {
        self.0.pstart
    }
    /// Task start, seconds since the epoch.
    pub fn starttime(&self) -> u64 {
        self.0.starttime
    }
    /// Task type (`vzstart`, `vzdump`, `vzsnapshot`, ...).
    pub fn task_type(&self) -> &str {
        &self.0.task_type
    }
    /// Task object id (usually the vmid; empty e.g. for a multi-guest vzdump).
    pub fn id(&self) -> &str {
        &self.0.id
    }
    /// The user who started it, including `!tokenid` for API tokens.
    pub fn user(&self) -> &str {
        &self.0.user
    }
    /// The exact text.
    pub fn as_str(&self) -> &str {
        &self.0.raw
    }
}

fn upid_regex() -> &'static Regex {
    static RE: OnceLock<Regex> = OnceLock::new();
    RE.get_or_init(|| {
        // Verbatim from pve-common UPID.pm (decode), trailing colon included.
        Regex::new(
            r"^UPID:([a-zA-Z0-9]([a-zA-Z0-9\-]*[a-zA-Z0-9])?):([0-9A-Fa-f]{8}):([0-9A-Fa-f]{8,9}):([0-9A-Fa-f]{8}):([^:\s/]+):([^:\s/]*):([^:\s/]+):$",
        )
        .unwrap_or_else(|e| unreachable!("static regex: {e}"))
    })
}

impl FromStr for Upid {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        let caps = upid_regex().captures(s).ok_or_else(|| {
            Error::invalid(
                "upid",
                format!("{s:?} does not match UPID:node:pid:pstart:starttime:type:id:user:"),
            )
        })?;
        let hex = |i: usize| -> Result<u64, Error> {
            u64::from_str_radix(&caps[i], 16).map_err(|e| Error::invalid("upid", e.to_string()))
        };
        let pid = u32::try_from(hex(3)?).map_err(|e| Error::invalid("upid", e.to_string()))?;
        Ok(Upid(Arc::new(UpidFields {
            raw: s.to_owned(),
            node: caps[1].to_owned(),
            pid,
            pstart: hex(4)?,
            starttime: hex(5)?,
            task_type: caps[6].to_owned(),
            id: caps[7].to_owned(),
            user: caps[8].to_owned(),
        })))
    }
}

impl fmt::Display for Upid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.raw)
    }
}

impl fmt::Debug for Upid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Upid({})", self.0.raw)
    }
}

impl serde::Serialize for Upid {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0.raw)
    }
}

impl<'de> serde::Deserialize<'de> for Upid {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn token_upid_round_trips() {
        let s = "UPID:pve1:0003A1F2:01B2C3D4:66F0A1B2:vzstart:101:agent@pve!hostagent:";
        let u: Upid = s.parse().unwrap();
        assert_eq!(u.to_string(), s);
        assert_eq!(u.node(), "pve1");
        assert_eq!(u.pid(), 0x0003_A1F2);
        assert_eq!(u.pstart(), 0x01B2_C3D4);
        assert_eq!(u.starttime(), 0x66F0_A1B2);
        assert_eq!(u.task_type(), "vzstart");
        assert_eq!(u.id(), "101");
        assert_eq!(u.user(), "agent@pve!hostagent");
        let json = serde_json::to_string(&u).unwrap();
        assert_eq!(serde_json::from_str::<Upid>(&json).unwrap(), u);
    }

    #[test]
    fn empty_id_and_nine_digit_pstart() {
        let s = "UPID:node-a1:00001234:1B2C3D4E5:66F0A1B2:vzdump::root@pam:";
        let u: Upid = s.parse().unwrap();
        assert_eq!(u.id(), "");
        assert_eq!(u.pstart(), 0x1_B2C3_D4E5);
        assert_eq!(u.to_string(), s);
    }

    #[test]
    fn new_formats_like_pve() {
        let u = Upid::new(
            "pve1",
            0x3a1f2,
            0x1b2c3d4,
            0x66f0a1b2,
            "vzsnapshot",
            "101",
            "a@pve!t",
        )
        .unwrap();
        assert_eq!(
            u.as_str(),
            "UPID:pve1:0003A1F2:01B2C3D4:66F0A1B2:vzsnapshot:101:a@pve!t:"
        );
    }

    #[test]
    fn rejects_malformed() {
        for bad in [
            "",
            "OK",
            "UPID:pve1:0003A1F2:01B2C3D4:66F0A1B2:vzstart:101:root@pam", // no trailing colon
            "UPID:-pve:0003A1F2:01B2C3D4:66F0A1B2:vzstart:101:root@pam:",
            "UPID:pve1:3A1F2:01B2C3D4:66F0A1B2:vzstart:101:root@pam:",
            "UPID:pve1:0003A1F2:01B2C3D4:66F0A1B2::101:root@pam:",
            "UPID:pve1:0003A1F2:01B2C3D4:66F0A1B2:vz start:101:root@pam:",
            "UPID:pve1:0003A1F2:01B2C3D4:66F0A1B2:vzstart:1/1:root@pam:",
            "UPID:pve1:0003A1F2:01B2C3D4:66F0A1B2:vzstart:101::",
        ] {
            assert!(bad.parse::<Upid>().is_err(), "{bad:?}");
        }
    }

    proptest! {
        #[test]
        fn fields_round_trip(
            node in "[a-z][a-z0-9-]{0,10}[a-z0-9]",
            pid: u32,
            pstart in 0u64..=0xF_FFFF_FFFF,
            starttime in 0u64..=0xFFFF_FFFF,
            task_type in "[a-z]{1,12}",
            id in "[0-9a-z]{0,6}",
            user in "[a-z]{1,8}@(pam|pve)(![a-z]{2,6})?",
        ) {
            let u = Upid::new(&node, pid, pstart, starttime, &task_type, &id, &user).unwrap();
            let back: Upid = u.to_string().parse().unwrap();
            prop_assert_eq!(&back, &u);
            prop_assert_eq!(back.node(), node.as_str());
            prop_assert_eq!(back.pid(), pid);
            prop_assert_eq!(back.pstart(), pstart);
            prop_assert_eq!(back.starttime(), starttime);
            prop_assert_eq!(back.task_type(), task_type.as_str());
            prop_assert_eq!(back.id(), id.as_str());
            prop_assert_eq!(back.user(), user.as_str());
        }
    }
}
