//! Guest ids: `Vmid`, checked against PVE's `pve-vmid` range before anything is sent.

use std::fmt;
use std::str::FromStr;

use crate::error::Error;

/// A guest id in PVE's range `100..=999_999_999` (schema: `minimum=100 maximum=999999999`).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Vmid(u32);

impl Vmid {
    /// Smallest id PVE accepts.
    pub const MIN: u32 = 100;
    /// Largest id PVE accepts.
    pub const MAX: u32 = 999_999_999;

    /// Checks the range.
    pub fn new(id: u32) -> Result<Self, Error> {
        if (Self::MIN..=Self::MAX).contains(&id) {
            Ok(Vmid(id))
        } else {
            Err(Error::invalid(
                "vmid",
                format!("{id} is outside {}..={}", Self::MIN, Self::MAX),
            ))
        }
    }

    /// The numeric id.
    pub fn get(self) -> u32 {
        self.0
    }
}

impl TryFrom<u32> for Vmid {
    type Error = Error;
    fn try_from(id: u32) -> Result<Self, Error> {
        Vmid::new(id)
    }
}

impl TryFrom<u64> for Vmid {
    type Error = Error;
    fn try_from(id: u64) -> Result<Self, Error> {
        let id = u32::try_from(id)
            .map_err(|_| Error::invalid("vmid", format!("{id} is outside 100..=999999999")))?;
        Vmid::new(id)
    }
}

impl FromStr for Vmid {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        // pve-vmid: ^[1-9][0-9]{2,8}$; no sign, no leading zero.
        let digits_ok =
            !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) && !s.starts_with('0');
        if !digits_ok {
            return Err(Error::invalid(
                "vmid",
                format!("{s:?} is not a decimal guest id"),
            ));
        }
        let n: u64 = s
            .parse()
            .map_err(|_| Error::invalid("vmid", format!("{s:?} is not a decimal guest id")))?;
        Vmid::try_from(n)
    }
}

impl fmt::Display for Vmid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl fmt::Debug for Vmid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Vmid({})", self.0)
    }
}

impl serde::Serialize for Vmid {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u32(self.0)
    }
}

impl<'de> serde::Deserialize<'de> for Vmid {
    /// Accepts a number or a numeric string (PVE is not consistent about it).
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let n = crate::lenient::u64(d)?;
        Vmid::try_from(n).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn range_is_enforced() {
        assert!(Vmid::new(99).is_err());
        assert_eq!(Vmid::new(100).unwrap().get(), 100);
        assert_eq!(Vmid::new(999_999_999).unwrap().get(), 999_999_999);
        assert!(Vmid::new(1_000_000_000).is_err());
        assert!(Vmid::try_from(u64::MAX).is_err());
        assert!("0101".parse::<Vmid>().is_err());
        assert!("+101".parse::<Vmid>().is_err());
        assert!("".parse::<Vmid>().is_err());
        assert_eq!("101".parse::<Vmid>().unwrap().to_string(), "101");
        let e = Vmid::new(5).unwrap_err().to_string();
        assert_eq!(e, "invalid vmid: 5 is outside 100..=999999999");
    }

    #[test]
    fn deserializes_numbers_and_strings() {
        assert_eq!(serde_json::from_str::<Vmid>("101").unwrap().get(), 101);
        assert_eq!(serde_json::from_str::<Vmid>("\"101\"").unwrap().get(), 101);
        assert!(serde_json::from_str::<Vmid>("42").is_err());
    }
}
