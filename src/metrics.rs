//! Metric names. Envoy shows them under `wasmcustom.` in `/stats` and without a prefix in
//! `/stats/prometheus`; counters from every worker's VM add up.

use crate::authn::policy::Document;

/// Requests let through (all reasons).
pub const ALLOWED: &str = "jwt_edge.allowed";
/// Requests answered locally.
pub const DENIED: &str = "jwt_edge.denied";
/// Requests paused to wait for a key set.
pub const PAUSED: &str = "jwt_edge.paused";
/// Verified-token cache hits.
pub const CACHE_HIT: &str = "jwt_edge.jwt_cache_hit";
/// Verified-token cache misses.
pub const CACHE_MISS: &str = "jwt_edge.jwt_cache_miss";
/// CORS preflights let through without a token.
pub const CORS_BYPASSED: &str = "jwt_edge.cors_preflight_bypassed";

/// A name part made safe for a stat name: `[A-Za-z0-9_-]`, everything else `_`.
pub fn sanitize(part: &str) -> String {
    part.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// `jwt_edge.denied.<code>`.
pub fn denied_by_code(code: &str) -> String {
    format!("jwt_edge.denied.{code}")
}

/// `jwt_edge.provider.<name>.allowed`.
pub fn provider_allowed(provider: &str) -> String {
    format!("jwt_edge.provider.{}.allowed", sanitize(provider))
}

/// `jwt_edge.provider.<name>.denied.<code>`.
pub fn provider_denied(provider: &str, code: &str) -> String {
    format!("jwt_edge.provider.{}.denied.{code}", sanitize(provider))
}

/// `jwt_edge.jwks.<source>.<event>` for key sets, `jwt_edge.revocation.<source>.<event>` for
/// revocation lists: counters `fetch_success`, `fetch_failed`; gauges `keys` / `entries`, and
/// `stale_serving` (1 while the last fetch failed and the last good document is in use).
pub fn source(document: Document, source: &str, event: &str) -> String {
    format!("jwt_edge.{}.{}.{event}", document.label(), sanitize(source))
}

/// The gauge holding what a source's document holds: `keys` or `entries`.
pub fn count_gauge(document: Document) -> &'static str {
    match document {
        Document::Jwks => "keys",
        Document::RevocationList => "entries",
    }
}
