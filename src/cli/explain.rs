//! `jwt-edge explain`: the decision the filter takes for one request, and the steps behind it.
//!
//! The decision itself comes from [`decide`]: the filter calls `decide_cached`, and `decide` is
//! that function with the verified-token cache disabled, so the answer is the filter's on a
//! request whose token it has not seen before (a cache hit gives the same answer). The per-provider
//! steps re-run the same core checks one by one (extraction, parsing, alg allow-list, issuer,
//! times, key selection, signature, subject, audience) so that each can be shown, including
//! the ones after the first failure, which the filter never reaches. The token and its
//! signature are never printed: only their length and a SHA-256 fingerprint.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use super::args::{self, Args, Opt};
use super::timefmt::{relative, utc};
use super::{describe, keys::family_name, one_line, quoted, read_text, CliError, Output, Stdin};
use crate::authn::alg::Algorithm;
use crate::authn::authenticate::{
    decide, requirement_for, AllowReason, Decision, KeyLookup, KeyState, ListState,
};
use crate::authn::claims;
use crate::authn::config::{self, raw};
use crate::authn::error::AuthError;
use crate::authn::extract::{extract, FoundAt};
use crate::authn::jwk::{parse_jwks, JwksOptions, KeySet};
use crate::authn::jws::UntrustedToken;
use crate::authn::policy::{
    ClaimRequirement, Document, JwksId, JwksSource, Policy, Provider, ProviderId, Requirement,
    Revocation, RouteOverride, TokenLocation,
};
use crate::authn::request::RequestView;
use crate::authn::revocation::parse_revocation_list;

const HELP: &str = "\
Usage: jwt-edge explain --config FILE [--token TOKEN|@FILE] [--jwks FILE] [--path /p]
                        [--method GET] [--header 'name: value']... [--route-name NAME]
                        [--revocation-list FILE] [--now UNIX_SECONDS]

Shows the decision the filter takes for a request and the steps that led to it: the rule or
per_route entry that matched, and for each provider involved where the token was found, its
header and (unverified) claims, the alg allow-list, issuer, time, key selection, signature,
subject and audience checks; then the decision exactly as the filter computes it (status,
code, WWW-Authenticate, headers set and removed). The token and its signature are never
printed, only their length and a SHA-256 fingerprint.

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

/// What a requirement checks of a provider's verified token beyond verification.
#[derive(Debug, Clone, PartialEq)]
enum AudienceCheck {
    /// A provider requirement: audiences (`None`: the provider's own), scopes, claim values.
    Require {
        audiences: Option<Vec<String>>,
        scopes: Vec<String>,
        claims: Vec<ClaimRequirement>,
    },
    /// Only reached through allow_missing*: verification alone.
    None,
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
    let base = RequestView::new(&headers, route_name);
    let requirement = requirement_for(policy, &base);
    let involved = involved_providers(policy, requirement);

    // Put the token where the first provider involved looks first.
    if let Some(t) = token {
        let first = involved
            .first()
            .and_then(|(id, _)| policy.providers.get(*id))
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

    out.out("requirement:");
    explain_requirement(policy, raw, &req, out);

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

    for (id, checks) in &involved {
        if let Some(p) = policy.providers.get(*id) {
            trace_provider(policy, p, &req, &keys, now, checks, out);
        }
    }

    let decision = decide(policy, &req, &keys, now);
    let payload = token.and_then(|t| t.split('.').nth(1));
    Ok(print_decision(&decision, payload, out))
}

/// The providers a requirement involves, in tree order, with the audience checks it makes.
fn involved_providers(
    policy: &Policy,
    requirement: Option<&Requirement>,
) -> Vec<(ProviderId, Vec<AudienceCheck>)> {
    fn walk(policy: &Policy, r: &Requirement, acc: &mut Vec<(ProviderId, Vec<AudienceCheck>)>) {
        let mut add =
            |id: ProviderId, check: AudienceCheck| match acc.iter_mut().find(|(p, _)| *p == id) {
                Some((_, checks)) => {
                    if !checks.contains(&check) {
                        checks.push(check);
                    }
                }
                None => acc.push((id, vec![check])),
            };
        match r {
            Requirement::Provider {
                provider,
                audiences,
                scopes,
                claims,
            } => add(
                *provider,
                AudienceCheck::Require {
                    audiences: audiences.clone(),
                    scopes: scopes.clone(),
                    claims: claims.clone(),
                },
            ),
            Requirement::Any(children) | Requirement::All(children) => {
                for c in children {
                    walk(policy, c, acc);
                }
            }
            Requirement::AllowMissing | Requirement::AllowMissingOrFailed => {
                for id in 0..policy.providers.len() {
                    add(id, AudienceCheck::None);
                }
            }
        }
    }
    let mut acc = Vec::new();
    if let Some(r) = requirement {
        walk(policy, r, &mut acc);
    }
    // A provider reached both directly and through allow_missing keeps only real checks.
    for (_, checks) in &mut acc {
        if checks.len() > 1 {
            checks.retain(|c| *c != AudienceCheck::None);
        }
    }
    acc
}

fn explain_requirement(
    policy: &Policy,
    raw: &raw::JwtAuthentication,
    req: &RequestView<'_>,
    out: &mut Output,
) {
    if policy.bypass_cors_preflight && req.is_cors_preflight() {
        out.out(
            "  CORS preflight (OPTIONS with Origin and Access-Control-Request-Method): bypassed",
        );
        return;
    }
    if let Some(route) = req.route_name() {
        if let Some(over) = policy.per_route.get(route) {
            let named = raw
                .per_route
                .0
                .get(route)
                .and_then(|o| o.requirement_name.as_deref())
                .map(|n| format!("requirement {} = ", quoted(n, 80)))
                .unwrap_or_default();
            match over {
                RouteOverride::Disabled => out.out(format!(
                    "  per_route {} → disabled: no token required",
                    quoted(route, 80)
                )),
                RouteOverride::Require(r) => out.out(format!(
                    "  per_route {} → {named}{}",
                    quoted(route, 80),
                    describe::requirement(policy, r)
                )),
            }
            return;
        }
        out.out(format!(
            "  route name {} has no per_route entry; rules decide",
            quoted(route, 80)
        ));
    }
    match policy
        .rules
        .iter()
        .position(|rule| rule.matcher.matches(req))
    {
        None => out.out("  no rule matches: no token required"),
        Some(i) => {
            let raw_rule = raw.rules.get(i);
            let m = describe::route_match(raw_rule.and_then(|r| r.route_match.as_ref()));
            let named = raw_rule
                .and_then(|r| r.requirement_name.as_deref())
                .map(|n| format!("requirement {} = ", quoted(n, 80)))
                .unwrap_or_default();
            match policy.rules.get(i).and_then(|rule| rule.requires.as_ref()) {
                None => out.out(format!("  rules[{i}] {m} matched → no token required")),
                Some(r) => out.out(format!(
                    "  rules[{i}] {m} matched → {named}{}",
                    describe::requirement(policy, r)
                )),
            }
        }
    }
}

/// One step's outcome, for the provider trace.
struct Steps<'o> {
    out: &'o mut Output,
    first_failure: Option<(String, &'static str)>,
}

impl Steps<'_> {
    fn ok(&mut self, step: &str, text: impl std::fmt::Display) {
        let note = if self.first_failure.is_some() {
            "  (not reached)"
        } else {
            ""
        };
        self.out.out(format!("  [ok]   {step}: {text}{note}"));
    }

    fn fail(&mut self, step: &'static str, code: &str, text: impl std::fmt::Display) {
        let note = if self.first_failure.is_some() {
            "  (not reached)"
        } else {
            ""
        };
        self.out
            .out(format!("  [FAIL] {step}: {code}: {text}{note}"));
        if self.first_failure.is_none() {
            self.first_failure = Some((code.to_owned(), step));
        }
    }

    fn skip(&mut self, step: &str, text: impl std::fmt::Display) {
        self.out.out(format!("  [--]   {step}: {text}"));
    }
}

fn trace_provider(
    policy: &Policy,
    p: &Provider,
    req: &RequestView<'_>,
    keys: &CliKeys,
    now: u64,
    audience_checks: &[AudienceCheck],
    out: &mut Output,
) {
    out.out(format!("provider {}:", quoted(&p.name, 80)));
    let found = match extract(req, p) {
        Ok(Some(f)) => f,
        Ok(None) => {
            let locs: Vec<String> = p.locations.iter().map(describe::location).collect();
            out.out(format!("  token: not found (looks in {})", locs.join(", ")));
            out.out("  result: token_missing");
            return;
        }
        Err(e) => {
            out.out(format!("  token: {}: {e}", e.code()));
            out.out(format!("  result: {}", e.code()));
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
    out.out(format!(
        "  token: found in {} ({} bytes, {})",
        at.join(", "),
        found.token.len(),
        fingerprint(&found.token)
    ));
    let token = match UntrustedToken::parse(&found.token, p.max_token_bytes) {
        Ok(t) => t,
        Err(e) => {
            out.out(format!("  [FAIL] parse: {}: {e}", e.code()));
            out.out(format!("  result: {}", e.code()));
            return;
        }
    };
    let h = token.header();
    out.out(format!(
        "  header: alg {}, kid {}, typ {}",
        quoted(&h.alg, 40),
        h.kid
            .as_deref()
            .map_or("(none)".to_owned(), |k| quoted(k, 80)),
        h.typ
            .as_deref()
            .map_or("(none)".to_owned(), |t| quoted(t, 40)),
    ));
    let sig_len = found.token.rsplit('.').next().map_or(0, str::len);
    out.out(format!(
        "  signature: {sig_len} base64url characters (not shown)"
    ));
    print_claims(token.unverified_claims(), now, out);

    let mut steps = Steps {
        out,
        first_failure: None,
    };
    let allowed: Vec<&str> = p.algorithms.iter().map(|a| a.name()).collect();
    let alg = match token.allowed_alg(&p.algorithms) {
        Ok(a) => {
            steps.ok("alg", format!("{a} is allowed ({})", allowed.join(" ")));
            Some(a)
        }
        Err(e) => {
            steps.fail(
                "alg",
                e.code(),
                format!(
                    "{} is not in the allow-list ({})",
                    quoted(&h.alg, 40),
                    allowed.join(" ")
                ),
            );
            None
        }
    };
    let claims_u = token.unverified_claims();
    match (claims::check_issuer(claims_u, p), &p.issuer) {
        (Ok(()), None) => steps.ok("issuer", "no issuer configured: any iss accepted"),
        (Ok(()), Some(i)) => steps.ok("issuer", format!("iss is {}", quoted(i, 200))),
        (Err(e), Some(i)) => steps.fail(
            "issuer",
            e.code(),
            format!("{e}; expected {}", quoted(i, 200)),
        ),
        (Err(e), None) => steps.fail("issuer", e.code(), e),
    }
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
    match claims::check_times(claims_u, p, now) {
        Ok(()) => steps.ok("time", format!("valid at now ({rules})")),
        Err(e) => steps.fail("time", e.code(), format!("{e} ({rules})")),
    }

    let remote = matches!(policy.jwks_sources.get(p.jwks), Some(JwksSource::Remote(_)));
    let set = match keys.keys(p.jwks) {
        KeyState::Ready(set) => {
            let from = if remote {
                "--jwks (for remote_jwks)"
            } else {
                "local_jwks"
            };
            steps.ok("keys", format!("{} usable keys from {from}", set.len()));
            Some(set)
        }
        KeyState::Pending | KeyState::Unavailable => {
            steps.fail(
                "keys",
                "jwks_unavailable",
                format!(
                    "keys unavailable: {} is not fetched by explain; pass --jwks FILE",
                    describe::key_source(policy, p)
                ),
            );
            None
        }
    };
    let verified = match set {
        None => {
            steps.skip("key selection", "no keys");
            steps.skip("signature", "not checked (no keys)");
            None
        }
        Some(set) => {
            // Select as the filter does; with an alg off the allow-list, select by the
            // token's own alg (if it is one) to still show which key it names.
            let select_alg = alg.or_else(|| Algorithm::parse(&h.alg));
            match select_alg {
                None => steps.skip(
                    "key selection",
                    format!("{} is not an algorithm", quoted(&h.alg, 40)),
                ),
                Some(sa) => match set.select(h.kid.as_deref(), sa) {
                    Ok(found) => {
                        let names: Vec<String> = found
                            .iter()
                            .map(|k| {
                                format!(
                                    "{} {}{}",
                                    k.kid
                                        .as_deref()
                                        .map_or("(no kid)".to_owned(), |k| quoted(k, 80)),
                                    family_name(k.family()),
                                    k.alg().map(|a| format!(" alg {a}")).unwrap_or_default()
                                )
                            })
                            .collect();
                        let how = match &h.kid {
                            Some(k) => format!("kid {} →", quoted(k, 80)),
                            None => format!("no kid: every key for {sa} →"),
                        };
                        steps.ok("key selection", format!("{how} {}", names.join(", ")));
                    }
                    Err(e) => steps.fail("key selection", e.code(), e),
                },
            }
            match alg {
                None => {
                    steps.skip("signature", "not checked (alg not allowed)");
                    None
                }
                Some(_) => match token.clone().verify(set, &p.algorithms) {
                    Ok(v) => {
                        steps.ok("signature", "verified");
                        Some(v)
                    }
                    Err(e) if e.code() == "bad_signature" => {
                        steps.fail("signature", e.code(), e);
                        None
                    }
                    // Selection failed: already reported.
                    Err(_) => {
                        steps.skip("signature", "not checked (no key selected)");
                        None
                    }
                },
            }
        }
    };
    let claims_for_rest: &Map<String, Value> = match &verified {
        Some(v) => v.claims(),
        None => claims_u,
    };
    match (&p.subjects, claims::check_subject(claims_for_rest, p)) {
        (None, _) => steps.ok("subject", "no subject matcher"),
        (Some(_), Ok(())) => steps.ok("subject", "sub matches the subjects matcher"),
        (Some(_), Err(e)) => steps.fail("subject", e.code(), e),
    }
    match (p.revoked.is_empty(), p.revoked.revokes(claims_for_rest)) {
        (true, _) => steps.ok("revocation", "no inline deny-list"),
        (false, false) => steps.ok("revocation", "jti and sub are not on the inline deny-list"),
        (false, true) => steps.fail("revocation", "token_revoked", AuthError::TokenRevoked),
    }
    if let Some(list) = p.revocation_list {
        match keys.revocation_list(list) {
            ListState::Ready(r) if r.revokes(claims_for_rest) => steps.fail(
                "revocation",
                "token_revoked",
                "jti or sub is on the remote revocation list (--revocation-list)",
            ),
            ListState::Ready(r) => steps.ok(
                "revocation",
                format!(
                    "jti and sub are not on the remote revocation list ({} entries from \
                     --revocation-list)",
                    r.len()
                ),
            ),
            ListState::Pending | ListState::Unavailable => steps.fail(
                "revocation",
                "revocation_unavailable",
                "the remote revocation list is not fetched by explain; pass \
                 --revocation-list FILE",
            ),
        }
    }
    // The filter checks these only once the provider verified, per requirement that names it.
    for check in audience_checks {
        let AudienceCheck::Require {
            audiences,
            scopes,
            claims: required,
        } = check
        else {
            steps.skip("audience", "not checked (reached through allow_missing)");
            continue;
        };
        let (wanted, whose): (&[String], &str) = match audiences {
            None => (&p.audiences, "provider's audiences"),
            Some(a) => (a.as_slice(), "requirement's audiences"),
        };
        if wanted.is_empty() {
            steps.ok(
                "audience",
                format!("no audiences configured ({whose}): any aud accepted"),
            );
        } else {
            match claims::check_audience(claims_for_rest, wanted) {
                Ok(()) => steps.ok(
                    "audience",
                    format!("aud contains one of {} ({whose})", describe::list(wanted)),
                ),
                Err(e) => steps.fail(
                    "audience",
                    e.code(),
                    format!("{e}; wanted one of {} ({whose})", describe::list(wanted)),
                ),
            }
        }
        if !scopes.is_empty() {
            match claims::check_scopes(claims_for_rest, scopes) {
                Ok(()) => steps.ok(
                    "scopes",
                    format!("has every scope of {}", describe::list(scopes)),
                ),
                Err(e) => steps.fail("scopes", e.code(), e),
            }
        }
        for r in required {
            match claims::check_required_claims(claims_for_rest, std::slice::from_ref(r)) {
                Ok(()) => steps.ok(
                    "claim",
                    format!("{} has a required value", quoted(&r.name, 80)),
                ),
                Err(e) => {
                    let values: Vec<String> = r.values.iter().map(json_short).collect();
                    steps.fail(
                        "claim",
                        e.code(),
                        format!("{e}; wanted one of [{}]", values.join(", ")),
                    )
                }
            }
        }
    }
    match steps.first_failure.take() {
        None => steps.out.out("  result: verified"),
        Some((code, step)) => steps.out.out(format!(
            "  result: {code} (the filter stops at the first failure: {step})"
        )),
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
