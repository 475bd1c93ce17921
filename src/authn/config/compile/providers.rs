//! Providers: `providers.*` (claims, token locations, algorithms, identity headers).

use std::collections::{BTreeMap, BTreeSet};

use super::matchers::compile_string_matcher;
use super::sources::{compile_local_jwks, compile_remote_jwks, compile_revocation_list, Sources};
use super::{
    header_name, is_token, join, non_empty, required, unsupported, Result, DEFAULT_JWT_CACHE_SIZE,
    MAX_JWT_CACHE_SIZE, MAX_MAX_TOKEN_BYTES, MIN_MAX_TOKEN_BYTES,
};
use crate::authn::alg::Algorithm;
use crate::authn::config::error::ConfigError;
use crate::authn::config::raw;
use crate::authn::policy::{
    ClaimFormat, ClaimToHeader, Provider, Revocation, TokenLocation, DEFAULT_CLOCK_SKEW_SECONDS,
    DEFAULT_MAX_TOKEN_BYTES,
};
use crate::authn::revocation::{string_set, MAX_REVOKED_ENTRIES};
use crate::time::Millis;

/// Headers jwt-edge never writes from a token: routing, framing and credential headers.
const RESERVED_IDENTITY_HEADERS: [&str; 10] = [
    "host",
    "authorization",
    "proxy-authorization",
    "cookie",
    "content-length",
    "transfer-encoding",
    "connection",
    "te",
    "upgrade",
    "keep-alive",
];

/// A header some provider writes, and where it was configured.
pub(super) struct IdentityHeader {
    name: String,
    path: String,
}

#[inline(never)] // one TurboFan zone per part (mk/wasm-opt.mk)
pub(super) fn compile_provider(
    name: &str,
    p: &raw::JwtProvider,
    path: &str,
    sources: &mut Sources,
    identity: &mut Vec<IdentityHeader>,
) -> Result<Provider> {
    unsupported(
        path,
        "failed_status_in_metadata",
        &p.failed_status_in_metadata,
        ": a Wasm filter cannot write dynamic metadata; the top-level extension \
         `outcome_in_metadata` publishes every denial's code",
    )?;
    unsupported(path, "clear_route_cache", &p.clear_route_cache, "")?;

    let jwks = match (&p.remote_jwks, &p.local_jwks) {
        (Some(_), Some(_)) => {
            return Err(ConfigError::new(
                path,
                "set exactly one of remote_jwks and local_jwks, not both",
            ))
        }
        (None, None) => {
            return Err(ConfigError::new(
                path,
                "a provider needs a key set: set remote_jwks or local_jwks",
            ))
        }
        (Some(r), None) => compile_remote_jwks(
            r,
            &join(path, "remote_jwks"),
            name,
            p.issuer.as_deref().filter(|i| !i.is_empty()),
            sources,
        )?,
        (None, Some(l)) => compile_local_jwks(l, &join(path, "local_jwks"), sources)?,
    };

    let algorithms = compile_algorithms(p, path)?;

    let issuer = p.issuer.clone().filter(|i| !i.is_empty());
    for (i, aud) in p.audiences.iter().enumerate() {
        non_empty(aud, &format!("{path}.audiences[{i}]"))?;
    }
    let subjects = p
        .subjects
        .as_ref()
        .map(|m| compile_string_matcher(m, &join(path, "subjects")))
        .transpose()?;

    let max_lifetime = match &p.max_lifetime {
        None => None,
        Some(d) if d.0.as_secs() >= 1 => Some(Millis::from_secs(d.0.as_secs())),
        Some(_) => {
            return Err(ConfigError::new(
                join(path, "max_lifetime"),
                "must be at least 1s",
            ))
        }
    };

    let max_token_bytes = match p.max_token_bytes {
        None => DEFAULT_MAX_TOKEN_BYTES,
        Some(n) => usize::try_from(n)
            .ok()
            .filter(|n| (MIN_MAX_TOKEN_BYTES..=MAX_MAX_TOKEN_BYTES).contains(n))
            .ok_or_else(|| {
                ConfigError::new(
                    join(path, "max_token_bytes"),
                    format!(
                        "must be between {MIN_MAX_TOKEN_BYTES} and {MAX_MAX_TOKEN_BYTES}, not {n}"
                    ),
                )
            })?,
    };

    let jwt_cache_size = match &p.jwt_cache_config {
        None => 0,
        Some(c) => match c.jwt_cache_size.unwrap_or(0) {
            0 => DEFAULT_JWT_CACHE_SIZE,
            n => usize::try_from(n)
                .ok()
                .filter(|n| *n <= MAX_JWT_CACHE_SIZE)
                .ok_or_else(|| {
                    ConfigError::new(
                        join(path, "jwt_cache_config.jwt_cache_size"),
                        format!("must be at most {MAX_JWT_CACHE_SIZE}"),
                    )
                })?,
        },
    };

    let locations = compile_locations(p, path)?;

    let mut own_headers: BTreeSet<String> = BTreeSet::new();
    let mut note_header = |header: &str, hpath: String| -> Result<String> {
        if header.starts_with(':') {
            return Err(ConfigError::new(
                hpath,
                format!("{header:?} is a pseudo-header: jwt-edge never writes one from a token"),
            ));
        }
        let lower = header_name(header, &hpath)?;
        if !own_headers.insert(lower.clone()) {
            return Err(ConfigError::new(
                hpath,
                format!("header {lower:?} is written twice by this provider"),
            ));
        }
        identity.push(IdentityHeader {
            name: lower.clone(),
            path: hpath,
        });
        Ok(lower)
    };

    let forward_payload_header = match p.forward_payload_header.as_deref() {
        None | Some("") => None,
        Some(h) => Some(note_header(h, join(path, "forward_payload_header"))?),
    };

    let mut claim_to_headers = Vec::with_capacity(p.claim_to_headers.len());
    for (i, c) in p.claim_to_headers.iter().enumerate() {
        let cpath = format!("{path}.claim_to_headers[{i}]");
        unsupported(
            &cpath,
            "claim_path",
            &c.claim_path,
            "; use `claim_name` (a.b.c)",
        )?;
        let header = required(&c.header_name, &cpath, "header_name")?;
        let claim = required(&c.claim_name, &cpath, "claim_name")?;
        let claim_path: Vec<String> = claim.split('.').map(str::to_string).collect();
        if claim_path.iter().any(String::is_empty) {
            return Err(ConfigError::new(
                join(&cpath, "claim_name"),
                format!("{claim:?} is not a claim name or a dotted path of claim names"),
            ));
        }
        let format = match c.value_format.as_deref() {
            None | Some("jwt_authn") => ClaimFormat::JwtAuthn,
            Some("joined") => ClaimFormat::Joined,
            Some(other) => {
                return Err(ConfigError::new(
                    join(&cpath, "value_format"),
                    format!("{other:?} is not a value format: use \"jwt_authn\" or \"joined\""),
                ))
            }
        };
        let header_name = note_header(header, join(&cpath, "header_name"))?;
        claim_to_headers.push(ClaimToHeader {
            header_name,
            claim_path,
            format,
        });
    }

    Ok(Provider {
        name: name.to_string(),
        issuer,
        audiences: p.audiences.clone(),
        subjects,
        require_expiration: p.require_expiration.unwrap_or(true),
        max_lifetime,
        clock_skew: Millis::from_secs(
            p.clock_skew_seconds
                .map_or(DEFAULT_CLOCK_SKEW_SECONDS, u64::from),
        ),
        algorithms,
        jwks,
        forward: p.forward,
        locations,
        forward_payload_header,
        pad_forward_payload_header: p.pad_forward_payload_header,
        claim_to_headers,
        max_token_bytes,
        jwt_cache_size,
        revoked: compile_revoked(p.revoked.as_ref(), path)?,
        revocation_list: p
            .revocation_list
            .as_ref()
            .map(|r| compile_revocation_list(r, &join(path, "revocation_list"), name, sources))
            .transpose()?,
        sender: super::sender::compile_sender(p.sender_constraint.as_ref(), path)?,
        publish: super::publish::compile_provider_publish(p, path)?,
    })
}

pub(super) fn compile_revoked(r: Option<&raw::Revoked>, path: &str) -> Result<Revocation> {
    let Some(r) = r else {
        return Ok(Revocation::default());
    };
    let rpath = join(path, "revoked");
    if r.jti.len() + r.sub.len() > MAX_REVOKED_ENTRIES {
        return Err(ConfigError::new(
            rpath,
            format!("holds more than {MAX_REVOKED_ENTRIES} entries"),
        ));
    }
    for (field, list) in [("jti", &r.jti), ("sub", &r.sub)] {
        for (i, v) in list.iter().enumerate() {
            non_empty(v, &format!("{}[{i}]", join(&rpath, field)))?;
        }
    }
    Ok(Revocation {
        jti: string_set(r.jti.iter().cloned()),
        sub: string_set(r.sub.iter().cloned()),
    })
}

pub(super) fn compile_algorithms(p: &raw::JwtProvider, path: &str) -> Result<Vec<Algorithm>> {
    let Some(names) = &p.algorithms else {
        return Ok(Algorithm::DEFAULT_ALLOWED.to_vec());
    };
    let apath = join(path, "algorithms");
    if names.is_empty() {
        return Err(ConfigError::new(apath, "must list at least one algorithm"));
    }
    let mut algorithms = Vec::with_capacity(names.len());
    for (i, name) in names.iter().enumerate() {
        let ipath = format!("{apath}[{i}]");
        let alg = Algorithm::parse(name).ok_or_else(|| {
            let known: Vec<&str> = Algorithm::ALL.iter().map(|a| a.name()).collect();
            ConfigError::new(
                &ipath,
                format!(
                    "unknown algorithm {name:?}: expected one of {} (case-sensitive)",
                    known.join(", ")
                ),
            )
        })?;
        if algorithms.contains(&alg) {
            return Err(ConfigError::new(ipath, format!("{alg} is listed twice")));
        }
        if alg.is_symmetric() && p.local_jwks.is_none() {
            return Err(ConfigError::new(
                ipath,
                format!(
                    "{alg} needs a shared secret, which jwt-edge takes only from local_jwks, \
                     never from remote_jwks"
                ),
            ));
        }
        algorithms.push(alg);
    }
    Ok(algorithms)
}

pub(super) fn compile_locations(p: &raw::JwtProvider, path: &str) -> Result<Vec<TokenLocation>> {
    let mut locations = Vec::new();
    for (i, h) in p.from_headers.iter().enumerate() {
        let hpath = format!("{path}.from_headers[{i}]");
        let name = required(&h.name, &hpath, "name")?;
        locations.push(TokenLocation::Header {
            name: header_name(name, &join(&hpath, "name"))?,
            value_prefix: h.value_prefix.clone(),
        });
    }
    for (i, param) in p.from_params.iter().enumerate() {
        let ppath = format!("{path}.from_params[{i}]");
        let ok = !param.is_empty()
            && param
                .chars()
                .all(|c| !c.is_control() && !c.is_whitespace() && !"&=#?".contains(c));
        if !ok {
            return Err(ConfigError::new(
                ppath,
                format!("{param:?} is not a valid query parameter name"),
            ));
        }
        locations.push(TokenLocation::Param(param.clone()));
    }
    for (i, cookie) in p.from_cookies.iter().enumerate() {
        if !is_token(cookie) {
            return Err(ConfigError::new(
                format!("{path}.from_cookies[{i}]"),
                format!("{cookie:?} is not a valid cookie name"),
            ));
        }
        locations.push(TokenLocation::Cookie(cookie.clone()));
    }
    if locations.is_empty() {
        locations.push(TokenLocation::Header {
            name: "authorization".to_string(),
            value_prefix: "Bearer ".to_string(),
        });
        locations.push(TokenLocation::Param("access_token".to_string()));
    }
    Ok(locations)
}

/// Checks every written header against the ones that carry credentials or routing, then
/// returns them lower-case, sorted and deduplicated.
#[inline(never)] // one TurboFan zone per part (mk/wasm-opt.mk)
pub(super) fn check_identity_headers(
    providers: &[Provider],
    identity: Vec<IdentityHeader>,
) -> Result<Vec<String>> {
    let mut token_headers: BTreeMap<&str, &str> = BTreeMap::new();
    for p in providers {
        for loc in &p.locations {
            if let TokenLocation::Header { name, .. } = loc {
                token_headers
                    .entry(name.as_str())
                    .or_insert(p.name.as_str());
            }
        }
    }
    let mut out = BTreeSet::new();
    for h in identity {
        if RESERVED_IDENTITY_HEADERS.contains(&h.name.as_str()) {
            return Err(ConfigError::new(
                h.path,
                format!("jwt-edge never writes {:?} from a token", h.name),
            ));
        }
        if let Some(provider) = token_headers.get(h.name.as_str()) {
            return Err(ConfigError::new(
                h.path,
                format!(
                    "{:?} is where provider {provider:?} reads tokens; \
                     an identity header must be a different header",
                    h.name
                ),
            ));
        }
        out.insert(h.name);
    }
    Ok(out.into_iter().collect())
}
