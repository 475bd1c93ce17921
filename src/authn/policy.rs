//! The compiled policy: what `config::compile` produces from the operator's JSON and what the
//! authenticator reads. Everything here is already validated; no field needs checking again.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::authn::alg::Algorithm;
use crate::authn::jwk::KeySet;
use crate::authn::matcher::{RouteMatch, StringMatcher};
use crate::authn::publish::ProviderPublish;
pub use crate::authn::revocation::Revocation;
use crate::time::Millis;

/// Index of a provider in [`Policy::providers`].
pub type ProviderId = usize;
/// Index of a remote document source (a key set, or a revocation list) in
/// [`Policy::jwks_sources`].
pub type JwksId = usize;

/// Default `max_token_bytes` (an extension to jwt_authn).
pub const DEFAULT_MAX_TOKEN_BYTES: usize = 8 * 1024;
/// jwt_authn's default `clock_skew_seconds`.
pub const DEFAULT_CLOCK_SKEW_SECONDS: u64 = 60;
/// jwt_authn's default `cache_duration` for remote key sets.
pub const DEFAULT_CACHE_DURATION_SECONDS: u64 = 600;
/// Default `http_uri.timeout` for key-set fetches.
pub const DEFAULT_FETCH_TIMEOUT_MS: u64 = 5_000;
/// Default `remote_jwks.max_stale` (extension): one day.
pub const DEFAULT_MAX_STALE_MS: u64 = 24 * 3600 * 1000;
/// Default `remote_jwks.unknown_kid_refetch_interval` (extension).
pub const DEFAULT_REFETCH_INTERVAL_MS: u64 = 10_000;
/// Default `remote_jwks.request_wait_timeout` (extension).
pub const DEFAULT_WAIT_TIMEOUT_MS: u64 = 3_000;
/// Default `revocation_list.cache_duration` (extension): a deny-list is only as good as it is
/// recent, so it is refreshed far more often than a key set.
pub const DEFAULT_REVOCATION_CACHE_SECONDS: u64 = 60;
/// Default `revocation_list.max_stale` (extension): one hour past `cache_duration`, then
/// requests for the provider fail closed (503 `revocation_unavailable`).
pub const DEFAULT_REVOCATION_MAX_STALE_MS: u64 = 3600 * 1000;

/// The whole filter policy.
#[derive(Debug, Clone)]
pub struct Policy {
    pub providers: Vec<Provider>,
    /// Distinct document sources: key sets, and (extension) remote revocation lists.
    /// Providers with the same remote URI, cluster and document kind share one.
    pub jwks_sources: Vec<JwksSource>,
    /// Ordered rules; the first whose match fits decides.
    pub rules: Vec<Rule>,
    /// Extension: requirement chosen by the host's route name (Envoy `xds.route_name`).
    /// Looked up before `rules`.
    pub per_route: BTreeMap<String, RouteOverride>,
    pub bypass_cors_preflight: bool,
    pub strip_failure_response: bool,
    /// Every header the filter can set, lower-case: removed from every incoming request.
    pub identity_headers: Vec<String>,
    /// Extension: the filter's log level; `None` asks the host.
    pub log_level: Option<String>,
    /// Extension: report metrics through the host.
    pub metrics: bool,
    /// Extension `outcome_in_metadata`: the name under which each decided request publishes
    /// its outcome ([`crate::authn::publish::outcome`]).
    pub outcome_in_metadata: Option<String>,
}

impl Policy {
    /// The filter's log level: `log_level`, `info` when unset (the host's is not asked:
    /// `proxy_get_log_level` has another signature in ngx_wasm_module, and a module that
    /// merely imports it does not instantiate there; mk/host-abi/, `make build`).
    pub fn log_filter(&self) -> log::LevelFilter {
        match self.log_level.as_deref() {
            Some("trace") => log::LevelFilter::Trace,
            Some("debug") => log::LevelFilter::Debug,
            Some("info") | None => log::LevelFilter::Info,
            Some("warn") => log::LevelFilter::Warn,
            Some("error") => log::LevelFilter::Error,
            Some(_) => log::LevelFilter::Off,
        }
    }

    /// True when a request header called `name` is, or could pass for, a header the filter
    /// writes: compared case-insensitively with `_` and `-` equal, because Envoy forwards
    /// underscored names by default and CGI/WSGI-style backends read `x_jwt_sub` as
    /// `x-jwt-sub` (both become `HTTP_X_JWT_SUB`). Such a client copy is removed.
    pub fn is_identity_header(&self, name: &str) -> bool {
        self.identity_headers
            .iter()
            .any(|h| same_header_for_a_backend(h, name))
    }
}

fn same_header_for_a_backend(a: &str, b: &str) -> bool {
    let fold = |c: u8| match c {
        b'_' => b'-',
        c => c.to_ascii_lowercase(),
    };
    a.len() == b.len() && a.bytes().zip(b.bytes()).all(|(x, y)| fold(x) == fold(y))
}

/// What a named route requires (jwt_authn's `PerRouteConfig`).
#[derive(Debug, Clone, PartialEq)]
pub enum RouteOverride {
    /// No authentication on this route.
    Disabled,
    /// The requirement from `requirement_map`.
    Require(Requirement),
}

/// One provider (`JwtProvider`).
#[derive(Debug, Clone, PartialEq)]
pub struct Provider {
    pub name: String,
    pub issuer: Option<String>,
    pub audiences: Vec<String>,
    pub subjects: Option<StringMatcher>,
    pub require_expiration: bool,
    /// A token whose `exp - min(iat, now)` (`exp - now` without `iat`) exceeds it is refused
    /// (whole seconds: configured as such).
    pub max_lifetime: Option<Millis>,
    /// `clock_skew_seconds` (whole seconds).
    pub clock_skew: Millis,
    /// Allowed `alg` values; a token with any other `alg` is refused before key selection.
    pub algorithms: Vec<Algorithm>,
    pub jwks: JwksId,
    /// Keep the token in the request sent upstream (only for header locations).
    pub forward: bool,
    /// Where to look for the token, in order.
    pub locations: Vec<TokenLocation>,
    pub forward_payload_header: Option<String>,
    pub pad_forward_payload_header: bool,
    pub claim_to_headers: Vec<ClaimToHeader>,
    pub max_token_bytes: usize,
    /// `jwt_cache_config.jwt_cache_size`: verified tokens kept per VM (0: no cache).
    pub jwt_cache_size: usize,
    /// Extension: the inline deny-list.
    pub revoked: Revocation,
    /// Extension: a remote deny-list (a [`Document::RevocationList`] source), checked in
    /// addition to `revoked`.
    pub revocation_list: Option<JwksId>,
    /// Extension: sender-constrained tokens (DPoP, RFC 9449; mTLS, RFC 8705 §3).
    pub sender: SenderConstraint,
    /// `payload_in_metadata`, `header_in_metadata`, `normalize_payload_in_metadata`.
    pub publish: ProviderPublish,
}

/// How a provider holds tokens to one sender binding (`sender_constraint.dpop`,
/// `sender_constraint.mtls`). Each binding is checked on its own: a provider with both on
/// needs both to hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SenderMode {
    /// The binding is not checked (the default).
    #[default]
    Disabled,
    /// DPoP: `DPoP` tokens with a valid proof, and unbound `Bearer` tokens; a token bound by
    /// `cnf.jkt` presented as `Bearer` is refused. mTLS: a token bound by `cnf.x5t#S256` must
    /// match the connection's client certificate; an unbound token passes.
    Optional,
    /// DPoP: only `DPoP` tokens with a valid proof. mTLS: only tokens bound by
    /// `cnf.x5t#S256` to the connection's client certificate.
    Required,
}

/// `sender_constraint.dpop` (RFC 9449).
pub type DpopMode = SenderMode;
/// `sender_constraint.mtls` (RFC 8705 §3).
pub type MtlsMode = SenderMode;

/// Default `sender_constraint.dpop_max_age`, seconds.
pub const DEFAULT_DPOP_MAX_AGE: u64 = 60;
/// Default `sender_constraint.dpop_clock_skew`, seconds.
pub const DEFAULT_DPOP_CLOCK_SKEW: u64 = 5;
/// Default `sender_constraint.dpop_replay_cache_size`, entries (24 bytes each in shared data).
pub const DEFAULT_DPOP_REPLAY_CACHE_SIZE: usize = 10_000;
/// Default `sender_constraint.dpop_nonce_lifetime`, seconds.
pub const DEFAULT_DPOP_NONCE_LIFETIME: u64 = 60;

/// A provider's sender constraint (extension).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SenderConstraint {
    pub dpop: DpopMode,
    /// Certificate-bound tokens: `cnf.x5t#S256` against the connection's client certificate.
    pub mtls: MtlsMode,
    /// Proof algorithms and `iat` window.
    pub proof: crate::authn::sender::dpop::DpopPolicy,
    /// Entries of this provider's `jti` replay cache.
    pub replay_cache_size: usize,
    /// `dpop_nonce: required`: proofs must carry a server nonce (RFC 9449 §8) issued for
    /// this window or the one before, windows of this length (`dpop_nonce_lifetime`).
    /// `None`: nonces are not asked for.
    pub nonce_lifetime: Option<Millis>,
}

/// Where a token is read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenLocation {
    /// A request header, lower-case name; `value_prefix` is stripped (the `Bearer ` scheme of
    /// `authorization` is matched case-insensitively).
    Header { name: String, value_prefix: String },
    /// A query parameter.
    Param(String),
    /// A cookie.
    Cookie(String),
}

/// Copy one claim into one request header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimToHeader {
    /// Lower-case header name.
    pub header_name: String,
    /// Claim path, split on `.`.
    pub claim_path: Vec<String>,
    /// How the claim is written into the header.
    pub format: ClaimFormat,
}

/// How a claim becomes a header value (see `claims::claim_header_value`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ClaimFormat {
    /// jwt_authn's: arrays and objects as base64 of their JSON, numbers as jwt_authn prints
    /// doubles.
    #[default]
    JwtAuthn,
    /// Extension (`value_format: "joined"`): arrays joined with `,`, elements escaped.
    Joined,
}

/// A document source.
#[derive(Debug, Clone)]
pub enum JwksSource {
    /// `local_jwks.inline_string`: parsed once at configure time.
    Local(Arc<KeySet>),
    /// `remote_jwks` or (extension) `revocation_list`: fetched through a host cluster.
    Remote(RemoteJwks),
}

/// What a remote source serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Document {
    /// A JWKS (`remote_jwks`).
    Jwks,
    /// A revocation list (extension `revocation_list`), see [`crate::authn::revocation`].
    RevocationList,
}

impl Document {
    /// The name used in logs, metrics and shared-data keys.
    pub fn label(self) -> &'static str {
        match self {
            Document::Jwks => "jwks",
            Document::RevocationList => "revocation",
        }
    }
}

/// `remote_jwks` (or `revocation_list`) after validation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteJwks {
    pub document: Document,
    pub uri: String,
    pub cluster: String,
    /// `:authority` for the fetch (from the URI).
    pub authority: String,
    /// `:path` for the fetch (from the URI).
    pub path: String,
    pub timeout_ms: Millis,
    /// `cache_duration` (whole seconds).
    pub cache_duration: Millis,
    /// Stale-while-error window past `cache_duration`.
    pub max_stale_ms: Millis,
    /// Minimum interval between unknown-`kid` refetches.
    pub refetch_interval_ms: Millis,
    /// How long a request waits for this key set.
    pub wait_timeout_ms: Millis,
    /// `uri` is an OIDC discovery document whose `issuer` must equal this one.
    pub discovery_issuer: Option<String>,
}

/// One rule (`RequirementRule`).
#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    pub matcher: RouteMatch,
    /// `None`: the route needs no token.
    pub requires: Option<Requirement>,
    /// Extension: a request this rule would refuse is let through, counted and logged as
    /// `would_deny` ([`crate::authn::authenticate::AllowReason::ReportOnly`]).
    pub report_only: bool,
}

/// A requirement tree (`JwtRequirement`).
#[derive(Debug, Clone, PartialEq)]
pub enum Requirement {
    /// A valid token from this provider, with the provider's audiences or these overrides.
    Provider {
        provider: ProviderId,
        audiences: Option<Vec<String>>,
        /// Extension: scopes the token must carry (all of them), from `scope` or `scp`.
        scopes: Vec<String>,
        /// Extension: claim values the token must carry (every entry).
        claims: Vec<ClaimRequirement>,
    },
    /// Any one child passes.
    Any(Vec<Requirement>),
    /// Every child passes.
    All(Vec<Requirement>),
    /// Passes without a token; a present token must be valid for some provider.
    AllowMissing,
    /// Always passes; a valid token still yields identity headers.
    AllowMissingOrFailed,
}

/// Extension: one claim a requirement demands.
#[derive(Debug, Clone, PartialEq)]
pub struct ClaimRequirement {
    /// The claim path as written (`a.b`), for messages.
    pub name: String,
    /// The path, split on `.`.
    pub path: Vec<String>,
    /// Accepted values (JSON equality). A string claim must equal one of them; an array
    /// claim must contain one of them.
    pub values: Vec<serde_json::Value>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_header_spellings() {
        // (configured, sent by the client, stripped)
        let table = [
            ("x-jwt-sub", "x-jwt-sub", true),
            ("x-jwt-sub", "x_jwt_sub", true),
            ("x-jwt-sub", "X_Jwt-SUB", true),
            ("x-jwt-sub", "x-jwt_sub", true),
            ("x_org", "x-org", true),
            ("x-jwt-sub", "x-jwt-sub2", false),
            ("x-jwt-sub", "x-jwt", false),
            ("x-jwt-sub", "xxjwtxsub", false),
        ];
        for (configured, sent, stripped) in table {
            assert_eq!(
                same_header_for_a_backend(configured, sent),
                stripped,
                "{configured} vs {sent}"
            );
        }
    }
}
