//! JWKS parsing (strict per document, lenient per key) and key selection.
//!
//! A document is refused as a whole only when it cannot be a key set: over
//! [`MAX_JWKS_BYTES`], not a JSON object, no `keys` array, or no usable key at all. Each entry
//! of `keys` is then judged on its own, and an entry that is unsupported or unsafe is skipped
//! with a reason while the rest load (jwt_verify_lib's `createFromJwksCore` does the same).
//! Real issuers mix encryption keys, X25519 keys, 1024-bit legacy keys and curves we do not
//! verify into their signing sets; refusing the whole set for one of them would lock users out.
//!
//! Per-key policy (each failure is a [`SkippedKey`] with a reason naming the rule):
//! - `kid`, when present, must be a string. Keys without `kid` are kept.
//! - `kty` RSA (2048–8192 bits, odd `e` in 3..2^33), EC with `crv` P-256 or P-384 (coordinates
//!   exactly the field size, point on the curve), OKP with `crv` Ed25519 (32 bytes, not a
//!   small-order point), and `oct` only when [`JwksOptions::allow_symmetric`] is set (local key
//!   sets: a remote JWKS carrying a shared secret is a misconfiguration, and mixing symmetric
//!   and public keys is what key-confusion attacks feed on). `k` must be at least 32 bytes.
//! - Private members (`d`, `p`, `q`, `dp`, `dq`, `qi`, `oth`) in an asymmetric key skip it:
//!   a published private key is compromised, and verifying with it would trust anyone.
//! - `use`, when present, must be `sig` (or `jwt-svid`, the SPIFFE trust-bundle use for JWT
//!   signing keys); `key_ops`, when present, must contain `verify`.
//! - `alg`, when present, must be an algorithm jwt-edge verifies and must fit the key type;
//!   the key is then restricted to it.
//! - Every binary member is strict unpadded base64url ([`b64::decode`]); the standard-base64
//!   values some old issuers published are refused, not repaired.
//! - A second key with the same `kid`, the same key type and an overlapping `alg` is skipped:
//!   a `kid` names at most one key per algorithm, so selection by `kid` is unambiguous.
//! - A JSON member repeated inside a key entry skips that entry; a repeated `keys` member
//!   refuses the document.
//! - Other members (`x5c`, `x5t`, `issuer`, …) are ignored: certificates are never used.

use std::fmt;

use serde::de::{self, Deserialize, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::Value;

use crate::authn::alg::{Algorithm, KeyFamily};
use crate::authn::b64;
use crate::authn::crypto::VerifyKey;
use crate::authn::error::AuthError;

/// Largest key-set document accepted, checked before parsing. Real sets are a few KiB (the
/// largest in our corpus, Microsoft Entra with nine certificates, is 15 KB); the cap bounds
/// the memory and load time an oversized or hostile response can cost.
pub const MAX_JWKS_BYTES: usize = 256 * 1024;

/// Most keys tried for a token without `kid`: the first fitting keys in document order.
/// Bounds the signature checks a kid-less token can cause; no real issuer that omits `kid`
/// publishes that many keys for one algorithm.
pub const MAX_KEYS_WITHOUT_KID: usize = 8;

/// Longest member value echoed in a skip reason.
const MAX_ECHO_CHARS: usize = 64;

/// A verified-usable public key (or, for local key sets only, an HMAC secret).
#[derive(Debug, Clone)]
pub struct Jwk {
    pub kid: Option<String>,
    family: KeyFamily,
    /// The JWK `alg`: when set, the only algorithm this key verifies.
    alg: Option<Algorithm>,
    key: VerifyKey,
}

/// The usable keys of one key-set document.
#[derive(Debug, Clone, Default)]
pub struct KeySet {
    keys: Vec<Jwk>,
}

/// A key entry that was not loaded, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SkippedKey {
    /// Position in the document's `keys` array.
    pub index: usize,
    pub kid: Option<String>,
    pub reason: String,
}

/// The outcome of loading a document.
#[derive(Debug, Clone)]
pub struct JwksLoad {
    pub keys: KeySet,
    pub skipped: Vec<SkippedKey>,
}

/// Why a whole document was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum JwksError {
    /// Not JSON, or not an object. The message never quotes the document.
    NotJson(String),
    /// No `keys` member, or it is not an array.
    NoKeysArray,
    /// `keys` holds no usable key; every entry and why it was skipped.
    NoUsableKey(Vec<SkippedKey>),
    /// The document is this many bytes, over [`MAX_JWKS_BYTES`].
    TooLarge(usize),
}

impl JwksError {
    /// A stable machine code for logs and metrics.
    pub fn code(&self) -> &'static str {
        match self {
            JwksError::NotJson(_) => "jwks_not_json",
            JwksError::NoKeysArray => "jwks_no_keys_array",
            JwksError::NoUsableKey(_) => "jwks_no_usable_key",
            JwksError::TooLarge(_) => "jwks_too_large",
        }
    }
}

impl fmt::Display for JwksError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            JwksError::NotJson(why) => write!(f, "key set is not a JSON object: {why}"),
            JwksError::NoKeysArray => f.write_str("key set has no \"keys\" array"),
            JwksError::NoUsableKey(skipped) => {
                write!(f, "key set has no usable key")?;
                if skipped.is_empty() {
                    return f.write_str(" (\"keys\" is empty)");
                }
                write!(f, " ({} skipped:", skipped.len())?;
                for (n, key) in skipped.iter().enumerate() {
                    if n == 3 {
                        write!(f, " …")?;
                        break;
                    }
                    let sep = if n == 0 { "" } else { ";" };
                    write!(f, "{sep} #{}: {}", key.index, key.reason)?;
                }
                f.write_str(")")
            }
            JwksError::TooLarge(size) => write!(
                f,
                "key set is {size} bytes; at most {MAX_JWKS_BYTES} bytes accepted"
            ),
        }
    }
}

impl std::error::Error for JwksError {}

/// Options for [`parse_jwks`].
#[derive(Debug, Clone, Copy, Default)]
pub struct JwksOptions {
    /// Accept `kty: oct` (HMAC) keys: only for local key sets.
    pub allow_symmetric: bool,
}

/// Parses a JWKS document (RFC 7517 §5) into the keys jwt-edge can verify with.
pub fn parse_jwks(bytes: &[u8], opts: JwksOptions) -> Result<JwksLoad, JwksError> {
    if bytes.len() > MAX_JWKS_BYTES {
        return Err(JwksError::TooLarge(bytes.len()));
    }
    let document: Document = serde_json::from_slice(bytes).map_err(|err| {
        // serde_json's own message may quote document content; give only the position.
        JwksError::NotJson(format!(
            "invalid JSON at line {} column {}",
            err.line(),
            err.column()
        ))
    })?;
    let entries = match document {
        Document::NotObject => {
            return Err(JwksError::NotJson("the document is not an object".into()))
        }
        Document::Object {
            repeated_keys: true,
            ..
        } => return Err(JwksError::NotJson("member \"keys\" appears twice".into())),
        Document::Object {
            keys: Some(KeysMember::Array(entries)),
            ..
        } => entries,
        Document::Object { .. } => return Err(JwksError::NoKeysArray),
    };

    let mut keys: Vec<Jwk> = Vec::new();
    let mut skipped = Vec::new();
    for (index, entry) in entries.into_iter().enumerate() {
        let outcome = match entry {
            Entry::NotObject => Err((None, "key entry is not a JSON object".to_string())),
            Entry::Object(members) => load_key(&members, opts),
        };
        let outcome = outcome.and_then(|jwk| match keys.iter().find(|k| k.collides(&jwk)) {
            Some(_) => Err((
                jwk.kid.clone(),
                "duplicate kid: an earlier key has the same kid, key type and alg".into(),
            )),
            None => Ok(jwk),
        });
        match outcome {
            Ok(jwk) => keys.push(jwk),
            Err((kid, reason)) => skipped.push(SkippedKey { index, kid, reason }),
        }
    }
    if keys.is_empty() {
        return Err(JwksError::NoUsableKey(skipped));
    }
    Ok(JwksLoad {
        keys: KeySet { keys },
        skipped,
    })
}

impl KeySet {
    /// Number of usable keys.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// True when no key is usable.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The usable keys, in document order.
    pub fn iter(&self) -> impl Iterator<Item = &Jwk> {
        self.keys.iter()
    }

    /// The keys to try for a token with this `kid` and `alg`.
    ///
    /// With a `kid`: the keys with exactly that `kid` (compared byte for byte, never
    /// normalised) that fit `alg`; no other key is ever tried, so a wrong-key signature with
    /// a reused `kid` fails rather than falling back. A `kid` the set does not have is
    /// [`AuthError::UnknownKid`] (the caller may refresh the set); a known `kid` whose key
    /// does not fit is [`AuthError::NoMatchingKey`].
    ///
    /// Without a `kid`: every key that fits `alg`, with or without a `kid` of its own, in
    /// document order and at most [`MAX_KEYS_WITHOUT_KID`].
    pub fn select(&self, kid: Option<&str>, alg: Algorithm) -> Result<Vec<&Jwk>, AuthError> {
        match kid {
            Some(kid) => {
                let mut named = self
                    .keys
                    .iter()
                    .filter(|k| k.kid.as_deref() == Some(kid))
                    .peekable();
                if named.peek().is_none() {
                    return Err(AuthError::UnknownKid(kid.to_string()));
                }
                let fitting: Vec<&Jwk> = named.filter(|k| k.fits(alg)).collect();
                if fitting.is_empty() {
                    return Err(AuthError::NoMatchingKey(format!(
                        "key {} does not fit {alg}",
                        echo(kid)
                    )));
                }
                Ok(fitting)
            }
            None => {
                let fitting: Vec<&Jwk> = self
                    .keys
                    .iter()
                    .filter(|k| k.fits(alg))
                    .take(MAX_KEYS_WITHOUT_KID)
                    .collect();
                if fitting.is_empty() {
                    return Err(AuthError::NoMatchingKey(format!("no key for {alg}")));
                }
                Ok(fitting)
            }
        }
    }
}

impl Jwk {
    /// Verifies `signature` over `signing_input` with this key under `alg`.
    ///
    /// [`AuthError::NoMatchingKey`] when the key cannot be used for `alg` (other family,
    /// restricted to another `alg`, HMAC key shorter than the hash); otherwise any failure is
    /// [`AuthError::BadSignature`].
    pub fn verify(
        &self,
        alg: Algorithm,
        signing_input: &[u8],
        signature: &[u8],
    ) -> Result<(), AuthError> {
        if !self.fits(alg) {
            let name = match &self.kid {
                Some(kid) => format!("key {}", echo(kid)),
                None => "key without kid".to_string(),
            };
            return Err(AuthError::NoMatchingKey(format!(
                "{name} does not fit {alg}"
            )));
        }
        self.key
            .verify(alg, signing_input, signature)
            .map_err(|_| AuthError::BadSignature)
    }

    /// The key's family (`kty`, and `crv` where there is one).
    pub fn family(&self) -> KeyFamily {
        self.family
    }

    /// The JWK `alg` restriction, if the key has one.
    pub fn alg(&self) -> Option<Algorithm> {
        self.alg
    }

    /// True when this key may verify `alg`.
    fn fits(&self, alg: Algorithm) -> bool {
        self.alg.is_none_or(|own| own == alg) && self.key.supports(alg)
    }

    /// Same `kid`, same family, and some algorithm both would verify.
    fn collides(&self, other: &Jwk) -> bool {
        self.kid.is_some()
            && self.kid == other.kid
            && self.family == other.family
            && match (self.alg, other.alg) {
                (Some(a), Some(b)) => a == b,
                _ => true,
            }
    }
}

// ---------------------------------------------------------------------------------------------
// One key entry.

/// Members whose presence means the entry carries private key material (RFC 7518 §6.2.2,
/// §6.3.2; RFC 8037 §2).
const PRIVATE_MEMBERS: [&str; 7] = ["d", "p", "q", "dp", "dq", "qi", "oth"];

type Members = Vec<(String, Value)>;
type Skip = (Option<String>, String);

fn load_key(members: &Members, opts: JwksOptions) -> Result<Jwk, Skip> {
    let kid = match member(members, "kid") {
        None => None,
        Some(Value::String(kid)) => Some(kid.clone()),
        Some(_) => return Err((None, "kid is not a string".into())),
    };
    if let Some(name) = repeated_member(members) {
        return Err((kid, format!("member {} appears twice", echo(name))));
    }
    load_key_material(members, opts)
        .map(|(family, alg, key)| Jwk {
            kid: kid.clone(),
            family,
            alg,
            key,
        })
        .map_err(|reason| (kid, reason))
}

fn load_key_material(
    members: &Members,
    opts: JwksOptions,
) -> Result<(KeyFamily, Option<Algorithm>, VerifyKey), String> {
    let kty = string_member(members, "kty")?.ok_or("kty is missing")?;
    let family = match kty {
        "RSA" => KeyFamily::Rsa,
        "EC" => {
            let crv = string_member(members, "crv")?.ok_or("EC key has no crv")?;
            match crv {
                "P-256" => KeyFamily::EcP256,
                "P-384" => KeyFamily::EcP384,
                other => return Err(format!("unsupported kty EC crv {}", echo(other))),
            }
        }
        "OKP" => {
            let crv = string_member(members, "crv")?.ok_or("OKP key has no crv")?;
            match crv {
                "Ed25519" => KeyFamily::Ed25519,
                "X25519" | "X448" => {
                    return Err(format!("kty OKP crv {crv} is not a signature curve"))
                }
                other => return Err(format!("unsupported kty OKP crv {}", echo(other))),
            }
        }
        "oct" if !opts.allow_symmetric => {
            return Err("kty oct keys are only accepted in a local JWKS".into())
        }
        "oct" => KeyFamily::Oct,
        other => return Err(format!("unsupported kty {}", echo(other))),
    };

    if family != KeyFamily::Oct
        && PRIVATE_MEMBERS
            .iter()
            .any(|name| member(members, name).is_some())
    {
        return Err("private key material in a public JWKS".into());
    }

    if let Some(key_use) = string_member(members, "use")? {
        if key_use != "sig" && key_use != "jwt-svid" {
            return Err(format!("use is {}, not sig", echo(key_use)));
        }
    }
    if let Some(ops) = member(members, "key_ops") {
        let ops = ops
            .as_array()
            .filter(|ops| ops.iter().all(Value::is_string))
            .ok_or("key_ops is not an array of strings")?;
        if !ops.iter().any(|op| op.as_str() == Some("verify")) {
            return Err("key_ops does not include verify".into());
        }
    }

    let alg = match string_member(members, "alg")? {
        None => None,
        Some(name) => {
            let alg = Algorithm::parse(name).ok_or_else(|| unsupported_alg(name))?;
            if alg.key_family() != family {
                return Err(format!("alg {alg} does not fit {}", family_name(family)));
            }
            Some(alg)
        }
    };

    let key = match family {
        KeyFamily::Rsa => VerifyKey::rsa(&b64_member(members, "n")?, &b64_member(members, "e")?),
        KeyFamily::EcP256 => {
            VerifyKey::ec_p256(&b64_member(members, "x")?, &b64_member(members, "y")?)
        }
        KeyFamily::EcP384 => {
            VerifyKey::ec_p384(&b64_member(members, "x")?, &b64_member(members, "y")?)
        }
        KeyFamily::Ed25519 => VerifyKey::ed25519(&b64_member(members, "x")?),
        KeyFamily::Oct => VerifyKey::hmac(&b64_member(members, "k")?),
    }
    .map_err(|err| err.0)?;

    if let Some(alg) = alg {
        if !key.supports(alg) {
            return Err(format!("oct key k is too short for {alg}"));
        }
    }
    Ok((family, alg, key))
}

/// Signature algorithms registered for JWS that jwt-edge does not verify.
const UNSUPPORTED_SIGNATURE_ALGS: [&str; 6] =
    ["ES512", "ES256K", "Ed25519", "Ed448", "none", "RS1"];

fn unsupported_alg(name: &str) -> String {
    if UNSUPPORTED_SIGNATURE_ALGS.contains(&name) {
        format!("alg {name} is not supported")
    } else {
        format!("alg {} is not a signature algorithm", echo(name))
    }
}

fn family_name(family: KeyFamily) -> &'static str {
    match family {
        KeyFamily::Rsa => "kty RSA",
        KeyFamily::EcP256 => "kty EC crv P-256",
        KeyFamily::EcP384 => "kty EC crv P-384",
        KeyFamily::Ed25519 => "kty OKP crv Ed25519",
        KeyFamily::Oct => "kty oct",
    }
}

fn member<'a>(members: &'a Members, name: &str) -> Option<&'a Value> {
    members.iter().find(|(n, _)| n == name).map(|(_, v)| v)
}

fn repeated_member(members: &Members) -> Option<&str> {
    members.iter().enumerate().find_map(|(i, (name, _))| {
        members
            .iter()
            .skip(i + 1)
            .any(|(other, _)| other == name)
            .then_some(name.as_str())
    })
}

fn string_member<'a>(members: &'a Members, name: &str) -> Result<Option<&'a str>, String> {
    match member(members, name) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(format!("{name} is not a string")),
    }
}

fn b64_member(members: &Members, name: &str) -> Result<Vec<u8>, String> {
    let text = string_member(members, name)?.ok_or_else(|| format!("{name} is missing"))?;
    b64::decode(text).ok_or_else(|| format!("{name} is not unpadded base64url"))
}

/// A value from the document or a token, safe and short enough for a log line.
fn echo(s: &str) -> String {
    let mut out: String = s
        .chars()
        .filter(|c| !c.is_control())
        .take(MAX_ECHO_CHARS)
        .collect();
    if s.chars().count() > MAX_ECHO_CHARS {
        out.push('…');
    }
    out
}

// ---------------------------------------------------------------------------------------------
// The document shape, read in one pass by serde without building a tree for what is ignored,
// keeping each key entry's members in order so a repeated member can be seen.

enum Document {
    Object {
        keys: Option<KeysMember>,
        repeated_keys: bool,
    },
    NotObject,
}

enum KeysMember {
    Array(Vec<Entry>),
    NotArray,
}

enum Entry {
    Object(Members),
    NotObject,
}

/// Implements the non-object visits of a shape visitor: each consumes its value and yields
/// the "wrong shape" answer, so no input shape is a parse error.
macro_rules! other_shapes {
    ($other:expr) => {
        fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
            Ok($other)
        }
        fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
            Ok($other)
        }
        fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
            Ok($other)
        }
        fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
            Ok($other)
        }
        fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
            Ok($other)
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok($other)
        }
    };
}

struct DocumentVisitor;

impl<'de> Visitor<'de> for DocumentVisitor {
    type Value = Document;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JWKS object")
    }

    other_shapes!(Document::NotObject);

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Document, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Document::NotObject)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Document, A::Error> {
        let mut keys = None;
        let mut repeated_keys = false;
        while let Some(name) = map.next_key::<String>()? {
            if name == "keys" {
                repeated_keys |= keys.is_some();
                keys = Some(map.next_value::<KeysMember>()?);
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(Document::Object {
            keys,
            repeated_keys,
        })
    }
}

impl<'de> Deserialize<'de> for Document {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(DocumentVisitor)
    }
}

struct KeysVisitor;

impl<'de> Visitor<'de> for KeysVisitor {
    type Value = KeysMember;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an array of keys")
    }

    other_shapes!(KeysMember::NotArray);

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<KeysMember, A::Error> {
        let mut entries = Vec::new();
        while let Some(entry) = seq.next_element::<Entry>()? {
            entries.push(entry);
        }
        Ok(KeysMember::Array(entries))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<KeysMember, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(KeysMember::NotArray)
    }
}

impl<'de> Deserialize<'de> for KeysMember {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(KeysVisitor)
    }
}

struct EntryVisitor;

impl<'de> Visitor<'de> for EntryVisitor {
    type Value = Entry;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JWK object")
    }

    other_shapes!(Entry::NotObject);

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Entry, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Entry::NotObject)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Entry, A::Error> {
        let mut members = Vec::new();
        while let Some(entry) = map.next_entry::<String, Value>()? {
            members.push(entry);
        }
        Ok(Entry::Object(members))
    }
}

impl<'de> Deserialize<'de> for Entry {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(EntryVisitor)
    }
}
