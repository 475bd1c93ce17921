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
use crate::authn::error::AuthError;
use crate::crypto::verify::VerifyKey;

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

/// A public key carried in a JWS header (RFC 9449 `jwk` of a DPoP proof), under the same
/// rules as a key-set entry, stricter in two ways: a symmetric key is refused, and so is any
/// private member (`k` too, whatever the `kty`). `obj` comes from the strict JSON reader, so
/// its member names are unique.
pub fn header_public_key(obj: &serde_json::Map<String, Value>) -> Result<Jwk, String> {
    if let Some(name) = PRIVATE_MEMBERS
        .iter()
        .chain(&["k"])
        .find(|name| obj.contains_key(**name))
    {
        return Err(format!("jwk has the private member {name}"));
    }
    let members: Members = obj.iter().map(|(n, v)| (n.clone(), v.clone())).collect();
    load_key(&members, JwksOptions::default()).map_err(|(_, reason)| reason)
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    // Public keys from the specifications, one per family.
    // RFC 7515 Appendix A.2.1.
    const RSA_N: &str = "ofgWCuLjybRlzo0tZWJjNiuSfb4p4fAkd_wWJcyQoTbji9k0l8W26mPddxHmfHQp-Vaw-4qPCJrcS2mJPMEzP1Pt0Bm4d4QlL-yRT-SFd2lZS-pCgNMsD1W_YpRPEwOWvG6b32690r2jZ47soMZo9wGzjb_7OMg0LOL-bSf63kpaSHSXndS5z5rexMdbBYUsLA9e-KXBdQOS-UTo7WTBEMa2R2CapHg665xsmtdVMTBQY4uDZlxvb3qCo5ZwKh9kG4LT6_I5IhlJH7aGhyxXFvUK-DWNmoudF8NAco9_h9iaGNj8q2ethFkMLs91kzk2PAcDTW9gb54h4FRWyuXpoQ";
    // RFC 7515 Appendix A.3.1.
    const P256_X: &str = "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU";
    const P256_Y: &str = "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0";
    // Wycheproof ecdsa_secp384r1_sha384_p1363_test.json, first group.
    const P384_X: &str = "LaV92hCJJ2pUP5_9rAv_DZdsrXHrcoDn2b_Z_uS9svIPR_-IgnQ4l3LZjMV1ITiq";
    const P384_Y: &str = "S20FTWnc8-JexJ34cHFeNIg7GDYZfXb4rZYuePZXG7x0B7DWCR-eTYjwFCdEBhdP";
    // RFC 8037 Appendix A.2.
    const ED25519_X: &str = "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo";
    // RFC 7515 Appendix A.1.1 (64 bytes).
    const OCT_K: &str =
        "AyM1SysPpbyDfgZld3umj1qzKObwVMkoqQ-EstJQLr_T-1qS0gZH75aKtMN3Yj0iPS4hcgUuTwjAzZr1Z9CAow";

    const LOCAL: JwksOptions = JwksOptions {
        allow_symmetric: true,
    };
    const REMOTE: JwksOptions = JwksOptions {
        allow_symmetric: false,
    };

    fn jwk_of(family: KeyFamily) -> Value {
        match family {
            KeyFamily::Rsa => json!({"kty": "RSA", "n": RSA_N, "e": "AQAB"}),
            KeyFamily::EcP256 => json!({"kty": "EC", "crv": "P-256", "x": P256_X, "y": P256_Y}),
            KeyFamily::EcP384 => json!({"kty": "EC", "crv": "P-384", "x": P384_X, "y": P384_Y}),
            KeyFamily::Ed25519 => json!({"kty": "OKP", "crv": "Ed25519", "x": ED25519_X}),
            KeyFamily::Oct => json!({"kty": "oct", "k": OCT_K}),
        }
    }

    const FAMILIES: [KeyFamily; 5] = [
        KeyFamily::Rsa,
        KeyFamily::EcP256,
        KeyFamily::EcP384,
        KeyFamily::Ed25519,
        KeyFamily::Oct,
    ];

    fn with(mut jwk: Value, extra: Value) -> Value {
        for (k, v) in extra.as_object().unwrap() {
            jwk[k] = v.clone();
        }
        jwk
    }

    fn load(keys: Vec<Value>, opts: JwksOptions) -> Result<JwksLoad, JwksError> {
        parse_jwks(&serde_json::to_vec(&json!({ "keys": keys })).unwrap(), opts)
    }

    fn set(keys: Vec<Value>) -> KeySet {
        load(keys, LOCAL).unwrap().keys
    }

    /// The reason the single entry was skipped.
    fn skip_reason(jwk: Value, opts: JwksOptions) -> String {
        match load(vec![jwk], opts) {
            Err(JwksError::NoUsableKey(skipped)) => {
                assert_eq!(skipped.len(), 1);
                skipped[0].reason.clone()
            }
            other => panic!("expected a skip, got {other:?}"),
        }
    }

    fn p256_signer(seed: u8) -> (p256::ecdsa::SigningKey, Value) {
        let key = p256::ecdsa::SigningKey::from_slice(&[seed; 32]).unwrap();
        let point = key.verifying_key().to_encoded_point(false);
        let jwk = json!({
            "kty": "EC", "crv": "P-256",
            "x": b64::encode(point.x().unwrap()), "y": b64::encode(point.y().unwrap()),
        });
        (key, jwk)
    }

    fn es256(key: &p256::ecdsa::SigningKey, input: &[u8]) -> Vec<u8> {
        use p256::ecdsa::signature::Signer;
        let sig: p256::ecdsa::Signature = key.sign(input);
        sig.to_bytes().to_vec()
    }

    #[test]
    fn every_family_loads() {
        for family in FAMILIES {
            let keys = set(vec![jwk_of(family)]);
            let key = keys.iter().next().unwrap();
            assert_eq!(key.family(), family);
            assert_eq!(key.alg(), None);
            assert_eq!(key.kid, None);
        }
    }

    /// Every algorithm against every key family, through `select` and through `verify`.
    #[test]
    fn alg_by_family_matrix() {
        for family in FAMILIES {
            let keys = set(vec![with(jwk_of(family), json!({"kid": "k"}))]);
            let key = keys.iter().next().unwrap();
            for alg in Algorithm::ALL {
                let fits = alg.key_family() == family;
                let by_kid = keys.select(Some("k"), alg);
                let without_kid = keys.select(None, alg);
                let verified = key.verify(alg, b"h.p", &[0u8; 64]);
                if fits {
                    assert_eq!(by_kid.unwrap().len(), 1, "{family:?} {alg}");
                    assert_eq!(without_kid.unwrap().len(), 1, "{family:?} {alg}");
                    assert_eq!(verified, Err(AuthError::BadSignature), "{family:?} {alg}");
                } else {
                    assert_eq!(
                        by_kid.unwrap_err(),
                        AuthError::NoMatchingKey(format!("key k does not fit {alg}")),
                        "{family:?} {alg}"
                    );
                    assert_eq!(
                        without_kid.unwrap_err(),
                        AuthError::NoMatchingKey(format!("no key for {alg}"))
                    );
                    assert_eq!(
                        verified,
                        Err(AuthError::NoMatchingKey(format!(
                            "key k does not fit {alg}"
                        ))),
                        "{family:?} {alg}"
                    );
                }
            }
        }
    }

    /// A JWK `alg` must fit the key type at load, and then restricts the key to it.
    #[test]
    fn key_alg_matrix() {
        for family in FAMILIES {
            for own in Algorithm::ALL {
                let jwk = with(jwk_of(family), json!({"alg": own.name(), "kid": "k"}));
                if own.key_family() != family {
                    let reason = skip_reason(jwk, LOCAL);
                    assert!(
                        reason.starts_with(&format!("alg {own} does not fit ")),
                        "{reason}"
                    );
                    continue;
                }
                let keys = set(vec![jwk]);
                assert_eq!(keys.iter().next().unwrap().alg(), Some(own));
                for alg in Algorithm::ALL {
                    assert_eq!(
                        keys.select(Some("k"), alg).is_ok(),
                        alg == own,
                        "{own} {alg}"
                    );
                }
            }
        }
        assert_eq!(
            skip_reason(
                with(jwk_of(KeyFamily::Rsa), json!({"alg": "ES256"})),
                REMOTE
            ),
            "alg ES256 does not fit kty RSA"
        );
    }

    #[test]
    fn unknown_kid_versus_no_matching_key() {
        let keys = set(vec![
            with(
                jwk_of(KeyFamily::Rsa),
                json!({"kid": "rsa", "alg": "RS256"}),
            ),
            with(jwk_of(KeyFamily::EcP256), json!({"kid": "ec"})),
        ]);
        assert_eq!(
            keys.select(Some("nope"), Algorithm::Rs256).unwrap_err(),
            AuthError::UnknownKid("nope".into())
        );
        // Exact, case-sensitive comparison.
        assert_eq!(
            keys.select(Some("RSA"), Algorithm::Rs256).unwrap_err(),
            AuthError::UnknownKid("RSA".into())
        );
        assert_eq!(
            keys.select(Some("rsa"), Algorithm::Ps256).unwrap_err(),
            AuthError::NoMatchingKey("key rsa does not fit PS256".into())
        );
        assert_eq!(
            keys.select(Some("ec"), Algorithm::Rs256).unwrap_err(),
            AuthError::NoMatchingKey("key ec does not fit RS256".into())
        );
        let chosen = keys.select(Some("rsa"), Algorithm::Rs256).unwrap();
        assert_eq!(chosen.len(), 1);
        assert_eq!(chosen[0].kid.as_deref(), Some("rsa"));
        // A token without kid may use keys that have one.
        let chosen = keys.select(None, Algorithm::Es256).unwrap();
        assert_eq!(chosen[0].kid.as_deref(), Some("ec"));
        assert_eq!(
            keys.select(None, Algorithm::EdDsa).unwrap_err(),
            AuthError::NoMatchingKey("no key for EdDSA".into())
        );
        // A long kid from a token is shortened in the message.
        let long = "x".repeat(300);
        let keys = set(vec![with(jwk_of(KeyFamily::EcP256), json!({"kid": long}))]);
        match keys.select(Some(&long), Algorithm::Rs256).unwrap_err() {
            AuthError::NoMatchingKey(msg) => assert!(msg.len() < 100, "{msg}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn selection_by_kid_never_falls_back() {
        let (signer_a, jwk_a) = p256_signer(1);
        let (_, jwk_b) = p256_signer(2);
        let keys = set(vec![
            with(jwk_a, json!({"kid": "a"})),
            with(jwk_b, json!({"kid": "b"})),
        ]);
        let sig = es256(&signer_a, b"h.p");
        let verify_with = |kid: Option<&str>| -> bool {
            keys.select(kid, Algorithm::Es256)
                .unwrap()
                .iter()
                .any(|k| k.verify(Algorithm::Es256, b"h.p", &sig).is_ok())
        };
        assert!(verify_with(Some("a")));
        // Signed by a's key but naming b: only b is tried.
        assert!(!verify_with(Some("b")));
        // Without kid both are candidates.
        assert!(verify_with(None));
    }

    #[test]
    fn kidless_selection_is_bounded() {
        let signers: Vec<_> = (1..=10u8).map(p256_signer).collect();
        let keys = set(signers.iter().map(|(_, jwk)| jwk.clone()).collect());
        assert_eq!(keys.len(), 10);
        let chosen = keys.select(None, Algorithm::Es256).unwrap();
        assert_eq!(chosen.len(), MAX_KEYS_WITHOUT_KID);
        // Document order: the ninth key is not tried for a kid-less token.
        let sig = es256(&signers[8].0, b"h.p");
        assert!(chosen
            .iter()
            .all(|k| k.verify(Algorithm::Es256, b"h.p", &sig).is_err()));
        let sig = es256(&signers[7].0, b"h.p");
        assert!(chosen
            .iter()
            .any(|k| k.verify(Algorithm::Es256, b"h.p", &sig).is_ok()));
    }

    #[test]
    fn use_and_key_ops() {
        let rsa = || jwk_of(KeyFamily::Rsa);
        assert_eq!(
            skip_reason(with(rsa(), json!({"use": "enc"})), REMOTE),
            "use is enc, not sig"
        );
        assert_eq!(
            skip_reason(with(rsa(), json!({"use": "x509-svid"})), REMOTE),
            "use is x509-svid, not sig"
        );
        assert_eq!(
            skip_reason(with(rsa(), json!({"use": 1})), REMOTE),
            "use is not a string"
        );
        assert_eq!(
            skip_reason(with(rsa(), json!({"key_ops": ["sign", "encrypt"]})), REMOTE),
            "key_ops does not include verify"
        );
        assert_eq!(
            skip_reason(with(rsa(), json!({"key_ops": "verify"})), REMOTE),
            "key_ops is not an array of strings"
        );
        for ok in [
            json!({"use": "sig"}),
            json!({"use": "jwt-svid"}),
            json!({"key_ops": ["verify"]}),
            json!({"key_ops": ["sign", "verify"], "use": "sig"}),
        ] {
            assert_eq!(set(vec![with(rsa(), ok)]).len(), 1);
        }
    }

    #[test]
    fn skip_reasons() {
        let cases: Vec<(Value, &str)> = vec![
            (json!({"n": RSA_N, "e": "AQAB"}), "kty is missing"),
            (json!({"kty": 1}), "kty is not a string"),
            (
                json!({"kty": "rsa", "n": RSA_N, "e": "AQAB"}),
                "unsupported kty rsa",
            ),
            (
                json!({"kty": "EC", "x": P256_X, "y": P256_Y}),
                "EC key has no crv",
            ),
            (
                json!({"kty": "EC", "crv": "P-521"}),
                "unsupported kty EC crv P-521",
            ),
            (
                json!({"kty": "EC", "crv": "secp256k1"}),
                "unsupported kty EC crv secp256k1",
            ),
            (
                json!({"kty": "OKP", "crv": "X25519", "x": ED25519_X}),
                "kty OKP crv X25519 is not a signature curve",
            ),
            (
                json!({"kty": "OKP", "crv": "Ed448"}),
                "unsupported kty OKP crv Ed448",
            ),
            (json!({"kty": "RSA", "e": "AQAB"}), "n is missing"),
            (
                json!({"kty": "RSA", "n": format!("{RSA_N}="), "e": "AQAB"}),
                "n is not unpadded base64url",
            ),
            (
                json!({"kty": "RSA", "n": RSA_N.replace('-', "+"), "e": "AQAB"}),
                "n is not unpadded base64url",
            ),
            (
                json!({"kty": "RSA", "n": RSA_N, "e": "AQAB", "kid": 7}),
                "kid is not a string",
            ),
            (
                json!({"kty": "RSA", "n": RSA_N, "e": "AQAB", "alg": "RSA-OAEP"}),
                "alg RSA-OAEP is not a signature algorithm",
            ),
            (
                json!({"kty": "EC", "crv": "P-256", "x": P256_X, "y": P256_Y, "alg": "ES512"}),
                "alg ES512 is not supported",
            ),
            (
                json!({"kty": "RSA", "n": RSA_N, "e": "AQAB", "alg": "rs256"}),
                "alg rs256 is not a signature algorithm",
            ),
            (
                json!({"kty": "RSA", "n": RSA_N, "e": "AQAB", "d": "AQAB"}),
                "private key material in a public JWKS",
            ),
            (
                json!({"kty": "EC", "crv": "P-256", "x": P256_X, "y": P256_Y, "d": "AA"}),
                "private key material in a public JWKS",
            ),
            (
                json!({"kty": "OKP", "crv": "Ed25519", "x": ED25519_X, "d": "AA"}),
                "private key material in a public JWKS",
            ),
            (
                json!({"kty": "EC", "crv": "P-256", "x": P256_X, "y": P256_X}),
                "EC point is not on the curve P-256",
            ),
            (
                json!({"kty": "EC", "crv": "P-384", "x": P256_X, "y": P256_Y}),
                "EC x is 32 bytes; P-384 needs 48",
            ),
            (
                json!({"kty": "OKP", "crv": "Ed25519", "x": P384_X}),
                "Ed25519 x is 48 bytes; 32 required",
            ),
            (
                json!({"kty": "oct", "k": "c2hvcnQ"}),
                "oct key k is 5 bytes; at least 32 required",
            ),
            (
                json!({"kty": "oct", "k": b64::encode(&[1; 32]), "alg": "HS512"}),
                "oct key k is too short for HS512",
            ),
            (
                json!({"kty": "RSA", "n": b64::encode(&[0xff; 128]), "e": "AQAB"}),
                "RSA modulus is 1024 bits; at least 2048 required",
            ),
            (
                json!({"kty": "RSA", "n": b64::encode(&[0xff; 1025]), "e": "AQAB"}),
                "RSA modulus is 8200 bits; at most 8192 accepted",
            ),
        ];
        for (jwk, reason) in cases {
            assert_eq!(skip_reason(jwk.clone(), LOCAL), reason, "{jwk}");
        }
        // An even exponent or e = 1 is refused by the RSA checks.
        for e in ["Ag", "AQ"] {
            let reason = skip_reason(json!({"kty": "RSA", "n": RSA_N, "e": e}), LOCAL);
            assert!(reason.starts_with("RSA key refused"), "{reason}");
        }
        // Symmetric keys only in local key sets.
        assert_eq!(
            skip_reason(jwk_of(KeyFamily::Oct), REMOTE),
            "kty oct keys are only accepted in a local JWKS"
        );
        // A 32-byte secret fits HS256 only.
        let keys = set(vec![json!({"kty": "oct", "k": b64::encode(&[1; 32])})]);
        assert!(keys.select(None, Algorithm::Hs256).is_ok());
        assert!(keys.select(None, Algorithm::Hs384).is_err());
    }

    #[test]
    fn lenient_per_key() {
        let loaded = load(
            vec![
                json!("not a key"),
                json!([1, 2]),
                with(jwk_of(KeyFamily::Rsa), json!({"kid": "a", "use": "enc"})),
                with(
                    jwk_of(KeyFamily::Rsa),
                    json!({"kid": "b", "x5c": ["MIIB"], "issuer": "x"}),
                ),
            ],
            REMOTE,
        )
        .unwrap();
        assert_eq!(loaded.keys.len(), 1);
        let skipped: Vec<(usize, Option<&str>, &str)> = loaded
            .skipped
            .iter()
            .map(|s| (s.index, s.kid.as_deref(), s.reason.as_str()))
            .collect();
        assert_eq!(
            skipped,
            vec![
                (0, None, "key entry is not a JSON object"),
                (1, None, "key entry is not a JSON object"),
                (2, Some("a"), "use is enc, not sig"),
            ]
        );
    }

    #[test]
    fn repeated_members_and_kids() {
        // A member repeated inside a key entry skips the entry.
        let doc =
            format!(r#"{{"keys":[{{"kty":"RSA","n":"{RSA_N}","e":"AQAB","e":"Aw","kid":"r"}}]}}"#);
        match parse_jwks(doc.as_bytes(), REMOTE) {
            Err(JwksError::NoUsableKey(skipped)) => {
                assert_eq!(skipped[0].reason, "member e appears twice");
                assert_eq!(skipped[0].kid.as_deref(), Some("r"));
            }
            other => panic!("{other:?}"),
        }
        // A repeated "keys" refuses the document.
        let doc = br#"{"keys":[],"keys":[]}"#;
        assert!(matches!(
            parse_jwks(doc, REMOTE),
            Err(JwksError::NotJson(msg)) if msg.contains("appears twice")
        ));
        // Same kid, same family, overlapping alg: the second is skipped.
        let (_, a) = p256_signer(1);
        let (_, b) = p256_signer(2);
        let loaded = load(
            vec![
                with(a, json!({"kid": "k"})),
                with(b, json!({"kid": "k", "alg": "ES256"})),
            ],
            REMOTE,
        )
        .unwrap();
        assert_eq!(loaded.keys.len(), 1);
        assert!(loaded.skipped[0].reason.starts_with("duplicate kid"));
        // Same kid for keys of different families, or disjoint algs, is fine.
        let keys = set(vec![
            with(jwk_of(KeyFamily::Rsa), json!({"kid": "k", "alg": "RS256"})),
            with(jwk_of(KeyFamily::Rsa), json!({"kid": "k", "alg": "PS256"})),
            with(jwk_of(KeyFamily::EcP256), json!({"kid": "k"})),
        ]);
        assert_eq!(keys.len(), 3);
        for alg in [Algorithm::Rs256, Algorithm::Ps256, Algorithm::Es256] {
            assert_eq!(keys.select(Some("k"), alg).unwrap().len(), 1);
        }
        // Kid-less duplicates are kept (they are tried in a bounded way).
        let keys = set(vec![jwk_of(KeyFamily::Rsa), jwk_of(KeyFamily::Rsa)]);
        assert_eq!(keys.len(), 2);
    }

    #[test]
    fn document_errors() {
        let big = vec![b' '; MAX_JWKS_BYTES + 1];
        assert_eq!(
            parse_jwks(&big, REMOTE).unwrap_err(),
            JwksError::TooLarge(MAX_JWKS_BYTES + 1)
        );
        let err = parse_jwks(br#"{"keys": [sekrit"#, REMOTE).unwrap_err();
        match &err {
            JwksError::NotJson(msg) => assert!(!msg.contains("sekrit"), "{msg}"),
            other => panic!("{other:?}"),
        }
        assert!(!err.to_string().contains("sekrit"));
        assert!(matches!(
            parse_jwks(b"", REMOTE),
            Err(JwksError::NotJson(_))
        ));
        assert!(matches!(
            parse_jwks(b"{} x", REMOTE),
            Err(JwksError::NotJson(_))
        ));
        assert!(matches!(
            parse_jwks(b"\xff", REMOTE),
            Err(JwksError::NotJson(_))
        ));
        for not_object in [&b"[1]"[..], b"\"keys\"", b"null", b"3"] {
            assert_eq!(
                parse_jwks(not_object, REMOTE).unwrap_err(),
                JwksError::NotJson("the document is not an object".into())
            );
        }
        for no_array in [
            &br#"{}"#[..],
            br#"{"keys":{}}"#,
            br#"{"keys":null}"#,
            br#"{"Keys":[]}"#,
        ] {
            assert_eq!(
                parse_jwks(no_array, REMOTE).unwrap_err(),
                JwksError::NoKeysArray
            );
        }
        let empty = parse_jwks(br#"{"keys":[]}"#, REMOTE).unwrap_err();
        assert_eq!(empty, JwksError::NoUsableKey(vec![]));
        assert_eq!(
            empty.to_string(),
            "key set has no usable key (\"keys\" is empty)"
        );
        let none = load(
            vec![json!({"kty": "EC", "crv": "P-521", "kid": "x"})],
            REMOTE,
        )
        .unwrap_err();
        assert_eq!(
            none.to_string(),
            "key set has no usable key (1 skipped: #0: unsupported kty EC crv P-521)"
        );
        assert_eq!(none.code(), "jwks_no_usable_key");
        // Deep nesting is a JSON error, not a stack overflow.
        let deep = format!(
            "{{\"keys\":[{{\"x\":{}{}}}]}}",
            "[".repeat(5000),
            "]".repeat(5000)
        );
        assert!(matches!(
            parse_jwks(deep.as_bytes(), REMOTE),
            Err(JwksError::NotJson(_))
        ));
    }

    #[test]
    fn debug_output_hides_secrets() {
        let keys = set(vec![jwk_of(KeyFamily::Oct)]);
        let text = format!("{keys:?}");
        assert!(!text.contains(OCT_K), "{text}");
        assert!(text.contains("redacted"), "{text}");
    }
}
