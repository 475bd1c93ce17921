//! Metric names. Envoy shows them under `wasmcustom.` in `/stats` and without a prefix in
//! `/stats/prometheus`; counters from every worker's VM add up.

use crate::authn::policy::Document;

/// Requests let through (all reasons).
pub const ALLOWED: &str = "jwt_edge.allowed";
/// Requests answered locally.
pub const DENIED: &str = "jwt_edge.denied";
/// Requests a `report_only` rule let through that it would have refused (also counted in
/// `allowed`).
pub const WOULD_DENY: &str = "jwt_edge.would_deny";
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

/// `jwt_edge.provider.<name>.would_deny.<code>` (a `report_only` rule).
pub fn provider_would_deny(provider: &str, code: &str) -> String {
    format!("jwt_edge.provider.{}.would_deny.{code}", sanitize(provider))
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

/// FNV-1a for the metric-id table. Its keys are metric names built from the configuration
/// and fixed error codes, never from a request, so nobody can aim collisions at it; SipHash's
/// protection is not needed there, and it costs a few hundred ns per lookup in V8 on a path
/// that looks up three names per accepted request.
#[derive(Clone, Copy)]
pub struct Fnv(u64);

impl Default for Fnv {
    fn default() -> Fnv {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
}

impl std::hash::Hasher for Fnv {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0 ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
}

/// Metric ids by name, as a host hands them out.
pub type MetricIds = std::collections::HashMap<String, u32, std::hash::BuildHasherDefault<Fnv>>;
