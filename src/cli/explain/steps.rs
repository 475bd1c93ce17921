//! The printer `explain` hands to the core's decision: each step the core reports becomes a
//! line, as it is taken; then the decision. Nothing here decides or checks anything.

use std::collections::BTreeSet;

use serde_json::{Map, Value};

use super::fingerprint;
use crate::authn::authenticate::{AllowReason, Decision, KeyState, ListState};
use crate::authn::config::raw;
use crate::authn::error::AuthError;
use crate::authn::extract::{Found, FoundAt};
use crate::authn::policy::{JwksSource, Policy, ProviderId};
use crate::authn::trace::{Check, Met, Outcome, Recorder, Selection, Step};
use crate::cli::keys::family_name;
use crate::cli::timefmt::{relative, utc};
use crate::cli::{describe, quoted, Output};
use crate::time::UnixMillis;

/// What the printer keeps of the token being checked, for the lines that describe it.
#[derive(Default)]
pub(super) struct TokenFacts {
    /// The header's `alg` as written.
    alg: String,
    /// The length of the signature segment (the signature itself is never printed).
    sig_len: usize,
    /// Entries in the remote revocation list, when the decision found it ready.
    list_len: Option<usize>,
}

/// Prints the decision's steps as the core takes them, and the decision.
pub(super) struct Printer<'a> {
    policy: &'a Policy,
    raw: &'a raw::JwtAuthentication,
    route_name: Option<&'a str>,
    now: UnixMillis,
    /// The token's payload segment: a header that carries it is described, not printed.
    pub(super) payload: Option<&'a str>,
    out: &'a mut Output,
    /// The provider whose block is being printed.
    current: Option<ProviderId>,
    token: TokenFacts,
    /// The exit code, set by the verdict (2 until then).
    pub(super) code: u8,
}

impl<'a> Printer<'a> {
    pub(super) fn new(
        policy: &'a Policy,
        raw: &'a raw::JwtAuthentication,
        route_name: Option<&'a str>,
        now: UnixMillis,
        out: &'a mut Output,
    ) -> Self {
        Printer {
            policy,
            raw,
            route_name,
            now,
            payload: None,
            out,
            current: None,
            token: TokenFacts::default(),
            code: 2,
        }
    }
}

impl Recorder for Printer<'_> {
    fn step(&mut self, step: Step<'_>) {
        match step {
            Step::CorsPreflight => {
                self.out.out("requirement:");
                self.out.out(
                    "  CORS preflight (OPTIONS with Origin and Access-Control-Request-Method): bypassed",
                );
            }
            Step::Selected(s) => self.selected(s),
            Step::AllowMissing {
                or_failed,
                providers,
            } => {
                self.current = None;
                let names: Vec<String> = providers.iter().map(|id| self.name(*id)).collect();
                let node = if or_failed {
                    "allow_missing_or_failed"
                } else {
                    "allow_missing"
                };
                let whose = if names.is_empty() {
                    "none".to_owned()
                } else {
                    names.join(", ")
                };
                self.out
                    .out(format!("{node}: looks at the tokens of provider {whose}"));
            }
            Step::Token { provider, found } => {
                self.provider(provider);
                self.token = TokenFacts::default();
                self.found(provider, found);
            }
            Step::CacheHit { .. } => self.out.out(
                "  verified-token cache: hit (signature verified before; the claims are checked again)",
            ),
            Step::Parsed { token, .. } => {
                let h = token.header();
                self.token.alg = h.alg.clone();
                self.out.out(format!(
                    "  header: alg {}, kid {}, typ {}",
                    quoted(&h.alg, 40),
                    quoted_or_none(h.kid.as_deref(), 80),
                    quoted_or_none(h.typ.as_deref(), 40),
                ));
                self.out.out(format!(
                    "  signature: {} base64url characters (not shown)",
                    self.token.sig_len
                ));
                print_claims(token.unverified_claims(), self.now, self.out);
            }
            Step::Keys {
                provider, state, ..
            } => self.keys(provider, state),
            Step::Refetch { .. } => self.out.out(
                "  [--]   keys: the kid is not in the key set; the filter waits for an early refetch",
            ),
            Step::KeysTried {
                candidates,
                verified_by,
                ..
            } => {
                let names: Vec<String> = candidates
                    .iter()
                    .enumerate()
                    .map(|(i, k)| {
                        format!(
                            "{} {}{}{}",
                            k.kid
                                .as_deref()
                                .map_or("(no kid)".to_owned(), |k| quoted(k, 80)),
                            family_name(k.family()),
                            k.alg().map(|a| format!(" alg {a}")).unwrap_or_default(),
                            if verified_by == Some(i) {
                                " (verified the signature)"
                            } else {
                                ""
                            }
                        )
                    })
                    .collect();
                self.out
                    .out(format!("  [ok]   key selection: {}", names.join(", ")));
            }
            Step::RevocationList { state, .. } => {
                self.token.list_len = match state {
                    ListState::Ready(r) => Some(r.len()),
                    ListState::Pending | ListState::Unavailable => None,
                };
            }
            Step::Check {
                provider,
                check,
                outcome,
            } => {
                self.provider(provider);
                self.check(provider, check, outcome);
            }
            Step::Result { provider, outcome } => {
                self.provider(provider);
                let line = match outcome {
                    Outcome::Missing => "token_missing".to_owned(),
                    Outcome::Verified => "verified".to_owned(),
                    Outcome::Failed(e) => format!("{} (the filter stops at the first failure)", e.code()),
                    Outcome::Pending(id) => format!("waiting for key source {id}"),
                };
                self.out.out(format!("  result: {line}"));
            }
            Step::Requirement { requirement, met } => {
                self.current = None;
                let what = describe::requirement(self.policy, requirement);
                let line = match met {
                    Met::Yes([]) => "met without a token".to_owned(),
                    Met::Yes(ids) => {
                        let names: Vec<String> = ids.iter().map(|id| self.name(*id)).collect();
                        format!("met by provider {}", names.join(", "))
                    }
                    Met::No { provider, error } => format!(
                        "not met: {}{}",
                        error.code(),
                        provider
                            .map(|id| format!(" (provider {})", self.name(id)))
                            .unwrap_or_default()
                    ),
                    Met::Pending(ids) => format!("waiting for key sources {ids:?}"),
                };
                self.out.out(format!("requirement {what}: {line}"));
            }
            Step::PresentToken {
                provider,
                error,
                vouched,
            } => {
                self.current = None;
                let name = self.name(provider);
                self.out.out(if vouched {
                    format!(
                        "present tokens: provider {name}'s token failed ({}) but another provider verified it: ignored",
                        error.code()
                    )
                } else {
                    format!(
                        "present tokens: provider {name} found a token that did not verify ({}): a token that is present must be valid",
                        error.code()
                    )
                });
            }
            Step::Verdict(d) => {
                self.current = None;
                self.code = print_decision(d, self.payload, self.out);
            }
        }
    }
}

impl Printer<'_> {
    fn name(&self, id: ProviderId) -> String {
        self.policy
            .providers
            .get(id)
            .map_or("?".to_owned(), |p| quoted(&p.name, 80))
    }

    /// Opens the provider's block unless it is the one being printed.
    fn provider(&mut self, id: ProviderId) {
        if self.current != Some(id) {
            self.current = Some(id);
            let name = self.name(id);
            self.out.out(format!("provider {name}:"));
        }
    }

    fn selected(&mut self, s: Selection<'_>) {
        self.out.out("requirement:");
        let named = |n: Option<&str>| {
            n.map(|n| format!("requirement {} = ", quoted(n, 80)))
                .unwrap_or_default()
        };
        match s {
            Selection::PerRoute {
                route,
                requirement: None,
            } => self.out.out(format!(
                "  per_route {} → disabled: no token required",
                quoted(route, 80)
            )),
            Selection::PerRoute {
                route,
                requirement: Some(r),
            } => {
                let name = self
                    .raw
                    .per_route
                    .0
                    .get(route)
                    .and_then(|o| o.requirement_name.as_deref());
                self.out.out(format!(
                    "  per_route {} → {}{}",
                    quoted(route, 80),
                    named(name),
                    describe::requirement(self.policy, r)
                ));
            }
            Selection::Rule { index, requirement } => {
                self.no_per_route();
                let raw_rule = self.raw.rules.get(index);
                let m = describe::route_match(raw_rule.and_then(|r| r.route_match.as_ref()));
                let name = raw_rule.and_then(|r| r.requirement_name.as_deref());
                match requirement {
                    None => self
                        .out
                        .out(format!("  rules[{index}] {m} matched → no token required")),
                    Some(r) => self.out.out(format!(
                        "  rules[{index}] {m} matched → {}{}",
                        named(name),
                        describe::requirement(self.policy, r)
                    )),
                }
            }
            Selection::NoRule => {
                self.no_per_route();
                self.out.out("  no rule matches: no token required");
            }
        }
    }

    fn no_per_route(&mut self) {
        if let Some(route) = self.route_name {
            self.out.out(format!(
                "  route name {} has no per_route entry; rules decide",
                quoted(route, 80)
            ));
        }
    }

    fn found(&mut self, provider: ProviderId, found: Result<Option<&Found>, &AuthError>) {
        let found = match found {
            Ok(Some(f)) => f,
            Ok(None) => {
                let locs: Vec<String> = self
                    .policy
                    .providers
                    .get(provider)
                    .map(|p| p.locations.iter().map(describe::location).collect())
                    .unwrap_or_default();
                self.out
                    .out(format!("  token: not found (looks in {})", locs.join(", ")));
                return;
            }
            Err(e) => {
                self.out.out(format!("  token: {}: {e}", e.code()));
                return;
            }
        };
        let at: Vec<String> = found
            .at
            .iter()
            .map(|a| match a {
                FoundAt::Header(h) => format!("header {h}"),
                FoundAt::Param(n) => format!("query parameter {}", quoted(n, 40)),
                FoundAt::Cookie(c) => format!("cookie {}", quoted(c, 40)),
            })
            .collect();
        self.out.out(format!(
            "  token: found in {} ({} bytes, {})",
            at.join(", "),
            found.token.len(),
            fingerprint(&found.token)
        ));
        self.token.sig_len = found.token.rsplit('.').next().map_or(0, str::len);
    }

    fn keys(&mut self, provider: ProviderId, state: KeyState<'_>) {
        let Some(p) = self.policy.providers.get(provider) else {
            return;
        };
        match state {
            KeyState::Ready(set) => {
                let remote = matches!(
                    self.policy.jwks_sources.get(p.jwks),
                    Some(JwksSource::Remote(_))
                );
                let from = if remote {
                    "--jwks (for remote_jwks)"
                } else {
                    "local_jwks"
                };
                self.out.out(format!(
                    "  [ok]   keys: {} usable keys from {from}",
                    set.len()
                ));
            }
            KeyState::Pending => self.out.out("  [--]   keys: still loading"),
            KeyState::Unavailable => self.out.out(format!(
                "  [FAIL] keys: jwks_unavailable: keys unavailable: {} is not fetched by explain; pass --jwks FILE",
                describe::key_source(self.policy, p)
            )),
        }
    }

    fn check(&mut self, provider: ProviderId, check: Check<'_>, outcome: Result<(), &AuthError>) {
        let Some(p) = self.policy.providers.get(provider) else {
            return;
        };
        let (step, text) = match (check, outcome) {
            (Check::Parse, _) => ("parse", String::new()),
            (Check::Alg, outcome) => {
                let allowed: Vec<&str> = p.algorithms.iter().map(|a| a.name()).collect();
                let text = match outcome {
                    Ok(()) => format!("{} is allowed ({})", self.token.alg, allowed.join(" ")),
                    Err(_) => format!(
                        "{} is not in the allow-list ({})",
                        quoted(&self.token.alg, 40),
                        allowed.join(" ")
                    ),
                };
                ("alg", text)
            }
            (Check::Issuer, outcome) => {
                let text = match (outcome, &p.issuer) {
                    (Ok(()), None) => "no issuer configured: any iss accepted".to_owned(),
                    (Ok(()), Some(i)) => format!("iss is {}", quoted(i, 200)),
                    (Err(_), Some(i)) => format!("expected {}", quoted(i, 200)),
                    (Err(_), None) => String::new(),
                };
                ("issuer", text)
            }
            (Check::Times, outcome) => {
                let lifetime = p
                    .max_lifetime
                    .map(|m| format!(", max_lifetime {}s", m.as_secs()))
                    .unwrap_or_default();
                let rules = format!(
                    "clock skew {}s, exp {}{lifetime}",
                    p.clock_skew.as_secs(),
                    if p.require_expiration {
                        "required"
                    } else {
                        "optional"
                    }
                );
                let text = match outcome {
                    Ok(()) => format!("valid at now ({rules})"),
                    Err(_) => format!("({rules})"),
                };
                ("time", text)
            }
            (Check::KeySelection, _) => ("key selection", String::new()),
            (Check::Signature, _) => ("signature", "verified".to_owned()),
            (Check::Subject, outcome) => {
                let text = match (&p.subjects, outcome) {
                    (None, _) => "no subject matcher",
                    (Some(_), Ok(())) => "sub matches the subjects matcher",
                    (Some(_), Err(_)) => "",
                };
                ("subject", text.to_owned())
            }
            (Check::InlineRevocation, _) => {
                let text = if p.revoked.is_empty() {
                    "no inline deny-list"
                } else {
                    "jti and sub are not on the inline deny-list"
                };
                ("revocation", text.to_owned())
            }
            (Check::RemoteRevocation, outcome) => {
                let text = match (outcome, self.token.list_len) {
                    (Ok(()), n) => format!(
                        "jti and sub are not on the remote revocation list ({} entries from --revocation-list)",
                        n.unwrap_or_default()
                    ),
                    (Err(_), Some(_)) => {
                        "jti or sub is on the remote revocation list (--revocation-list)".to_owned()
                    }
                    (Err(_), None) => "the remote revocation list is not fetched by explain; pass --revocation-list FILE".to_owned(),
                };
                ("revocation", text)
            }
            (Check::SenderConstraint, outcome) => {
                let text = match outcome {
                    Ok(()) => "the sender constraint holds (DPoP proof, or bearer use allowed)",
                    Err(_) => "",
                };
                ("sender constraint", text.to_owned())
            }
            (Check::CertificateBinding, outcome) => {
                let text = match outcome {
                    Ok(()) => "the certificate binding holds (cnf.x5t#S256, or an unbound token where mtls is optional)",
                    Err(_) => "",
                };
                ("certificate binding", text.to_owned())
            }
            (Check::Audience { audiences, own }, outcome) => {
                let whose = if own {
                    "provider's audiences"
                } else {
                    "requirement's audiences"
                };
                let text = match (audiences.is_empty(), outcome) {
                    (true, _) => format!("no audiences configured ({whose}): any aud accepted"),
                    (false, Ok(())) => format!(
                        "aud contains one of {} ({whose})",
                        describe::list(audiences)
                    ),
                    (false, Err(_)) => {
                        format!("wanted one of {} ({whose})", describe::list(audiences))
                    }
                };
                ("audience", text)
            }
            // Printed only when the requirement asks for scopes.
            (Check::Scopes([]), Ok(())) => return,
            (Check::Scopes(scopes), outcome) => {
                let text = match outcome {
                    Ok(()) => format!("has every scope of {}", describe::list(scopes)),
                    Err(_) => String::new(),
                };
                ("scopes", text)
            }
            // Printed only when the requirement asks for claims.
            (Check::Claims([]), Ok(())) => return,
            (Check::Claims(required), outcome) => {
                let text = match outcome {
                    Ok(()) => {
                        let names: Vec<String> =
                            required.iter().map(|r| quoted(&r.name, 80)).collect();
                        format!("{} each have a required value", names.join(", "))
                    }
                    Err(AuthError::ClaimMismatch(name)) => required
                        .iter()
                        .find(|r| r.name == *name)
                        .map(|r| {
                            let values: Vec<String> = r.values.iter().map(json_short).collect();
                            format!("wanted one of [{}]", values.join(", "))
                        })
                        .unwrap_or_default(),
                    Err(_) => String::new(),
                };
                ("claims", text)
            }
        };
        let line = match outcome {
            Ok(()) => format!("  [ok]   {step}: {text}"),
            Err(e) if text.is_empty() => format!("  [FAIL] {step}: {}: {e}", e.code()),
            Err(e) if text.starts_with('(') => format!("  [FAIL] {step}: {}: {e} {text}", e.code()),
            Err(e) => format!("  [FAIL] {step}: {}: {e}; {text}", e.code()),
        };
        self.out.out(line);
    }
}

fn print_claims(c: &Map<String, Value>, now: UnixMillis, out: &mut Output) {
    out.out("  claims (unverified):");
    for name in ["iss", "sub"] {
        if let Some(v) = c.get(name) {
            let shown = match v {
                Value::String(s) => quoted(s, 200),
                other => format!("{} (not a string)", json_short(other)),
            };
            out.out(format!("    {name}: {shown}"));
        }
    }
    if let Some(v) = c.get("aud") {
        out.out(format!("    aud: {}", json_short(v)));
    }
    for name in ["exp", "nbf", "iat"] {
        match c.get(name) {
            None => out.out(format!("    {name}: (absent)")),
            Some(Value::Number(n)) => {
                let secs = n.as_f64().unwrap_or(f64::NAN);
                let when = utc(secs).unwrap_or_else(|| "out of range".into());
                out.out(format!(
                    "    {name}: {n} ({when}, {})",
                    relative(secs, now.as_secs())
                ));
            }
            Some(other) => out.out(format!("    {name}: {} (not a number)", json_short(other))),
        }
    }
    let known: BTreeSet<&str> = ["iss", "sub", "aud", "exp", "nbf", "iat"].into();
    let others: Vec<String> = c
        .keys()
        .filter(|k| !known.contains(k.as_str()))
        .map(|k| quoted(k, 40))
        .collect();
    if !others.is_empty() {
        out.out(format!("    other claims: {}", others.join(", ")));
    }
}

/// `quoted(v)`, or `(none)`.
fn quoted_or_none(v: Option<&str>, max: usize) -> String {
    v.map_or("(none)".to_owned(), |v| quoted(v, max))
}

fn json_short(v: &Value) -> String {
    let s = v.to_string();
    if s.chars().count() > 200 {
        let cut: String = s.chars().take(200).collect();
        format!("{cut}…")
    } else {
        s
    }
}

/// Prints the decision; returns the exit code.
pub(super) fn print_decision(d: &Decision, payload: Option<&str>, out: &mut Output) -> u8 {
    match d {
        Decision::Allow(allow) => {
            let why = match allow.reason {
                AllowReason::Verified => "verified: the requirement is met",
                AllowReason::NoRequirement => "no requirement applies",
                AllowReason::CorsPreflight => "CORS preflight bypass",
                AllowReason::Allowed => "allow_missing / allow_missing_or_failed let it through",
                AllowReason::ReportOnly => "report_only rule: it would be refused",
            };
            out.out(format!("decision: ALLOW ({why})"));
            if let Some(den) = &allow.would_deny {
                out.out(format!("  would deny: {} {}", den.status, den.error.code()));
            }
            for id in &allow.identities {
                out.out(format!(
                    "  identity: provider {}, iss {}, sub {}, kid {}",
                    quoted(&id.provider, 80),
                    quoted_or_none(id.iss(), 200),
                    quoted_or_none(id.sub(), 200),
                    quoted_or_none(id.kid(), 80),
                ));
            }
            for (name, value) in &allow.set_headers {
                let is_payload =
                    payload.is_some_and(|p| value == p || value.trim_end_matches('=') == p);
                let shown = if is_payload {
                    format!("<the token's payload, base64, {} characters>", value.len())
                } else {
                    quoted(value, 200)
                };
                out.out(format!("  set header {name}: {shown}"));
            }
            for name in &allow.remove_headers {
                out.out(format!("  remove header {name} (token not forwarded)"));
            }
            if let Some(p) = &allow.new_path {
                out.out(format!(
                    "  set :path {} (token query parameter removed)",
                    quoted(p, 200)
                ));
            }
            0
        }
        Decision::Deny(den) => {
            out.out(format!(
                "decision: DENY {} {}",
                den.status,
                den.error.code()
            ));
            out.out(format!("  message: {}", den.error));
            if let Some(p) = &den.provider {
                out.out(format!("  provider: {}", quoted(p, 80)));
            }
            for (k, v) in &den.headers {
                out.out(format!("  response header {k}: {v}"));
            }
            if den.body.is_empty() {
                out.out("  body: (empty: strip_failure_response)");
            } else {
                out.out(format!("  body: {}", den.body));
            }
            1
        }
        Decision::WaitForKeys(ids) => {
            out.out(format!("decision: WAIT for key sources {ids:?}"));
            1
        }
    }
}
