//! Strict JSON for token headers and payloads: objects only, no duplicate member names at any
//! depth, bounded nesting.
//!
//! serde_json keeps the last of two members with the same name; two parsers that disagree on
//! which one wins is a classic signature-bypass (RFC 8725 §3.2), so duplicates are refused.

use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

/// Maximum nesting of arrays and objects in a token header or payload.
pub const MAX_DEPTH: usize = 32;

/// Why a document was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StrictJsonError {
    /// Not JSON, not UTF-8, too deep, or not an object at the top.
    Invalid,
    /// A member name appears twice in one object.
    Duplicate,
}

/// `value` as compact JSON (serde_json's escaping: only what JSON requires). Everything in the
/// module that writes JSON goes through this one serializer: `Value`'s `Display` would compile
/// two more copies of serde_json's `Value` serializer into the module (compact and pretty,
/// over `fmt::Write`), each ~5 KB of Wasm and ~2 MB of V8 compile memory (issue #13).
pub fn to_compact<T: serde::Serialize + ?Sized>(value: &T) -> String {
    // Serializing a `Value` or a map with string keys cannot fail.
    serde_json::to_string(value).unwrap_or_default()
}

/// Parses `bytes` as one JSON object with unique member names.
pub fn parse_object(bytes: &[u8]) -> Result<Map<String, Value>, StrictJsonError> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = Seed { depth: 0 }.deserialize(&mut de).map_err(|e| {
        if e.to_string().starts_with(DUPLICATE) {
            StrictJsonError::Duplicate
        } else {
            StrictJsonError::Invalid
        }
    })?;
    de.end().map_err(|_| StrictJsonError::Invalid)?;
    match value {
        Value::Object(map) => Ok(map),
        _ => Err(StrictJsonError::Invalid),
    }
}

const DUPLICATE: &str = "duplicate member";

/// The scalar methods of a `Visitor<Value = serde_json::Value>`: shared by the token parser
/// here and the configuration reader (config/read.rs), which differ only in how they walk
/// arrays and objects.
macro_rules! visit_scalars {
    () => {
        fn visit_bool<E>(self, v: bool) -> Result<serde_json::Value, E> {
            Ok(serde_json::Value::Bool(v))
        }
        fn visit_i64<E>(self, v: i64) -> Result<serde_json::Value, E> {
            Ok(serde_json::Value::from(v))
        }
        fn visit_u64<E>(self, v: u64) -> Result<serde_json::Value, E> {
            Ok(serde_json::Value::from(v))
        }
        fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<serde_json::Value, E> {
            serde_json::Number::from_f64(v)
                .map(serde_json::Value::Number)
                .ok_or_else(|| E::custom("non-finite number"))
        }
        fn visit_str<E>(self, v: &str) -> Result<serde_json::Value, E> {
            Ok(serde_json::Value::String(v.to_owned()))
        }
        fn visit_string<E>(self, v: String) -> Result<serde_json::Value, E> {
            Ok(serde_json::Value::String(v))
        }
        fn visit_unit<E>(self) -> Result<serde_json::Value, E> {
            Ok(serde_json::Value::Null)
        }
    };
}
pub(crate) use visit_scalars;

struct Seed {
    depth: usize,
}

impl<'de> DeserializeSeed<'de> for Seed {
    type Value = Value;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Seed {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }
    visit_scalars!();
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let depth = self.depth + 1;
        if depth > MAX_DEPTH {
            return Err(de::Error::custom("too deep"));
        }
        let mut out = Vec::new();
        while let Some(v) = seq.next_element_seed(Seed { depth })? {
            out.push(v);
        }
        Ok(Value::Array(out))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let depth = self.depth + 1;
        if depth > MAX_DEPTH {
            return Err(de::Error::custom("too deep"));
        }
        let mut out = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if out.contains_key(&key) {
                return Err(de::Error::custom(DUPLICATE));
            }
            let v = map.next_value_seed(Seed { depth })?;
            out.insert(key, v);
        }
        Ok(Value::Object(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn objects_only_unique_members() {
        assert!(parse_object(br#"{"a":1,"b":{"c":[1,2,{"d":null}]}}"#).is_ok());
        assert_eq!(
            parse_object(br#"{"a":1,"a":2}"#),
            Err(StrictJsonError::Duplicate)
        );
        assert_eq!(
            parse_object(br#"{"a":{"b":1,"b":1}}"#),
            Err(StrictJsonError::Duplicate)
        );
        // Escapes that decode to the same name are duplicates too.
        assert_eq!(
            parse_object(br#"{"alg":"RS256","\u0061lg":"none"}"#),
            Err(StrictJsonError::Duplicate)
        );
        for bad in [
            &b"[1]"[..],
            b"1",
            b"\"s\"",
            b"{",
            b"{}x",
            b"{\"a\":1}{}",
            b"\xff",
        ] {
            assert_eq!(parse_object(bad), Err(StrictJsonError::Invalid), "{bad:?}");
        }
        let deep = format!("{}1{}", r#"{"a":"#.repeat(40), "}".repeat(40));
        assert_eq!(parse_object(deep.as_bytes()), Err(StrictJsonError::Invalid));
        assert!(parse_object(b" {} ").is_ok());
    }
}
