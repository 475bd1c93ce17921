//! Times jwt-edge's signature verification through its public API, the same code in Envoy's
//! V8 (the `filter` module, a proxy-wasm filter) and natively (`src/bin/native.rs`).
//!
//! Two operations per algorithm, on one fixed token and key set (`fixtures/`, made by
//! `make_fixtures.py`):
//! - `jwk_verify`: `KeySet::select(kid, alg)` then `Jwk::verify` on the pre-split signing
//!   input and signature (the signature check alone, plus the key look-up);
//! - `token_verify`: `UntrustedToken::parse` then `.verify(keys, allowed)` on the compact
//!   token (what the filter does per request before the claims checks).
//!
//! - `decide`: `authenticate::decide` (no verified-token cache) on a request carrying that
//!   token, with a provider configured as the throughput benchmark's (issuer, audience,
//!   `require_expiration`, one `claim_to_headers`): everything the core does for a token it
//!   has not seen (locate it, parse, verify, check the claims, build the header changes).
//!   `decide − token_verify` is the core's cost around the signature check.
//!
//! `jwks_parse` times `parse_jwks` of the fixture key set (four keys) for scale.

use std::hint::black_box;

use jwt_edge::authn::alg::Algorithm;
use jwt_edge::authn::authenticate::{decide, Decision, KeyLookup, KeyState};
use jwt_edge::authn::b64;
use jwt_edge::authn::config;
use jwt_edge::authn::jwk::{parse_jwks, JwksOptions, KeySet};
use jwt_edge::authn::jws::UntrustedToken;
use jwt_edge::authn::policy::{JwksId, JwksSource, Policy, DEFAULT_MAX_TOKEN_BYTES};
use jwt_edge::authn::request::RequestView;
use jwt_edge::time::UnixMillis;
use serde_json::{json, Value};

#[cfg(target_arch = "wasm32")]
mod filter;
#[cfg(target_arch = "wasm32")]
mod ladder;

pub const JWKS: &str = include_str!("../fixtures/jwks.json");
const TOKENS: &str = include_str!("../fixtures/tokens.json");

/// The algorithms benchmarked, in report order.
pub const ALGS: [&str; 5] = ["RS256", "PS256", "ES256", "ES384", "EdDSA"];

/// Verifications run (untimed) before the timed repetitions: lets V8 tier up.
pub const WARMUP: u32 = 20;
/// Largest `n` accepted per repetition.
pub const MAX_N: u32 = 5_000;
/// Largest number of repetitions accepted.
pub const MAX_REPS: u32 = 21;

/// One algorithm's fixed inputs, decoded once outside the timed loops.
pub struct Case {
    pub alg: Algorithm,
    pub token: String,
    pub kid: Option<String>,
    pub keys: KeySet,
    pub signing_input: Vec<u8>,
    pub signature: Vec<u8>,
}

impl Case {
    pub fn load(alg_name: &str) -> Result<Case, String> {
        let alg = Algorithm::parse(alg_name).ok_or_else(|| format!("unknown alg {alg_name}"))?;
        let tokens: Value = serde_json::from_str(TOKENS).map_err(|e| e.to_string())?;
        let token = tokens
            .get(alg_name)
            .and_then(Value::as_str)
            .ok_or_else(|| format!("no fixture token for {alg_name}"))?
            .to_string();
        let keys = parse_jwks(JWKS.as_bytes(), JwksOptions::default())
            .map_err(|e| e.to_string())?
            .keys;
        let (signing_input, signature_b64) = token
            .rsplit_once('.')
            .ok_or_else(|| "fixture token has no signature".to_string())?;
        let signature = b64::decode(signature_b64).ok_or("fixture signature is not base64url")?;
        let kid = UntrustedToken::parse(&token, DEFAULT_MAX_TOKEN_BYTES)
            .map_err(|e| e.to_string())?
            .header()
            .kid
            .clone();
        Ok(Case {
            alg,
            kid,
            keys,
            signing_input: signing_input.as_bytes().to_vec(),
            signature,
            token,
        })
    }

    /// `KeySet::select` + `Jwk::verify`; true when the signature verified.
    pub fn jwk_verify(&self) -> bool {
        let Ok(candidates) = self.keys.select(black_box(self.kid.as_deref()), self.alg) else {
            return false;
        };
        candidates.iter().any(|key| {
            key.verify(
                self.alg,
                black_box(&self.signing_input),
                black_box(&self.signature),
            )
            .is_ok()
        })
    }

    /// `UntrustedToken::parse` + `verify`; true when the token verified.
    pub fn token_verify(&self) -> bool {
        UntrustedToken::parse(black_box(&self.token), DEFAULT_MAX_TOKEN_BYTES)
            .and_then(|t| t.verify(&self.keys, &Algorithm::DEFAULT_ALLOWED))
            .is_ok()
    }
}

/// The key view of a policy with local key sets only (the benchmarks').
pub struct LocalKeys<'a>(pub &'a Policy);

impl KeyLookup for LocalKeys<'_> {
    fn keys(&self, id: JwksId) -> KeyState<'_> {
        match self.0.jwks_sources.get(id) {
            Some(JwksSource::Local(keys)) => KeyState::Ready(keys),
            _ => KeyState::Unavailable,
        }
    }
}

/// A request carrying one algorithm's fixture token, and a policy that accepts it.
pub struct DecideCase {
    policy: Policy,
    headers: Vec<(String, String)>,
}

/// The fixture tokens' claims (`make_fixtures.py`, `harness.tokens.claims`) and a time
/// between their `iat` and `exp`, in seconds.
const FIXTURE_ISSUER: &str = "https://idp.test/";
const FIXTURE_AUDIENCE: &str = "api";
const DECIDE_NOW: UnixMillis = UnixMillis::from_secs(1_800_000_000);

impl DecideCase {
    pub fn load(alg_name: &str) -> Result<DecideCase, String> {
        let case = Case::load(alg_name)?;
        let provider = json!({
            "issuer": FIXTURE_ISSUER,
            "audiences": [FIXTURE_AUDIENCE],
            "local_jwks": {"inline_string": JWKS},
            "require_expiration": true,
            "claim_to_headers": [{"header_name": "x-jwt-sub", "claim_name": "sub"}],
        });
        let config = json!({
            "providers": {"bench": provider},
            "rules": [{"match": {"prefix": "/"}, "requires": {"provider_name": "bench"}}],
        });
        let policy = config::parse(&config.to_string()).map_err(|e| e.to_string())?;
        // The headers Envoy hands a filter for the throughput benchmark's wrk requests.
        let headers = [
            (":authority", "127.0.0.1:10000"),
            (":path", "/"),
            (":method", "GET"),
            (":scheme", "http"),
            ("authorization", &format!("Bearer {}", case.token)),
            ("x-forwarded-proto", "http"),
            ("x-request-id", "4f1c2b8e-0d6a-4c1e-9a3b-2f5e7d9c1a0b"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        Ok(DecideCase { policy, headers })
    }

    /// `decide` without a cache; true when the request is allowed.
    pub fn decide(&self) -> bool {
        let req = RequestView::new(black_box(&self.headers), None);
        matches!(
            decide(&self.policy, &req, &LocalKeys(&self.policy), DECIDE_NOW),
            Decision::Allow(_)
        )
    }
}

fn jwks_parse() -> bool {
    parse_jwks(black_box(JWKS.as_bytes()), JwksOptions::default()).is_ok()
}

/// Median µs per call of `op` over `reps` repetitions of `n` calls each, after `WARMUP`
/// untimed calls, with every repetition's figure. `now_ns` is the clock (host or native).
/// Fails if any call returned false: a benchmark of a failing verification means nothing.
fn time_op(
    op: &dyn Fn() -> bool,
    n: u32,
    reps: u32,
    now_ns: &dyn Fn() -> u64,
) -> Result<(f64, Vec<f64>), String> {
    for _ in 0..WARMUP {
        if !op() {
            return Err("verification failed during warm-up".into());
        }
    }
    let mut per_rep = Vec::with_capacity(reps as usize);
    for _ in 0..reps {
        let mut ok = true;
        let start = now_ns();
        for _ in 0..n {
            ok &= op();
        }
        let elapsed = now_ns().saturating_sub(start);
        if !ok {
            return Err("verification failed".into());
        }
        per_rep.push(elapsed as f64 / 1000.0 / f64::from(n));
    }
    let mut sorted = per_rep.clone();
    sorted.sort_by(f64::total_cmp);
    let median = sorted.get(sorted.len() / 2).copied().unwrap_or(f64::NAN);
    Ok((median, per_rep))
}

/// Runs the benchmark for one algorithm and returns the report as JSON.
pub fn run(alg_name: &str, n: u32, reps: u32, now_ns: &dyn Fn() -> u64) -> Result<Value, String> {
    if n == 0 || n > MAX_N || reps == 0 || reps > MAX_REPS {
        return Err(format!(
            "need 1 <= n <= {MAX_N} and 1 <= reps <= {MAX_REPS}"
        ));
    }
    let case = Case::load(alg_name)?;
    let (jwk_us, jwk_reps) = time_op(&|| case.jwk_verify(), n, reps, now_ns)?;
    let (token_us, token_reps) = time_op(&|| case.token_verify(), n, reps, now_ns)?;
    let decide_case = DecideCase::load(alg_name)?;
    let (decide_us, decide_reps) = time_op(&|| decide_case.decide(), n, reps, now_ns)?;
    let (jwks_us, _) = time_op(&jwks_parse, n, reps, now_ns)?;
    Ok(json!({
        "alg": alg_name,
        "n": n,
        "reps": reps,
        "warmup": WARMUP,
        "jwk_verify_us": jwk_us,
        "token_verify_us": token_us,
        "decide_us": decide_us,
        "jwks_parse_us": jwks_us,
        "jwk_verify_us_reps": jwk_reps,
        "token_verify_us_reps": token_reps,
        "decide_us_reps": decide_reps,
    }))
}

/// One operation per request (`GET /once?alg=ES256&op=decide`): what the operation costs
/// when, as in the throughput benchmark, Envoy's own work for other requests runs between two
/// calls, against `run`'s back-to-back loop. An algorithm's cases are loaded by its first
/// verifying request (untimed, no figure); each later request times one call and keeps the
/// figure until `report` collects them.
pub struct Once {
    cases: Vec<(String, Fixtures)>,
    samples: Vec<(String, f64)>,
}

/// One algorithm's inputs for the operations timed one at a time (`/once`, and
/// `make bench-footprint`'s harness).
pub struct Fixtures {
    case: Case,
    decide: DecideCase,
}

impl Fixtures {
    pub fn load(alg: &str) -> Result<Fixtures, String> {
        Ok(Fixtures {
            case: Case::load(alg)?,
            decide: DecideCase::load(alg)?,
        })
    }

    /// Runs `op` (`jwk`, `token` or `decide`): whether it verified; `None` for another op.
    pub fn run(&self, op: &str) -> Option<bool> {
        match op {
            "jwk" => Some(self.case.jwk_verify()),
            "token" => Some(self.case.token_verify()),
            "decide" => Some(self.decide.decide()),
            _ => None,
        }
    }
}

/// The operations `/once` times; `none` runs nothing (the request's cost without a call),
/// `spin` a register-only loop about as long as a verification (no memory, a few bytes of
/// code: whatever it does to the rest of the request is time, not caches).
pub const ONCE_OPS: [&str; 5] = ["none", "spin", "jwk", "token", "decide"];
/// `spin`'s iterations (~40 µs in Envoy's V8 on the machines measured).
const SPIN: u32 = 40_000;
/// Samples kept per VM; past this they are all dropped and collection starts again.
const MAX_ONCE_SAMPLES: usize = 200_000;

impl Once {
    pub const fn new() -> Once {
        Once {
            cases: Vec::new(),
            samples: Vec::new(),
        }
    }

    /// Times one `op` on `alg`'s fixtures (loaded the first time, untimed: that request
    /// records nothing).
    pub fn time(&mut self, alg: &str, op: &str, now_ns: &dyn Fn() -> u64) -> Result<(), String> {
        if !ONCE_OPS.contains(&op) {
            return Err(format!("op must be one of {ONCE_OPS:?}"));
        }
        if op == "none" {
            self.record(alg, op, 0);
            return Ok(());
        }
        if op == "spin" {
            let start = now_ns();
            let mut x = black_box(0x9e37_79b9_7f4a_7c15_u64);
            for _ in 0..black_box(SPIN) {
                // xorshift64: a dependent chain of register operations.
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
            }
            black_box(x);
            self.record(alg, op, now_ns().saturating_sub(start));
            return Ok(());
        }
        let Some((_, fixtures)) = self.cases.iter().find(|(a, _)| a == alg) else {
            self.cases.push((alg.to_string(), Fixtures::load(alg)?));
            return Ok(());
        };
        let start = now_ns();
        let ok = fixtures.run(op);
        let elapsed = now_ns().saturating_sub(start);
        if ok != Some(true) {
            return Err("verification failed".into());
        }
        self.record(alg, op, elapsed);
        Ok(())
    }

    /// Keeps one figure (`elapsed_ns`), dropping the kept ones past [`MAX_ONCE_SAMPLES`].
    fn record(&mut self, alg: &str, op: &str, elapsed_ns: u64) {
        if self.samples.len() >= MAX_ONCE_SAMPLES {
            self.samples.clear();
        }
        self.samples
            .push((format!("{alg}/{op}"), elapsed_ns as f64 / 1000.0));
    }

    /// Per `alg/op`: the median µs and the number of samples; the samples are then dropped.
    pub fn report(&mut self) -> Value {
        let mut out = serde_json::Map::new();
        let mut keys: Vec<String> = self.samples.iter().map(|(k, _)| k.clone()).collect();
        keys.sort();
        keys.dedup();
        for key in keys {
            let mut v: Vec<f64> = self
                .samples
                .iter()
                .filter(|(k, _)| *k == key)
                .map(|(_, x)| *x)
                .collect();
            v.sort_by(f64::total_cmp);
            let median = v.get(v.len() / 2).copied().unwrap_or(f64::NAN);
            out.insert(key, json!({"median_us": median, "samples": v.len()}));
        }
        self.samples.clear();
        Value::Object(out)
    }
}

impl Default for Once {
    fn default() -> Once {
        Once::new()
    }
}

/// The RS256 fixture key's modulus and exponent (big-endian), from `fixtures/jwks.json`.
fn rsa_fixture_key() -> Result<(Vec<u8>, u64), String> {
    let jwks: Value = serde_json::from_str(JWKS).map_err(|e| e.to_string())?;
    let key = jwks
        .get("keys")
        .and_then(Value::as_array)
        .and_then(|keys| keys.iter().find(|k| k.get("kty") == Some(&json!("RSA"))))
        .ok_or("no RSA key in the fixture key set")?;
    let field = |name: &str| {
        key.get(name)
            .and_then(Value::as_str)
            .and_then(b64::decode)
            .ok_or_else(|| format!("RSA fixture key has no valid {name}"))
    };
    let e = field("e")?
        .iter()
        .fold(0u64, |a, b| (a << 8) | u64::from(*b));
    Ok((field("n")?, e))
}

/// RSAVP1 alone (`s^e mod n`, the modular exponentiation inside RS256/PS256 verification) on
/// the RS256 fixture's key and signature, on each arithmetic of `jwt_edge::crypto::bigmod`:
/// the integer code (28-bit limbs) and the fused multiply-add code (52-bit limbs,
/// `bigmod_f64`). Repetitions alternate between the two, so machine noise hits both alike.
/// The FMA figure is only taken where the process's probe allows that path (a non-fused
/// `relaxed_madd` computes garbage there). Also reports the one-off probe cost.
pub fn rsa_arithmetic(n: u32, reps: u32, now_ns: &dyn Fn() -> u64) -> Result<Value, String> {
    use jwt_edge::crypto::bigmod::{Arithmetic, RsaPublic};
    use jwt_edge::crypto::bigmod_f64::{self, RsaPublicF64};
    if n == 0 || n > MAX_N || reps == 0 || reps > MAX_REPS {
        return Err(format!(
            "need 1 <= n <= {MAX_N} and 1 <= reps <= {MAX_REPS}"
        ));
    }
    let (modulus, e) = rsa_fixture_key()?;
    let signature = Case::load("RS256")?.signature;
    let start = now_ns();
    let fused = bigmod_f64::fused();
    let known_answer = fused && bigmod_f64::known_answer();
    let probe_us = now_ns().saturating_sub(start) as f64 / 1000.0;
    let integer = RsaPublic::new_integer(&modulus, e).map_err(|e| e.to_string())?;
    let start = now_ns();
    let fma = RsaPublicF64::new(&modulus, e).map_err(|e| e.to_string())?;
    let fma_key_us = now_ns().saturating_sub(start) as f64 / 1000.0;
    let want = integer
        .rsavp1_integer(&signature)
        .ok_or("signature out of range")?;
    let use_fma = fused && known_answer;
    if use_fma && fma.rsavp1(&signature).as_ref() != Some(&want) {
        return Err("the FMA arithmetic disagrees with the integer one".into());
    }
    let time = |op: &dyn Fn() -> bool| -> Result<f64, String> {
        let start = now_ns();
        let mut ok = true;
        for _ in 0..n {
            ok &= op();
        }
        let elapsed = now_ns().saturating_sub(start);
        if ok {
            Ok(elapsed as f64 / 1000.0 / f64::from(n))
        } else {
            Err("RSAVP1 failed".into())
        }
    };
    let int_op = || integer.rsavp1_integer(black_box(&signature)).is_some();
    let fma_op = || fma.rsavp1(black_box(&signature)).is_some();
    for _ in 0..WARMUP {
        int_op();
        if use_fma {
            fma_op();
        }
    }
    let (mut int_reps, mut fma_reps) = (Vec::new(), Vec::new());
    for _ in 0..reps {
        int_reps.push(time(&int_op)?);
        if use_fma {
            fma_reps.push(time(&fma_op)?);
        }
    }
    let median = |v: &[f64]| {
        let mut sorted = v.to_vec();
        sorted.sort_by(f64::total_cmp);
        sorted.get(sorted.len() / 2).copied()
    };
    Ok(json!({
        "arithmetic": Arithmetic::current().describe(),
        "fused": fused,
        "known_answer": known_answer,
        "probe_us": probe_us,
        "fma_key_us": fma_key_us,
        "integer_us": median(&int_reps),
        "fma_us": median(&fma_reps),
        "integer_us_reps": int_reps,
        "fma_us_reps": fma_reps,
    }))
}

/// DER length octets.
fn der_len(len: usize, out: &mut Vec<u8>) {
    match len {
        0..=127 => out.push(len as u8),
        128..=255 => out.extend([0x81, len as u8]),
        _ => out.extend([0x82, (len >> 8) as u8, len as u8]),
    }
}

fn der(tag: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    der_len(body.len(), &mut out);
    out.extend_from_slice(body);
    out
}

/// A DER INTEGER of a non-negative big-endian value.
fn der_uint(value: &[u8]) -> Vec<u8> {
    let trimmed: Vec<u8> = value.iter().copied().skip_while(|b| *b == 0).collect();
    let mut body = Vec::with_capacity(trimmed.len() + 1);
    if trimmed.first().is_none_or(|b| b & 0x80 != 0) {
        body.push(0);
    }
    body.extend(trimmed);
    der(0x02, &body)
}

/// Protobuf field `number` of wire type 2 (length-delimited).
fn pb_bytes(number: u8, value: &[u8], out: &mut Vec<u8>) {
    out.push(number << 3 | 2);
    let mut len = value.len();
    while len >= 0x80 {
        out.push((len as u8) | 0x80);
        len >>= 7;
    }
    out.push(len as u8);
    out.extend_from_slice(value);
}

/// The arguments of Envoy's `verify_signature` foreign function
/// (`envoy.source.extensions.common.wasm.VerifySignatureArguments`: hash_function = 1,
/// public_key = 2 as DER SubjectPublicKeyInfo, signature = 3, text = 4) for the RS256
/// fixture token: what jwt-edge would send if it verified through the host's BoringSSL.
pub fn verify_signature_args() -> Result<Vec<u8>, String> {
    let (n, e) = rsa_fixture_key()?;
    let case = Case::load("RS256")?;
    let rsa_public_key = der(0x30, &[der_uint(&n), der_uint(&e.to_be_bytes())].concat());
    let algorithm = der(
        0x30,
        &[
            der(
                0x06,
                &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01],
            ),
            vec![0x05, 0x00],
        ]
        .concat(),
    );
    let spki = der(
        0x30,
        &[
            algorithm,
            der(0x03, &[&[0u8][..], &rsa_public_key].concat()),
        ]
        .concat(),
    );
    let mut args = Vec::new();
    pb_bytes(1, b"sha256", &mut args);
    pb_bytes(2, &spki, &mut args);
    pb_bytes(3, &case.signature, &mut args);
    pb_bytes(4, &case.signing_input, &mut args);
    Ok(args)
}

/// Whether a `VerifySignatureResult` (result = 1, a bool) says the signature verified.
pub fn verify_signature_ok(result: &[u8]) -> bool {
    result.starts_with(&[0x08, 0x01])
}
