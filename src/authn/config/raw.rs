//! Phase 1 of configuration: types that mirror the JSON an operator writes, field for field
//! with Envoy jwt_authn's `JwtAuthentication` (snake_case proto JSON), plus the jwt-edge
//! extensions, read by [`read`](super::read). Nothing here checks meaning;
//! [`compile`](super::compile) does.
//!
//! Every struct denies unknown fields, so a typo is an error naming its path. A member left out
//! is `None`, or the default for lists, maps, flags and strings (as jwt_authn defaults them). jwt_authn fields
//! that jwt-edge does not implement are declared as [`Unsupported`] so that `compile` can refuse
//! them by name (or accept them when they hold the proto default) instead of calling them
//! unknown.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::Value;

use super::read::{json_struct, FromJson, Path};
use super::ConfigError;

/// A field jwt_authn has and jwt-edge does not implement. Its value is kept only to tell
/// whether it differs from the proto default.
pub type Unsupported = Option<serde_json::Value>;

json_struct! {
    /// `envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication`.
    #[derive(Debug)]
    pub struct JwtAuthentication {
        /// The `Any` type URL a `typed_config` carries; accepted so a config copied with it parses.
        pub type_url as "@type": Option<String>,
        pub providers: Option<UniqueMap<JwtProvider>>,
        pub rules: Vec<RequirementRule>,
        pub requirement_map: UniqueMap<JwtRequirement>,
        pub bypass_cors_preflight: bool,
        pub strip_failure_response: bool,
        /// Accepted and ignored: jwt-edge's metrics are per plugin instance.
        pub stat_prefix: Option<String>,
        pub filter_state_rules: Unsupported,
        /// Extension: route name → override (jwt_authn's `PerRouteConfig`).
        pub per_route: UniqueMap<PerRouteConfig>,
        /// Extension: the filter's own log level. Unset: `info` (the host is not asked: its
        /// `proxy_get_log_level` differs between hosts).
        pub log_level: Option<String>,
        /// Extension: report metrics through the host (default true). Off for hosts whose
        /// metrics calls are missing.
        pub metrics: Option<bool>,
        /// Extension: the name under which each decided request publishes its outcome (the
        /// denial code, or the providers that vouched) through the host's property API.
        pub outcome_in_metadata: Option<String>,
    }
}

json_struct! {
    /// `JwtProvider`.
    #[derive(Debug)]
    pub struct JwtProvider {
        pub issuer: Option<String>,
        pub audiences: Vec<String>,
        pub subjects: Option<StringMatcher>,
        pub require_expiration: Option<bool>,
        pub max_lifetime: Option<ProtoDuration>,
        pub remote_jwks: Option<RemoteJwks>,
        pub local_jwks: Option<DataSource>,
        pub forward: bool,
        pub from_headers: Vec<JwtHeader>,
        pub from_params: Vec<String>,
        pub from_cookies: Vec<String>,
        pub forward_payload_header: Option<String>,
        pub pad_forward_payload_header: bool,
        pub claim_to_headers: Vec<JwtClaimToHeader>,
        pub clock_skew_seconds: Option<u32>,
        pub jwt_cache_config: Option<JwtCacheConfig>,
        /// Published through the host's property API, not dynamic metadata
        /// ([`crate::authn::publish`]).
        pub payload_in_metadata: Option<String>,
        pub normalize_payload_in_metadata: Option<NormalizePayload>,
        pub header_in_metadata: Option<String>,
        pub failed_status_in_metadata: Unsupported,
        pub clear_route_cache: Unsupported,
        /// Extension: allowed `alg` names.
        pub algorithms: Option<Vec<String>>,
        /// Extension: longest accepted token, bytes.
        pub max_token_bytes: Option<u64>,
        /// Extension: a deny-list of `jti` and `sub` values.
        pub revoked: Option<Revoked>,
        /// Extension: a deny-list fetched through a cluster and refreshed like a key set.
        pub revocation_list: Option<RevocationList>,
        /// Extension: sender-constrained tokens (DPoP, RFC 9449; mTLS, RFC 8705 §3).
        pub sender_constraint: Option<SenderConstraint>,
    }
}

json_struct! {
    /// `JwtProvider.NormalizePayload`.
    #[derive(Debug)]
    pub struct NormalizePayload {
        pub space_delimited_claims: Vec<String>,
    }
}

json_struct! {
    /// Extension: `sender_constraint`.
    #[derive(Debug)]
    pub struct SenderConstraint {
        /// `"disabled"` (default), `"optional"` or `"required"`.
        pub dpop: Option<String>,
        /// Proof algorithms (asymmetric only); default: every asymmetric one.
        pub dpop_algorithms: Option<Vec<String>>,
        /// How old a proof's `iat` may be.
        pub dpop_max_age: Option<ProtoDuration>,
        /// How far in the future a proof's `iat` may be.
        pub dpop_clock_skew: Option<ProtoDuration>,
        /// Entries of the per-proxy `jti` replay cache.
        pub dpop_replay_cache_size: Option<u64>,
        /// Server nonces (RFC 9449 §8): `"disabled"` (default) or `"required"`.
        pub dpop_nonce: Option<String>,
        /// How long a nonce window lasts (a nonce is accepted in its window and the next).
        pub dpop_nonce_lifetime: Option<ProtoDuration>,
        /// Certificate-bound tokens (RFC 8705 §3): `"disabled"` (default), `"optional"` or
        /// `"required"`.
        pub mtls: Option<String>,
    }
}

json_struct! {
    /// `RemoteJwks`.
    #[derive(Debug)]
    pub struct RemoteJwks {
        pub http_uri: Option<HttpUri>,
        pub cache_duration: Option<ProtoDuration>,
        /// Accepted and ignored: jwt-edge always fetches in the background.
        pub async_fetch: Option<JwksAsyncFetch>,
        /// Accepted and ignored: jwt-edge retries with its own backoff.
        pub retry_policy: Option<serde_json::Map<String, serde_json::Value>>,
        /// Extension: how long past `cache_duration` a key set that cannot be refreshed stays in
        /// use (stale-while-error).
        pub max_stale: Option<ProtoDuration>,
        /// Extension: minimum time between early refetches caused by an unknown `kid`.
        pub unknown_kid_refetch_interval: Option<ProtoDuration>,
        /// Extension: how long a request may wait for this key set (cold start, unknown `kid`).
        pub request_wait_timeout: Option<ProtoDuration>,
        /// Extension: `http_uri.uri` is an OpenID Connect discovery document; its `jwks_uri` is
        /// fetched through the same cluster.
        pub discovery: Option<bool>,
    }
}

json_struct! {
    /// Extension: a remote revocation list.
    #[derive(Debug)]
    pub struct RevocationList {
        pub http_uri: Option<HttpUri>,
        /// How long a fetched list is used before it is refreshed.
        pub cache_duration: Option<ProtoDuration>,
        /// How long past `cache_duration` a list that cannot be refreshed stays in use.
        pub max_stale: Option<ProtoDuration>,
        /// How long a request may wait for the first list.
        pub request_wait_timeout: Option<ProtoDuration>,
    }
}

json_struct! {
    /// `envoy.config.core.v3.HttpUri`.
    #[derive(Debug)]
    pub struct HttpUri {
        pub uri: Option<String>,
        pub cluster: Option<String>,
        pub timeout: Option<ProtoDuration>,
    }
}

json_struct! {
    /// `JwksAsyncFetch`.
    #[derive(Debug)]
    pub struct JwksAsyncFetch {
        pub fast_listener: Option<bool>,
        pub failed_refetch_duration: Option<ProtoDuration>,
    }
}

json_struct! {
    /// `envoy.config.core.v3.DataSource`.
    #[derive(Debug)]
    pub struct DataSource {
        pub inline_string: Option<String>,
        /// Base64 (standard alphabet, as proto JSON writes `bytes`).
        pub inline_bytes: Option<String>,
        pub filename: Unsupported,
        pub environment_variable: Unsupported,
    }
}

json_struct! {
    /// `JwtHeader`.
    #[derive(Debug)]
    pub struct JwtHeader {
        pub name: Option<String>,
        pub value_prefix: String,
    }
}

json_struct! {
    /// `JwtClaimToHeader`.
    #[derive(Debug)]
    pub struct JwtClaimToHeader {
        pub header_name: Option<String>,
        pub claim_name: Option<String>,
        pub claim_path: Unsupported,
        /// Extension: `"jwt_authn"` (default) or `"joined"`.
        pub value_format: Option<String>,
    }
}

json_struct! {
    /// `JwtCacheConfig`.
    #[derive(Debug)]
    pub struct JwtCacheConfig {
        pub jwt_cache_size: Option<u32>,
        /// Accepted and ignored: `max_token_bytes` already bounds every token.
        pub jwt_max_token_size: Option<u32>,
    }
}

json_struct! {
    /// `JwtRequirement` (a proto oneof: `compile` checks that exactly one is set).
    #[derive(Debug)]
    pub struct JwtRequirement {
        pub provider_name: Option<String>,
        pub provider_and_audiences: Option<ProviderWithAudiences>,
        pub requires_any: Option<JwtRequirementList>,
        pub requires_all: Option<JwtRequirementList>,
        pub allow_missing_or_failed: Option<Empty>,
        pub allow_missing: Option<Empty>,
        pub extract_only_without_validation: Unsupported,
        /// Extension: scopes the token must carry (all of them), read from `scope`
        /// (space-delimited) or `scp` (array or space-delimited string).
        pub scopes: Option<Vec<String>>,
        /// Extension: claims the token must carry.
        pub claims: Option<Vec<ClaimMatch>>,
    }
}

json_struct! {
    /// Extension: one required claim.
    #[derive(Debug)]
    pub struct ClaimMatch {
        /// Claim path, `.`-separated for nested claims.
        pub name: Option<String>,
        /// Accepted values: a string/number/bool claim must equal one; an array claim must
        /// contain one.
        pub values: Option<Vec<serde_json::Value>>,
    }
}

json_struct! {
    /// `ProviderWithAudiences`.
    #[derive(Debug)]
    pub struct ProviderWithAudiences {
        pub provider_name: Option<String>,
        pub audiences: Vec<String>,
    }
}

json_struct! {
    /// `JwtRequirementOrList` / `JwtRequirementAndList`.
    #[derive(Debug)]
    pub struct JwtRequirementList {
        pub requirements: Vec<JwtRequirement>,
    }
}

json_struct! {
    /// `google.protobuf.Empty`.
    #[derive(Debug)]
    pub struct Empty {}
}

json_struct! {
    /// `RequirementRule`.
    #[derive(Debug)]
    pub struct RequirementRule {
        pub route_match as "match": Option<RouteMatch>,
        pub requires: Option<JwtRequirement>,
        pub requirement_name: Option<String>,
        /// Extension: decide and count as usual, but let a request that would be refused through
        /// (without identity headers).
        pub report_only: bool,
    }
}

json_struct! {
    /// `envoy.config.route.v3.RouteMatch`.
    #[derive(Debug)]
    pub struct RouteMatch {
        pub prefix: Option<String>,
        pub path: Option<String>,
        pub safe_regex: Option<RegexMatcher>,
        pub case_sensitive: Option<bool>,
        pub headers: Vec<HeaderMatcher>,
        pub query_parameters: Vec<QueryParameterMatcher>,
        /// Extension: request methods, upper-case.
        pub methods: Vec<String>,
        pub connect_matcher: Unsupported,
        pub path_separated_prefix: Unsupported,
        pub path_match_policy: Unsupported,
        pub runtime_fraction: Unsupported,
        pub grpc: Unsupported,
        pub tls_context: Unsupported,
        pub dynamic_metadata: Unsupported,
        pub filter_state: Unsupported,
    }
}

json_struct! {
    /// `envoy.type.matcher.v3.RegexMatcher`.
    #[derive(Debug)]
    pub struct RegexMatcher {
        pub regex: Option<String>,
        /// The only engine; accepted for compatibility.
        pub google_re2: Option<GoogleRe2>,
    }
}

json_struct! {
    /// `RegexMatcher.GoogleRE2` (deprecated in Envoy; accepted and ignored).
    #[derive(Debug)]
    pub struct GoogleRe2 {
        pub max_program_size: Option<u32>,
    }
}

json_struct! {
    /// `envoy.config.route.v3.HeaderMatcher`.
    #[derive(Debug)]
    pub struct HeaderMatcher {
        pub name: Option<String>,
        pub exact_match: Option<String>,
        pub prefix_match: Option<String>,
        pub suffix_match: Option<String>,
        pub contains_match: Option<String>,
        pub present_match: Option<bool>,
        pub safe_regex_match: Option<RegexMatcher>,
        pub string_match: Option<StringMatcher>,
        pub invert_match: bool,
        pub range_match: Unsupported,
        pub treat_missing_header_as_empty: Unsupported,
    }
}

json_struct! {
    /// `envoy.config.route.v3.QueryParameterMatcher`.
    #[derive(Debug)]
    pub struct QueryParameterMatcher {
        pub name: Option<String>,
        pub string_match: Option<StringMatcher>,
        pub present_match: Option<bool>,
    }
}

json_struct! {
    /// `envoy.type.matcher.v3.StringMatcher`.
    #[derive(Debug)]
    pub struct StringMatcher {
        pub exact: Option<String>,
        pub prefix: Option<String>,
        pub suffix: Option<String>,
        pub contains: Option<String>,
        pub safe_regex: Option<RegexMatcher>,
        pub ignore_case: bool,
        pub custom: Unsupported,
    }
}

json_struct! {
    /// Extension: jwt_authn's `PerRouteConfig`, keyed by route name in `per_route`.
    #[derive(Debug)]
    pub struct PerRouteConfig {
        pub disabled: Option<bool>,
        pub requirement_name: Option<String>,
    }
}

/// A `google.protobuf.Duration` in its JSON form: decimal seconds with up to nine fractional
/// digits and an `s` suffix (`"300s"`, `"1.5s"`, `"0.250s"`). Negative durations are refused:
/// no field here has a use for one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProtoDuration(pub Duration);

/// The largest seconds value protobuf allows in a `Duration` (10,000 years).
const MAX_DURATION_SECONDS: u64 = 315_576_000_000;

impl ProtoDuration {
    /// Parses the JSON form strictly.
    pub fn parse(text: &str) -> Result<ProtoDuration, String> {
        let bad = || {
            format!(
                "invalid duration {text:?}: expected seconds with an `s` suffix, \
                 such as \"5s\", \"1.5s\" or \"0.250s\""
            )
        };
        if text.starts_with('-') {
            return Err(format!("invalid duration {text:?}: must not be negative"));
        }
        let number = text.strip_suffix('s').ok_or_else(bad)?;
        let (whole, frac) = match number.split_once('.') {
            Some((w, f)) => (w, Some(f)),
            None => (number, None),
        };
        if whole.is_empty() || !whole.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        let seconds: u64 = whole.parse().map_err(|_| bad())?;
        if seconds > MAX_DURATION_SECONDS {
            return Err(format!(
                "invalid duration {text:?}: at most {MAX_DURATION_SECONDS}s"
            ));
        }
        let nanos = match frac {
            None => 0,
            Some(f) => {
                if f.is_empty() || f.len() > 9 || !f.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(bad());
                }
                let digits: u32 = f.parse().map_err(|_| bad())?;
                let scale = 10u32.pow(9 - f.len() as u32);
                digits.checked_mul(scale).ok_or_else(bad)?
            }
        };
        Ok(ProtoDuration(Duration::new(seconds, nanos)))
    }
}

impl FromJson for ProtoDuration {
    fn from_json(v: &Value, at: Path<'_>) -> Result<Self, ConfigError> {
        match v {
            Value::String(text) => ProtoDuration::parse(text).map_err(|e| at.error(e)),
            _ => Err(at.invalid_type(v, "a duration string such as \"5s\"")),
        }
    }
}

/// A JSON object read into a sorted map. A repeated key, which serde_json would resolve
/// silently to the last value (hiding a provider or requirement defined twice), is refused
/// when the document is parsed ([`read::parse_tree`](super::read::parse_tree)).
#[derive(Debug)]
pub struct UniqueMap<V>(pub BTreeMap<String, V>);

impl<V> Default for UniqueMap<V> {
    fn default() -> Self {
        UniqueMap(BTreeMap::new())
    }
}

impl<V: FromJson> FromJson for UniqueMap<V> {
    fn from_json(v: &Value, at: Path<'_>) -> Result<Self, ConfigError> {
        let Value::Object(members) = v else {
            return Err(at.invalid_type(v, "an object"));
        };
        // One insert at a time: collecting into a BTreeMap sorts a Vec first, and each value
        // type's copy of that sort was ~7 KB of the module (issue #13).
        let mut map = BTreeMap::new();
        for (key, value) in members {
            map.insert(key.clone(), V::from_json(value, Path::Key(&at, key))?);
        }
        Ok(UniqueMap(map))
    }
    fn absent(_: Path<'_>) -> Result<Self, ConfigError> {
        Ok(UniqueMap::default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_strictly() {
        let ok = [
            ("300s", Duration::from_secs(300)),
            ("0s", Duration::ZERO),
            ("1.5s", Duration::from_millis(1500)),
            ("0.250s", Duration::from_millis(250)),
            ("0.000000001s", Duration::from_nanos(1)),
            ("315576000000s", Duration::from_secs(MAX_DURATION_SECONDS)),
        ];
        for (text, want) in ok {
            assert_eq!(
                ProtoDuration::parse(text),
                Ok(ProtoDuration(want)),
                "{text}"
            );
        }
        for bad in [
            "",
            "s",
            "5",
            "5 s",
            " 5s",
            "5s ",
            "5S",
            "-1s",
            "+1s",
            "1.s",
            ".5s",
            "1.0000000001s",
            "1e3s",
            "5m",
            "1,5s",
            "0x10s",
            "315576000001s",
            "99999999999999999999s",
            "1.-5s",
        ] {
            assert!(ProtoDuration::parse(bad).is_err(), "{bad:?}");
        }
    }
}

json_struct! {
    /// Extension: revoked token ids and subjects.
    #[derive(Debug)]
    pub struct Revoked {
        pub jti: Vec<String>,
        pub sub: Vec<String>,
    }
}
