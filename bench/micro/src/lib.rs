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
//! `jwks_parse` times `parse_jwks` of the fixture key set (four keys) for scale.

use std::hint::black_box;

use jwt_edge::authn::alg::Algorithm;
use jwt_edge::authn::b64;
use jwt_edge::authn::jwk::{parse_jwks, JwksOptions, KeySet};
use jwt_edge::authn::jws::UntrustedToken;
use jwt_edge::authn::policy::DEFAULT_MAX_TOKEN_BYTES;
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
    let (jwks_us, _) = time_op(&jwks_parse, n, reps, now_ns)?;
    Ok(json!({
        "alg": alg_name,
        "n": n,
        "reps": reps,
        "warmup": WARMUP,
        "jwk_verify_us": jwk_us,
        "token_verify_us": token_us,
        "jwks_parse_us": jwks_us,
        "jwk_verify_us_reps": jwk_reps,
        "token_verify_us_reps": token_reps,
    }))
}
