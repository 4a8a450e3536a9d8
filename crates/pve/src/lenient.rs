//! Lenient deserializers for PVE answers.
//!
//! PVE is Perl: a number may arrive as a JSON number or as a string (`loadavg` items, and
//! `cpulimit` after `check_type`, pve-container `LXC/Config.pm:1423-1425`), booleans arrive as
//! `0`/`1` (never JSON booleans, pve-api-notes §1.4), and a string field may arrive as a number.
//! Use these with `#[serde(default, deserialize_with = "crate::lenient::opt_u64")]`.

use serde::de::Error as _;
use serde::{Deserialize, Deserializer};
use serde_json::Value;

fn describe(v: &Value) -> String {
    let s = v.to_string();
    if s.len() > 40 {
        format!("{}…", &s[..s.floor_char_boundary_compat(40)])
    } else {
        s
    }
}

/// `str::floor_char_boundary` is unstable; this is the small stable equivalent.
trait FloorBoundary {
    fn floor_char_boundary_compat(&self, i: usize) -> usize;
}
impl FloorBoundary for str {
    fn floor_char_boundary_compat(&self, mut i: usize) -> usize {
        while i > 0 && !self.is_char_boundary(i) {
            i -= 1;
        }
        i
    }
}

pub(crate) fn value_to_f64(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse::<f64>().ok().filter(|f| f.is_finite()),
        _ => None,
    }
}

pub(crate) fn value_to_u64(v: &Value) -> Option<u64> {
    match v {
        Value::Number(n) => n.as_u64().or_else(|| {
            n.as_f64()
                .filter(|f| f.fract() == 0.0 && *f >= 0.0 && *f <= u64::MAX as f64)
                .map(|f| f as u64)
        }),
        Value::String(s) => {
            let t = s.trim();
            t.parse::<u64>().ok().or_else(|| {
                t.parse::<f64>()
                    .ok()
                    .filter(|f| f.fract() == 0.0 && *f >= 0.0 && *f <= u64::MAX as f64)
                    .map(|f| f as u64)
            })
        }
        _ => None,
    }
}

pub(crate) fn value_to_bool(v: &Value) -> Option<bool> {
    match v {
        Value::Bool(b) => Some(*b),
        Value::Number(n) => match n.as_f64() {
            Some(0.0) => Some(false),
            Some(1.0) => Some(true),
            _ => None,
        },
        Value::String(s) => match s.trim() {
            "0" | "false" | "no" | "off" => Some(false),
            "1" | "true" | "yes" | "on" => Some(true),
            _ => None,
        },
        _ => None,
    }
}

pub(crate) fn value_to_string(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(if *b { "1" } else { "0" }.to_owned()),
        _ => None,
    }
}

macro_rules! lenient_required {
    ($req:ident, $ty:ty, $conv:ident, $what:literal) => {
        #[doc = concat!("A ", $what, " that may arrive as a number or a string.")]
        pub fn $req<'de, D: Deserializer<'de>>(d: D) -> Result<$ty, D::Error> {
            let v = Value::deserialize(d)?;
            $conv(&v).ok_or_else(|| {
                D::Error::custom(format!(
                    concat!("expected ", $what, ", got {}"),
                    describe(&v)
                ))
            })
        }
    };
}

macro_rules! lenient_optional {
    ($opt:ident, $ty:ty, $conv:ident, $what:literal) => {
        #[doc = concat!("An optional ", $what, "; `null` is `None`.")]
        pub fn $opt<'de, D: Deserializer<'de>>(d: D) -> Result<Option<$ty>, D::Error> {
            let v = Value::deserialize(d)?;
            if v.is_null() {
                return Ok(None);
            }
            $conv(&v).map(Some).ok_or_else(|| {
                D::Error::custom(format!(
                    concat!("expected ", $what, ", got {}"),
                    describe(&v)
                ))
            })
        }
    };
}

lenient_required!(u64, u64, value_to_u64, "non-negative integer");
lenient_required!(string, String, value_to_string, "string");
lenient_optional!(opt_u64, u64, value_to_u64, "non-negative integer");
lenient_optional!(opt_f64, f64, value_to_f64, "number");
lenient_optional!(opt_bool, bool, value_to_bool, "boolean (0/1)");
lenient_optional!(opt_string, String, value_to_string, "string");

/// A list of numbers, each of which may be a string (`loadavg: ["0.10","0.05","0.01"]`).
pub fn f64_vec<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<f64>, D::Error> {
    let v = Value::deserialize(d)?;
    match v {
        Value::Null => Ok(Vec::new()),
        Value::Array(items) => items
            .iter()
            .map(|i| {
                value_to_f64(i).ok_or_else(|| {
                    D::Error::custom(format!("expected number, got {}", describe(i)))
                })
            })
            .collect(),
        other => Err(D::Error::custom(format!(
            "expected a list of numbers, got {}",
            describe(&other)
        ))),
    }
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    #[derive(Deserialize, Debug, PartialEq)]
    struct T {
        #[serde(default, deserialize_with = "super::opt_u64")]
        n: Option<u64>,
        #[serde(default, deserialize_with = "super::opt_f64")]
        f: Option<f64>,
        #[serde(default, deserialize_with = "super::opt_bool")]
        b: Option<bool>,
        #[serde(default, deserialize_with = "super::opt_string")]
        s: Option<String>,
        #[serde(default, deserialize_with = "super::f64_vec")]
        l: Vec<f64>,
    }

    fn t(json: &str) -> Result<T, serde_json::Error> {
        serde_json::from_str(json)
    }

    #[test]
    fn numbers_as_numbers_or_strings() {
        let v = t(r#"{"n":"4294967296","f":"0.25","l":["0.10","1",2.5]}"#).unwrap();
        assert_eq!(v.n, Some(4_294_967_296));
        assert_eq!(v.f, Some(0.25));
        assert_eq!(v.l, vec![0.10, 1.0, 2.5]);
        assert_eq!(t(r#"{"n":12}"#).unwrap().n, Some(12));
        assert_eq!(t(r#"{"n":12.0}"#).unwrap().n, Some(12));
        assert_eq!(t(r#"{"n":null}"#).unwrap().n, None);
        assert_eq!(
            t("{}").unwrap(),
            T {
                n: None,
                f: None,
                b: None,
                s: None,
                l: vec![]
            }
        );
    }

    #[test]
    fn booleans_as_01_or_bool() {
        assert_eq!(t(r#"{"b":1}"#).unwrap().b, Some(true));
        assert_eq!(t(r#"{"b":0}"#).unwrap().b, Some(false));
        assert_eq!(t(r#"{"b":"1"}"#).unwrap().b, Some(true));
        assert_eq!(t(r#"{"b":true}"#).unwrap().b, Some(true));
        assert!(t(r#"{"b":2}"#).is_err());
    }

    #[test]
    fn strings_may_be_numbers() {
        assert_eq!(t(r#"{"s":101}"#).unwrap().s.as_deref(), Some("101"));
        assert_eq!(t(r#"{"s":"x"}"#).unwrap().s.as_deref(), Some("x"));
    }

    #[test]
    fn garbage_is_a_clear_error() {
        let e = t(r#"{"n":"lots"}"#).unwrap_err().to_string();
        assert!(
            e.contains("expected non-negative integer") && e.contains("lots"),
            "{e}"
        );
        assert!(t(r#"{"n":-1}"#).is_err());
        assert!(t(r#"{"n":1.5}"#).is_err());
        assert!(t(r#"{"f":"NaN"}"#).is_err());
        assert!(t(r#"{"l":"x"}"#).is_err());
    }
}
