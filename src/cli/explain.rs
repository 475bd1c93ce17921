//! `jwt-edge explain`: the decision the filter takes for one request, and the steps behind it.
//!
//! One pipeline, two outputs: explain runs the core's decision
//! ([`decide_recorded`], which the filter runs through `decide_cached` with a recorder that
//! records nothing) with the verified-token cache disabled, so the answer is the filter's on a
//! request whose token it has not seen before (a cache hit gives the same answer), and prints
//! each step the core reports as it takes it: the requirement selected, for each provider the
//! token's location, header and claims, each check up to the first failure (the filter stops
//! there too), each requirement node's outcome, and the decision. The token and its signature
//! are never printed: only their length and a SHA-256 fingerprint.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use super::args::{self, Args, Opt};
use super::timefmt::{relative, utc};
use super::{describe, keys::family_name, one_line, quoted, read_text, CliError, Output, Stdin};
use crate::authn::authenticate::{
    decide_recorded, select_requirement, AllowReason, Decision, KeyLookup, KeyState, ListState,
};
use crate::authn::config::{self, raw};
use crate::authn::error::AuthError;
use crate::authn::extract::{extract, Found, FoundAt};
use crate::authn::jwk::{parse_jwks, JwksOptions, KeySet};
use crate::authn::policy::{
    Document, JwksId, JwksSource, Policy, ProviderId, Requirement, Revocation, TokenLocation,
};
use crate::authn::request::RequestView;
use crate::authn::revocation::parse_revocation_list;
use crate::authn::token_cache::TokenCache;
use crate::authn::trace::{Check, Met, Outcome, Recorder, Selection, Step};

const HELP: &str = "\
Usage: jwt-edge explain --config FILE [--token TOKEN|@FILE] [--jwks FILE] [--path /p]
                        [--method GET] [--header 'name: value']... [--route-name NAME]
                        [--revocation-list FILE] [--now UNIX_SECONDS]

Shows the decision the filter takes for a request and the steps the filter's own code took
to reach it: the rule or per_route entry that matched, and for each provider it looked at
where the token was found, its header and (unverified) claims, then each check in the
filter's order up to the first failure (alg allow-list, issuer, time, keys, key selection,
signature, subject, revocation, audience, scopes, claims), each requirement's outcome, and the
decision (status, code, WWW-Authenticate, headers set and removed). The token and its
signature are never printed, only their length and a SHA-256 fingerprint.

  --config FILE       filter config JSON (- for stdin)
  --token TOKEN       the token, or @FILE to read it from a file (@- for stdin); it is placed
                      where the first provider involved looks first (usually
                      `authorization: Bearer`). Without --token the request carries none,
                      unless a --header does.
  --jwks FILE         keys for every remote_jwks provider (local_jwks providers use their own);
                      without it remote keys are unavailable (503 jwks_unavailable)
  --revocation-list FILE
                      the document every provider's remote revocation_list serves; without
                      it those lists are unavailable (503 revocation_unavailable)
  --path PATH         request :path, with query (default /)
  --method METHOD     request method (default GET)
  --header 'N: V'     a request header (repeatable); :authority and :scheme may be set too
  --route-name NAME   the host's route name (selects per_route)
  --now UNIX          seconds since the epoch (default: the system clock)

Exit codes: 0 allowed, 1 denied, 2 usage or input error.";

/// The clock, in seconds since the epoch.
pub fn system_now() -> Result<u64, CliError> {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .map_err(|_| CliError::usage("the system clock is before 1970; pass --now"))
}

/// Keys and revocation lists as the CLI has them: ready, or unavailable. Never pending:
/// nothing is fetched.
struct CliKeys {
    sets: Vec<Option<Arc<KeySet>>>,
    /// From `--revocation-list`, for every remote revocation list.
    revocation: Option<Revocation>,
}

impl KeyLookup for CliKeys {
    fn keys(&self, id: JwksId) -> KeyState<'_> {
        match self.sets.get(id) {
            Some(Some(k)) => KeyState::Ready(k),
            _ => KeyState::Unavailable,
        }
    }

    fn revocation_list(&self, _id: JwksId) -> ListState<'_> {
        match &self.revocation {
            Some(r) => ListState::Ready(r),
            None => ListState::Unavailable,
        }
    }
}

/// `jwt-edge explain`.
pub fn run(argv: &[String], stdin: Stdin<'_>, out: &mut Output) -> Result<u8, CliError> {
    const OPTS: [Opt; 10] = [
        args::value("config"),
        args::value("token"),
        args::value("jwks"),
        args::value("path"),
        args::value("method"),
        args::repeated("header"),
        args::value("route-name"),
        args::value("now"),
        args::value("authority"),
        args::value("revocation-list"),
    ];
    let a = Args::parse("explain", argv, &OPTS)?;
    if a.help {
        out.out(HELP);
        return Ok(0);
    }
    a.at_most_positionals(0)?;
    let config_path = a.required("config")?;
    if a.one("token").is_some_and(|t| t == "@-") && config_path == "-" {
        return Err(CliError::usage(
            "--config - and --token @- cannot both read stdin",
        ));
    }
    let config_text = read_text("--config", config_path, stdin)?;
    let policy = config::parse(&config_text).map_err(|e| {
        CliError::usage(format!("--config {config_path}: {}: {}", e.path, e.message))
    })?;
    let raw = config::parse_raw(&config_text).map_err(|e| {
        CliError::usage(format!("--config {config_path}: {}: {}", e.path, e.message))
    })?;
    let token = match a.one("token") {
        None => None,
        Some(t) => Some(read_token(t, stdin)?),
    };
    let now = match a.one("now") {
        Some(n) => args::number("now", n)?,
        None => system_now()?,
    };
    let method = a.one("method").unwrap_or("GET");
    if method.is_empty() || !method.bytes().all(|b| b.is_ascii_alphabetic()) {
        return Err(CliError::usage(format!(
            "--method {method:?} is not an HTTP method"
        )));
    }
    let path = a.one("path").unwrap_or("/");
    if !path.starts_with('/') {
        return Err(CliError::usage(format!(
            "--path {path:?} must start with /"
        )));
    }

    let mut trace = Output::default();
    let mut secrets = token.as_deref().map(secrets_of).unwrap_or_default();
    let code = explain(
        &Request {
            method: &method.to_ascii_uppercase(),
            path,
            headers: a.all("header"),
            route_name: a.one("route-name"),
            authority: a.one("authority"),
        },
        &policy,
        &raw,
        token.as_deref(),
        a.one("jwks"),
        a.one("revocation-list"),
        now,
        &mut trace,
        &mut secrets,
    )?;
    out.stdout.push_str(&redact(&trace.stdout, &secrets));
    out.stderr.push_str(&redact(&trace.stderr, &secrets));
    Ok(code)
}

/// The request parts given on the command line.
struct Request<'a> {
    method: &'a str,
    path: &'a str,
    headers: &'a [String],
    route_name: Option<&'a str>,
    authority: Option<&'a str>,
}

fn read_token(arg: &str, stdin: Stdin<'_>) -> Result<String, CliError> {
    let text = match arg.strip_prefix('@') {
        Some(file) => read_text("--token", file, stdin)?,
        None => arg.to_owned(),
    };
    let mut t = text.trim();
    if t.len() > 7
        && t.get(..7)
            .is_some_and(|p| p.eq_ignore_ascii_case("bearer "))
    {
        t = t.get(7..).unwrap_or("").trim_start();
    }
    if t.is_empty() {
        return Err(CliError::usage("--token is empty"));
    }
    Ok(t.to_owned())
}

/// Strings that must never appear in the output: the token, and its signature segment.
fn secrets_of(token: &str) -> Vec<(String, &'static str)> {
    let mut s = vec![(token.to_owned(), "<token>")];
    if let Some(sig) = token.rsplit('.').next() {
        // A segment this short is not a real signature and could match ordinary text.
        if sig.len() >= 16 && sig != token {
            s.push((sig.to_owned(), "<signature>"));
        }
    }
    s
}

/// The last line of defence: nothing printed contains a token or a signature, whether it
/// came from `--token`, a `--header`, or `--path`.
fn redact(text: &str, secrets: &[(String, &'static str)]) -> String {
    let mut t = text.to_owned();
    // Longest first, so a token is replaced whole before its signature segment is.
    let mut sorted: Vec<&(String, &'static str)> = secrets.iter().collect();
    sorted.sort_by_key(|(s, _)| std::cmp::Reverse(s.len()));
    for (secret, label) in sorted {
        if !secret.is_empty() {
            t = t.replace(secret.as_str(), label);
        }
    }
    redact_jws_like(&t)
}

/// Replaces every run of base64url-and-dot characters that looks like a compact JWS or JWE
/// (starts with `eyJ`, the encoding of `{"`, and has at least two dots) with `<token>`.
fn redact_jws_like(text: &str) -> String {
    let is_b64_or_dot = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.';
    let mut out = String::with_capacity(text.len());
    let mut run = String::new();
    let flush = |run: &mut String, out: &mut String| {
        if run.starts_with("eyJ") && run.matches('.').count() >= 2 {
            out.push_str("<token>");
        } else {
            out.push_str(run);
        }
        run.clear();
    };
    for c in text.chars() {
        if is_b64_or_dot(c) {
            run.push(c);
        } else {
            flush(&mut run, &mut out);
            out.push(c);
        }
    }
    flush(&mut run, &mut out);
    out
}

/// `sha256:` and the first 16 hex digits of the SHA-256 of `s`.
fn fingerprint(s: &str) -> String {
    let digest = Sha256::digest(s.as_bytes());
    let hex: String = digest.iter().take(8).map(|b| format!("{b:02x}")).collect();
    format!("sha256:{hex}…")
}

fn parse_header(h: &str) -> Result<(String, String), CliError> {
    // A pseudo-header (`:authority: x`) has its own leading colon.
    let split_from = usize::from(h.starts_with(':'));
    let colon = h
        .get(split_from..)
        .and_then(|rest| rest.find(':'))
        .map(|i| i + split_from)
        .ok_or_else(|| CliError::usage(format!("--header {h:?}: expected 'name: value'")))?;
    let name = h.get(..colon).unwrap_or("").trim().to_ascii_lowercase();
    let value = h.get(colon + 1..).unwrap_or("").trim_start().to_owned();
    let bare = name.strip_prefix(':').unwrap_or(&name);
    let bad_name = bare.is_empty()
        || bare
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || c == ':');
    if bad_name {
        return Err(CliError::usage(format!("--header {h:?}: bad header name")));
    }
    Ok((name, value))
}

#[allow(clippy::too_many_arguments)]
fn explain(
    r: &Request<'_>,
    policy: &Policy,
    raw: &raw::JwtAuthentication,
    token: Option<&str>,
    jwks_path: Option<&str>,
    revocation_path: Option<&str>,
    now: u64,
    out: &mut Output,
    secrets: &mut Vec<(String, &'static str)>,
) -> Result<u8, CliError> {
    // The request, as the host would hand it over.
    let mut headers: Vec<(String, String)> = vec![
        (":method".into(), r.method.to_owned()),
        (":path".into(), r.path.to_owned()),
        (":scheme".into(), "https".into()),
        (
            ":authority".into(),
            r.authority.unwrap_or("localhost").to_owned(),
        ),
    ];
    for h in r.headers {
        let (name, value) = parse_header(h)?;
        if name.starts_with(':') {
            match headers.iter_mut().find(|(k, _)| *k == name) {
                Some(slot) => slot.1 = value,
                None => {
                    return Err(CliError::usage(format!(
                        "--header {h:?}: unknown pseudo-header (use :authority or :scheme; --path and --method for the others)"
                    )))
                }
            }
        } else {
            headers.push((name, value));
        }
    }

    // The keys.
    let cli_jwks = match jwks_path {
        None => None,
        Some(p) => {
            let bytes = std::fs::read(p)
                .map_err(|e| CliError::usage(format!("--jwks: cannot read {p}: {e}")))?;
            let load = parse_jwks(
                &bytes,
                JwksOptions {
                    allow_symmetric: false,
                },
            )
            .map_err(|e| CliError::usage(format!("--jwks {p}: {e}")))?;
            Some((p, load))
        }
    };
    let revocation = match revocation_path {
        None => None,
        Some(p) => {
            let bytes = std::fs::read(p)
                .map_err(|e| CliError::usage(format!("--revocation-list: cannot read {p}: {e}")))?;
            Some(
                parse_revocation_list(&bytes)
                    .map_err(|e| CliError::usage(format!("--revocation-list {p}: {e}")))?,
            )
        }
    };
    let keys = CliKeys {
        sets: policy
            .jwks_sources
            .iter()
            .map(|s| match s {
                JwksSource::Local(k) => Some(Arc::clone(k)),
                JwksSource::Remote(spec) if spec.document == Document::Jwks => {
                    cli_jwks.as_ref().map(|(_, l)| Arc::new(l.keys.clone()))
                }
                JwksSource::Remote(_) => None,
            })
            .collect(),
        revocation,
    };

    out.out("request:");
    out.out(format!("  {} {}", r.method, r.path));
    // The filter removes client-sent identity headers before anything else.
    headers.retain(|(name, _)| {
        let forged = policy.identity_headers.iter().any(|h| h == name);
        if forged {
            out.out(format!(
                "  header {name} removed: the filter writes it, so a client-sent copy is always stripped"
            ));
        }
        !forged
    });
    let route_name = match r.route_name {
        Some(n) if policy.per_route.is_empty() => {
            out.out(format!(
                "  route name {} ignored: the config has no per_route",
                quoted(n, 80)
            ));
            None
        }
        other => other,
    };

    // Put the token where the first provider the requirement names looks first.
    if let Some(t) = token {
        let base = RequestView::new(&headers, route_name);
        let requirement = select_requirement(policy, &base).requirement();
        let first = first_provider(requirement)
            .or((!policy.providers.is_empty()).then_some(0))
            .and_then(|id| policy.providers.get(id))
            .and_then(|p| p.locations.first());
        let place = match first {
            Some(TokenLocation::Header { name, value_prefix }) => {
                headers.push((name.clone(), format!("{value_prefix}{t}")));
                describe::location(&TokenLocation::Header {
                    name: name.clone(),
                    value_prefix: value_prefix.clone(),
                })
            }
            Some(TokenLocation::Param(name)) => {
                let sep = if r.path.contains('?') { '&' } else { '?' };
                let new_path = format!("{}{sep}{name}={t}", r.path);
                if let Some(slot) = headers.iter_mut().find(|(k, _)| k == ":path") {
                    slot.1 = new_path;
                }
                format!("query parameter {}", quoted(name, 40))
            }
            Some(TokenLocation::Cookie(name)) => {
                headers.push(("cookie".into(), format!("{name}={t}")));
                format!("cookie {}", quoted(name, 40))
            }
            None => {
                headers.push(("authorization".into(), format!("Bearer {t}")));
                "header authorization (prefix \"Bearer \")".to_owned()
            }
        };
        out.out(format!(
            "  token: {} bytes, {}, placed in {place}",
            t.len(),
            fingerprint(t)
        ));
    } else {
        out.out("  token: none given (--token)");
    }
    for (k, v) in &headers {
        if k != ":method" && k != ":path" {
            out.out(format!("  {k}: {}", one_line(v)));
        }
    }
    if let Some(n) = route_name {
        out.out(format!("  route name: {}", quoted(n, 80)));
    }
    let req = RequestView::new(&headers, route_name);
    // Whatever any provider would take for a token is never printed either.
    for p in &policy.providers {
        if let Ok(Some(found)) = extract(&req, p) {
            secrets.extend(secrets_of(&found.token));
        }
    }
    out.out(format!(
        "  now: {now} ({})",
        utc(now as f64).unwrap_or_default()
    ));

    if let Some((p, load)) = &cli_jwks {
        let remote = policy
            .jwks_sources
            .iter()
            .any(|s| matches!(s, JwksSource::Remote(_)));
        out.out(format!(
            "keys from --jwks {p}: {} usable{}",
            load.keys.len(),
            if remote {
                ", used for every remote_jwks provider"
            } else {
                " (unused: every provider has local_jwks)"
            }
        ));
        for s in &load.skipped {
            let kid = s
                .kid
                .as_deref()
                .map(|k| format!(" (kid {})", quoted(k, 64)))
                .unwrap_or_default();
            out.out(format!("  key {}{kid} skipped: {}", s.index, s.reason));
        }
    }

    // The decision, as the filter takes it (with the verified-token cache disabled: a token it
    // has not seen before), printed step by step as it is taken.
    let mut printer = Printer {
        policy,
        raw,
        route_name,
        now,
        payload: token.and_then(|t| t.split('.').nth(1)),
        out,
        current: None,
        token: TokenFacts::default(),
        code: 2,
    };
    decide_recorded(
        policy,
        &req,
        &keys,
        &TokenCache::disabled(),
        now,
        &mut printer,
    );
    Ok(printer.code)
}

/// The first provider a requirement names, in tree order.
fn first_provider(requirement: Option<&Requirement>) -> Option<ProviderId> {
    match requirement? {
        Requirement::Provider { provider, .. } => Some(*provider),
        Requirement::Any(children) | Requirement::All(children) => {
            children.iter().find_map(|c| first_provider(Some(c)))
        }
        Requirement::AllowMissing | Requirement::AllowMissingOrFailed => None,
    }
}

/// What the printer keeps of the token being checked, for the lines that describe it.
#[derive(Default)]
struct TokenFacts {
    /// The header's `alg` as written.
    alg: String,
    /// The length of the signature segment (the signature itself is never printed).
    sig_len: usize,
    /// Entries in the remote revocation list, when the decision found it ready.
    list_len: Option<usize>,
}

/// Prints the decision's steps as the core takes them, and the decision.
struct Printer<'a> {
    policy: &'a Policy,
    raw: &'a raw::JwtAuthentication,
    route_name: Option<&'a str>,
    now: u64,
    /// The token's payload segment: a header that carries it is described, not printed.
    payload: Option<&'a str>,
    out: &'a mut Output,
    /// The provider whose block is being printed.
    current: Option<ProviderId>,
    token: TokenFacts,
    /// The exit code, set by the verdict.
    code: u8,
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
                    h.kid
                        .as_deref()
                        .map_or("(none)".to_owned(), |k| quoted(k, 80)),
                    h.typ
                        .as_deref()
                        .map_or("(none)".to_owned(), |t| quoted(t, 40)),
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
                    .map(|m| format!(", max_lifetime {m}s"))
                    .unwrap_or_default();
                let rules = format!(
                    "clock skew {}s, exp {}{lifetime}",
                    p.clock_skew_seconds,
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

fn print_claims(c: &Map<String, Value>, now: u64, out: &mut Output) {
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
                out.out(format!("    {name}: {n} ({when}, {})", relative(secs, now)));
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
fn print_decision(d: &Decision, payload: Option<&str>, out: &mut Output) -> u8 {
    match d {
        Decision::Allow(allow) => {
            let why = match allow.reason {
                AllowReason::Verified => "verified: the requirement is met",
                AllowReason::NoRequirement => "no requirement applies",
                AllowReason::CorsPreflight => "CORS preflight bypass",
                AllowReason::Allowed => "allow_missing / allow_missing_or_failed let it through",
            };
            out.out(format!("decision: ALLOW ({why})"));
            for id in &allow.identities {
                out.out(format!(
                    "  identity: provider {}, iss {}, sub {}, kid {}",
                    quoted(&id.provider, 80),
                    id.iss
                        .as_deref()
                        .map_or("(none)".into(), |s| quoted(s, 200)),
                    id.sub
                        .as_deref()
                        .map_or("(none)".into(), |s| quoted(s, 200)),
                    id.kid.as_deref().map_or("(none)".into(), |s| quoted(s, 80)),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redaction() {
        let secrets = secrets_of("abc.def.0123456789abcdefXYZ");
        assert_eq!(
            redact(
                "x abc.def.0123456789abcdefXYZ y 0123456789abcdefXYZ",
                &secrets
            ),
            "x <token> y <signature>"
        );
        assert_eq!(
            redact("Bearer eyJhbGciOiJ9.eyJ9.c2ln; a.b.c eyJhbGciOiJ9", &[]),
            "Bearer <token>; a.b.c eyJhbGciOiJ9"
        );
        assert_eq!(
            redact("https://issuer.example.com/", &[]),
            "https://issuer.example.com/"
        );
    }

    #[test]
    fn headers_parse() {
        assert_eq!(
            parse_header("X-A:  b: c").unwrap(),
            ("x-a".to_owned(), "b: c".to_owned())
        );
        assert_eq!(
            parse_header(":authority: api.test").unwrap(),
            (":authority".to_owned(), "api.test".to_owned())
        );
        for bad in ["nocolon", ": x", "a b: c", "::x"] {
            assert!(parse_header(bad).is_err(), "{bad}");
        }
    }
}
