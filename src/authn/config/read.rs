//! Phase 1's reader: the configuration's JSON parsed once into a [`Value`] tree (a member name
//! repeated in one object is refused), then read into the [`raw`](super::raw) types by
//! [`FromJson`], every error naming the JSON path of the offending field.
//!
//! This replaces serde derive + `serde_path_to_error`, which instantiated a streaming
//! deserializer per type and per field: ~150 KB of the 1 MiB module for code that runs once
//! per configuration. Here one small function per type reads a tree, and the messages are
//! serde's own wording (`unknown field `x`, expected one of …`, `invalid type: string "60",
//! expected u32`) so operators and tests see the same text.

use std::cell::Cell;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

use super::error::ConfigError;

/// Where a value sits in the document: a chain of member names and array indexes, rendered
/// the way operators look a field up (`providers.main.from_headers[0].name`; `.` is the
/// document itself).
#[derive(Clone, Copy)]
pub enum Path<'a> {
    Root,
    Key(&'a Path<'a>, &'a str),
    Index(&'a Path<'a>, usize),
}

impl Path<'_> {
    /// The path as text (the `path` of a [`ConfigError`]).
    pub fn render(&self) -> String {
        let mut out = String::new();
        self.write(&mut out);
        if out.is_empty() {
            out.push('.');
        }
        out
    }

    fn write(&self, out: &mut String) {
        match self {
            Path::Root => {}
            Path::Key(parent, key) => {
                parent.write(out);
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(key);
            }
            Path::Index(parent, i) => {
                parent.write(out);
                out.push('[');
                out.push_str(&i.to_string());
                out.push(']');
            }
        }
    }

    /// An error at this path.
    pub fn error(&self, message: impl Into<String>) -> ConfigError {
        ConfigError::new(self.render(), message)
    }

    /// serde's "invalid type" error: `found` is not the kind of value `expected` names.
    pub fn invalid_type(&self, found: &Value, expected: &str) -> ConfigError {
        self.error(format!(
            "invalid type: {}, expected {expected}",
            Unexpected(found)
        ))
    }
}

/// serde's description of a value in an error (`Unexpected`'s wording).
struct Unexpected<'a>(&'a Value);

impl fmt::Display for Unexpected<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Value::Null => f.write_str("null"),
            Value::Bool(b) => write!(f, "boolean `{b}`"),
            // Number's Display, not f64's: core's float formatter is ~18 KB of Wasm.
            Value::Number(n) if n.is_f64() => write!(f, "floating point `{n}`"),
            Value::Number(n) => write!(f, "integer `{n}`"),
            Value::String(s) => write!(f, "string {s:?}"),
            Value::Array(_) => f.write_str("sequence"),
            Value::Object(_) => f.write_str("map"),
        }
    }
}

/// Parses `json` into a tree; a syntax error or a repeated member name is reported at the
/// path of the value being read when it happened.
pub fn parse_tree(json: &str) -> Result<Value, ConfigError> {
    let failed_at = Cell::new(None);
    let mut de = serde_json::Deserializer::from_str(json);
    let seed = TreeSeed {
        path: Path::Root,
        failed_at: &failed_at,
    };
    let tree = seed.deserialize(&mut de).map_err(|e| {
        let path = failed_at.take().unwrap_or_else(|| ".".to_owned());
        ConfigError::new(path, e.to_string())
    })?;
    de.end().map_err(|e| ConfigError::new(".", e.to_string()))?;
    Ok(tree)
}

/// Builds a [`Value`] like serde_json's own, but refuses a repeated member name (serde_json
/// keeps the last one silently, which would hide a provider defined twice) and records where
/// an error happened (the innermost value being read) in `failed_at`. serde_json bounds the
/// nesting (128 levels).
struct TreeSeed<'p, 'c> {
    path: Path<'p>,
    failed_at: &'c Cell<Option<String>>,
}

impl<'de> DeserializeSeed<'de> for TreeSeed<'_, '_> {
    type Value = Value;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        let (path, failed_at) = (self.path, self.failed_at);
        d.deserialize_any(self).inspect_err(|_| {
            // The innermost value that failed names the place; outer ones keep it.
            let first = failed_at.take().unwrap_or_else(|| path.render());
            failed_at.set(Some(first));
        })
    }
}

impl<'de> Visitor<'de> for TreeSeed<'_, '_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }
    crate::authn::json::visit_scalars!();
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut out = Vec::new();
        loop {
            let seed = TreeSeed {
                path: Path::Index(&self.path, out.len()),
                failed_at: self.failed_at,
            };
            match seq.next_element_seed(seed)? {
                Some(v) => out.push(v),
                None => return Ok(Value::Array(out)),
            }
        }
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if out.contains_key(&key) {
                self.failed_at.set(Some(self.path.render()));
                return Err(de::Error::custom(format_args!("duplicate key {key:?}")));
            }
            let seed = TreeSeed {
                path: Path::Key(&self.path, &key),
                failed_at: self.failed_at,
            };
            let v = map.next_value_seed(seed)?;
            out.insert(key, v);
        }
        Ok(Value::Object(out))
    }
}

/// A configuration type read from the tree.
pub trait FromJson: Sized {
    /// Reads `v`, found at `at`.
    fn from_json(v: &Value, at: Path<'_>) -> Result<Self, ConfigError>;

    /// The value of a member the document leaves out: `None`, or the type's default for the
    /// fields jwt_authn defaults (lists, maps, flags, strings). A struct is never left out
    /// (every struct-typed member is an `Option`), so its default is an error.
    fn absent(at: Path<'_>) -> Result<Self, ConfigError> {
        let field = match at {
            Path::Key(_, key) => key,
            _ => "",
        };
        Err(at.error(format!("missing field `{field}`")))
    }
}

/// Reads member `key` of `obj` (an object at `at`) as a `T`.
pub fn field<T: FromJson>(
    obj: &Map<String, Value>,
    key: &str,
    at: &Path<'_>,
) -> Result<T, ConfigError> {
    let at = Path::Key(at, key);
    match obj.get(key) {
        Some(v) => T::from_json(v, at),
        None => T::absent(at),
    }
}

/// `v` as an object whose members are all in `fields` (a typo is an error at its own path,
/// in serde derive's wording); `name` is the struct's name for the wrong-type message.
pub fn object<'v>(
    v: &'v Value,
    at: &Path<'_>,
    name: &str,
    fields: &[&str],
) -> Result<&'v Map<String, Value>, ConfigError> {
    let Value::Object(obj) = v else {
        return Err(at.invalid_type(v, &format!("struct {name}")));
    };
    if let Some(unknown) = obj.keys().find(|k| !fields.contains(&k.as_str())) {
        let expected = match fields {
            [] => "there are no fields".to_owned(),
            [one] => format!("expected `{one}`"),
            [a, b] => format!("expected `{a}` or `{b}`"),
            _ => format!("expected one of `{}`", fields.join("`, `")),
        };
        return Err(Path::Key(at, unknown).error(format!("unknown field `{unknown}`, {expected}")));
    }
    Ok(obj)
}

/// Declares a struct read from a JSON object whose members are its fields (a field may name
/// its member: `pub type_url as "@type": Option<String>`); members not declared are refused.
macro_rules! json_struct {
    ($(#[$meta:meta])* pub struct $name:ident {
        $($(#[$fmeta:meta])* pub $field:ident $(as $key:literal)? : $ty:ty,)*
    }) => {
        $(#[$meta])*
        pub struct $name {
            $($(#[$fmeta])* pub $field: $ty,)*
        }

        impl $crate::authn::config::read::FromJson for $name {
            fn from_json(
                v: &serde_json::Value,
                at: $crate::authn::config::read::Path<'_>,
            ) -> Result<Self, $crate::authn::config::ConfigError> {
                const FIELDS: &[&str] = &[$(json_struct!(@key $field $($key)?)),*];
                #[allow(unused_variables)]
                let obj = $crate::authn::config::read::object(v, &at, stringify!($name), FIELDS)?;
                Ok($name {
                    $($field: $crate::authn::config::read::field(
                        obj,
                        json_struct!(@key $field $($key)?),
                        &at,
                    )?,)*
                })
            }
        }
    };
    (@key $field:ident) => { stringify!($field) };
    (@key $field:ident $key:literal) => { $key };
}
pub(crate) use json_struct;

impl<T: FromJson> FromJson for Option<T> {
    fn from_json(v: &Value, at: Path<'_>) -> Result<Self, ConfigError> {
        match v {
            Value::Null => Ok(None),
            _ => T::from_json(v, at).map(Some),
        }
    }
    fn absent(_: Path<'_>) -> Result<Self, ConfigError> {
        Ok(None)
    }
}

impl<T: FromJson> FromJson for Vec<T> {
    fn from_json(v: &Value, at: Path<'_>) -> Result<Self, ConfigError> {
        let Value::Array(items) = v else {
            return Err(at.invalid_type(v, "a sequence"));
        };
        items
            .iter()
            .enumerate()
            .map(|(i, item)| T::from_json(item, Path::Index(&at, i)))
            .collect()
    }
    fn absent(_: Path<'_>) -> Result<Self, ConfigError> {
        Ok(Vec::new())
    }
}

impl FromJson for String {
    fn from_json(v: &Value, at: Path<'_>) -> Result<Self, ConfigError> {
        match v {
            Value::String(s) => Ok(s.clone()),
            _ => Err(at.invalid_type(v, "a string")),
        }
    }
    fn absent(_: Path<'_>) -> Result<Self, ConfigError> {
        Ok(String::new())
    }
}

impl FromJson for bool {
    fn from_json(v: &Value, at: Path<'_>) -> Result<Self, ConfigError> {
        match v {
            Value::Bool(b) => Ok(*b),
            _ => Err(at.invalid_type(v, "a boolean")),
        }
    }
    fn absent(_: Path<'_>) -> Result<Self, ConfigError> {
        Ok(false)
    }
}

/// An unsigned integer that fits a `T`; `name` is the Rust type serde's messages name.
fn unsigned<T: TryFrom<u64>>(v: &Value, at: Path<'_>, name: &str) -> Result<T, ConfigError> {
    match v {
        Value::Number(n) if !n.is_f64() => n
            .as_u64()
            .and_then(|u| T::try_from(u).ok())
            .ok_or_else(|| at.error(format!("invalid value: integer `{n}`, expected {name}"))),
        _ => Err(at.invalid_type(v, name)),
    }
}

impl FromJson for u32 {
    fn from_json(v: &Value, at: Path<'_>) -> Result<Self, ConfigError> {
        unsigned(v, at, "u32")
    }
}

impl FromJson for u64 {
    fn from_json(v: &Value, at: Path<'_>) -> Result<Self, ConfigError> {
        unsigned(v, at, "u64")
    }
}

impl FromJson for Value {
    fn from_json(v: &Value, _: Path<'_>) -> Result<Self, ConfigError> {
        Ok(v.clone())
    }
}

impl FromJson for Map<String, Value> {
    fn from_json(v: &Value, at: Path<'_>) -> Result<Self, ConfigError> {
        match v {
            Value::Object(m) => Ok(m.clone()),
            _ => Err(at.invalid_type(v, "a map")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_render_like_operators_write_them() {
        let root = Path::Root;
        assert_eq!(root.render(), ".");
        let rules = Path::Key(&root, "rules");
        let first = Path::Index(&rules, 0);
        let m = Path::Key(&first, "match");
        assert_eq!(m.render(), "rules[0].match");
        assert_eq!(Path::Index(&root, 3).render(), "[3]");
    }

    #[test]
    fn syntax_errors_and_repeats_name_where_they_happened() {
        let e = parse_tree(r#"{"a": {"b": [1, {"c": tru}]}}"#).unwrap_err();
        assert_eq!(e.path, "a.b[1].c");
        assert!(e.message.starts_with("expected ident"), "{}", e.message);
        let e = parse_tree(r#"{"a": {"b": 1, "b": 2}}"#).unwrap_err();
        assert_eq!(
            (e.path.as_str(), &e.message[..15]),
            ("a", "duplicate key \"")
        );
        let e = parse_tree(r#"{} x"#).unwrap_err();
        assert_eq!(e.path, ".");
        assert!(parse_tree("?")
            .unwrap_err()
            .message
            .contains("expected value"));
    }

    #[test]
    fn unknown_members_are_named_at_their_own_path() {
        let v = serde_json::json!({"typo": 2});
        let at = Path::Root;
        let cases: [(&[&str], &str); 4] = [
            (&[], "unknown field `typo`, there are no fields"),
            (&["a"], "unknown field `typo`, expected `a`"),
            (&["a", "b"], "unknown field `typo`, expected `a` or `b`"),
            (
                &["a", "b", "c"],
                "unknown field `typo`, expected one of `a`, `b`, `c`",
            ),
        ];
        for (fields, want) in cases {
            let e = object(&v, &at, "S", fields).unwrap_err();
            assert_eq!((e.path.as_str(), e.message.as_str()), ("typo", want));
        }
        assert!(object(&v, &at, "S", &["a", "typo"]).is_ok());
        let e = object(&Value::from("x"), &at, "S", &[]).unwrap_err();
        assert_eq!(e.message, "invalid type: string \"x\", expected struct S");
    }

    #[test]
    fn messages_use_serdes_wording() {
        let at = Path::Root;
        let cases: [(Value, &str); 7] = [
            (
                Value::from("60"),
                "invalid type: string \"60\", expected u32",
            ),
            (Value::from(-5), "invalid value: integer `-5`, expected u32"),
            (
                Value::from(1.5),
                "invalid type: floating point `1.5`, expected u32",
            ),
            (
                Value::from(1u64 << 40),
                "invalid value: integer `1099511627776`, expected u32",
            ),
            (Value::Null, "invalid type: null, expected u32"),
            (
                Value::Bool(true),
                "invalid type: boolean `true`, expected u32",
            ),
            (
                serde_json::json!([1]),
                "invalid type: sequence, expected u32",
            ),
        ];
        for (v, want) in cases {
            assert_eq!(u32::from_json(&v, at).unwrap_err().message, want);
        }
        assert_eq!(u32::from_json(&Value::from(7), at).unwrap(), 7);
        assert_eq!(
            Option::<u32>::from_json(&Value::Null, at).unwrap(),
            None,
            "null is an unset optional field"
        );
    }
}
