//! Revocation (an extension): `jti` and `sub` values refused although their tokens are valid.
//!
//! A provider's deny-list has two parts, both checked on every verified token and on every
//! verified-token cache hit: the inline `revoked` list from the config, and optionally a
//! remote revocation list (`revocation_list`) fetched through a cluster and refreshed like a
//! key set. The remote document has the inline list's shape:
//!
//! ```json
//! {"jti": ["4f1c…", "9a2e…"], "sub": ["user-17"]}
//! ```
//!
//! It is parsed strictly: a document that is not exactly that (an unknown member, a duplicate
//! member, a non-string or empty entry, more than [`MAX_REVOKED_ENTRIES`] entries, more than
//! [`MAX_REVOCATION_BYTES`]) is refused as a whole and the last good list stays in force: a
//! typo in a deny-list must never quietly empty it.

use std::collections::BTreeSet;
use std::fmt;

use serde_json::{Map, Value};

use crate::authn::json::{parse_object, StrictJsonError};

/// Most entries a deny-list may hold (inline or remote): it lives in every VM.
pub const MAX_REVOKED_ENTRIES: usize = 100_000;
/// Largest remote revocation list accepted, in bytes.
pub const MAX_REVOCATION_BYTES: usize = 4 * 1024 * 1024;

/// Tokens refused although valid (JWTs cannot be recalled once issued).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Revocation {
    /// Revoked `jti` values.
    pub jti: BTreeSet<String>,
    /// Revoked subjects: every token with this `sub`.
    pub sub: BTreeSet<String>,
}

impl Revocation {
    /// True when the claims name a revoked `jti` or `sub`.
    pub fn revokes(&self, claims: &Map<String, Value>) -> bool {
        let is = |name: &str, set: &BTreeSet<String>| {
            !set.is_empty()
                && claims
                    .get(name)
                    .and_then(|v| v.as_str())
                    .is_some_and(|v| set.contains(v))
        };
        is("jti", &self.jti) || is("sub", &self.sub)
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.jti.len() + self.sub.len()
    }

    /// True when nothing is revoked.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Why a remote revocation list was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RevocationListError {
    TooLarge(usize),
    NotJson,
    DuplicateMember,
    UnknownMember(String),
    NotAnArray(&'static str),
    BadEntry(&'static str, usize),
    TooManyEntries(usize),
}

impl fmt::Display for RevocationListError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RevocationListError::TooLarge(n) => {
                write!(f, "{n} bytes is over {MAX_REVOCATION_BYTES}")
            }
            RevocationListError::NotJson => f.write_str("not a JSON object"),
            RevocationListError::DuplicateMember => f.write_str("a member name appears twice"),
            RevocationListError::UnknownMember(m) => write!(
                f,
                "unknown member {:?} (expected only \"jti\" and \"sub\")",
                log_safe(m)
            ),
            RevocationListError::NotAnArray(m) => write!(f, "{m} is not an array of strings"),
            RevocationListError::BadEntry(m, i) => {
                write!(f, "{m}[{i}] is not a non-empty string")
            }
            RevocationListError::TooManyEntries(n) => {
                write!(f, "{n} entries is over {MAX_REVOKED_ENTRIES}")
            }
        }
    }
}

/// Parses a remote revocation list (see the module documentation).
pub fn parse_revocation_list(bytes: &[u8]) -> Result<Revocation, RevocationListError> {
    if bytes.len() > MAX_REVOCATION_BYTES {
        return Err(RevocationListError::TooLarge(bytes.len()));
    }
    let doc = parse_object(bytes).map_err(|e| match e {
        StrictJsonError::Duplicate => RevocationListError::DuplicateMember,
        StrictJsonError::Invalid => RevocationListError::NotJson,
    })?;
    if let Some(other) = doc.keys().find(|k| *k != "jti" && *k != "sub") {
        return Err(RevocationListError::UnknownMember(other.clone()));
    }
    let list = |name: &'static str| -> Result<BTreeSet<String>, RevocationListError> {
        let Some(v) = doc.get(name) else {
            return Ok(BTreeSet::new());
        };
        let items = v.as_array().ok_or(RevocationListError::NotAnArray(name))?;
        // Inserted one at a time, not collected: see `string_set`.
        let mut set = BTreeSet::new();
        for (i, item) in items.iter().enumerate() {
            match item.as_str() {
                Some(s) if !s.is_empty() => set.insert(s.to_owned()),
                _ => return Err(RevocationListError::BadEntry(name, i)),
            };
        }
        Ok(set)
    };
    let revocation = Revocation {
        jti: list("jti")?,
        sub: list("sub")?,
    };
    if revocation.len() > MAX_REVOKED_ENTRIES {
        return Err(RevocationListError::TooManyEntries(revocation.len()));
    }
    Ok(revocation)
}

/// The set of `items`, inserted one at a time: collecting into a `BTreeSet` sorts a `Vec`
/// first, and that sort's code was ~7 KB of the module for `String` alone (issue #13).
pub fn string_set(items: impl IntoIterator<Item = String>) -> BTreeSet<String> {
    let mut set = BTreeSet::new();
    set.extend(items);
    set
}

/// A member name for an error message: printable ASCII, at most 32 characters.
fn log_safe(s: &str) -> String {
    s.chars()
        .take(32)
        .map(|c| if c.is_ascii_graphic() { c } else { '?' })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(json: &str) -> Map<String, Value> {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn parses_and_revokes() {
        let r = parse_revocation_list(br#"{"jti":["a","b"],"sub":["u1"]}"#).unwrap();
        assert_eq!(r.len(), 3);
        assert!(r.revokes(&claims(r#"{"jti":"b"}"#)));
        assert!(r.revokes(&claims(r#"{"sub":"u1","jti":"z"}"#)));
        assert!(!r.revokes(&claims(r#"{"sub":"u2","jti":"z"}"#)));
        // A non-string claim never matches a string entry.
        assert!(!r.revokes(&claims(r#"{"jti":["a"]}"#)));
        assert!(parse_revocation_list(b"{}").unwrap().is_empty());
        assert!(parse_revocation_list(br#"{"jti":[]}"#).unwrap().is_empty());
    }

    #[test]
    fn refuses_anything_else_whole() {
        use RevocationListError as E;
        let cases: &[(&[u8], E)] = &[
            (b"", E::NotJson),
            (b"[]", E::NotJson),
            (b"<html>", E::NotJson),
            (br#"{"jti":["a"]} x"#, E::NotJson),
            (br#"{"jti":["a"],"jti":["b"]}"#, E::DuplicateMember),
            (br#"{"jtis":["a"]}"#, E::UnknownMember("jtis".into())),
            (br#"{"jti":"a"}"#, E::NotAnArray("jti")),
            (br#"{"sub":null}"#, E::NotAnArray("sub")),
            (br#"{"jti":["a",""]}"#, E::BadEntry("jti", 1)),
            (br#"{"sub":[7]}"#, E::BadEntry("sub", 0)),
        ];
        for (doc, want) in cases {
            assert_eq!(
                parse_revocation_list(doc).as_ref(),
                Err(want),
                "{}",
                String::from_utf8_lossy(doc)
            );
        }
        let many = format!(
            "{{\"jti\":[{}]}}",
            (0..=MAX_REVOKED_ENTRIES)
                .map(|i| format!("\"{i}\""))
                .collect::<Vec<_>>()
                .join(",")
        );
        assert_eq!(
            parse_revocation_list(many.as_bytes()),
            Err(E::TooManyEntries(MAX_REVOKED_ENTRIES + 1))
        );
        let big = vec![b' '; MAX_REVOCATION_BYTES + 1];
        assert_eq!(
            parse_revocation_list(&big),
            Err(E::TooLarge(MAX_REVOCATION_BYTES + 1))
        );
    }
}
