//! Phase 2 of configuration: the [`raw`] types checked for meaning and turned into a
//! [`Policy`]. Every error names the JSON path of the field at fault.
//!
//! One module per part of [`raw`], in the order a config reads: [`providers`] (with their key
//! [`sources`]), [`requirements`], the [`rules`] and `per_route` that select them, and the
//! rules' route [`matchers`]. This file holds the top level and the helpers they share.

mod matchers;
mod providers;
mod publish;
mod requirements;
mod rules;
mod sender;
mod sources;
#[cfg(test)]
mod tests;

use providers::{check_identity_headers, compile_provider};
use requirements::compile_requirement;
use rules::{compile_route_override, compile_rule};
pub(crate) use sources::split_uri;
use sources::Sources;

use std::collections::BTreeMap;

use serde_json::Value;

use super::error::ConfigError;
use super::raw;
use crate::authn::policy::Policy;
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

    let outcome_in_metadata =
        publish::compile_outcome(raw.outcome_in_metadata.as_deref(), &providers)?;
    Ok(Policy {
        outcome_in_metadata,
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
