//! One-line descriptions of compiled policy parts, shared by `check-config` and `explain`.

use crate::authn::config::raw;
use crate::authn::policy::{JwksSource, Policy, Provider, Requirement, TokenLocation};

use super::quoted;
use super::timefmt::span;

/// A requirement tree: `provider "a"`, `any of (…)`, `allow_missing` …
pub fn requirement(policy: &Policy, r: &Requirement) -> String {
    match r {
        Requirement::Provider {
            provider,
            audiences,
            scopes,
            claims,
        } => {
            let name = policy
                .providers
                .get(*provider)
                .map_or("?", |p| p.name.as_str());
            let mut text = format!("provider {}", quoted(name, 80));
            if let Some(a) = audiences {
                text.push_str(&format!(" with audiences {}", list(a)));
            }
            if !scopes.is_empty() {
                text.push_str(&format!(" needing scopes {}", list(scopes)));
            }
            for c in claims {
                let values: Vec<String> = c.values.iter().map(|v| v.to_string()).collect();
                text.push_str(&format!(
                    " and claim {} in [{}]",
                    quoted(&c.name, 80),
                    values.join(", ")
                ));
            }
            text
        }
        Requirement::Any(children) => format!("any of ({})", children_list(policy, children)),
        Requirement::All(children) => format!("all of ({})", children_list(policy, children)),
        Requirement::AllowMissing => {
            "allow_missing (no token is fine; a token must be valid)".to_owned()
        }
        Requirement::AllowMissingOrFailed => {
            "allow_missing_or_failed (always passes; a valid token adds identity headers)"
                .to_owned()
        }
    }
}

fn children_list(policy: &Policy, children: &[Requirement]) -> String {
    let parts: Vec<String> = children
        .iter()
        .map(|c| match c {
            Requirement::AllowMissing => "allow_missing".to_owned(),
            Requirement::AllowMissingOrFailed => "allow_missing_or_failed".to_owned(),
            other => requirement(policy, other),
        })
        .collect();
    parts.join(", ")
}

/// `["a", "b"]`.
pub fn list(items: &[String]) -> String {
    let q: Vec<String> = items.iter().map(|s| quoted(s, 80)).collect();
    format!("[{}]", q.join(", "))
}

/// Where a provider looks for its token.
pub fn location(l: &TokenLocation) -> String {
    match l {
        TokenLocation::Header { name, value_prefix } if value_prefix.is_empty() => {
            format!("header {name}")
        }
        TokenLocation::Header { name, value_prefix } => {
            format!("header {name} (prefix {})", quoted(value_prefix, 40))
        }
        TokenLocation::Param(p) => format!("query parameter {}", quoted(p, 40)),
        TokenLocation::Cookie(c) => format!("cookie {}", quoted(c, 40)),
    }
}

/// Where a provider's keys come from.
pub fn key_source(policy: &Policy, p: &Provider) -> String {
    match policy.jwks_sources.get(p.jwks) {
        Some(JwksSource::Local(keys)) => format!("local_jwks ({} usable keys)", keys.len()),
        Some(JwksSource::Remote(r)) => format!(
            "remote_jwks {} via cluster {} (cache {}, timeout {}ms)",
            quoted(&r.uri, 200),
            quoted(&r.cluster, 80),
            span(r.cache_duration.as_secs()),
            r.timeout_ms.as_millis()
        ),
        None => "unknown key source".to_owned(),
    }
}

/// A provider in one line.
pub fn provider(policy: &Policy, p: &Provider) -> String {
    let mut parts = Vec::new();
    parts.push(match &p.issuer {
        Some(i) => format!("issuer {}", quoted(i, 200)),
        None => "any issuer".to_owned(),
    });
    if p.audiences.is_empty() {
        parts.push("any audience".to_owned());
    } else {
        parts.push(format!("audiences {}", list(&p.audiences)));
    }
    let algs: Vec<&str> = p.algorithms.iter().map(|a| a.name()).collect();
    parts.push(format!("algorithms {}", algs.join(" ")));
    let locs: Vec<String> = p.locations.iter().map(location).collect();
    parts.push(format!("token from {}", locs.join(", ")));
    parts.push(format!("keys: {}", key_source(policy, p)));
    parts.join("; ")
}

/// What requests publish through the host's property API, if anything: one line.
pub fn published(policy: &Policy) -> Option<String> {
    let mut names = Vec::new();
    for p in &policy.providers {
        let provider = quoted(&p.name, 80);
        if let Some(n) = &p.publish.payload {
            names.push(format!("{n} (payload of {provider})"));
        }
        if let Some(n) = &p.publish.header {
            names.push(format!("{n} (JOSE header of {provider})"));
        }
    }
    if let Some(n) = &policy.outcome_in_metadata {
        names.push(format!("{n} (outcome)"));
    }
    (!names.is_empty()).then(|| {
        format!(
            "published per request (Envoy filter state wasm.<name>): {}",
            names.join(", ")
        )
    })
}

/// A rule's `match`, from the raw config (the compiled form keeps no source text).
pub fn route_match(m: Option<&raw::RouteMatch>) -> String {
    let Some(m) = m else {
        return "(no match)".to_owned();
    };
    let mut parts = Vec::new();
    if let Some(p) = &m.prefix {
        parts.push(format!("prefix {}", quoted(p, 120)));
    }
    if let Some(p) = &m.path {
        parts.push(format!("path {}", quoted(p, 120)));
    }
    if let Some(r) = m.safe_regex.as_ref().and_then(|r| r.regex.as_ref()) {
        parts.push(format!("regex {}", quoted(r, 120)));
    }
    if m.case_sensitive == Some(false) {
        parts.push("case-insensitive".to_owned());
    }
    if !m.methods.is_empty() {
        parts.push(format!("methods {}", m.methods.join(",")));
    }
    if !m.headers.is_empty() {
        let names: Vec<&str> = m.headers.iter().filter_map(|h| h.name.as_deref()).collect();
        parts.push(format!("headers {}", names.join(",")));
    }
    if !m.query_parameters.is_empty() {
        let names: Vec<&str> = m
            .query_parameters
            .iter()
            .filter_map(|q| q.name.as_deref())
            .collect();
        parts.push(format!("query {}", names.join(",")));
    }
    parts.join(" ")
}
