//! `sender_constraint` (extension): DPoP-bound tokens (RFC 9449) and certificate-bound tokens
//! (RFC 8705 §3) per provider.

use super::{join, Result};
use crate::authn::alg::Algorithm;
use crate::authn::config::error::ConfigError;
use crate::authn::config::raw;
use crate::authn::policy::{
    DpopMode, SenderConstraint, SenderMode, DEFAULT_DPOP_CLOCK_SKEW, DEFAULT_DPOP_MAX_AGE,
    DEFAULT_DPOP_NONCE_LIFETIME, DEFAULT_DPOP_REPLAY_CACHE_SIZE,
};
use crate::authn::sender::dpop::DpopPolicy;
use crate::time::Millis;

/// Longest `dpop_max_age`: a proof is a one-time, just-made signature; ten minutes is
/// generous, and the replay cache must remember every proof that long.
const MAX_DPOP_MAX_AGE: u64 = 600;
/// Longest `dpop_clock_skew`.
const MAX_DPOP_CLOCK_SKEW: u64 = 300;
/// Largest `dpop_replay_cache_size` (24 bytes an entry: 2.4 MB of shared data).
const MAX_DPOP_REPLAY_CACHE_SIZE: u64 = 100_000;
/// Longest `dpop_nonce_lifetime`: a nonce lives up to two of them, and it is the server's
/// way to bound how long a proof made ahead of time stays usable.
const MAX_DPOP_NONCE_LIFETIME: u64 = 3600;

pub(super) fn compile_sender(
    s: Option<&raw::SenderConstraint>,
    path: &str,
) -> Result<SenderConstraint> {
    let Some(s) = s else {
        return Ok(SenderConstraint::default());
    };
    let spath = join(path, "sender_constraint");
    let dpop = mode(s.dpop.as_deref(), &spath, "dpop")?;
    let mtls = mode(s.mtls.as_deref(), &spath, "mtls")?;
    let mut algs = Vec::new();
    match &s.dpop_algorithms {
        None => algs.extend(Algorithm::ALL.iter().filter(|a| !a.is_symmetric())),
        Some(names) => {
            let apath = join(&spath, "dpop_algorithms");
            if names.is_empty() {
                return Err(ConfigError::new(apath, "must list at least one algorithm"));
            }
            for (i, name) in names.iter().enumerate() {
                let ipath = format!("{apath}[{i}]");
                let alg = Algorithm::parse(name).ok_or_else(|| {
                    ConfigError::new(&ipath, format!("unknown algorithm {name:?}"))
                })?;
                if alg.is_symmetric() {
                    return Err(ConfigError::new(
                        ipath,
                        format!("{alg} is symmetric: a DPoP proof is signed with a public key (RFC 9449 §4.2)"),
                    ));
                }
                if algs.contains(&alg) {
                    return Err(ConfigError::new(ipath, format!("{alg} is listed twice")));
                }
                algs.push(alg);
            }
        }
    }
    let seconds =
        |d: &Option<raw::ProtoDuration>, field: &str, default: u64, min: u64, max: u64| {
            let Some(d) = d else {
                return Ok(default);
            };
            let v = d.0.as_secs();
            if d.0.subsec_nanos() != 0 || v < min || v > max {
                return Err(ConfigError::new(
                    join(&spath, field),
                    format!("must be whole seconds from {min}s to {max}s"),
                ));
            }
            Ok(v)
        };
    let max_age = seconds(
        &s.dpop_max_age,
        "dpop_max_age",
        DEFAULT_DPOP_MAX_AGE,
        1,
        MAX_DPOP_MAX_AGE,
    )?;
    let max_future = seconds(
        &s.dpop_clock_skew,
        "dpop_clock_skew",
        DEFAULT_DPOP_CLOCK_SKEW,
        0,
        MAX_DPOP_CLOCK_SKEW,
    )?;
    let replay_cache_size = match s.dpop_replay_cache_size {
        None => DEFAULT_DPOP_REPLAY_CACHE_SIZE,
        Some(n) if (1..=MAX_DPOP_REPLAY_CACHE_SIZE).contains(&n) => {
            usize::try_from(n).unwrap_or(DEFAULT_DPOP_REPLAY_CACHE_SIZE)
        }
        Some(_) => {
            return Err(ConfigError::new(
                join(&spath, "dpop_replay_cache_size"),
                format!("must be from 1 to {MAX_DPOP_REPLAY_CACHE_SIZE}"),
            ))
        }
    };
    let nonce_required = match s.dpop_nonce.as_deref() {
        None | Some("disabled") => false,
        Some("required") => true,
        Some(other) => {
            return Err(ConfigError::new(
                join(&spath, "dpop_nonce"),
                format!("{other:?} is not a mode: use \"required\" or \"disabled\""),
            ))
        }
    };
    let nonce_lifetime = seconds(
        &s.dpop_nonce_lifetime,
        "dpop_nonce_lifetime",
        DEFAULT_DPOP_NONCE_LIFETIME,
        1,
        MAX_DPOP_NONCE_LIFETIME,
    )?;
    if s.dpop_nonce_lifetime.is_some() && !nonce_required {
        return Err(ConfigError::new(
            join(&spath, "dpop_nonce_lifetime"),
            "is set but dpop_nonce is not \"required\"",
        ));
    }
    let configured = s.dpop_algorithms.is_some()
        || s.dpop_max_age.is_some()
        || s.dpop_clock_skew.is_some()
        || s.dpop_replay_cache_size.is_some()
        || nonce_required;
    if dpop == DpopMode::Disabled && configured {
        return Err(ConfigError::new(
            join(&spath, "dpop"),
            "is \"disabled\" (the default) but DPoP settings are given: set it to \"required\" or \"optional\"",
        ));
    }
    Ok(SenderConstraint {
        dpop,
        mtls,
        proof: DpopPolicy {
            algs,
            max_age: Millis::from_secs(max_age),
            max_future: Millis::from_secs(max_future),
        },
        replay_cache_size,
        nonce_lifetime: nonce_required.then(|| Millis::from_secs(nonce_lifetime)),
    })
}

/// `sender_constraint.<field>`: `"required"`, `"optional"` or `"disabled"` (the default).
fn mode(value: Option<&str>, spath: &str, field: &str) -> Result<SenderMode> {
    match value {
        None | Some("disabled") => Ok(SenderMode::Disabled),
        Some("optional") => Ok(SenderMode::Optional),
        Some("required") => Ok(SenderMode::Required),
        Some(other) => Err(ConfigError::new(
            join(spath, field),
            format!("{other:?} is not a mode: use \"required\", \"optional\" or \"disabled\""),
        )),
    }
}
