//! How JSON scalars look once PVE (Perl) or the reference checker (Python) turned them into text.
//!
//! `PVE::JSONSchema` works on Perl scalars: a JSON number `1.0` becomes the string `1`, a JSON
//! boolean stays a `JSON::PP::Boolean` reference. The reference checker (`reference/pve_schema.py`)
//! reproduces this with `perl_str`; its error messages print schema values with Python's `str()`.
//! Both conversions live here so the validator and its messages agree with the checker byte for byte.

use std::sync::LazyLock;

use regex::Regex;
use serde_json::Value;

/// The text PVE validates for a scalar: booleans as `1`/`0`, integral floats below 1e15 without a
/// fraction, other floats as Python's `repr` (pve_schema.py `perl_str`).
pub(crate) fn perl_str(v: &Value) -> String {
    match v {
        Value::Bool(b) => if *b { "1" } else { "0" }.to_owned(),
        Value::Number(n) => number_text(n, true),
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        // Arrays and objects never reach a scalar check (check_type rejects them first).
        other => other.to_string(),
    }
}

/// Python's `str()` of a decoded JSON value, as used for schema values in error messages
/// (`'value must have a maximum value of %s' % schema['maximum']`).
pub(crate) fn python_str(v: &Value) -> String {
    match v {
        Value::Bool(b) => if *b { "True" } else { "False" }.to_owned(),
        Value::Number(n) => number_text(n, false),
        Value::String(s) => s.clone(),
        Value::Null => "None".to_owned(),
        other => other.to_string(),
    }
}

fn number_text(n: &serde_json::Number, perl: bool) -> String {
    if let Some(i) = n.as_i64() {
        return i.to_string();
    }
    if let Some(u) = n.as_u64() {
        return u.to_string();
    }
    let f = n.as_f64().unwrap_or(0.0);
    if perl && f.fract() == 0.0 && f.abs() < 1e15 {
        // `str(int(v))`: the value is integral and well inside i64.
        return format!("{}", f as i64);
    }
    python_float_repr(f)
}

/// Python's `repr(float)`: the shortest round-trip digits, in positional notation when the decimal
/// exponent is in -4..16, otherwise as `1e+16` / `1.5e-05`.
pub(crate) fn python_float_repr(f: f64) -> String {
    if f.is_nan() {
        return "nan".to_owned();
    }
    if f.is_infinite() {
        return if f > 0.0 { "inf" } else { "-inf" }.to_owned();
    }
    // `{:e}` yields the shortest round-trip digits, e.g. "-1.2345e-5".
    let sci = format!("{:e}", f);
    let (mantissa, exp) = sci.split_once('e').unwrap_or((sci.as_str(), "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let (neg, mantissa) = match mantissa.strip_prefix('-') {
        Some(m) => (true, m),
        None => (false, mantissa),
    };
    let digits: String = mantissa.chars().filter(|c| *c != '.').collect();
    let mut out = String::new();
    if neg {
        out.push('-');
    }
    if !(-4..16).contains(&exp) {
        out.push_str(&digits[..1]);
        if digits.len() > 1 {
            out.push('.');
            out.push_str(&digits[1..]);
        }
        out.push('e');
        out.push(if exp < 0 { '-' } else { '+' });
        out.push_str(&format!("{:02}", exp.abs()));
    } else if exp >= 0 {
        let int_len = exp as usize + 1;
        if digits.len() <= int_len {
            out.push_str(&digits);
            out.push_str(&"0".repeat(int_len - digits.len()));
            out.push_str(".0");
        } else {
            out.push_str(&digits[..int_len]);
            out.push('.');
            out.push_str(&digits[int_len..]);
        }
    } else {
        out.push_str("0.");
        out.push_str(&"0".repeat((-exp - 1) as usize));
        out.push_str(&digits);
    }
    out
}

static NUMBER: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"\A[+-]?(\d+\.\d+|\d+\.|\.\d+|\d+)([eE][+-]?\d+)?\z").expect("static regex")
});
static INTEGER: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"\A[+-]?\d+\z").expect("static regex"));
static TRUE_WORD: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"\A(?i:1|on|yes|true)\z").expect("static regex"));
static FALSE_WORD: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"\A(?i:0|off|no|false)\z").expect("static regex"));

/// `PVE::JSONSchema::is_number` (the perlretut number regex).
pub(crate) fn is_number(s: &str) -> bool {
    NUMBER.is_match(s)
}

/// `PVE::JSONSchema::is_integer`.
pub(crate) fn is_integer(s: &str) -> bool {
    INTEGER.is_match(s)
}

/// `PVE::JSONSchema::parse_boolean` on text: `1|on|yes|true` and `0|off|no|false`, any case.
/// Used inside property strings only; top-level booleans are strictly `0`/`1`.
pub fn parse_boolean_text(s: &str) -> Option<bool> {
    if TRUE_WORD.is_match(s) {
        Some(true)
    } else if FALSE_WORD.is_match(s) {
        Some(false)
    } else {
        None
    }
}

/// A top-level boolean parameter as PVE accepts it: JSON `true`/`false`, the numbers `1`/`0`
/// and the strings `"1"`/`"0"`. Anything else (notably `"true"`) is `None`, which PVE answers
/// with 400 "type check ('boolean') failed" (pve-common `JSONSchema.pm` check_type).
pub fn parse_boolean(v: &Value) -> Option<bool> {
    match v {
        Value::Bool(b) => Some(*b),
        Value::Number(_) | Value::String(_) => match perl_str(v).as_str() {
            "1" => Some(true),
            "0" => Some(false),
            _ => None,
        },
        _ => None,
    }
}

/// Python's `str.isspace()` for one character: Unicode whitespace plus the ASCII separators
/// U+001C..U+001F, which Python (unlike Rust) counts as whitespace.
pub(crate) fn py_is_space(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

/// Python truthiness of a schema value (`if schema.get('optional')`).
pub(crate) fn truthy(v: Option<&Value>) -> bool {
    match v {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(Value::Number(n)) => n.as_f64().is_some_and(|f| f != 0.0),
        Some(Value::String(s)) => !s.is_empty(),
        Some(Value::Array(a)) => !a.is_empty(),
        Some(Value::Object(o)) => !o.is_empty(),
    }
}

/// A schema value read as a float (`float(schema['maximum'])`); strings are parsed.
pub(crate) fn as_float(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse().ok(),
        Value::Bool(b) => Some(if *b { 1.0 } else { 0.0 }),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn perl_str_follows_decode_json_stringification() {
        assert_eq!(perl_str(&json!(true)), "1");
        assert_eq!(perl_str(&json!(false)), "0");
        assert_eq!(perl_str(&json!(101)), "101");
        assert_eq!(perl_str(&json!(-3)), "-3");
        assert_eq!(perl_str(&json!(1.0)), "1");
        assert_eq!(perl_str(&json!(2.5)), "2.5");
        assert_eq!(perl_str(&json!(1e16)), "1e+16");
        assert_eq!(perl_str(&json!("x")), "x");
    }

    #[test]
    fn python_repr_matches_python_rules() {
        assert_eq!(python_float_repr(0.5), "0.5");
        assert_eq!(python_float_repr(1.0), "1.0");
        assert_eq!(python_float_repr(1e15), "1000000000000000.0");
        assert_eq!(python_float_repr(1e16), "1e+16");
        assert_eq!(python_float_repr(1.5e-5), "1.5e-05");
        assert_eq!(python_float_repr(0.0001), "0.0001");
        assert_eq!(python_float_repr(-123.456), "-123.456");
        assert_eq!(python_float_repr(1.2345e20), "1.2345e+20");
        assert_eq!(python_str(&json!(0.5)), "0.5");
        assert_eq!(python_str(&json!(true)), "True");
    }

    #[test]
    fn number_and_integer_follow_perlretut() {
        for ok in ["1", "+1", "-1.5", "1.", ".5", "1e5", "1.5E-3"] {
            assert!(is_number(ok), "{ok}");
        }
        for bad in ["", ".", "1e", "e5", "0x10", "1 ", " 1", "1_000"] {
            assert!(!is_number(bad), "{bad}");
        }
        assert!(is_integer("-12"));
        assert!(!is_integer("1.0"));
        assert!(!is_integer("1\n"));
    }

    #[test]
    fn booleans_top_level_vs_property_string() {
        assert_eq!(parse_boolean(&json!(true)), Some(true));
        assert_eq!(parse_boolean(&json!(0)), Some(false));
        assert_eq!(parse_boolean(&json!("1")), Some(true));
        assert_eq!(parse_boolean(&json!("true")), None);
        assert_eq!(parse_boolean(&json!(2)), None);
        assert_eq!(parse_boolean_text("Yes"), Some(true));
        assert_eq!(parse_boolean_text("OFF"), Some(false));
        assert_eq!(parse_boolean_text("y"), None);
    }
}
