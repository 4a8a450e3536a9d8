//! IP address and network parsing with the acceptance rules of Python's `ipaddress` module, which
//! the reference checker uses for the `ip`, `ipv4`, `ipv6`, `CIDR*` and `pve-ipv*-config` formats.
//!
//! Rust's `std::net` parsers differ in corner cases (IPv6 scope ids, IPv4 netmasks after the
//! slash), so the rules of CPython 3.11 `ipaddress._BaseV4/_BaseV6` are reproduced here.

/// The IP version of a parsed address or network.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Version {
    V4,
    V6,
}

/// `ipaddress.ip_address(s)`: the version of the address, or `None` when Python rejects it.
pub(crate) fn ip_address(s: &str) -> Option<Version> {
    if ipv4_address(s).is_some() {
        Some(Version::V4)
    } else if ipv6_address(s).is_some() {
        Some(Version::V6)
    } else {
        None
    }
}

/// `ipaddress.ip_network(s, strict=False)`: the version of the network, or `None`.
pub(crate) fn ip_network(s: &str) -> Option<Version> {
    if ipv4_network(s) {
        Some(Version::V4)
    } else if ipv6_network(s) {
        Some(Version::V6)
    } else {
        None
    }
}

/// `IPv4Address(s)`.
fn ipv4_address(s: &str) -> Option<u32> {
    if s.contains('/') {
        return None;
    }
    ipv4_int(s)
}

/// `_BaseV4._ip_int_from_string`: four decimal octets, no leading zeros, each at most 255.
fn ipv4_int(s: &str) -> Option<u32> {
    if s.is_empty() {
        return None;
    }
    let octets: Vec<&str> = s.split('.').collect();
    if octets.len() != 4 {
        return None;
    }
    let mut value: u32 = 0;
    for octet in octets {
        if octet.is_empty() || octet.len() > 3 || !octet.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        if octet != "0" && octet.starts_with('0') {
            return None;
        }
        let n: u32 = octet.parse().ok()?;
        if n > 255 {
            return None;
        }
        value = (value << 8) | n;
    }
    Some(value)
}

/// `IPv6Address(s)`: an optional `%scope` suffix is accepted (Python 3.9+).
fn ipv6_address(s: &str) -> Option<u128> {
    if s.contains('/') {
        return None;
    }
    let addr = match s.split_once('%') {
        None => s,
        Some((addr, scope)) => {
            if scope.is_empty() || scope.contains('%') {
                return None;
            }
            addr
        }
    };
    ipv6_int(addr)
}

/// `_BaseV6._ip_int_from_string`.
fn ipv6_int(s: &str) -> Option<u128> {
    const HEXTETS: usize = 8;
    if s.is_empty() {
        return None;
    }
    let mut parts: Vec<String> = s.split(':').map(str::to_owned).collect();
    if parts.len() < 3 {
        return None;
    }
    if parts.last().is_some_and(|p| p.contains('.')) {
        let v4 = ipv4_address(&parts.pop()?)?;
        parts.push(format!("{:x}", (v4 >> 16) & 0xffff));
        parts.push(format!("{:x}", v4 & 0xffff));
    }
    if parts.len() > HEXTETS + 1 {
        return None;
    }
    let mut skip_index = None;
    for (i, part) in parts.iter().enumerate().take(parts.len() - 1).skip(1) {
        if part.is_empty() {
            if skip_index.is_some() {
                return None;
            }
            skip_index = Some(i);
        }
    }
    let (parts_hi, parts_lo) = match skip_index {
        Some(skip) => {
            let mut hi = skip;
            let mut lo = parts.len() - skip - 1;
            if parts[0].is_empty() {
                hi -= 1;
                if hi != 0 {
                    return None;
                }
            }
            if parts[parts.len() - 1].is_empty() {
                lo -= 1;
                if lo != 0 {
                    return None;
                }
            }
            if HEXTETS < hi + lo + 1 {
                return None;
            }
            (hi, lo)
        }
        None => {
            if parts.len() != HEXTETS || parts[0].is_empty() || parts[HEXTETS - 1].is_empty() {
                return None;
            }
            (parts.len(), 0)
        }
    };
    let skipped = HEXTETS - parts_hi - parts_lo;
    let mut value: u128 = 0;
    for part in &parts[..parts_hi] {
        value = (value << 16) | u128::from(hextet(part)?);
    }
    // Shifting by all 128 bits ("::") would overflow; the value is zero then anyway.
    value = value.checked_shl(16 * skipped as u32).unwrap_or(0);
    for part in &parts[parts.len() - parts_lo..] {
        value = (value << 16) | u128::from(hextet(part)?);
    }
    Some(value)
}

/// `_BaseV6._parse_hextet`: one to four hex digits (an empty hextet fails in `int('', 16)`).
fn hextet(s: &str) -> Option<u16> {
    if s.is_empty() || s.len() > 4 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u16::from_str_radix(s, 16).ok()
}

/// `_split_optional_netmask`: address and optional mask; more than one `/` is an error.
fn split_prefix(s: &str) -> Option<(&str, Option<&str>)> {
    let mut it = s.split('/');
    let addr = it.next()?;
    let mask = it.next();
    if it.next().is_some() {
        return None;
    }
    Some((addr, mask))
}

/// `_prefix_from_prefix_string`: ASCII digits only, within `0..=max`.
fn prefix_len(s: &str, max: u32) -> Option<u32> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    // Leading zeros are fine for Python's int(); strip them so long inputs do not overflow.
    let trimmed = s.trim_start_matches('0');
    if trimmed.len() > 3 {
        return None;
    }
    let n: u32 = if trimmed.is_empty() {
        0
    } else {
        trimmed.parse().ok()?
    };
    (n <= max).then_some(n)
}

/// `_BaseV4._prefix_from_ip_int`: whether `v` is a contiguous netmask.
fn is_v4_netmask(v: u32) -> bool {
    let trailing = if v == 0 { 32 } else { v.trailing_zeros() };
    let prefix = 32 - trailing;
    let leading = if trailing == 32 { 0 } else { v >> trailing };
    let all_ones = ((1u64 << prefix) - 1) as u32;
    leading == all_ones
}

/// `IPv4Network(s, strict=False)`: the mask may be a prefix length, a netmask or a hostmask.
fn ipv4_network(s: &str) -> bool {
    let Some((addr, mask)) = split_prefix(s) else {
        return false;
    };
    if ipv4_address(addr).is_none() {
        return false;
    }
    match mask {
        None => true,
        Some(mask) => {
            prefix_len(mask, 32).is_some()
                || ipv4_int(mask).is_some_and(|m| is_v4_netmask(m) || is_v4_netmask(!m))
        }
    }
}

/// `IPv6Network(s, strict=False)`: only prefix lengths are accepted as mask.
fn ipv6_network(s: &str) -> bool {
    let Some((addr, mask)) = split_prefix(s) else {
        return false;
    };
    ipv6_address(addr).is_some() && mask.is_none_or(|m| prefix_len(m, 128).is_some())
}

#[cfg(test)]
mod tests {
    use super::*;

    // Expected values were produced with CPython 3.11 `ipaddress` (see the module doc).
    #[test]
    fn agrees_with_python_ipaddress() {
        let cases: &[(&str, Option<Version>, Option<Version>)] = &[
            ("fe80::1%eth0/64", None, Some(Version::V6)),
            ("fe80::1%eth0", Some(Version::V6), Some(Version::V6)),
            ("1:2:3:4:5:6:7::", Some(Version::V6), Some(Version::V6)),
            ("::1:2:3:4:5:6:7", Some(Version::V6), Some(Version::V6)),
            ("1::2:3:4:5:6:7", Some(Version::V6), Some(Version::V6)),
            ("::", Some(Version::V6), Some(Version::V6)),
            ("::ffff:1.2.3.4", Some(Version::V6), Some(Version::V6)),
            ("10.0.0.1/255.255.255.0", None, Some(Version::V4)),
            ("10.0.0.1/0.0.0.255", None, Some(Version::V4)),
            ("10.0.0.1/08", None, Some(Version::V4)),
            ("10.0.0.1/+8", None, None),
            ("1.2.3.04", None, None),
            ("::1/129", None, None),
            ("::1/0128", None, Some(Version::V6)),
            ("1.2.3.4%x", None, None),
            ("1:2:3:4:5:6:1.2.3.4", Some(Version::V6), Some(Version::V6)),
            ("1:2:3:4:5:6:7:1.2.3.4", None, None),
            ("::1.2.3.4", Some(Version::V6), Some(Version::V6)),
            ("1::2::3", None, None),
            (":1::2", None, None),
            ("1::2:", None, None),
            ("12345::", None, None),
            ("fe80::1%", None, None),
            ("fe80::1%a%b", None, None),
            ("\u{661}.2.3.4", None, None),
            ("192.168.1.10", Some(Version::V4), Some(Version::V4)),
            ("192.168.1.10/24", None, Some(Version::V4)),
            ("256.1.1.1", None, None),
            ("1.2.3", None, None),
            ("1.2.3.4/33", None, None),
            ("1.2.3.4/", None, None),
            ("1.2.3.4/24/1", None, None),
            ("10.0.0.0/255.0.255.0", None, None),
            ("", None, None),
        ];
        for (s, addr, net) in cases {
            assert_eq!(ip_address(s), *addr, "ip_address({s:?})");
            assert_eq!(ip_network(s), *net, "ip_network({s:?})");
        }
    }
}
