//! Registered-claim checks: `exp`, `nbf`, `iat` types and times, `iss`, `aud`, `sub`.
//!
//! Time claims must be JSON numbers (RFC 7519 NumericDate); a numeric string is malformed.
//! Clock skew is applied once, here.

use serde_json::{Map, Value};

use crate::authn::b64;
use crate::authn::error::AuthError;

use crate::authn::policy::{ClaimFormat, ClaimRequirement, Provider};
use crate::time::UnixMillis;

/// A claim read as a NumericDate: absent, or a JSON number.
fn numeric_date(claims: &Map<String, Value>, name: &'static str) -> Result<Option<f64>, AuthError> {
    match claims.get(name) {
        None => Ok(None),
        Some(Value::Number(n)) => n.as_f64().map(Some).ok_or(AuthError::ClaimMalformed(name)),
        Some(_) => Err(AuthError::ClaimMalformed(name)),
    }
}

/// Checks `exp`, `nbf`, `iat` and `max_lifetime` against `now`, in whole seconds (the claims'
/// scale: `now` rounded down).
pub fn check_times(
    claims: &Map<String, Value>,
    p: &Provider,
    now: UnixMillis,
) -> Result<(), AuthError> {
    ClaimTimes::read(claims)?.check(p, now)
}

/// A token's `exp`, `nbf` and `iat`, read once: a verified token keeps them, so that a
/// cache hit checks its times without looking the claims up again.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ClaimTimes {
    exp: Option<f64>,
    nbf: Option<f64>,
    iat: Option<f64>,
}

impl ClaimTimes {
    /// The time claims of `claims`; a time claim that is not a number is malformed.
    pub fn read(claims: &Map<String, Value>) -> Result<ClaimTimes, AuthError> {
        Ok(ClaimTimes {
            exp: numeric_date(claims, "exp")?,
            nbf: numeric_date(claims, "nbf")?,
            iat: numeric_date(claims, "iat")?,
        })
    }

    /// [`check_times`] on claims already read.
    pub fn check(&self, p: &Provider, now: UnixMillis) -> Result<(), AuthError> {
        let ClaimTimes { exp, nbf, iat } = *self;
        let now = now.as_secs() as f64;
        let skew = p.clock_skew.as_secs() as f64;
        match exp {
            Some(exp) if now > exp + skew => return Err(AuthError::Expired),
            Some(_) => {}
            None if p.require_expiration || p.max_lifetime.is_some() => {
                return Err(AuthError::ExpMissing)
            }
            None => {}
        }
        if let Some(nbf) = nbf {
            if nbf > now + skew {
                return Err(AuthError::NotYetValid);
            }
        }
        if let (Some(max), Some(exp)) = (p.max_lifetime, exp) {
            // The lifetime counts from `iat`, but never from later than now: a token minted
            // with a future `iat` would otherwise carry any lifetime it likes.
            let start = iat.map_or(now, |iat| iat.min(now));
            if exp - start > max.as_secs() as f64 {
                return Err(AuthError::LifetimeTooLong);
            }
        }
        Ok(())
    }
}

/// Checks `iss` against the provider's issuer (exact match, no normalisation).
pub fn check_issuer(claims: &Map<String, Value>, p: &Provider) -> Result<(), AuthError> {
    let Some(want) = &p.issuer else {
        return Ok(());
    };
    match claims.get("iss") {
        Some(Value::String(iss)) if iss == want => Ok(()),
        Some(Value::String(_)) | None => Err(AuthError::IssuerMismatch),
        Some(_) => Err(AuthError::ClaimMalformed("iss")),
    }
}

/// Checks that `aud` (a string or an array of strings) contains any of `audiences`.
/// An empty `audiences` list means no audience check.
pub fn check_audience(claims: &Map<String, Value>, audiences: &[String]) -> Result<(), AuthError> {
    if audiences.is_empty() {
        return Ok(());
    }
    let hit = match claims.get("aud") {
        None => false,
        Some(Value::String(a)) => audiences.iter().any(|w| w == a),
        Some(Value::Array(items)) => {
            let mut hit = false;
            for item in items {
                match item {
                    Value::String(a) => hit |= audiences.iter().any(|w| w == a),
                    _ => return Err(AuthError::ClaimMalformed("aud")),
                }
            }
            hit
        }
        Some(_) => return Err(AuthError::ClaimMalformed("aud")),
    };
    if hit {
        Ok(())
    } else {
        Err(AuthError::AudienceMismatch)
    }
}

/// Checks `sub` against the provider's subject matcher.
pub fn check_subject(claims: &Map<String, Value>, p: &Provider) -> Result<(), AuthError> {
    let Some(matcher) = &p.subjects else {
        return Ok(());
    };
    match claims.get("sub") {
        Some(Value::String(sub)) if matcher.matches(sub) => Ok(()),
        Some(Value::String(_)) | None => Err(AuthError::SubjectMismatch),
        Some(_) => Err(AuthError::ClaimMalformed("sub")),
    }
}

/// The token's scopes: `scope` (RFC 8693 §4.2, space-delimited) and `scp` (an array, or a
/// space-delimited string, as Entra ID and Okta send it).
pub fn token_scopes(claims: &Map<String, Value>) -> Result<Vec<&str>, AuthError> {
    let mut out = Vec::new();
    for name in ["scope", "scp"] {
        match claims.get(name) {
            None => {}
            Some(Value::String(s)) => out.extend(s.split(' ').filter(|w| !w.is_empty())),
            Some(Value::Array(items)) if name == "scp" => {
                for item in items {
                    match item {
                        Value::String(s) => out.push(s.as_str()),
                        _ => return Err(AuthError::ClaimMalformed("scp")),
                    }
                }
            }
            Some(_) => {
                return Err(AuthError::ClaimMalformed(if name == "scope" {
                    "scope"
                } else {
                    "scp"
                }))
            }
        }
    }
    Ok(out)
}

/// Checks that the token carries every scope in `required`.
pub fn check_scopes(claims: &Map<String, Value>, required: &[String]) -> Result<(), AuthError> {
    if required.is_empty() {
        return Ok(());
    }
    let have = token_scopes(claims)?;
    if required.iter().all(|r| have.contains(&r.as_str())) {
        Ok(())
    } else {
        Err(AuthError::InsufficientScope {
            required: required.join(" "),
        })
    }
}

/// Checks each required claim: a scalar claim must equal one of the values, an array claim
/// must contain one of them (JSON equality: `7` and `"7"` differ).
pub fn check_required_claims(
    claims: &Map<String, Value>,
    required: &[ClaimRequirement],
) -> Result<(), AuthError> {
    for r in required {
        let ok = match claim_at(claims, &r.path) {
            Some(Value::Array(items)) => items.iter().any(|i| r.values.contains(i)),
            Some(v) => r.values.contains(v),
            None => false,
        };
        if !ok {
            return Err(AuthError::ClaimMismatch(r.name.clone()));
        }
    }
    Ok(())
}

/// Looks up a claim by a `.`-separated path (`a.b.c`).
pub fn claim_at<'a>(claims: &'a Map<String, Value>, path: &[String]) -> Option<&'a Value> {
    let (first, rest) = path.split_first()?;
    let mut v = claims.get(first)?;
    for part in rest {
        v = v.as_object()?.get(part)?;
    }
    Some(v)
}

/// Renders a claim as a header value in `format`; `None` when the header is not set.
///
/// [`ClaimFormat::JwtAuthn`], Envoy jwt_authn's format (`authenticator.cc`
/// `addJWTClaimToHeader`): strings as they are; a non-negative integral number below 2^64 as
/// an integer, any other number as C's `%f` (`-5` → `-5.000000`, `1.5` → `1.500000`);
/// booleans `true` / `false`; arrays and objects as the standard, padded base64 of their
/// compact JSON (`["reader","writer"]` → `WyJyZWFkZXIiLCJ3cml0ZXIiXQ==`). An empty string
/// or `null` sets no header (as jwt_authn).
///
/// [`ClaimFormat::Joined`] (extension): numbers as JSON text, arrays of scalars joined with
/// `,`, each string element with `%` and `,` percent-escaped (`%25`, `%2C`) so that
/// `["user,admin"]` and `["user","admin"]` cannot give the same header; objects and nested
/// arrays set no header.
///
/// Either way, a value with a control character sets no header (it cannot be a header
/// value).
pub fn claim_header_value(v: &Value, format: ClaimFormat) -> Option<String> {
    let s = match format {
        ClaimFormat::JwtAuthn => jwt_authn_value(v)?,
        ClaimFormat::Joined => joined_value(v)?,
    };
    (!s.is_empty() && !s.chars().any(|c| c.is_control())).then_some(s)
}

fn jwt_authn_value(v: &Value) -> Option<String> {
    Some(match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => jwt_authn_number(n.as_f64()?),
        Value::Bool(b) => b.to_string(),
        Value::Array(_) | Value::Object(_) => {
            b64::encode_standard(crate::authn::json::to_compact(v).as_bytes())
        }
        Value::Null => return None,
    })
}

/// jwt_authn's `convertClaimDoubleToString`: claims are protobuf doubles there.
fn jwt_authn_number(d: f64) -> String {
    // 2^64 as a double: integral values in [0, 2^64) print as integers.
    const TWO_POW_64: f64 = 18_446_744_073_709_551_616.0;
    if (0.0..TWO_POW_64).contains(&d) && d.fract() == 0.0 {
        // Exact: `d` is integral and in range.
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let int = d as u64;
        int.to_string()
    } else {
        fixed6(d)
    }
}

/// C's `printf("%f", d)` (what `std::to_string(double)` prints): the exact binary value
/// rounded half-to-even to six decimals. Done with integers: Rust's own `{:.6}` would pull
/// the whole exact float formatter into the module (~30 KB of Wasm).
fn fixed6(d: f64) -> String {
    if !d.is_finite() {
        // JSON has no infinities or NaN; nothing to print.
        return String::new();
    }
    let bits = d.to_bits();
    let negative = bits >> 63 == 1;
    let biased = i64::try_from((bits >> 52) & 0x7ff).unwrap_or(0);
    let fraction = bits & ((1 << 52) - 1);
    // d = mantissa * 2^exponent, exactly.
    let (mantissa, exponent) = if biased == 0 {
        (fraction, -1074)
    } else {
        (fraction | 1 << 52, biased - 1075)
    };
    // The digits of round(|d| * 10^6).
    let digits = if exponent >= 0 {
        let mut s = decimal_shifted(mantissa, u32::try_from(exponent).unwrap_or(0));
        s.push_str("000000");
        s
    } else {
        let shift = u32::try_from(-exponent).unwrap_or(u32::MAX);
        // < 2^73: fits, and for shift >= 128 the value is far below half a unit.
        let scaled = u128::from(mantissa) * 1_000_000;
        if shift >= 128 {
            "0".to_owned()
        } else {
            let q = scaled >> shift;
            let r = scaled & ((1u128 << shift) - 1);
            let half = 1u128 << (shift - 1);
            let q = if r > half || (r == half && q & 1 == 1) {
                q + 1
            } else {
                q
            };
            q.to_string()
        }
    };
    let digits = format!("{digits:0>7}");
    let (int, frac) = digits
        .split_at_checked(digits.len().saturating_sub(6))
        .unwrap_or((&digits, ""));
    format!("{}{int}.{frac}", if negative { "-" } else { "" })
}

/// `m * 2^e` in decimal (base-10^9 limbs, least significant first).
fn decimal_shifted(m: u64, mut e: u32) -> String {
    const BASE: u64 = 1_000_000_000;
    let mut limbs: Vec<u64> = Vec::new();
    let mut rest = m;
    while rest > 0 {
        limbs.push(rest % BASE);
        rest /= BASE;
    }
    while e > 0 {
        let k = e.min(32);
        e -= k;
        let mut carry = 0u64;
        for limb in &mut limbs {
            // limb < 10^9 < 2^30 and k <= 32: the product fits in u64.
            let v = (*limb << k) + carry;
            *limb = v % BASE;
            carry = v / BASE;
        }
        while carry > 0 {
            limbs.push(carry % BASE);
            carry /= BASE;
        }
    }
    let mut out = String::new();
    for (i, limb) in limbs.iter().rev().enumerate() {
        if i == 0 {
            out.push_str(&limb.to_string());
        } else {
            out.push_str(&format!("{limb:09}"));
        }
    }
    if out.is_empty() {
        out.push('0');
    }
    out
}

fn joined_value(v: &Value) -> Option<String> {
    Some(match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Array(items) => {
            let parts: Option<Vec<String>> = items
                .iter()
                .map(|i| match i {
                    Value::String(s) => Some(s.replace('%', "%25").replace(',', "%2C")),
                    Value::Number(n) => Some(n.to_string()),
                    Value::Bool(b) => Some(b.to_string()),
                    Value::Array(_) | Value::Object(_) | Value::Null => None,
                })
                .collect();
            parts?.join(",")
        }
        Value::Null | Value::Object(_) => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::authn::matcher::{StringMatcher, StringPattern};
    use crate::time::Millis;
    use serde_json::json;

    fn provider() -> Provider {
        Provider {
            name: "p".into(),
            issuer: Some("https://issuer".into()),
            audiences: vec![],
            subjects: None,
            require_expiration: true,
            max_lifetime: None,
            clock_skew: Millis::from_secs(60),
            algorithms: vec![],
            jwks: 0,
            forward: false,
            locations: vec![],
            forward_payload_header: None,
            pad_forward_payload_header: false,
            claim_to_headers: vec![],
            max_token_bytes: 8192,
            jwt_cache_size: 0,
            revoked: Default::default(),
            revocation_list: None,
            sender: Default::default(),
            publish: Default::default(),
        }
    }

    fn obj(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap()
    }

    /// `now` in seconds, the claims' scale.
    fn times(v: Value, p: &Provider, now: u64) -> &'static str {
        match check_times(&obj(v), p, UnixMillis::from_secs(now)) {
            Ok(()) => "ok",
            Err(e) => e.code(),
        }
    }

    #[test]
    fn time_table() {
        let p = provider();
        let now = 1_000_000;
        let cases = [
            (json!({"exp": now + 10}), "ok"),
            (json!({"exp": now - 60}), "ok"),
            (json!({"exp": now - 61}), "token_expired"),
            (json!({"exp": 0}), "token_expired"),
            (json!({"exp": -5}), "token_expired"),
            (json!({"exp": (now + 1) as f64 + 0.5}), "ok"),
            (json!({"exp": "9999999999"}), "claim_malformed"),
            (json!({"exp": null}), "claim_malformed"),
            (json!({"exp": true}), "claim_malformed"),
            (json!({}), "exp_missing"),
            (json!({"exp": now + 10, "nbf": now + 60}), "ok"),
            (
                json!({"exp": now + 10, "nbf": now + 61}),
                "token_not_yet_valid",
            ),
            (json!({"exp": now + 10, "nbf": "1"}), "claim_malformed"),
            (json!({"exp": now + 10, "iat": "1"}), "claim_malformed"),
        ];
        for (claims, want) in cases {
            assert_eq!(times(claims.clone(), &p, now), want, "{claims}");
        }
        let lax = Provider {
            require_expiration: false,
            ..provider()
        };
        assert_eq!(times(json!({}), &lax, now), "ok");
        let capped = Provider {
            max_lifetime: Some(Millis::from_secs(3600)),
            require_expiration: false,
            ..provider()
        };
        assert_eq!(times(json!({}), &capped, now), "exp_missing");
        assert_eq!(
            times(json!({"iat": now, "exp": now + 3600}), &capped, now),
            "ok"
        );
        assert_eq!(
            times(json!({"iat": now, "exp": now + 3601}), &capped, now),
            "lifetime_too_long"
        );
        assert_eq!(
            times(json!({"exp": now + 7200}), &capped, now),
            "lifetime_too_long"
        );
        // F6: a future `iat` does not stretch the allowed lifetime: counted from now.
        let lifetimes = [
            (
                json!({"iat": now + 100_000, "exp": now + 100_000 + 3600}),
                "lifetime_too_long",
            ),
            (json!({"iat": now + 30, "exp": now + 3600}), "ok"),
            (
                json!({"iat": now + 30, "exp": now + 3601}),
                "lifetime_too_long",
            ),
            (json!({"iat": now - 100, "exp": now + 3500}), "ok"),
            (
                json!({"iat": now - 100, "exp": now + 3501}),
                "lifetime_too_long",
            ),
        ];
        for (claims, want) in lifetimes {
            assert_eq!(times(claims.clone(), &capped, now), want, "{claims}");
        }
    }

    #[test]
    fn issuer_audience_subject() {
        let p = provider();
        let code = |r: Result<(), AuthError>| r.err().map(|e| e.code()).unwrap_or("ok");
        assert_eq!(
            code(check_issuer(&obj(json!({"iss": "https://issuer"})), &p)),
            "ok"
        );
        assert_eq!(
            code(check_issuer(&obj(json!({"iss": "https://issuer/"})), &p)),
            "issuer_mismatch"
        );
        assert_eq!(code(check_issuer(&obj(json!({})), &p)), "issuer_mismatch");
        assert_eq!(
            code(check_issuer(&obj(json!({"iss": ["https://issuer"]})), &p)),
            "claim_malformed"
        );

        let auds = vec!["a".to_string(), "b".to_string()];
        assert_eq!(code(check_audience(&obj(json!({"aud": "b"})), &auds)), "ok");
        assert_eq!(
            code(check_audience(&obj(json!({"aud": ["x", "a"]})), &auds)),
            "ok"
        );
        assert_eq!(
            code(check_audience(&obj(json!({"aud": ["x"]})), &auds)),
            "audience_mismatch"
        );
        assert_eq!(
            code(check_audience(&obj(json!({})), &auds)),
            "audience_mismatch"
        );
        assert_eq!(
            code(check_audience(&obj(json!({"aud": "A"})), &auds)),
            "audience_mismatch"
        );
        assert_eq!(
            code(check_audience(&obj(json!({"aud": [1]})), &auds)),
            "claim_malformed"
        );
        assert_eq!(
            code(check_audience(&obj(json!({"aud": 1})), &auds)),
            "claim_malformed"
        );
        assert_eq!(code(check_audience(&obj(json!({})), &[])), "ok");

        let sp = Provider {
            subjects: Some(StringMatcher {
                pattern: StringPattern::Prefix("spiffe://".into()),
                ignore_case: false,
            }),
            ..provider()
        };
        assert_eq!(
            code(check_subject(&obj(json!({"sub": "spiffe://x"})), &sp)),
            "ok"
        );
        assert_eq!(
            code(check_subject(&obj(json!({"sub": "x"})), &sp)),
            "subject_mismatch"
        );
        assert_eq!(
            code(check_subject(&obj(json!({})), &sp)),
            "subject_mismatch"
        );
    }

    #[test]
    fn header_values() {
        let c = obj(json!({
            "a": {"b": "x"}, "n": 5, "neg": -5, "f": 1.5, "big": 18446744073709551615u64,
            "t": true, "no": false, "arr": ["r", 1, false], "roles": ["reader", "writer"],
            "o": {"k": "v"}, "empty_o": {}, "bad": "a\nb", "empty": "", "null": null,
            "commas": ["user,admin", "50%"], "nested": [["x"]]
        }));
        let path = |s: &str| s.split('.').map(String::from).collect::<Vec<_>>();
        let v = |p: &str, f| claim_at(&c, &path(p)).and_then(|v| claim_header_value(v, f));
        // (claim, jwt_authn format, joined format)
        let table: &[(&str, Option<&str>, Option<&str>)] = &[
            ("a.b", Some("x"), Some("x")),
            ("n", Some("5"), Some("5")),
            ("neg", Some("-5.000000"), Some("-5")),
            ("f", Some("1.500000"), Some("1.5")),
            (
                "big",
                Some("18446744073709551616.000000"),
                Some("18446744073709551615"),
            ),
            ("t", Some("true"), Some("true")),
            ("no", Some("false"), Some("false")),
            // Envoy's authenticator_test.cc TestClaimToHeader: base64 of the JSON.
            (
                "roles",
                Some("WyJyZWFkZXIiLCJ3cml0ZXIiXQ=="),
                Some("reader,writer"),
            ),
            ("arr", Some("WyJyIiwxLGZhbHNlXQ=="), Some("r,1,false")),
            ("o", Some("eyJrIjoidiJ9"), None),
            ("empty_o", Some("e30="), None),
            (
                "commas",
                Some("WyJ1c2VyLGFkbWluIiwiNTAlIl0="),
                Some("user%2Cadmin,50%25"),
            ),
            ("nested", Some("W1sieCJdXQ=="), None),
            ("bad", None, None),
            ("empty", None, None),
            ("null", None, None),
            ("a.c", None, None),
            ("n.x", None, None),
        ];
        for (claim, authn, joined) in table {
            assert_eq!(
                v(claim, ClaimFormat::JwtAuthn).as_deref(),
                *authn,
                "{claim} jwt_authn"
            );
            assert_eq!(
                v(claim, ClaimFormat::Joined).as_deref(),
                *joined,
                "{claim} joined"
            );
        }
        // Six decimals exactly as C's printf("%f") (values checked with Python's '%f' %).
        let printf = [
            (-5.0, "-5.000000"),
            (1.5, "1.500000"),
            (0.1, "0.100000"),
            (2.5e-7, "0.000000"),
            (1234.5678915, "1234.567892"),
            (-1e-9, "-0.000000"),
            (1e20, "100000000000000000000.000000"),
            (2.0000005, "2.000001"),
            (-0.5000005, "-0.500000"),
            (0.0000015, "0.000002"),
            (123456789.1234565, "123456789.123456"),
            (5e-324, "0.000000"),
            (-3.0, "-3.000000"),
        ];
        for (d, want) in printf {
            assert_eq!(fixed6(d), want, "{d:e}");
        }
        let e300 = fixed6(1e300);
        assert!(e300.starts_with("1000000000000000052504760255204420248704468581108159"));
        assert!(e300.ends_with("459400540160.000000") && e300.len() == 301 + 7);
        assert_eq!(jwt_authn_number(-0.0), "0");
        assert_eq!(jwt_authn_number(9999.0), "9999");
        // F9: the two arrays that used to give the same header no longer do.
        let one = claim_header_value(&json!(["user,admin"]), ClaimFormat::Joined);
        let two = claim_header_value(&json!(["user", "admin"]), ClaimFormat::Joined);
        assert_ne!(one, two);
    }
}
