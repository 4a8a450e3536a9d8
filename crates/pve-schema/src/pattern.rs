//! Schema `pattern`s: Perl regex source translated for Rust, compiled once and cached.
//!
//! The schema dump contains stringified Perl `qr//` objects such as `(?^:...)` and `(?^i:...)`.
//! PVE matches them as `m/^$pattern$/` (pve-common `JSONSchema.pm` check_prop); the reference
//! checker uses Python's `re.fullmatch`. We anchor with `\A(?:...)\z`, which is the same whole-string
//! match. The `regex` crate handles all but the patterns with atomic groups `(?>...)`, which go to
//! `fancy-regex` (same backtracking semantics as Perl and Python).

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, RwLock};

/// A compiled whole-string matcher for one schema pattern.
#[derive(Debug)]
pub(crate) enum Pattern {
    /// Compiled by the `regex` crate (linear time).
    Fast(regex::Regex),
    /// Compiled by `fancy-regex` (needed for atomic groups).
    Backtracking(Box<fancy_regex::Regex>),
}

impl Pattern {
    /// Whether the whole of `s` matches. A backtracking-limit error counts as no match.
    pub(crate) fn full_match(&self, s: &str) -> bool {
        match self {
            Pattern::Fast(re) => re.is_match(s),
            Pattern::Backtracking(re) => re.is_match(s).unwrap_or(false),
        }
    }
}

type Cache = RwLock<HashMap<String, Result<Arc<Pattern>, String>>>;

static CACHE: LazyLock<Cache> = LazyLock::new(|| RwLock::new(HashMap::new()));

/// The compiled matcher for a schema pattern, compiling it on first use.
/// `Err` carries the compile error of both engines (the caller records it as a note).
pub(crate) fn compiled(perl: &str) -> Result<Arc<Pattern>, String> {
    if let Ok(cache) = CACHE.read() {
        if let Some(hit) = cache.get(perl) {
            return hit.clone();
        }
    }
    let result = compile(perl).map(Arc::new);
    if let Ok(mut cache) = CACHE.write() {
        cache.insert(perl.to_owned(), result.clone());
    }
    result
}

/// Compiled-size limit for schema patterns (the `regex` default is 10 MiB).
const PATTERN_SIZE_LIMIT: usize = 64 << 20;

/// Compile a Perl pattern source as an anchored whole-string matcher.
pub(crate) fn compile(perl: &str) -> Result<Pattern, String> {
    let anchored = format!(r"\A(?:{})\z", translate(perl));
    // Unicode classes under a bounded repeat (`(?i:[\w\d\s]{0,256})`) exceed the default 10 MiB
    // NFA limit; the schema's patterns are trusted, so allow more (compiled once, cached).
    let fast = regex::RegexBuilder::new(&anchored)
        .size_limit(PATTERN_SIZE_LIMIT)
        .build();
    match fast {
        Ok(re) => Ok(Pattern::Fast(re)),
        Err(fast_err) => match fancy_regex::Regex::new(&anchored) {
            Ok(re) => Ok(Pattern::Backtracking(Box::new(re))),
            Err(slow_err) => Err(format!("regex: {fast_err}; fancy-regex: {slow_err}")),
        },
    }
}

/// Translate Perl regex syntax found in the schema into syntax both Rust engines accept:
/// `(?^flags:` becomes `(?flags:`, `\0` becomes `\x00`, and `{,n}` (Perl 5.34+ and Python: zero
/// to n) becomes `{0,n}`. Escapes are copied untouched otherwise.
pub(crate) fn translate(perl: &str) -> String {
    let chars: Vec<char> = perl.chars().collect();
    let mut out = String::with_capacity(perl.len() + 8);
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == '\\' {
            match chars.get(i + 1) {
                Some('0') => out.push_str(r"\x00"),
                Some(next) => {
                    out.push('\\');
                    out.push(*next);
                }
                None => out.push('\\'),
            }
            i += 2;
            continue;
        }
        if c == '(' && chars.get(i + 1) == Some(&'?') && chars.get(i + 2) == Some(&'^') {
            // (?^flags: ... -> (?flags: ... ; an empty flag set becomes a plain group.
            let mut j = i + 3;
            let mut flags = String::new();
            while let Some(f) = chars.get(j).filter(|f| f.is_ascii_lowercase()) {
                flags.push(*f);
                j += 1;
            }
            if chars.get(j) == Some(&':') {
                out.push_str("(?");
                out.push_str(&flags);
                out.push(':');
                i = j + 1;
                continue;
            }
        }
        if c == '{' && chars.get(i + 1) == Some(&',') {
            let digits: String = chars[i + 2..]
                .iter()
                .take_while(|d| d.is_ascii_digit())
                .collect();
            if !digits.is_empty() && chars.get(i + 2 + digits.len()) == Some(&'}') {
                out.push_str("{0,");
                out.push_str(&digits);
                out.push('}');
                i += 3 + digits.len();
                continue;
            }
        }
        out.push(c);
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn translates_perl_qr_stringification() {
        assert_eq!(translate("(?^:[a-z]+)"), "(?:[a-z]+)");
        assert_eq!(translate("(?^i:x)(?^:y)"), "(?i:x)(?:y)");
        assert_eq!(translate(r"[A-Z\s]{,16}"), r"[A-Z\s]{0,16}");
        assert_eq!(translate(r"a\0b\\0"), r"a\x00b\\0");
    }

    #[test]
    fn patterns_match_whole_string_only() {
        let p = compile(r"\d+[MG]?").expect("compiles");
        assert!(p.full_match("12G"));
        assert!(!p.full_match("12G "));
        assert!(!p.full_match("x12"));
        assert!(!p.full_match("12\n"));
        let alt = compile("a|ab").expect("compiles");
        assert!(
            alt.full_match("ab"),
            "alternation must be grouped before anchoring"
        );
    }

    #[test]
    fn case_insensitive_and_atomic_groups() {
        let p = compile(r"(?^i:[a-z0-9_][a-z0-9_\-\+\.]*)").expect("compiles");
        assert!(p.full_match("Web-Server"));
        let atomic = compile(r"(?^:^((?>[+-]?[\w\-\._=]+,?)+)$)").expect("compiles");
        assert!(matches!(atomic, Pattern::Backtracking(_)));
        assert!(atomic.full_match("+a=1,-b"));
        assert!(!atomic.full_match("a b"));
    }

    #[test]
    fn nul_escape_matches_nul() {
        let p = compile(
            r"(?^:(?:\w+=[^\x00-\x08\x10-\x1F\x7F]*)(?:\0\w+=[^\x00-\x08\x10-\x1F\x7F]*)*)",
        )
        .expect("compiles");
        assert!(p.full_match("a=1\0b=2"));
        assert!(!p.full_match("a=1\u{1}"));
    }
}
