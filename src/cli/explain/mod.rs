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

mod steps;

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use sha2::{Digest, Sha256};

use super::args::{self, Args, Opt};
use super::timefmt::utc;
use super::{describe, one_line, quoted, read_text, CliError, Output, Stdin};
use crate::authn::authenticate::{
    decide_recorded, select_requirement, KeyLookup, KeyState, ListState,
};
use crate::authn::config::{self, raw};
use crate::authn::extract::extract;
use crate::authn::jwk::{parse_jwks, JwksOptions, KeySet};
use crate::authn::policy::{
    Document, JwksId, JwksSource, Policy, ProviderId, Requirement, Revocation, TokenLocation,
};
use crate::authn::request::RequestView;
use crate::authn::revocation::parse_revocation_list;
use crate::authn::sender::mtls::ClientCertificate;
use crate::authn::token_cache::TokenCache;
use crate::time::UnixMillis;
use steps::Printer;

const HELP: &str = "\
Usage: jwt-edge explain --config FILE [--token TOKEN|@FILE] [--jwks FILE] [--path /p]
                        [--method GET] [--header 'name: value']... [--route-name NAME]
                        [--revocation-list FILE] [--client-cert CERT.pem] [--now UNIX_SECONDS]

Shows the decision the filter takes for a request and the steps the filter's own code took
to reach it: the rule or per_route entry that matched, and for each provider it looked at
where the token was found, its header and (unverified) claims, then each check in the
filter's order up to the first failure (alg allow-list, issuer, time, keys, key selection,
signature, subject, revocation, audience, scopes, claims), each requirement's outcome, and the
decision (status, code, WWW-Authenticate, headers set and removed). The token and its
signature are never printed, only their length and a SHA-256 fingerprint.

  --config FILE       filter config JSON (- for stdin)
  --token TOKEN       the token, or @FILE to read it from a file (@- for stdin); it is placed
                      where the first provider the requirement names looks first (usually
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
  --client-cert FILE  the client certificate (PEM) on the connection, for providers with
                      sender_constraint.mtls; without it the connection has none
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
    const OPTS: [Opt; 11] = [
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
        args::value("client-cert"),
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
    let now = UnixMillis::from_secs(match a.one("now") {
        Some(n) => args::number("now", n)?,
        None => system_now()?,
    });
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

    let client_cert = a
        .one("client-cert")
        .map(super::keys::load_certificate)
        .transpose()?;

    let mut trace = Output::default();
    let mut secrets = token.as_deref().map(secrets_of).unwrap_or_default();
    let code = explain(
        &Request {
            method: &method.to_ascii_uppercase(),
            path,
            headers: a.all("header"),
            route_name: a.one("route-name"),
            authority: a.one("authority"),
            client_cert: client_cert.as_deref(),
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
    /// The DER of `--client-cert`.
    client_cert: Option<&'a [u8]>,
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
    now: UnixMillis,
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
    if let Some(der) = r.client_cert {
        out.out(format!(
            "  client certificate: x5t#S256 {}",
            super::keys::certificate_thumbprint(der)
        ));
    }
    let req = RequestView::new(&headers, route_name)
        .with_client_certificate(r.client_cert.map(ClientCertificate::Der));
    // Whatever any provider would take for a token is never printed either.
    for p in &policy.providers {
        if let Ok(Some(found)) = extract(&req, p) {
            secrets.extend(secrets_of(&found.token));
        }
    }
    out.out(format!(
        "  now: {} ({})",
        now.as_secs(),
        utc(now.as_secs() as f64).unwrap_or_default()
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
    let mut printer = Printer::new(policy, raw, route_name, now, out);
    printer.payload = token.and_then(|t| t.split('.').nth(1));
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
