//! Phase 2 of configuration: the [`raw`] types checked for meaning and turned into a
//! [`Policy`]. Every error names the JSON path of the field at fault.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use base64::Engine as _;
use serde_json::Value;

use super::error::ConfigError;
use super::raw;
use crate::authn::alg::Algorithm;
use crate::authn::jwk::{parse_jwks, JwksError, JwksOptions, SkippedKey};
use crate::authn::matcher::{
    HeaderMatch, HeaderRule, PathMatch, QueryMatch, QueryRule, RouteMatch, StringMatcher,
    StringPattern,
};
use crate::authn::policy::{
    ClaimFormat, ClaimRequirement, ClaimToHeader, Document, JwksId, JwksSource, Policy, Provider,
    ProviderId, RemoteJwks, Requirement, Revocation, RouteOverride, Rule, TokenLocation,
    DEFAULT_CACHE_DURATION_SECONDS, DEFAULT_CLOCK_SKEW_SECONDS, DEFAULT_FETCH_TIMEOUT_MS,
    DEFAULT_MAX_STALE_MS, DEFAULT_MAX_TOKEN_BYTES, DEFAULT_REFETCH_INTERVAL_MS,
    DEFAULT_REVOCATION_CACHE_SECONDS, DEFAULT_REVOCATION_MAX_STALE_MS, DEFAULT_WAIT_TIMEOUT_MS,
};
pub use crate::authn::revocation::MAX_REVOKED_ENTRIES;

type Result<T> = std::result::Result<T, ConfigError>;

/// The `@type` a jwt_authn `typed_config` carries; the only one accepted.
pub const JWT_AUTHN_TYPE_URL: &str =
    "type.googleapis.com/envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication";
/// Smallest `max_token_bytes` accepted.
pub const MIN_MAX_TOKEN_BYTES: usize = 256;
/// Largest `max_token_bytes` accepted.
pub const MAX_MAX_TOKEN_BYTES: usize = 64 * 1024;
/// jwt_authn's `jwt_cache_size` when `jwt_cache_config` is present without (or with 0) size.
pub const DEFAULT_JWT_CACHE_SIZE: usize = 100;
/// Largest `jwt_cache_size` accepted (the cache lives in the Wasm VM's memory).
pub const MAX_JWT_CACHE_SIZE: usize = 100_000;
/// Longest `http_uri.timeout` accepted.
pub const MAX_FETCH_TIMEOUT_MS: u64 = 60_000;
/// `cache_duration` must be below this (jwt_authn's bound).
const MAX_CACHE_DURATION_SECONDS: u64 = 9_000_000_000;

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

/// Builds the policy from a parsed configuration.
pub fn compile(raw: raw::JwtAuthentication) -> Result<Policy> {
    if let Some(t) = &raw.type_url {
        if t != JWT_AUTHN_TYPE_URL {
            return Err(ConfigError::new(
                "@type",
                format!("must be {JWT_AUTHN_TYPE_URL:?} when present, not {t:?}"),
            ));
        }
    }
    unsupported(
        "",
        "filter_state_rules",
        &raw.filter_state_rules,
        "; select requirements with `rules` or `per_route`",
    )?;

    let providers_raw = match &raw.providers {
        Some(p) if !p.0.is_empty() => &p.0,
        _ => {
            return Err(ConfigError::new(
                "providers",
                "at least one provider is required",
            ))
        }
    };

    let mut sources = Sources::default();
    let mut providers = Vec::with_capacity(providers_raw.len());
    let mut provider_ids = BTreeMap::new();
    let mut identity = Vec::new();
    for (name, p) in providers_raw {
        let path = join("providers", name);
        if name.is_empty() {
            return Err(ConfigError::new(path, "a provider name must not be empty"));
        }
        provider_ids.insert(name.clone(), providers.len());
        providers.push(compile_provider(
            name,
            p,
            &path,
            &mut sources,
            &mut identity,
        )?);
    }
    let identity_headers = check_identity_headers(&providers, identity)?;

    let mut requirement_map = BTreeMap::new();
    for (name, r) in &raw.requirement_map.0 {
        let path = join("requirement_map", name);
        if name.is_empty() {
            return Err(ConfigError::new(
                path,
                "a requirement name must not be empty",
            ));
        }
        requirement_map.insert(name.clone(), compile_requirement(r, &path, &provider_ids)?);
    }

    let mut rules = Vec::with_capacity(raw.rules.len());
    for (i, r) in raw.rules.iter().enumerate() {
        rules.push(compile_rule(
            r,
            &format!("rules[{i}]"),
            &provider_ids,
            &requirement_map,
        )?);
    }

    let mut per_route = BTreeMap::new();
    for (route, o) in &raw.per_route.0 {
        let path = join("per_route", route);
        per_route.insert(
            route.clone(),
            compile_route_override(o, &path, &requirement_map)?,
        );
    }

    Ok(Policy {
        providers,
        jwks_sources: sources.list,
        rules,
        per_route,
        bypass_cors_preflight: raw.bypass_cors_preflight,
        strip_failure_response: raw.strip_failure_response,
        identity_headers,
        metrics: raw.metrics.unwrap_or(true),
        log_level: match raw.log_level.as_deref() {
            None => None,
            Some(l @ ("trace" | "debug" | "info" | "warn" | "error" | "critical")) => {
                Some(l.to_string())
            }
            Some(_) => {
                return Err(ConfigError::new(
                    "log_level",
                    "must be one of trace, debug, info, warn, error, critical",
                ))
            }
        },
    })
}

/// `base.field`, or `field` at the top.
fn join(base: &str, field: &str) -> String {
    if base.is_empty() {
        field.to_string()
    } else {
        format!("{base}.{field}")
    }
}

fn required<'a, T>(value: &'a Option<T>, path: &str, field: &str) -> Result<&'a T> {
    value
        .as_ref()
        .ok_or_else(|| ConfigError::new(join(path, field), "is required"))
}

/// Refuses a jwt_authn field jwt-edge does not implement, unless it holds the proto default
/// (so that a config dumped with defaults still loads).
fn unsupported(path: &str, field: &str, value: &Option<Value>, hint: &str) -> Result<()> {
    only_default(
        path,
        field,
        value,
        &format!("`{field}` is a jwt_authn field not supported by jwt-edge{hint}"),
    )
}

/// Refuses `field` with `message` unless it is absent or holds the proto default.
fn only_default(path: &str, field: &str, value: &Option<Value>, message: &str) -> Result<()> {
    let is_default = match value {
        None | Some(Value::Null) => true,
        Some(Value::Bool(b)) => !b,
        Some(Value::String(s)) => s.is_empty(),
        Some(Value::Number(n)) => n.as_f64() == Some(0.0),
        Some(Value::Array(a)) => a.is_empty(),
        Some(Value::Object(_)) => false,
    };
    if is_default {
        Ok(())
    } else {
        Err(ConfigError::new(join(path, field), message))
    }
}

/// Names of the fields of a oneof that are set.
fn set_fields<'a>(fields: &[(&'a str, bool)]) -> Vec<&'a str> {
    fields
        .iter()
        .filter(|(_, set)| *set)
        .map(|(name, _)| *name)
        .collect()
}

/// Refuses anything but exactly one set field of a oneof.
fn exactly_one(path: &str, what: &str, fields: &[(&str, bool)]) -> Result<()> {
    let set = set_fields(fields);
    if set.len() == 1 {
        return Ok(());
    }
    let all: Vec<&str> = fields.iter().map(|(n, _)| *n).collect();
    let found = if set.is_empty() {
        "none is set".to_string()
    } else {
        format!("found {}", set.join(", "))
    };
    Err(ConfigError::new(
        path,
        format!(
            "{what} must set exactly one of {} ({found})",
            all.join(", ")
        ),
    ))
}

/// RFC 9110 `token`.
fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// A header name to read or write: a token, lower-cased.
fn header_name(name: &str, path: &str) -> Result<String> {
    if is_token(name) {
        Ok(name.to_ascii_lowercase())
    } else {
        Err(ConfigError::new(
            path,
            format!("{name:?} is not a valid HTTP header name"),
        ))
    }
}

fn non_empty<'a>(value: &'a str, path: &str) -> Result<&'a str> {
    if value.is_empty() {
        Err(ConfigError::new(path, "must not be empty"))
    } else {
        Ok(value)
    }
}

// ---------------------------------------------------------------- providers

/// Key sources, with remote ones shared by (uri, cluster).
#[derive(Default)]
struct Sources {
    list: Vec<JwksSource>,
    /// (document, uri, cluster) → (source, first provider using it).
    remote: BTreeMap<(Document, String, String), (JwksId, String)>,
}

/// A header some provider writes, and where it was configured.
struct IdentityHeader {
    name: String,
    path: String,
}

fn compile_provider(
    name: &str,
    p: &raw::JwtProvider,
    path: &str,
    sources: &mut Sources,
    identity: &mut Vec<IdentityHeader>,
) -> Result<Provider> {
    for (field, value) in [
        ("payload_in_metadata", &p.payload_in_metadata),
        (
            "normalize_payload_in_metadata",
            &p.normalize_payload_in_metadata,
        ),
        ("header_in_metadata", &p.header_in_metadata),
        ("failed_status_in_metadata", &p.failed_status_in_metadata),
    ] {
        unsupported(
            path,
            field,
            value,
            ": a Wasm filter cannot write dynamic metadata; \
             use `forward_payload_header` or `claim_to_headers`",
        )?;
    }
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
        Some(d) if d.0.as_secs() >= 1 => Some(d.0.as_secs()),
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
        clock_skew_seconds: p
            .clock_skew_seconds
            .map_or(DEFAULT_CLOCK_SKEW_SECONDS, u64::from),
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
    })
}

fn compile_revoked(r: Option<&raw::Revoked>, path: &str) -> Result<Revocation> {
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
        jti: r.jti.iter().cloned().collect(),
        sub: r.sub.iter().cloned().collect(),
    })
}

fn compile_algorithms(p: &raw::JwtProvider, path: &str) -> Result<Vec<Algorithm>> {
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

fn compile_locations(p: &raw::JwtProvider, path: &str) -> Result<Vec<TokenLocation>> {
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
fn check_identity_headers(
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

// ---------------------------------------------------------------- key sources

/// Splits an `http(s)://authority/path?query` URI into authority and path (`/` when empty).
pub(crate) fn split_uri(uri: &str) -> std::result::Result<(String, String), String> {
    if uri
        .chars()
        .any(|c| c.is_whitespace() || c.is_control() || !c.is_ascii())
    {
        return Err("must not contain spaces, control or non-ASCII characters".into());
    }
    let rest = ["https://", "http://"]
        .iter()
        .find_map(|scheme| {
            uri.get(..scheme.len())
                .filter(|head| head.eq_ignore_ascii_case(scheme))
                .and_then(|_| uri.get(scheme.len()..))
        })
        .ok_or_else(|| format!("{uri:?} is not an http:// or https:// URI"))?;
    if rest.contains('#') {
        return Err("must not have a #fragment".into());
    }
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest
        .split_at_checked(end)
        .ok_or_else(|| format!("{uri:?} is not a valid URI"))?;
    check_authority(authority)?;
    let path = if tail.is_empty() {
        "/".to_string()
    } else if tail.starts_with('?') {
        format!("/{tail}")
    } else {
        tail.to_string()
    };
    Ok((authority.to_string(), path))
}

fn check_authority(authority: &str) -> std::result::Result<(), String> {
    if authority.is_empty() {
        return Err("has no host".into());
    }
    if authority.contains('@') {
        return Err("must not contain user information (user@host)".into());
    }
    let (host_ok, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (addr, after) = v6
            .split_once(']')
            .ok_or("has an unterminated IPv6 address")?;
        let ok = !addr.is_empty()
            && addr
                .chars()
                .all(|c| c.is_ascii_hexdigit() || ":.".contains(c));
        let port = match after {
            "" => None,
            _ => Some(
                after
                    .strip_prefix(':')
                    .ok_or("has junk after the IPv6 address")?,
            ),
        };
        (ok, port)
    } else {
        let (host, port) = match authority.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        };
        let ok = !host.is_empty()
            && host
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-._".contains(c));
        (ok, port)
    };
    if !host_ok {
        return Err(format!("{authority:?} is not a valid host"));
    }
    if let Some(port) = port {
        let valid = !port.is_empty()
            && port.bytes().all(|b| b.is_ascii_digit())
            && port.parse::<u16>().is_ok_and(|p| p != 0);
        if !valid {
            return Err(format!("{port:?} is not a valid port"));
        }
    }
    Ok(())
}

/// `http_uri` of a remote source: (uri, cluster, authority, path, timeout in ms).
struct Fetch {
    uri: String,
    cluster: String,
    authority: String,
    path: String,
    timeout_ms: u64,
}

fn compile_http_uri(http: Option<&raw::HttpUri>, path: &str) -> Result<Fetch> {
    let http = required(&http, path, "http_uri")?;
    let hpath = join(path, "http_uri");
    let uri = non_empty(required(&http.uri, &hpath, "uri")?, &join(&hpath, "uri"))?;
    let (authority, fetch_path) =
        split_uri(uri).map_err(|m| ConfigError::new(join(&hpath, "uri"), m))?;
    let cluster = non_empty(
        required(&http.cluster, &hpath, "cluster")?,
        &join(&hpath, "cluster"),
    )?;
    let timeout_ms = match &http.timeout {
        None => DEFAULT_FETCH_TIMEOUT_MS,
        Some(d) => u64::try_from(d.0.as_millis())
            .ok()
            .filter(|ms| (1..=MAX_FETCH_TIMEOUT_MS).contains(ms))
            .ok_or_else(|| {
                ConfigError::new(
                    join(&hpath, "timeout"),
                    format!(
                        "must be between 0.001s and {}s",
                        MAX_FETCH_TIMEOUT_MS / 1000
                    ),
                )
            })?,
    };
    Ok(Fetch {
        uri: uri.to_string(),
        cluster: cluster.to_string(),
        authority,
        path: fetch_path,
        timeout_ms,
    })
}

fn cache_seconds(d: &Option<raw::ProtoDuration>, path: &str, default: u64) -> Result<u64> {
    match d {
        None => Ok(default),
        Some(d) => Some(d.0.as_secs())
            .filter(|s| (1..MAX_CACHE_DURATION_SECONDS).contains(s))
            .ok_or_else(|| {
                ConfigError::new(
                    join(path, "cache_duration"),
                    format!("must be at least 1s and below {MAX_CACHE_DURATION_SECONDS}s"),
                )
            }),
    }
}

/// An optional duration field in milliseconds, within `min..=max`.
fn duration_ms(
    d: &Option<raw::ProtoDuration>,
    path: &str,
    field: &str,
    default: u64,
    min: u64,
    max: u64,
) -> Result<u64> {
    match d {
        None => Ok(default),
        Some(d) => u64::try_from(d.0.as_millis())
            .ok()
            .filter(|v| (min..=max).contains(v))
            .ok_or_else(|| {
                // Not `min as f64 / 1000.0`: f64's Display would bring ~18 KB of float
                // formatting into the module.
                let min_s = match min % 1000 {
                    0 => (min / 1000).to_string(),
                    ms => format!("{}.{ms:03}", min / 1000),
                };
                ConfigError::new(
                    join(path, field),
                    format!("must be between {min_s}s and {}s", max / 1000),
                )
            }),
    }
}

/// Longest `max_stale` accepted: 30 days.
const MAX_STALE_LIMIT_MS: u64 = 30 * 24 * 3600 * 1000;
/// Longest `request_wait_timeout` accepted.
const MAX_WAIT_TIMEOUT_MS: u64 = 60_000;

fn compile_remote_jwks(
    r: &raw::RemoteJwks,
    path: &str,
    provider: &str,
    issuer: Option<&str>,
    sources: &mut Sources,
) -> Result<JwksId> {
    let fetch = compile_http_uri(r.http_uri.as_ref(), path)?;
    let cache_duration_seconds =
        cache_seconds(&r.cache_duration, path, DEFAULT_CACHE_DURATION_SECONDS)?;
    let max_stale_ms = duration_ms(
        &r.max_stale,
        path,
        "max_stale",
        DEFAULT_MAX_STALE_MS,
        0,
        MAX_STALE_LIMIT_MS,
    )?;
    let refetch_interval_ms = duration_ms(
        &r.unknown_kid_refetch_interval,
        path,
        "unknown_kid_refetch_interval",
        DEFAULT_REFETCH_INTERVAL_MS,
        1_000,
        24 * 3600 * 1000,
    )?;
    let wait_timeout_ms = duration_ms(
        &r.request_wait_timeout,
        path,
        "request_wait_timeout",
        DEFAULT_WAIT_TIMEOUT_MS,
        0,
        MAX_WAIT_TIMEOUT_MS,
    )?;
    let discovery_issuer = if r.discovery.unwrap_or(false) {
        match issuer {
            Some(iss) => Some(iss.to_string()),
            None => return Err(ConfigError::new(
                join(path, "discovery"),
                "OIDC discovery needs the provider's issuer: the discovered issuer must equal it",
            )),
        }
    } else {
        None
    };
    let remote = RemoteJwks {
        document: Document::Jwks,
        uri: fetch.uri,
        cluster: fetch.cluster,
        authority: fetch.authority,
        path: fetch.path,
        timeout_ms: fetch.timeout_ms,
        cache_duration_seconds,
        max_stale_ms,
        refetch_interval_ms,
        wait_timeout_ms,
        discovery_issuer,
    };
    add_remote(remote, path, provider, sources)
}

/// Extension: a provider's remote revocation list.
fn compile_revocation_list(
    r: &raw::RevocationList,
    path: &str,
    provider: &str,
    sources: &mut Sources,
) -> Result<JwksId> {
    let fetch = compile_http_uri(r.http_uri.as_ref(), path)?;
    let remote = RemoteJwks {
        document: Document::RevocationList,
        uri: fetch.uri,
        cluster: fetch.cluster,
        authority: fetch.authority,
        path: fetch.path,
        timeout_ms: fetch.timeout_ms,
        cache_duration_seconds: cache_seconds(
            &r.cache_duration,
            path,
            DEFAULT_REVOCATION_CACHE_SECONDS,
        )?,
        max_stale_ms: duration_ms(
            &r.max_stale,
            path,
            "max_stale",
            DEFAULT_REVOCATION_MAX_STALE_MS,
            0,
            MAX_STALE_LIMIT_MS,
        )?,
        // Not used: a revocation list has no `kid` to be missing from.
        refetch_interval_ms: DEFAULT_REFETCH_INTERVAL_MS,
        wait_timeout_ms: duration_ms(
            &r.request_wait_timeout,
            path,
            "request_wait_timeout",
            DEFAULT_WAIT_TIMEOUT_MS,
            0,
            MAX_WAIT_TIMEOUT_MS,
        )?,
        discovery_issuer: None,
    };
    add_remote(remote, path, provider, sources)
}

/// Registers a remote source, sharing an identical one another provider already declared.
fn add_remote(
    remote: RemoteJwks,
    path: &str,
    provider: &str,
    sources: &mut Sources,
) -> Result<JwksId> {
    let key = (remote.document, remote.uri.clone(), remote.cluster.clone());
    if let Some((id, first)) = sources.remote.get(&key) {
        return match sources.list.get(*id) {
            Some(JwksSource::Remote(existing)) if *existing == remote => Ok(*id),
            _ => Err(ConfigError::new(
                path,
                format!(
                    "same uri and cluster as provider {first:?} but different settings \
                     (timeout, cache_duration, max_stale, ...): providers sharing a {} must \
                     agree",
                    match remote.document {
                        Document::Jwks => "key set",
                        Document::RevocationList => "revocation list",
                    }
                ),
            )),
        };
    }
    let id = sources.list.len();
    sources.list.push(JwksSource::Remote(remote));
    sources.remote.insert(key, (id, provider.to_string()));
    Ok(id)
}

fn compile_local_jwks(l: &raw::DataSource, path: &str, sources: &mut Sources) -> Result<JwksId> {
    let wasm = "not supported in a Wasm filter: use inline_string";
    only_default(path, "filename", &l.filename, wasm)?;
    only_default(path, "environment_variable", &l.environment_variable, wasm)?;
    let (bytes, bpath) = match (&l.inline_string, &l.inline_bytes) {
        (Some(_), Some(_)) => {
            return Err(ConfigError::new(
                path,
                "set one of inline_string and inline_bytes, not both",
            ))
        }
        (None, None) => {
            return Err(ConfigError::new(
                path,
                "local_jwks needs the key set in inline_string",
            ))
        }
        (Some(s), None) => (s.as_bytes().to_vec(), join(path, "inline_string")),
        (None, Some(b)) => {
            let bpath = join(path, "inline_bytes");
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(b)
                .map_err(|e| ConfigError::new(&bpath, format!("not valid base64: {e}")))?;
            (bytes, bpath)
        }
    };
    let load = parse_jwks(
        &bytes,
        JwksOptions {
            allow_symmetric: true,
        },
    )
    .map_err(|e| ConfigError::new(&bpath, describe_jwks_error(&e)))?;
    for skipped in &load.skipped {
        log::warn!("{bpath}: {}", describe_skipped(skipped));
    }
    let id = sources.list.len();
    sources.list.push(JwksSource::Local(Arc::new(load.keys)));
    Ok(id)
}

fn describe_skipped(k: &SkippedKey) -> String {
    match &k.kid {
        Some(kid) => format!("key {} (kid {kid:?}) skipped: {}", k.index, k.reason),
        None => format!("key {} skipped: {}", k.index, k.reason),
    }
}

fn describe_jwks_error(e: &JwksError) -> String {
    match e {
        JwksError::NotJson(why) => format!("not a JSON Web Key Set: {why}"),
        JwksError::NoKeysArray => "not a JSON Web Key Set: no \"keys\" array".to_string(),
        JwksError::NoUsableKey(skipped) => {
            let why: Vec<String> = skipped.iter().map(describe_skipped).collect();
            if why.is_empty() {
                "the key set has no usable key (\"keys\" is empty)".to_string()
            } else {
                format!("the key set has no usable key: {}", why.join("; "))
            }
        }
        JwksError::TooLarge(n) => format!("the key set is too large ({n} bytes)"),
    }
}

// ---------------------------------------------------------------- requirements and rules

/// The `scopes` and `claims` extensions of a requirement.
fn compile_authz(
    r: &raw::JwtRequirement,
    path: &str,
    is_provider: bool,
) -> Result<(Vec<String>, Vec<ClaimRequirement>)> {
    if !is_provider && (r.scopes.is_some() || r.claims.is_some()) {
        let field = if r.scopes.is_some() {
            "scopes"
        } else {
            "claims"
        };
        return Err(ConfigError::new(
            join(path, field),
            "applies only next to provider_name or provider_and_audiences",
        ));
    }
    let mut scopes = Vec::new();
    for (i, scope) in r.scopes.iter().flatten().enumerate() {
        let spath = format!("{}[{i}]", join(path, "scopes"));
        if scope.is_empty() || scope.contains(' ') || scope.contains('"') || scope.contains('\\') {
            return Err(ConfigError::new(
                spath,
                "a scope is one non-empty word without spaces, quotes or backslashes (RFC 6749 §3.3)",
            ));
        }
        scopes.push(scope.clone());
    }
    let mut claims = Vec::new();
    for (i, c) in r.claims.iter().flatten().enumerate() {
        let cpath = format!("{}[{i}]", join(path, "claims"));
        let name = non_empty(required(&c.name, &cpath, "name")?, &join(&cpath, "name"))?;
        let values = required(&c.values, &cpath, "values")?;
        if values.is_empty() {
            return Err(ConfigError::new(
                join(&cpath, "values"),
                "must list at least one value",
            ));
        }
        for (j, v) in values.iter().enumerate() {
            if !(v.is_string() || v.is_number() || v.is_boolean()) {
                return Err(ConfigError::new(
                    format!("{}[{j}]", join(&cpath, "values")),
                    "must be a string, a number or a boolean",
                ));
            }
        }
        let path_parts: Vec<String> = name.split('.').map(str::to_owned).collect();
        if path_parts.iter().any(String::is_empty) {
            return Err(ConfigError::new(
                join(&cpath, "name"),
                "has an empty path segment",
            ));
        }
        claims.push(ClaimRequirement {
            name: name.to_owned(),
            path: path_parts,
            values: values.clone(),
        });
    }
    Ok((scopes, claims))
}

fn compile_requirement(
    r: &raw::JwtRequirement,
    path: &str,
    providers: &BTreeMap<String, ProviderId>,
) -> Result<Requirement> {
    unsupported(
        path,
        "extract_only_without_validation",
        &r.extract_only_without_validation,
        ": jwt-edge never uses an unverified token",
    )?;
    exactly_one(
        path,
        "a requirement",
        &[
            ("provider_name", r.provider_name.is_some()),
            ("provider_and_audiences", r.provider_and_audiences.is_some()),
            ("requires_any", r.requires_any.is_some()),
            ("requires_all", r.requires_all.is_some()),
            ("allow_missing", r.allow_missing.is_some()),
            (
                "allow_missing_or_failed",
                r.allow_missing_or_failed.is_some(),
            ),
        ],
    )?;
    let provider_id = |name: &str, npath: String| -> Result<ProviderId> {
        providers.get(name).copied().ok_or_else(|| {
            let known: Vec<&str> = providers.keys().map(String::as_str).collect();
            ConfigError::new(
                npath,
                format!(
                    "no provider named {name:?} (providers: {})",
                    known.join(", ")
                ),
            )
        })
    };
    let is_provider = r.provider_name.is_some() || r.provider_and_audiences.is_some();
    let (scopes, claims) = compile_authz(r, path, is_provider)?;
    if let Some(name) = &r.provider_name {
        return Ok(Requirement::Provider {
            provider: provider_id(name, join(path, "provider_name"))?,
            audiences: None,
            scopes,
            claims,
        });
    }
    if let Some(pa) = &r.provider_and_audiences {
        let ppath = join(path, "provider_and_audiences");
        let name = required(&pa.provider_name, &ppath, "provider_name")?;
        let provider = provider_id(name, join(&ppath, "provider_name"))?;
        if pa.audiences.is_empty() {
            return Err(ConfigError::new(
                join(&ppath, "audiences"),
                "must list at least one audience (use provider_name to keep the provider's)",
            ));
        }
        for (i, aud) in pa.audiences.iter().enumerate() {
            non_empty(aud, &format!("{ppath}.audiences[{i}]"))?;
        }
        return Ok(Requirement::Provider {
            provider,
            audiences: Some(pa.audiences.clone()),
            scopes,
            claims,
        });
    }
    for (field, list, make) in [
        (
            "requires_any",
            &r.requires_any,
            Requirement::Any as fn(Vec<Requirement>) -> Requirement,
        ),
        ("requires_all", &r.requires_all, Requirement::All),
    ] {
        if let Some(list) = list {
            let lpath = format!("{path}.{field}.requirements");
            if list.requirements.len() < 2 {
                return Err(ConfigError::new(
                    lpath,
                    format!(
                        "needs at least 2 requirements (found {})",
                        list.requirements.len()
                    ),
                ));
            }
            let children = list
                .requirements
                .iter()
                .enumerate()
                .map(|(i, c)| compile_requirement(c, &format!("{lpath}[{i}]"), providers))
                .collect::<Result<Vec<_>>>()?;
            return Ok(make(children));
        }
    }
    if r.allow_missing.is_some() {
        return Ok(Requirement::AllowMissing);
    }
    Ok(Requirement::AllowMissingOrFailed)
}

fn lookup_requirement(
    name: &str,
    path: String,
    map: &BTreeMap<String, Requirement>,
) -> Result<Requirement> {
    map.get(name).cloned().ok_or_else(|| {
        ConfigError::new(
            path,
            format!("no requirement named {name:?} in requirement_map"),
        )
    })
}

fn compile_rule(
    r: &raw::RequirementRule,
    path: &str,
    providers: &BTreeMap<String, ProviderId>,
    requirement_map: &BTreeMap<String, Requirement>,
) -> Result<Rule> {
    let m = required(&r.route_match, path, "match")?;
    let matcher = compile_route_match(m, &join(path, "match"))?;
    let requires = match (&r.requires, &r.requirement_name) {
        (Some(_), Some(_)) => {
            return Err(ConfigError::new(
                path,
                "set at most one of requires and requirement_name, not both",
            ))
        }
        (Some(req), None) => Some(compile_requirement(
            req,
            &join(path, "requires"),
            providers,
        )?),
        (None, Some(name)) => Some(lookup_requirement(
            name,
            join(path, "requirement_name"),
            requirement_map,
        )?),
        (None, None) => None,
    };
    Ok(Rule { matcher, requires })
}

fn compile_route_override(
    o: &raw::PerRouteConfig,
    path: &str,
    requirement_map: &BTreeMap<String, Requirement>,
) -> Result<RouteOverride> {
    exactly_one(
        path,
        "a per_route entry",
        &[
            ("disabled", o.disabled.is_some()),
            ("requirement_name", o.requirement_name.is_some()),
        ],
    )?;
    match (&o.disabled, &o.requirement_name) {
        (Some(true), _) => Ok(RouteOverride::Disabled),
        (Some(false), _) => Err(ConfigError::new(
            join(path, "disabled"),
            "can only be true; to require a token set requirement_name instead",
        )),
        (None, Some(name)) => Ok(RouteOverride::Require(lookup_requirement(
            name,
            join(path, "requirement_name"),
            requirement_map,
        )?)),
        (None, None) => Err(ConfigError::new(path, "is empty")),
    }
}

// ---------------------------------------------------------------- matchers

fn compile_regex(r: &raw::RegexMatcher, path: &str) -> Result<StringPattern> {
    let pattern = required(&r.regex, path, "regex")?;
    StringMatcher::regex(pattern)
        .map_err(|e| ConfigError::new(join(path, "regex"), format!("invalid regex: {e}")))
}

fn compile_string_matcher(m: &raw::StringMatcher, path: &str) -> Result<StringMatcher> {
    unsupported(path, "custom", &m.custom, "")?;
    exactly_one(
        path,
        "a string matcher",
        &[
            ("exact", m.exact.is_some()),
            ("prefix", m.prefix.is_some()),
            ("suffix", m.suffix.is_some()),
            ("contains", m.contains.is_some()),
            ("safe_regex", m.safe_regex.is_some()),
        ],
    )?;
    let pattern = if let Some(s) = &m.exact {
        StringPattern::Exact(s.clone())
    } else if let Some(s) = &m.prefix {
        StringPattern::Prefix(non_empty(s, &join(path, "prefix"))?.to_string())
    } else if let Some(s) = &m.suffix {
        StringPattern::Suffix(non_empty(s, &join(path, "suffix"))?.to_string())
    } else if let Some(s) = &m.contains {
        StringPattern::Contains(non_empty(s, &join(path, "contains"))?.to_string())
    } else if let Some(r) = &m.safe_regex {
        compile_regex(r, &join(path, "safe_regex"))?
    } else {
        return Err(ConfigError::new(path, "a string matcher needs a pattern"));
    };
    Ok(StringMatcher {
        pattern,
        ignore_case: m.ignore_case,
    })
}

fn compile_route_match(m: &raw::RouteMatch, path: &str) -> Result<RouteMatch> {
    for (field, value) in [
        ("connect_matcher", &m.connect_matcher),
        ("path_separated_prefix", &m.path_separated_prefix),
        ("path_match_policy", &m.path_match_policy),
        ("runtime_fraction", &m.runtime_fraction),
        ("grpc", &m.grpc),
        ("tls_context", &m.tls_context),
        ("dynamic_metadata", &m.dynamic_metadata),
        ("filter_state", &m.filter_state),
    ] {
        unsupported(path, field, value, " in a rule's match")?;
    }
    exactly_one(
        path,
        "a route match",
        &[
            ("prefix", m.prefix.is_some()),
            ("path", m.path.is_some()),
            ("safe_regex", m.safe_regex.is_some()),
        ],
    )?;
    let slash = |p: &str, field: &str| -> Result<String> {
        if p.starts_with('/') || (field == "prefix" && p.is_empty()) {
            Ok(p.to_string())
        } else {
            Err(ConfigError::new(
                join(path, field),
                format!("{p:?} must start with '/'"),
            ))
        }
    };
    let path_match = if let Some(p) = &m.prefix {
        PathMatch::Prefix(slash(p, "prefix")?)
    } else if let Some(p) = &m.path {
        PathMatch::Exact(slash(p, "path")?)
    } else if let Some(r) = &m.safe_regex {
        PathMatch::Regex(compile_regex(r, &join(path, "safe_regex"))?)
    } else {
        return Err(ConfigError::new(path, "a route match needs a path pattern"));
    };

    let headers = m
        .headers
        .iter()
        .enumerate()
        .map(|(i, h)| compile_header_matcher(h, &format!("{path}.headers[{i}]")))
        .collect::<Result<Vec<_>>>()?;
    let query_parameters = m
        .query_parameters
        .iter()
        .enumerate()
        .map(|(i, q)| compile_query_matcher(q, &format!("{path}.query_parameters[{i}]")))
        .collect::<Result<Vec<_>>>()?;
    let mut methods = Vec::with_capacity(m.methods.len());
    for (i, method) in m.methods.iter().enumerate() {
        let upper = is_token(method) && !method.bytes().any(|b| b.is_ascii_lowercase());
        if !upper {
            return Err(ConfigError::new(
                format!("{path}.methods[{i}]"),
                format!("{method:?} is not a method name: methods are case-sensitive tokens such as \"GET\""),
            ));
        }
        if !methods.contains(method) {
            methods.push(method.clone());
        }
    }

    Ok(RouteMatch {
        path: path_match,
        case_sensitive: m.case_sensitive.unwrap_or(true),
        headers,
        query_parameters,
        methods,
    })
}

fn compile_header_matcher(h: &raw::HeaderMatcher, path: &str) -> Result<HeaderMatch> {
    unsupported(path, "range_match", &h.range_match, "")?;
    unsupported(
        path,
        "treat_missing_header_as_empty",
        &h.treat_missing_header_as_empty,
        "",
    )?;
    let raw_name = required(&h.name, path, "name")?;
    let npath = join(path, "name");
    let name = match raw_name.strip_prefix(':') {
        Some(pseudo) => format!(":{}", header_name(pseudo, &npath)?),
        None => header_name(raw_name, &npath)?,
    };
    let fields = [
        ("exact_match", h.exact_match.is_some()),
        ("prefix_match", h.prefix_match.is_some()),
        ("suffix_match", h.suffix_match.is_some()),
        ("contains_match", h.contains_match.is_some()),
        ("present_match", h.present_match.is_some()),
        ("safe_regex_match", h.safe_regex_match.is_some()),
        ("string_match", h.string_match.is_some()),
    ];
    let set = set_fields(&fields);
    if set.len() > 1 {
        return Err(ConfigError::new(
            path,
            format!(
                "a header matcher sets at most one of exact_match, prefix_match, suffix_match, \
                 contains_match, present_match, safe_regex_match, string_match (found {})",
                set.join(", ")
            ),
        ));
    }
    let value = |pattern: StringPattern| {
        HeaderRule::Value(StringMatcher {
            pattern,
            ignore_case: false,
        })
    };
    let rule = if let Some(s) = &h.exact_match {
        value(StringPattern::Exact(s.clone()))
    } else if let Some(s) = &h.prefix_match {
        value(StringPattern::Prefix(
            non_empty(s, &join(path, "prefix_match"))?.to_string(),
        ))
    } else if let Some(s) = &h.suffix_match {
        value(StringPattern::Suffix(
            non_empty(s, &join(path, "suffix_match"))?.to_string(),
        ))
    } else if let Some(s) = &h.contains_match {
        value(StringPattern::Contains(
            non_empty(s, &join(path, "contains_match"))?.to_string(),
        ))
    } else if let Some(b) = h.present_match {
        HeaderRule::Present(b)
    } else if let Some(r) = &h.safe_regex_match {
        value(compile_regex(r, &join(path, "safe_regex_match"))?)
    } else if let Some(sm) = &h.string_match {
        HeaderRule::Value(compile_string_matcher(sm, &join(path, "string_match"))?)
    } else {
        // Envoy: a matcher with only a name matches when the header is present.
        HeaderRule::Present(true)
    };
    Ok(HeaderMatch {
        name,
        rule,
        invert: h.invert_match,
    })
}

fn compile_query_matcher(q: &raw::QueryParameterMatcher, path: &str) -> Result<QueryMatch> {
    let name = non_empty(required(&q.name, path, "name")?, &join(path, "name"))?;
    let rule = match (&q.string_match, q.present_match) {
        (Some(_), Some(_)) => {
            return Err(ConfigError::new(
                path,
                "set at most one of string_match and present_match",
            ))
        }
        (Some(sm), None) => {
            QueryRule::Value(compile_string_matcher(sm, &join(path, "string_match"))?)
        }
        (None, Some(false)) => {
            return Err(ConfigError::new(
                join(path, "present_match"),
                "can only be true (Envoy treats false as true); omit it instead",
            ))
        }
        (None, Some(true) | None) => QueryRule::Present,
    };
    Ok(QueryMatch {
        name: name.to_string(),
        rule,
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::authn::config::parse;

    fn remote(uri: &str) -> Value {
        json!({"remote_jwks": {"http_uri": {"uri": uri, "cluster": "idp"}}})
    }

    fn compile_json(v: Value) -> Result<Policy> {
        parse(&v.to_string())
    }

    fn one_provider(p: Value) -> Policy {
        compile_json(json!({"providers": {"p": p}})).unwrap()
    }

    #[test]
    fn provider_defaults() {
        let policy = one_provider(remote("https://idp.example.com/jwks"));
        let p = &policy.providers[0];
        assert_eq!(p.name, "p");
        assert!(p.require_expiration, "stricter than jwt_authn on purpose");
        assert_eq!(p.clock_skew_seconds, 60);
        assert_eq!(p.algorithms, Algorithm::DEFAULT_ALLOWED.to_vec());
        assert!(!p.algorithms.iter().any(|a| a.is_symmetric()));
        assert_eq!(
            p.locations,
            vec![
                TokenLocation::Header {
                    name: "authorization".into(),
                    value_prefix: "Bearer ".into()
                },
                TokenLocation::Param("access_token".into()),
            ]
        );
        assert_eq!(p.max_token_bytes, DEFAULT_MAX_TOKEN_BYTES);
        assert_eq!(p.max_lifetime, None);
        assert_eq!(p.issuer, None);
        assert!(p.audiences.is_empty());
        assert!(!p.forward);
        assert_eq!(p.jwt_cache_size, 0);
        assert_eq!(p.forward_payload_header, None);
        let Some(JwksSource::Remote(r)) = policy.jwks_sources.get(p.jwks) else {
            panic!("remote source expected");
        };
        assert_eq!(r.timeout_ms, 5_000);
        assert_eq!(r.cache_duration_seconds, 600);
        assert_eq!(r.authority, "idp.example.com");
        assert_eq!(r.path, "/jwks");
        assert!(policy.rules.is_empty());
        assert!(policy.per_route.is_empty());
        assert!(!policy.bypass_cors_preflight);
        assert!(!policy.strip_failure_response);
        assert!(policy.identity_headers.is_empty());
    }

    #[test]
    fn explicit_values_are_used() {
        let policy = one_provider(json!({
            "issuer": "https://idp",
            "audiences": ["a", "b"],
            "require_expiration": false,
            "max_lifetime": "3600.5s",
            "clock_skew_seconds": 0,
            "algorithms": ["ES256", "RS256"],
            "max_token_bytes": 256,
            "forward": true,
            "from_headers": [{"name": "X-Token"}, {"name": "Authorization", "value_prefix": "JWT "}],
            "from_cookies": ["session"],
            "from_params": ["jwt"],
            "jwt_cache_config": {},
            "remote_jwks": {
                "http_uri": {"uri": "HTTP://idp:8080?tenant=a", "cluster": "idp", "timeout": "1.5s"},
                "cache_duration": "1.9s"
            }
        }));
        let p = &policy.providers[0];
        assert_eq!(p.issuer.as_deref(), Some("https://idp"));
        assert!(!p.require_expiration);
        assert_eq!(p.max_lifetime, Some(3600));
        assert_eq!(p.clock_skew_seconds, 0);
        assert_eq!(p.algorithms, vec![Algorithm::Es256, Algorithm::Rs256]);
        assert_eq!(p.max_token_bytes, 256);
        assert_eq!(p.jwt_cache_size, DEFAULT_JWT_CACHE_SIZE);
        assert_eq!(
            p.locations,
            vec![
                TokenLocation::Header {
                    name: "x-token".into(),
                    value_prefix: String::new()
                },
                TokenLocation::Header {
                    name: "authorization".into(),
                    value_prefix: "JWT ".into()
                },
                TokenLocation::Param("jwt".into()),
                TokenLocation::Cookie("session".into()),
            ]
        );
        let Some(JwksSource::Remote(r)) = policy.jwks_sources.first() else {
            panic!("remote source expected");
        };
        assert_eq!(r.timeout_ms, 1_500);
        assert_eq!(r.cache_duration_seconds, 1);
        assert_eq!(r.authority, "idp:8080");
        assert_eq!(r.path, "/?tenant=a");
    }

    #[test]
    fn remote_sources_are_shared_by_uri_and_cluster() {
        let same = "https://idp.example.com/jwks";
        let policy = compile_json(json!({"providers": {
            "a": remote(same),
            "b": remote(same),
            "c": remote("https://idp.example.com/other"),
            "d": {"remote_jwks": {"http_uri": {"uri": same, "cluster": "elsewhere"}}},
        }}))
        .unwrap();
        let ids: Vec<JwksId> = policy.providers.iter().map(|p| p.jwks).collect();
        assert_eq!(ids, vec![0, 0, 1, 2]);
        assert_eq!(policy.jwks_sources.len(), 3);
    }

    #[test]
    fn uris_split_into_authority_and_path() {
        let ok = [
            ("https://h", "h", "/"),
            ("https://h/", "h", "/"),
            ("https://h:443/a/b?x=1&y", "h:443", "/a/b?x=1&y"),
            ("http://[::1]:8080/k", "[::1]:8080", "/k"),
            ("HTTPS://Idp.Example.com/k", "Idp.Example.com", "/k"),
        ];
        for (uri, authority, path) in ok {
            assert_eq!(
                split_uri(uri),
                Ok((authority.to_string(), path.to_string())),
                "{uri}"
            );
        }
        for bad in [
            "",
            "idp/jwks",
            "ftp://h/",
            "https://",
            "https:///jwks",
            "https://user@h/",
            "https://h:0/",
            "https://h:99999/",
            "https://h:/",
            "https://h/a#frag",
            "https://h/a b",
            "https://[::1/",
            "https://h^/",
        ] {
            assert!(split_uri(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn requirements_compile_to_trees() {
        let policy = compile_json(json!({
            "providers": {"a": remote("https://a/k"), "b": remote("https://b/k")},
            "requirement_map": {
                "tree": {"requires_any": {"requirements": [
                    {"provider_and_audiences": {"provider_name": "b", "audiences": ["x"]}},
                    {"requires_all": {"requirements": [{"provider_name": "a"}, {"allow_missing": {}}]}},
                    {"allow_missing_or_failed": {}}
                ]}}
            },
            "rules": [
                {"match": {"path": "/open"}},
                {"match": {"prefix": "/"}, "requirement_name": "tree"}
            ],
            "per_route": {"r1": {"requirement_name": "tree"}, "r2": {"disabled": true}}
        }))
        .unwrap();
        let tree = Requirement::Any(vec![
            Requirement::Provider {
                provider: 1,
                audiences: Some(vec!["x".into()]),
                scopes: vec![],
                claims: vec![],
            },
            Requirement::All(vec![
                Requirement::Provider {
                    provider: 0,
                    audiences: None,
                    scopes: vec![],
                    claims: vec![],
                },
                Requirement::AllowMissing,
            ]),
            Requirement::AllowMissingOrFailed,
        ]);
        assert_eq!(policy.rules.len(), 2);
        assert_eq!(policy.rules.first().and_then(|r| r.requires.clone()), None);
        assert_eq!(
            policy.rules.get(1).and_then(|r| r.requires.clone()),
            Some(tree.clone())
        );
        assert_eq!(
            policy.per_route.get("r1"),
            Some(&RouteOverride::Require(tree))
        );
        assert_eq!(policy.per_route.get("r2"), Some(&RouteOverride::Disabled));
    }

    #[test]
    fn route_matches_compile() {
        let policy = compile_json(json!({
            "providers": {"a": remote("https://a/k")},
            "rules": [{"match": {
                "safe_regex": {"google_re2": {}, "regex": "/v[0-9]+/.*"},
                "case_sensitive": false,
                "methods": ["GET", "POST", "GET"],
                "headers": [
                    {"name": ":Method", "exact_match": "GET"},
                    {"name": "X-Present"},
                    {"name": "x-absent", "present_match": false, "invert_match": true},
                    {"name": "x-s", "string_match": {"suffix": ".example", "ignore_case": true}}
                ],
                "query_parameters": [{"name": "q"}, {"name": "r", "string_match": {"exact": ""}}]
            }}]
        }))
        .unwrap();
        let Some(rule) = policy.rules.first() else {
            panic!("one rule expected");
        };
        let m = &rule.matcher;
        assert!(
            matches!(&m.path, PathMatch::Regex(StringPattern::Regex(r)) if r.is_match("/v2/x"))
        );
        assert!(!m.case_sensitive);
        assert_eq!(m.methods, vec!["GET".to_string(), "POST".to_string()]);
        let names: Vec<&str> = m.headers.iter().map(|h| h.name.as_str()).collect();
        assert_eq!(names, [":method", "x-present", "x-absent", "x-s"]);
        assert_eq!(
            m.headers.get(1).map(|h| &h.rule),
            Some(&HeaderRule::Present(true))
        );
        assert_eq!(
            m.headers.get(2).map(|h| (&h.rule, h.invert)),
            Some((&HeaderRule::Present(false), true))
        );
        assert_eq!(
            m.query_parameters.first().map(|q| &q.rule),
            Some(&QueryRule::Present)
        );
    }

    #[test]
    fn identity_headers_are_lower_case_sorted_and_deduplicated() {
        let mut a = remote("https://a/k");
        a["forward_payload_header"] = json!("X-Payload");
        a["claim_to_headers"] = json!([{"header_name": "X-Sub", "claim_name": "sub"}]);
        let mut b = remote("https://b/k");
        b["claim_to_headers"] = json!([
            {"header_name": "x-sub", "claim_name": "sub"},
            {"header_name": "x-org", "claim_name": "org.id", "value_format": "joined"}
        ]);
        let policy = compile_json(json!({"providers": {"a": a, "b": b}})).unwrap();
        assert_eq!(policy.identity_headers, ["x-org", "x-payload", "x-sub"]);
        let b = policy.providers.get(1).map(|p| p.claim_to_headers.clone());
        assert_eq!(
            b.and_then(|c| c.get(1).cloned()),
            Some(ClaimToHeader {
                header_name: "x-org".into(),
                claim_path: vec!["org".into(), "id".into()],
                format: ClaimFormat::Joined,
            })
        );
        let first = policy
            .providers
            .first()
            .and_then(|p| p.claim_to_headers.first().cloned());
        assert_eq!(first.map(|c| c.format), Some(ClaimFormat::JwtAuthn));
        let mut c = remote("https://c/k");
        c["claim_to_headers"] =
            json!([{"header_name": "x-r", "claim_name": "roles", "value_format": "csv"}]);
        let e = compile_json(json!({"providers": {"c": c}})).unwrap_err();
        assert_eq!(e.path, "providers.c.claim_to_headers[0].value_format");
    }

    #[test]
    fn a_header_written_twice_by_one_provider_is_refused() {
        let mut a = remote("https://a/k");
        a["forward_payload_header"] = json!("x-a");
        a["claim_to_headers"] = json!([{"header_name": "X-A", "claim_name": "sub"}]);
        let e = compile_json(json!({"providers": {"a": a}})).unwrap_err();
        assert_eq!(e.path, "providers.a.claim_to_headers[0].header_name");
    }

    #[test]
    fn hmac_is_allowed_with_a_local_key_set() {
        let jwks = json!({"keys": [{"kty": "oct", "kid": "s", "k": "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LXNlY3JldA"}]});
        let policy = one_provider(json!({
            "algorithms": ["HS256"],
            "local_jwks": {"inline_string": jwks.to_string()}
        }));
        assert_eq!(policy.providers[0].algorithms, vec![Algorithm::Hs256]);
        assert!(matches!(
            policy.jwks_sources.first(),
            Some(JwksSource::Local(_))
        ));
    }

    #[test]
    fn proto_defaults_of_unsupported_fields_are_accepted() {
        let mut p = remote("https://a/k");
        p["clear_route_cache"] = json!(false);
        p["payload_in_metadata"] = json!("");
        p["failed_status_in_metadata"] = json!(null);
        let policy = compile_json(json!({
            "providers": {"p": p},
            "stat_prefix": "x",
            "filter_state_rules": null
        }));
        assert!(policy.is_ok(), "{policy:?}");
        let mut p = remote("https://a/k");
        p["clear_route_cache"] = json!(true);
        let e = compile_json(json!({"providers": {"p": p}})).unwrap_err();
        assert_eq!(e.path, "providers.p.clear_route_cache");
        assert!(e.message.contains("not supported by jwt-edge"), "{e}");
    }

    #[test]
    fn errors_carry_paths_into_nested_matchers() {
        let cases = [
            (
                json!({"prefix": "/", "headers": [{"name": "x", "string_match": {"prefix": ""}}]}),
                "rules[0].match.headers[0].string_match.prefix",
            ),
            (
                json!({"prefix": "/", "query_parameters": [{"name": "q", "string_match": {"safe_regex": {"regex": "("}}}]}),
                "rules[0].match.query_parameters[0].string_match.safe_regex.regex",
            ),
            (
                json!({"prefix": "/", "headers": [{"name": "x", "safe_regex_match": {}}]}),
                "rules[0].match.headers[0].safe_regex_match.regex",
            ),
            (json!({"path": "no-slash"}), "rules[0].match.path"),
            (json!({"prefix": "/", "grpc": {}}), "rules[0].match.grpc"),
        ];
        for (m, path) in cases {
            let e = compile_json(json!({
                "providers": {"a": remote("https://a/k")},
                "rules": [{"match": m}]
            }))
            .unwrap_err();
            assert_eq!(e.path, path, "{e}");
        }
    }
}
