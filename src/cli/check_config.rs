//! `jwt-edge check-config`: the filter's own config parser, a summary, and warnings for
//! settings that are legal but weaken what the filter guarantees.

use super::args::{self, Args, Opt};
use super::timefmt::span;
use super::{describe, quoted, read_text, CliError, Output, Stdin};
use crate::authn::config::{self, raw};
use crate::authn::jwk::{parse_jwks, JwksOptions};
use crate::authn::policy::{
    Document, JwksSource, Policy, RouteOverride, DEFAULT_REVOCATION_CACHE_SECONDS,
    DEFAULT_REVOCATION_MAX_STALE_MS,
};

/// `cache_duration` above this keeps a revoked key trusted for too long.
const MAX_QUIET_CACHE_SECONDS: u64 = 24 * 3600;
/// A remote revocation list older than this (cache_duration + max_stale) is worth a warning.
const MAX_QUIET_REVOCATION_LAG_SECONDS: u64 = 24 * 3600;
/// `clock_skew_seconds` above this extends every token's life noticeably.
const MAX_QUIET_SKEW_SECONDS: u64 = 300;

const HELP: &str = "\
Usage: jwt-edge check-config [--strict] [--quiet] FILE

Parses a filter config (FILE, or - for stdin) exactly as the filter does. On error prints
`error: <json.path>: <message>` and exits 1. Otherwise prints a summary of providers, key
sources and rules, and warnings (`warning: <json.path>: <text>`, on stderr) for risky but
legal settings: no issuer, no audiences, HS* algorithms, forward: true, cache_duration over
24h, a revocation_list that may lag over 24h, allow_missing_or_failed, require_expiration: false, clock_skew_seconds over 300, and
local_jwks keys the filter skips.

  --strict    exit 2 when there are warnings
  --quiet     no summary; errors and warnings only";

/// One warning: where, and why it matters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    pub path: String,
    pub text: String,
}

/// `jwt-edge check-config`.
pub fn run(argv: &[String], stdin: Stdin<'_>, out: &mut Output) -> Result<u8, CliError> {
    const OPTS: [Opt; 2] = [args::switch("strict"), args::switch("quiet")];
    let a = Args::parse("check-config", argv, &OPTS)?;
    if a.help {
        out.out(HELP);
        return Ok(0);
    }
    a.at_most_positionals(1)?;
    let path = a
        .positionals
        .first()
        .ok_or_else(|| CliError::usage("give a config FILE, or - for stdin"))?;
    let text = read_text("config", path, stdin)?;
    let policy = match config::parse(&text) {
        Ok(p) => p,
        Err(e) => {
            out.err(format!(
                "error: {}: {}",
                e.path,
                super::one_line(&e.message)
            ));
            return Ok(1);
        }
    };
    // Phase 1 succeeded inside `parse`, so this cannot fail; the error arm is only for form.
    let raw = config::parse_raw(&text)
        .map_err(|e| CliError::usage(format!("{}: {}", e.path, e.message)))?;
    let warnings = warnings(&raw, &policy);
    if !a.flag("quiet") {
        summary(path, &raw, &policy, warnings.len(), out);
    }
    for w in &warnings {
        out.err(format!("warning: {}: {}", w.path, w.text));
    }
    Ok(if a.flag("strict") && !warnings.is_empty() {
        2
    } else {
        0
    })
}

fn summary(
    path: &str,
    raw: &raw::JwtAuthentication,
    policy: &Policy,
    warnings: usize,
    out: &mut Output,
) {
    let name = if path == "-" { "stdin" } else { path };
    out.out(format!("{name}: valid"));
    out.out(format!("providers ({}):", policy.providers.len()));
    for p in &policy.providers {
        out.out(format!("  {}: {}", p.name, describe::provider(policy, p)));
    }
    let count =
        |want: fn(&JwksSource) -> bool| policy.jwks_sources.iter().filter(|s| want(s)).count();
    let local = count(|s| matches!(s, JwksSource::Local(_)));
    let lists =
        count(|s| matches!(s, JwksSource::Remote(r) if r.document == Document::RevocationList));
    let keys = policy.jwks_sources.len() - lists;
    out.out(format!(
        "key sources: {keys} ({} remote, {local} local)",
        keys - local
    ));
    if lists > 0 {
        out.out(format!("remote revocation lists: {lists}"));
    }
    out.out(format!("rules ({}):", policy.rules.len()));
    for (i, rule) in policy.rules.iter().enumerate() {
        let raw_rule = raw.rules.get(i);
        let named = raw_rule
            .and_then(|r| r.requirement_name.as_deref())
            .map(|n| format!("requirement {} = ", quoted(n, 80)))
            .unwrap_or_default();
        let req = match &rule.requires {
            Some(r) => format!("{named}{}", describe::requirement(policy, r)),
            None => "no token required".to_owned(),
        };
        out.out(format!(
            "  rules[{i}] {} → {req}",
            describe::route_match(raw_rule.and_then(|r| r.route_match.as_ref()))
        ));
    }
    if !policy.per_route.is_empty() {
        out.out(format!("per_route ({}):", policy.per_route.len()));
        for (route, over) in &policy.per_route {
            let named = raw
                .per_route
                .0
                .get(route)
                .and_then(|o| o.requirement_name.as_deref())
                .map(|n| format!("requirement {} = ", quoted(n, 80)))
                .unwrap_or_default();
            let what = match over {
                RouteOverride::Disabled => "disabled (no token required)".to_owned(),
                RouteOverride::Require(r) => format!("{named}{}", describe::requirement(policy, r)),
            };
            out.out(format!("  {} → {what}", quoted(route, 80)));
        }
    }
    if policy.bypass_cors_preflight {
        out.out("CORS preflight requests bypass authentication");
    }
    if !policy.identity_headers.is_empty() {
        out.out(format!(
            "identity headers (removed from every incoming request): {}",
            policy.identity_headers.join(", ")
        ));
    }
    if let Some(line) = describe::published(policy) {
        out.out(line);
    }
    out.out(format!("warnings: {warnings}"));
}

/// Every warning for a valid config, in document order of providers then requirements.
pub fn warnings(raw: &raw::JwtAuthentication, policy: &Policy) -> Vec<Warning> {
    let mut w = Vec::new();
    let mut warn = |path: String, text: String| w.push(Warning { path, text });
    let providers = raw.providers.as_ref().map(|p| &p.0);
    for (name, p) in providers.into_iter().flatten() {
        let base = format!("providers.{name}");
        let compiled = policy.providers.iter().find(|c| &c.name == name);
        if p.issuer.is_none() {
            warn(
                format!("{base}.issuer"),
                "not set: a token from any issuer is accepted if these keys verify it".into(),
            );
        }
        if p.audiences.is_empty() {
            warn(
                format!("{base}.audiences"),
                "not set: a token meant for any audience (another service) is accepted, unless a requirement names audiences".into(),
            );
        }
        for (i, alg) in p.algorithms.iter().flatten().enumerate() {
            if alg.starts_with("HS") {
                warn(
                    format!("{base}.algorithms[{i}]"),
                    format!("{alg} uses a shared secret: whoever can verify these tokens can also mint them"),
                );
            }
        }
        if compiled.is_some_and(|c| c.sender.dpop == crate::authn::policy::DpopMode::Optional) {
            warn(
                format!("{base}.sender_constraint.dpop"),
                "\"optional\": unbound Bearer tokens are still accepted; set \"required\" once every client sends DPoP".into(),
            );
        }
        if compiled.is_some_and(|c| c.sender.mtls == crate::authn::policy::MtlsMode::Optional) {
            warn(
                format!("{base}.sender_constraint.mtls"),
                "\"optional\": tokens without cnf.x5t#S256 are still accepted from any client; set \"required\" once every token is certificate-bound".into(),
            );
        }
        if p.forward {
            warn(
                format!("{base}.forward"),
                "true: the token is passed upstream, where any service that sees it can replay it"
                    .into(),
            );
        }
        if let Some(d) = p.remote_jwks.as_ref().and_then(|r| r.cache_duration) {
            let secs = d.0.as_secs();
            if secs > MAX_QUIET_CACHE_SECONDS {
                warn(
                    format!("{base}.remote_jwks.cache_duration"),
                    format!(
                        "{}: a revoked or rotated-out key stays trusted that long (over 24h)",
                        span(secs)
                    ),
                );
            }
        }
        if let Some(r) = &p.revocation_list {
            let stale_after = |d: &Option<raw::ProtoDuration>, default: u64| {
                d.as_ref().map_or(default, |d| d.0.as_secs())
            };
            let secs = stale_after(&r.cache_duration, DEFAULT_REVOCATION_CACHE_SECONDS)
                + stale_after(&r.max_stale, DEFAULT_REVOCATION_MAX_STALE_MS / 1000);
            if secs > MAX_QUIET_REVOCATION_LAG_SECONDS {
                warn(
                    format!("{base}.revocation_list"),
                    format!(
                        "cache_duration + max_stale is {}: a newly revoked token may stay \
                         accepted that long (over 24h)",
                        span(secs)
                    ),
                );
            }
        }
        if let Some(c) = compiled {
            if !c.require_expiration {
                warn(
                    format!("{base}.require_expiration"),
                    "false: a token without exp is accepted and never expires".into(),
                );
            }
            if c.clock_skew.as_secs() > MAX_QUIET_SKEW_SECONDS {
                warn(
                    format!("{base}.clock_skew_seconds"),
                    format!(
                        "{}: expired tokens stay accepted {} past exp (over 300)",
                        c.clock_skew.as_secs(),
                        span(c.clock_skew.as_secs())
                    ),
                );
            }
        }
        if let Some(local) = &p.local_jwks {
            let (field, doc) = match (&local.inline_string, &local.inline_bytes) {
                (Some(s), _) => ("inline_string", Some(s.as_bytes().to_vec())),
                (None, Some(b)) => ("inline_bytes", crate::authn::b64::decode_standard(b).ok()),
                (None, None) => ("", None),
            };
            let load = doc.and_then(|d| {
                parse_jwks(
                    &d,
                    JwksOptions {
                        allow_symmetric: true,
                    },
                )
                .ok()
            });
            for s in load.iter().flat_map(|l| l.skipped.iter()) {
                let kid = s
                    .kid
                    .as_deref()
                    .map(|k| format!(" (kid {})", quoted(k, 64)))
                    .unwrap_or_default();
                warn(
                    format!("{base}.local_jwks.{field}"),
                    format!("key {}{kid} is skipped: {}", s.index, s.reason),
                );
            }
        }
    }

    let lenient: Vec<&String> = raw
        .requirement_map
        .0
        .iter()
        .filter(|(_, r)| !or_failed_paths(r, "").is_empty())
        .map(|(n, _)| n)
        .collect();
    for (name, r) in &raw.requirement_map.0 {
        for p in or_failed_paths(r, &format!("requirement_map.{name}")) {
            warn(p, OR_FAILED.into());
        }
    }
    for (i, rule) in raw.rules.iter().enumerate() {
        if let Some(r) = &rule.requires {
            for p in or_failed_paths(r, &format!("rules[{i}].requires")) {
                warn(p, OR_FAILED.into());
            }
        }
        if let Some(n) = &rule.requirement_name {
            if lenient.contains(&n) {
                warn(
                    format!("rules[{i}].requirement_name"),
                    format!("{}: {OR_FAILED}", quoted(n, 80)),
                );
            }
        }
    }
    for (route, o) in &raw.per_route.0 {
        if let Some(n) = &o.requirement_name {
            if lenient.contains(&n) {
                warn(
                    format!("per_route.{route}.requirement_name"),
                    format!("{}: {OR_FAILED}", quoted(n, 80)),
                );
            }
        }
    }
    w
}

const OR_FAILED: &str =
    "allow_missing_or_failed lets requests through with a missing, expired or forged token; upstream must check the identity headers itself";

/// Paths of every `allow_missing_or_failed` in a requirement tree.
fn or_failed_paths(r: &raw::JwtRequirement, base: &str) -> Vec<String> {
    let mut found = Vec::new();
    if r.allow_missing_or_failed.is_some() {
        found.push(join(base, "allow_missing_or_failed"));
    }
    for (field, list) in [
        ("requires_any", &r.requires_any),
        ("requires_all", &r.requires_all),
    ] {
        for (i, child) in list.iter().flat_map(|l| l.requirements.iter()).enumerate() {
            found.extend(or_failed_paths(
                child,
                &format!("{}.requirements[{i}]", join(base, field)),
            ));
        }
    }
    found
}

fn join(base: &str, field: &str) -> String {
    if base.is_empty() {
        field.to_owned()
    } else {
        format!("{base}.{field}")
    }
}
