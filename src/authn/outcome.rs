//! What becomes of one request, as a plan the adapter carries out verbatim: the header
//! changes in order, the counters to bump, the log lines, the local reply, or the key
//! sources to wait for.
//!
//! Everything that is a decision is taken here, host-independently: which client copies of
//! identity headers go (and, on a host whose header removal cannot be trusted, that such a
//! request is refused instead), how a token that must not be forwarded is taken out on that
//! host, and what is counted and logged. The plan borrows the request and owns the
//! [`Decision`]; its header changes, counters and log lines are produced on demand, so a
//! plan costs no allocation beyond the decision's own.

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;

use log::{Level, LevelFilter};

use crate::authn::authenticate::{
    decide_cached, denial, provider_denial, report_only, select_requirement, Allow, AllowReason,
    Decision, Denial, KeyLookup, KeyState, ListState,
};
use crate::authn::error::AuthError;
use crate::authn::policy::{JwksId, MtlsMode, Policy, ProviderId};
use crate::authn::publish;
use crate::authn::request::RequestView;
use crate::authn::sender::mtls::ClientCertificate;
use crate::authn::token_cache::TokenCache;
use crate::metrics;
use crate::time::UnixMillis;

/// What the host can be trusted to do, learnt once at configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostProfile {
    /// A request may be held for keys and resumed later from the root context (the host's
    /// `set_effective_context` really switches streams). Without it every request is decided
    /// at once with the keys at hand, failing closed.
    pub can_wait: bool,
    /// A removed request header is gone from what the host sends upstream. Not so on
    /// ngx_wasm_module, where removal only hides the header from the filter and NGINX
    /// variables (see [`HostProfile::NGX_WASM_MODULE`]).
    pub header_removal_trusted: bool,
}

impl HostProfile {
    /// Envoy (proxy-wasm-cpp-host): both hold.
    pub const ENVOY: HostProfile = HostProfile {
        can_wait: true,
        header_removal_trusted: true,
    };

    /// ngx_wasm_module (3bed278), told apart at configuration because its
    /// `set_effective_context` answers Ok for a context that cannot exist (it does nothing).
    /// Its header removal sets the entry's hash to 0 and leaves key and value in
    /// `r->headers_in.headers` (`src/http/ngx_http_wasm_headers.c`,
    /// `ngx_http_wasm_set_header_helper` line 169, builtin headers such as Authorization line
    /// 314), and NGINX's proxy module writes every entry of that list upstream whatever its
    /// hash (`ngx_http_proxy_create_request`, nginx 1.27.4 `ngx_http_proxy_module.c`
    /// lines 1526-1560). So on this host a client's copy of an identity header cannot be
    /// taken out (the request is refused: [`AuthError::IdentityHeaderPresent`]), and a token
    /// header that must not be forwarded is first overwritten with an empty value, which
    /// rewrites the same list entry (`ngx_http_wasm_set_header_helper` lines 188-190, the
    /// builtin handler lines 333-335, reached from `proxy_replace_header_map_value`,
    /// `src/common/proxy_wasm/ngx_proxy_wasm_host.c` line 835, through
    /// `ngx_proxy_wasm_maps_set`), then removed. A token in the query string that must not
    /// be forwarded cannot be taken out there: refused ([`AuthError::TokenInQuery`]).
    pub const NGX_WASM_MODULE: HostProfile = HostProfile {
        can_wait: false,
        header_removal_trusted: false,
    };
}

impl HostProfile {
    /// The profile from the configuration-time probe: `switch_accepted` says whether the host
    /// answered Ok when asked to make a context that cannot exist (`u32::MAX`) current.
    /// Envoy refuses; ngx_wasm_module's `set_effective_context` does nothing and answers Ok.
    pub fn probed(switch_accepted: bool) -> HostProfile {
        if switch_accepted {
            HostProfile::NGX_WASM_MODULE
        } else {
            HostProfile::ENVOY
        }
    }

    /// What the log says once per filter about a host that cannot be trusted with everything.
    pub fn warning(self) -> Option<&'static str> {
        (self != HostProfile::ENVOY).then_some(
            "this host cannot resume a request from the root context and its removed request \
             headers may still reach the upstream: requests are decided at once with the keys \
             at hand, and a request carrying its own copy of an identity header is refused (400)",
        )
    }
}

/// One change to the request's headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeaderOp<'a> {
    /// Remove every value of this header.
    Remove(&'a str),
    /// Replace the header's value (adding it when absent).
    Set(&'a str, &'a str),
    /// Add a header the request does not carry once the ops before it ran: the host need
    /// not search for copies to replace (Envoy's replace removes every copy of the name
    /// first; issue #13: +0.95 µs against +1.80 per request).
    Add(&'a str, &'a str),
}

/// The request as the host hands it over: headers with lower-case names, the host's route
/// name when the policy needs it ([`Authenticator::needs_route_name`]), and the connection's
/// client certificate when the policy needs it ([`Authenticator::needs_client_certificate`]).
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    pub headers: &'a [(String, String)],
    pub route_name: Option<&'a str>,
    pub client_certificate: Option<ClientCertificate<'a>>,
}

/// The request decision of one VM: the policy, its verified-token cache, the metric names
/// built once, and what the host can be trusted to do.
#[derive(Debug)]
pub struct Authenticator {
    policy: Arc<Policy>,
    /// Verified tokens of this VM; cleared whenever a key set changes.
    cache: TokenCache,
    /// `jwt_edge.provider.<name>.allowed` per provider, built once: not per request.
    allowed_metrics: Vec<String>,
    /// Some rule is `report_only` (so a plan that gave up waiting decides again).
    any_report_only: bool,
    /// Some provider checks certificate-bound tokens (`sender_constraint.mtls`).
    any_mtls: bool,
    profile: HostProfile,
}

impl Authenticator {
    pub fn new(policy: Policy, profile: HostProfile) -> Authenticator {
        Authenticator {
            cache: TokenCache::new(policy.providers.iter().map(|p| p.jwt_cache_size)),
            allowed_metrics: policy
                .providers
                .iter()
                .map(|p| metrics::provider_allowed(&p.name))
                .collect(),
            any_report_only: policy.rules.iter().any(|r| r.report_only),
            any_mtls: policy
                .providers
                .iter()
                .any(|p| p.sender.mtls != MtlsMode::Disabled),
            policy: Arc::new(policy),
            profile,
        }
    }

    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    pub fn profile(&self) -> HostProfile {
        self.profile
    }

    /// True when the decision reads the host's route name (`per_route` is configured).
    pub fn needs_route_name(&self) -> bool {
        !self.policy.per_route.is_empty()
    }

    /// True when the decision reads the connection's client certificate (some provider has
    /// `sender_constraint.mtls` on): without one, the host is not asked for it.
    pub fn needs_client_certificate(&self) -> bool {
        self.any_mtls
    }

    /// Forgets every verified token (a key set changed).
    pub fn clear_cache(&self) {
        self.cache.clear();
    }

    /// Decides `req` with the keys at hand at `now`.
    pub fn plan<'a>(&'a self, req: Request<'a>, keys: &dyn KeyLookup, now: UnixMillis) -> Plan<'a> {
        let policy = &*self.policy;
        let trusted = self.profile.header_removal_trusted;
        let forged = req
            .headers
            .iter()
            .any(|(n, _)| policy.is_identity_header(n));
        // The decision never sees a client's copy (a rule matching on the header must not
        // match it either). Rare: the copy costs nothing on ordinary requests.
        let kept: Vec<(String, String)>;
        let seen = if forged && trusted {
            kept = req
                .headers
                .iter()
                .filter(|(n, _)| !policy.is_identity_header(n))
                .cloned()
                .collect();
            &kept[..]
        } else {
            req.headers
        };
        let view =
            RequestView::new(seen, req.route_name).with_client_certificate(req.client_certificate);
        let decision = if forged && !trusted {
            Decision::Deny(denial(policy, &view, AuthError::IdentityHeaderPresent))
        } else {
            self.erasable(decide_cached(policy, &view, keys, &self.cache, now), req)
        };
        let (cache_hits, cache_misses) = self.cache.take_stats();
        Plan {
            auth: self,
            headers: req.headers,
            route_name: req.route_name,
            client_certificate: req.client_certificate,
            now,
            strip_forged: forged && trusted,
            decision,
            cache_hits,
            cache_misses,
        }
    }

    /// On a host whose removal cannot be trusted, a header to take out is overwritten with
    /// an empty value first; that rewrites one entry only (ngx_wasm_module's replace updates
    /// the first match and hides the others with their values intact), so a request holding
    /// such a header twice is refused: it carries more than one token. A token to take out
    /// of the query string is refused too: ngx_wasm_module's `:path` sets `r->uri` and
    /// `r->args` (`ngx_proxy_wasm_maps_set`'s `ngx_proxy_wasm_maps_set_path`, lines 531-539;
    /// `r->args` only when the new path has a query) and never clears
    /// `r->valid_unparsed_uri`, so `proxy_pass` without a URI part
    /// sends the original request line (nginx 1.27.4 `ngx_http_proxy_module.c` 1316-1318,
    /// 1441-1442).
    fn erasable(&self, decision: Decision, req: Request<'_>) -> Decision {
        let Decision::Allow(allow) = &decision else {
            return decision;
        };
        if self.profile.header_removal_trusted {
            return decision;
        }
        let repeated = allow
            .remove_headers
            .iter()
            .any(|h| req.headers.iter().filter(|(n, _)| n == h).nth(1).is_some());
        let error = if repeated {
            AuthError::MultipleTokens
        } else if allow.new_path.is_some() {
            AuthError::TokenInQuery
        } else {
            return decision;
        };
        let view = RequestView::new(req.headers, req.route_name);
        Decision::Deny(denial(&self.policy, &view, error))
    }
}

/// What to do with one request. Carry out, in this order: [`Plan::header_ops`],
/// [`Plan::properties`] (before a local reply, so that the access log sees them),
/// [`Plan::counters`], [`Plan::log_lines`], then the [`Plan::reply`] if there is one; the
/// request goes on only when [`Plan::allowed`].
#[derive(Debug)]
pub struct Plan<'a> {
    auth: &'a Authenticator,
    headers: &'a [(String, String)],
    route_name: Option<&'a str>,
    client_certificate: Option<ClientCertificate<'a>>,
    now: UnixMillis,
    /// Client copies of identity headers are present and the host removes them for real.
    strip_forged: bool,
    decision: Decision,
    /// Verified-token cache lookups of this decision (and of earlier rounds that waited).
    pub cache_hits: u64,
    pub cache_misses: u64,
}

impl<'a> Plan<'a> {
    pub fn decision(&self) -> &Decision {
        &self.decision
    }

    /// True when the request goes on (after the header changes).
    pub fn allowed(&self) -> bool {
        matches!(self.decision, Decision::Allow(_))
    }

    /// The key sources to wait for, when the decision needs keys that are not there yet.
    pub fn waits_for(&self) -> Option<&[JwksId]> {
        match &self.decision {
            Decision::WaitForKeys(ids) => Some(ids),
            _ => None,
        }
    }

    /// The same request refused as `jwks_unavailable`: for a decision that would wait where
    /// waiting is over. Under a `report_only` rule it is decided again with every awaited
    /// source unavailable, so it goes on as a would-deny (`jwks_unavailable`, or what else
    /// the request lacks) with its unforwarded tokens taken out.
    pub fn unavailable(self) -> Plan<'a> {
        let auth = self.auth;
        let policy = auth.policy();
        let view = RequestView::new(self.headers, self.route_name)
            .with_client_certificate(self.client_certificate);
        let decision =
            if auth.any_report_only && report_only(policy, select_requirement(policy, &view)) {
                let req = Request {
                    headers: self.headers,
                    route_name: self.route_name,
                    client_certificate: self.client_certificate,
                };
                let cache = TokenCache::disabled();
                auth.erasable(decide_cached(policy, &view, &NoKeys, &cache, self.now), req)
            } else {
                Decision::Deny(denial(policy, &view, AuthError::JwksUnavailable))
            };
        Plan { decision, ..self }
    }

    /// The same request refused because the host did not make a header change its plan
    /// needs (an allowed request must not reach the upstream with a client's identity header
    /// or a token it should not carry): `503 header_change_refused`.
    pub fn header_change_refused(self) -> Plan<'a> {
        let view = RequestView::new(self.headers, self.route_name)
            .with_client_certificate(self.client_certificate);
        let refused = denial(self.auth.policy(), &view, AuthError::HeaderChangeRefused);
        Plan {
            decision: Decision::Deny(refused),
            ..self
        }
    }

    /// The same request refused by provider `provider` with `error`: for an allowed request
    /// whose DPoP proof turns out to be a replay, or to lack a valid server nonce (extension:
    /// `dpop_nonce` is the fresh nonce for the reply's `DPoP-Nonce` header, RFC 9449 §8.1,
    /// sent even under `strip_failure_response`: without it the client cannot go on).
    pub fn refuse(
        self,
        provider: ProviderId,
        error: AuthError,
        dpop_nonce: Option<String>,
    ) -> Plan<'a> {
        let view = RequestView::new(self.headers, None);
        let policy = self.auth.policy();
        let p = policy.providers.get(provider);
        let mut refused = provider_denial(policy, &view, p, error);
        refused.provider = p.map(|p| p.name.clone());
        if let Some(nonce) = dpop_nonce {
            refused.headers.push(("dpop-nonce".to_owned(), nonce));
        }
        Plan {
            decision: Decision::Deny(refused),
            ..self
        }
    }

    /// True when the request still carries header `name` after the strip and removal ops
    /// of [`Plan::header_ops`]: it came with it, and neither op took it out.
    fn still_carries(&self, name: &str, removed: &[String]) -> bool {
        let stripped = self.strip_forged && self.auth.policy().is_identity_header(name);
        !stripped
            && !removed.iter().any(|r| r.eq_ignore_ascii_case(name))
            && self
                .headers
                .iter()
                .any(|(n, _)| n.eq_ignore_ascii_case(name))
    }

    /// The local reply (its `status`, `headers` and `body`).
    pub fn reply(&self) -> Option<&Denial> {
        match &self.decision {
            Decision::Deny(d) => Some(d),
            _ => None,
        }
    }

    /// The header changes, in order: client copies of identity headers go (on every route,
    /// also while the request waits); then, for an accepted request, tokens that are not
    /// forwarded, the identity headers (added when the request no longer carries them, else
    /// replaced), and the path without token query parameters (replaced).
    pub fn header_ops(&self) -> impl Iterator<Item = HeaderOp<'_>> + '_ {
        let forged: &[(String, String)] = if self.strip_forged { self.headers } else { &[] };
        let policy = self.auth.policy();
        let strip = forged
            .iter()
            .filter(move |(n, _)| policy.is_identity_header(n))
            .map(|(n, _)| HeaderOp::Remove(n));
        let allow = match &self.decision {
            Decision::Allow(a) => Some(a),
            _ => None,
        };
        let removed = allow.map_or(&[][..], |a| &a.remove_headers);
        let sets = allow.map_or(&[][..], |a| &a.set_headers);
        let path = allow.and_then(|a| a.new_path.as_deref());
        // See `HostProfile::NGX_WASM_MODULE` for why an empty value goes in first there.
        let erase_first = !self.auth.profile.header_removal_trusted;
        let removes = removed.iter().flat_map(move |h| {
            erase_first
                .then_some(HeaderOp::Set(h, ""))
                .into_iter()
                .chain(std::iter::once(HeaderOp::Remove(h)))
        });
        let sets = sets.iter().map(move |(k, v)| {
            if self.still_carries(k, removed) {
                HeaderOp::Set(k, v)
            } else {
                HeaderOp::Add(k, v)
            }
        });
        strip
            .chain(removes)
            .chain(sets)
            .chain(path.map(|p| HeaderOp::Set(":path", p)))
    }

    /// The entries to publish through the host's property API (Envoy: filter state
    /// `wasm.<name>`), in order: the vouching providers' `payload_in_metadata` and
    /// `header_in_metadata` JSON, then the `outcome_in_metadata` outcome
    /// ([`publish::outcome`]). Empty, without allocation, when none is configured: the
    /// common path makes no host call. Never a token or a signature.
    pub fn properties(&self) -> Vec<(&str, Cow<'_, str>)> {
        let mut out = Vec::new();
        if let Decision::Allow(a) = &self.decision {
            out.extend(
                a.published
                    .iter()
                    .map(|(k, v)| (k.as_str(), Cow::Borrowed(v.as_str()))),
            );
        }
        if let Some(name) = &self.auth.policy.outcome_in_metadata {
            if let Some(value) = publish::outcome(&self.decision) {
                out.push((name.as_str(), Cow::Owned(value)));
            }
        }
        out
    }

    /// The counters to bump, in order, by name and amount.
    pub fn counters(&self, mut bump: impl FnMut(&str, i64)) {
        if self.cache_hits > 0 {
            bump(metrics::CACHE_HIT, self.cache_hits as i64);
        }
        if self.cache_misses > 0 {
            bump(metrics::CACHE_MISS, self.cache_misses as i64);
        }
        match &self.decision {
            Decision::Allow(allow) => {
                bump(metrics::ALLOWED, 1);
                if let Some(den) = &allow.would_deny {
                    let code = den.error.code();
                    bump(metrics::WOULD_DENY, 1);
                    if let Some(p) = &den.provider {
                        bump(&metrics::provider_would_deny(p, code), 1);
                    }
                }
                for id in &allow.identities {
                    if let Some(name) = self.auth.allowed_metrics.get(id.provider_id) {
                        bump(name, 1);
                    }
                }
                if allow.reason == AllowReason::CorsPreflight {
                    bump(metrics::CORS_BYPASSED, 1);
                }
            }
            Decision::Deny(denial) => {
                let code = denial.error.code();
                bump(metrics::DENIED, 1);
                bump(&metrics::denied_by_code(code), 1);
                if let Some(p) = &denial.provider {
                    bump(&metrics::provider_denied(p, code), 1);
                }
            }
            Decision::WaitForKeys(_) => {}
        }
    }

    /// The log lines (never a token, a signature or a whole header) at `max` or more severe:
    /// formatted only if the adapter's logger prints them, and a line above `max` is skipped
    /// before its values are looked up (an accepted request's Debug line reads three claims).
    pub fn log_lines(&self, max: LevelFilter, mut line: impl FnMut(Level, fmt::Arguments<'_>)) {
        match &self.decision {
            Decision::Allow(_) if Level::Debug > max => {}
            Decision::Allow(allow) => {
                for id in &allow.identities {
                    line(
                        Level::Debug,
                        format_args!(
                            "allowed: provider={} iss={} sub={} kid={}",
                            id.provider,
                            Safe(id.iss()),
                            Safe(id.sub()),
                            Safe(id.kid()),
                        ),
                    );
                }
            }
            Decision::Deny(denial) => {
                self.denial_line(max, &mut line, Level::Debug, "denied", denial)
            }
            Decision::WaitForKeys(_) => {}
        }
        if let Decision::Allow(Allow {
            would_deny: Some(den),
            ..
        }) = &self.decision
        {
            // Info: the line the switch to enforcing is decided on.
            self.denial_line(max, &mut line, Level::Info, "would deny (report_only)", den);
        }
    }

    fn denial_line(
        &self,
        max: LevelFilter,
        line: &mut impl FnMut(Level, fmt::Arguments<'_>),
        level: Level,
        what: &str,
        denial: &Denial,
    ) {
        if level > max {
            return;
        }
        line(
            level,
            format_args!(
                "{what}: code={} status={} provider={} iss={} kid={} sub={} path={}",
                denial.error.code(),
                denial.status,
                denial.provider.as_deref().unwrap_or("-"),
                Safe(denial.iss.as_deref()),
                Safe(denial.kid.as_deref()),
                Safe(denial.sub.as_deref()),
                Safe(Some(
                    RequestView::new(self.headers, None).path_without_query()
                )),
            ),
        )
    }
}

/// Every key source and revocation list unavailable: a decision that waited too long.
struct NoKeys;

impl KeyLookup for NoKeys {
    fn keys(&self, _id: JwksId) -> KeyState<'_> {
        KeyState::Unavailable
    }

    fn revocation_list(&self, _id: JwksId) -> ListState<'_> {
        ListState::Unavailable
    }
}

/// Log text for an attacker-controlled value: printable ASCII only, at most 64 characters,
/// `-` for none. Written as it is formatted: no allocation when the line is not printed.
#[derive(Debug, Clone, Copy)]
pub struct Safe<'a>(pub Option<&'a str>);

impl fmt::Display for Safe<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Some(s) = self.0 else {
            return f.write_str("-");
        };
        for c in s.chars().take(64) {
            fmt::Write::write_char(f, if c.is_ascii_graphic() { c } else { '?' })?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
