//! Phase 1 of configuration: serde types that mirror the JSON an operator writes, field for
//! field with Envoy jwt_authn's `JwtAuthentication` (snake_case proto JSON), plus the jwt-edge
//! extensions. Nothing here checks meaning; [`compile`](super::compile) does.
//!
//! Every struct denies unknown fields, so a typo is an error naming its path. jwt_authn fields
//! that jwt-edge does not implement are declared as [`Unsupported`] so that `compile` can refuse
//! them by name (or accept them when they hold the proto default) instead of calling them
//! unknown.

use std::collections::BTreeMap;
use std::fmt;
use std::marker::PhantomData;
use std::time::Duration;

use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::Deserialize;

/// A field jwt_authn has and jwt-edge does not implement. Its value is kept only to tell
/// whether it differs from the proto default.
pub type Unsupported = Option<serde_json::Value>;

/// `envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JwtAuthentication {
    /// The `Any` type URL a `typed_config` carries; accepted so a config copied with it parses.
    #[serde(rename = "@type")]
    pub type_url: Option<String>,
    pub providers: Option<UniqueMap<JwtProvider>>,
    #[serde(default)]
    pub rules: Vec<RequirementRule>,
    #[serde(default)]
    pub requirement_map: UniqueMap<JwtRequirement>,
    #[serde(default)]
    pub bypass_cors_preflight: bool,
    #[serde(default)]
    pub strip_failure_response: bool,
    /// Accepted and ignored: jwt-edge's metrics are per plugin instance.
    pub stat_prefix: Option<String>,
    pub filter_state_rules: Unsupported,
    /// Extension: route name → override (jwt_authn's `PerRouteConfig`).
    #[serde(default)]
    pub per_route: UniqueMap<PerRouteConfig>,
    /// Extension: the filter's own log level. Unset: `info` (the host is not asked: its
    /// `proxy_get_log_level` differs between hosts).
    pub log_level: Option<String>,
    /// Extension: report metrics through the host (default true). Off for hosts whose
    /// metrics calls are missing.
    pub metrics: Option<bool>,
}

/// `JwtProvider`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JwtProvider {
    pub issuer: Option<String>,
    #[serde(default)]
    pub audiences: Vec<String>,
    pub subjects: Option<StringMatcher>,
    pub require_expiration: Option<bool>,
    pub max_lifetime: Option<ProtoDuration>,
    pub remote_jwks: Option<RemoteJwks>,
    pub local_jwks: Option<DataSource>,
    #[serde(default)]
    pub forward: bool,
    #[serde(default)]
    pub from_headers: Vec<JwtHeader>,
    #[serde(default)]
    pub from_params: Vec<String>,
    #[serde(default)]
    pub from_cookies: Vec<String>,
    pub forward_payload_header: Option<String>,
    #[serde(default)]
    pub pad_forward_payload_header: bool,
    #[serde(default)]
    pub claim_to_headers: Vec<JwtClaimToHeader>,
    pub clock_skew_seconds: Option<u32>,
    pub jwt_cache_config: Option<JwtCacheConfig>,
    pub payload_in_metadata: Unsupported,
    pub normalize_payload_in_metadata: Unsupported,
    pub header_in_metadata: Unsupported,
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
    /// Extension: sender-constrained tokens (DPoP, RFC 9449).
    pub sender_constraint: Option<SenderConstraint>,
}

/// Extension: `sender_constraint`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
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
}

/// `RemoteJwks`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
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

/// Extension: a remote revocation list.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RevocationList {
    pub http_uri: Option<HttpUri>,
    /// How long a fetched list is used before it is refreshed.
    pub cache_duration: Option<ProtoDuration>,
    /// How long past `cache_duration` a list that cannot be refreshed stays in use.
    pub max_stale: Option<ProtoDuration>,
    /// How long a request may wait for the first list.
    pub request_wait_timeout: Option<ProtoDuration>,
}

/// `envoy.config.core.v3.HttpUri`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpUri {
    pub uri: Option<String>,
    pub cluster: Option<String>,
    pub timeout: Option<ProtoDuration>,
}

/// `JwksAsyncFetch`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JwksAsyncFetch {
    pub fast_listener: Option<bool>,
    pub failed_refetch_duration: Option<ProtoDuration>,
}

/// `envoy.config.core.v3.DataSource`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataSource {
    pub inline_string: Option<String>,
    /// Base64 (standard alphabet, as proto JSON writes `bytes`).
    pub inline_bytes: Option<String>,
    pub filename: Unsupported,
    pub environment_variable: Unsupported,
}

/// `JwtHeader`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JwtHeader {
    pub name: Option<String>,
    #[serde(default)]
    pub value_prefix: String,
}

/// `JwtClaimToHeader`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JwtClaimToHeader {
    pub header_name: Option<String>,
    pub claim_name: Option<String>,
    pub claim_path: Unsupported,
    /// Extension: `"jwt_authn"` (default) or `"joined"`.
    pub value_format: Option<String>,
}

/// `JwtCacheConfig`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JwtCacheConfig {
    pub jwt_cache_size: Option<u32>,
    /// Accepted and ignored: `max_token_bytes` already bounds every token.
    pub jwt_max_token_size: Option<u32>,
}

/// `JwtRequirement` (a proto oneof: `compile` checks that exactly one is set).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
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

/// Extension: one required claim.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClaimMatch {
    /// Claim path, `.`-separated for nested claims.
    pub name: Option<String>,
    /// Accepted values: a string/number/bool claim must equal one; an array claim must
    /// contain one.
    pub values: Option<Vec<serde_json::Value>>,
}

/// `ProviderWithAudiences`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderWithAudiences {
    pub provider_name: Option<String>,
    #[serde(default)]
    pub audiences: Vec<String>,
}

/// `JwtRequirementOrList` / `JwtRequirementAndList`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JwtRequirementList {
    #[serde(default)]
    pub requirements: Vec<JwtRequirement>,
}

/// `google.protobuf.Empty`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Empty {}

/// `RequirementRule`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RequirementRule {
    #[serde(rename = "match")]
    pub route_match: Option<RouteMatch>,
    pub requires: Option<JwtRequirement>,
    pub requirement_name: Option<String>,
}

/// `envoy.config.route.v3.RouteMatch`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteMatch {
    pub prefix: Option<String>,
    pub path: Option<String>,
    pub safe_regex: Option<RegexMatcher>,
    pub case_sensitive: Option<bool>,
    #[serde(default)]
    pub headers: Vec<HeaderMatcher>,
    #[serde(default)]
    pub query_parameters: Vec<QueryParameterMatcher>,
    /// Extension: request methods, upper-case.
    #[serde(default)]
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

/// `envoy.type.matcher.v3.RegexMatcher`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegexMatcher {
    pub regex: Option<String>,
    /// The only engine; accepted for compatibility.
    pub google_re2: Option<GoogleRe2>,
}

/// `RegexMatcher.GoogleRE2` (deprecated in Envoy; accepted and ignored).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GoogleRe2 {
    pub max_program_size: Option<u32>,
}

/// `envoy.config.route.v3.HeaderMatcher`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeaderMatcher {
    pub name: Option<String>,
    pub exact_match: Option<String>,
    pub prefix_match: Option<String>,
    pub suffix_match: Option<String>,
    pub contains_match: Option<String>,
    pub present_match: Option<bool>,
    pub safe_regex_match: Option<RegexMatcher>,
    pub string_match: Option<StringMatcher>,
    #[serde(default)]
    pub invert_match: bool,
    pub range_match: Unsupported,
    pub treat_missing_header_as_empty: Unsupported,
}

/// `envoy.config.route.v3.QueryParameterMatcher`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueryParameterMatcher {
    pub name: Option<String>,
    pub string_match: Option<StringMatcher>,
    pub present_match: Option<bool>,
}

/// `envoy.type.matcher.v3.StringMatcher`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StringMatcher {
    pub exact: Option<String>,
    pub prefix: Option<String>,
    pub suffix: Option<String>,
    pub contains: Option<String>,
    pub safe_regex: Option<RegexMatcher>,
    #[serde(default)]
    pub ignore_case: bool,
    pub custom: Unsupported,
}

/// Extension: jwt_authn's `PerRouteConfig`, keyed by route name in `per_route`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PerRouteConfig {
    pub disabled: Option<bool>,
    pub requirement_name: Option<String>,
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

impl<'de> Deserialize<'de> for ProtoDuration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = ProtoDuration;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a duration string such as \"5s\"")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<ProtoDuration, E> {
                ProtoDuration::parse(v).map_err(E::custom)
            }
        }
        deserializer.deserialize_str(V)
    }
}

/// A JSON object read into a sorted map that refuses a repeated key (serde's maps keep the
/// last value silently, which would hide a provider or requirement defined twice).
#[derive(Debug)]
pub struct UniqueMap<V>(pub BTreeMap<String, V>);

impl<V> Default for UniqueMap<V> {
    fn default() -> Self {
        UniqueMap(BTreeMap::new())
    }
}

impl<'de, V: Deserialize<'de>> Deserialize<'de> for UniqueMap<V> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct MapVisitor<V>(PhantomData<V>);
        impl<'de, V: Deserialize<'de>> Visitor<'de> for MapVisitor<V> {
            type Value = UniqueMap<V>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Self::Value, A::Error> {
                let mut map = BTreeMap::new();
                while let Some(key) = access.next_key::<String>()? {
                    if map.contains_key(&key) {
                        return Err(de::Error::custom(format!("duplicate key {key:?}")));
                    }
                    let value = access.next_value()?;
                    map.insert(key, value);
                }
                Ok(UniqueMap(map))
            }
        }
        deserializer.deserialize_map(MapVisitor(PhantomData))
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

/// Extension: revoked token ids and subjects.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Revoked {
    #[serde(default)]
    pub jti: Vec<String>,
    #[serde(default)]
    pub sub: Vec<String>,
}
