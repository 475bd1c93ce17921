//! Key sources and revocation lists: `remote_jwks`, `local_jwks`, `revocation_list` and
//! their `http_uri`, shared between providers by (document, uri, cluster).

use std::collections::BTreeMap;
use std::sync::Arc;

use super::{join, non_empty, only_default, required, Result, MAX_FETCH_TIMEOUT_MS};
use crate::authn::b64;
use crate::authn::config::error::ConfigError;
use crate::authn::config::raw;
use crate::authn::jwk::{parse_jwks, JwksError, JwksOptions, SkippedKey};
use crate::authn::policy::{
    Document, JwksId, JwksSource, RemoteJwks, DEFAULT_CACHE_DURATION_SECONDS,
    DEFAULT_FETCH_TIMEOUT_MS, DEFAULT_MAX_STALE_MS, DEFAULT_REFETCH_INTERVAL_MS,
    DEFAULT_REVOCATION_CACHE_SECONDS, DEFAULT_REVOCATION_MAX_STALE_MS, DEFAULT_WAIT_TIMEOUT_MS,
};
use crate::time::Millis;

/// `cache_duration` must be below this (jwt_authn's bound).
const MAX_CACHE_DURATION_SECONDS: u64 = 9_000_000_000;

/// Key sources, with remote ones shared by (uri, cluster).
#[derive(Default)]
pub(super) struct Sources {
    pub(super) list: Vec<JwksSource>,
    /// (document, uri, cluster) → (source, first provider using it).
    remote: BTreeMap<(Document, String, String), (JwksId, String)>,
}

/// Splits an `http(s)://authority/path?query` URI into authority and path (`/` when empty).
pub(crate) fn split_uri(uri: &str) -> std::result::Result<(String, String), String> {
    if uri
        .chars()
        .any(|c| c.is_whitespace() || c.is_control() || !c.is_ascii())
    {
        return Err("must not contain spaces, control or non-ASCII characters".into());
    }
    let rest = ["https://", "http://"]
        .iter()
        .find_map(|scheme| {
            uri.get(..scheme.len())
                .filter(|head| head.eq_ignore_ascii_case(scheme))
                .and_then(|_| uri.get(scheme.len()..))
        })
        .ok_or_else(|| format!("{uri:?} is not an http:// or https:// URI"))?;
    if rest.contains('#') {
        return Err("must not have a #fragment".into());
    }
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest
        .split_at_checked(end)
        .ok_or_else(|| format!("{uri:?} is not a valid URI"))?;
    check_authority(authority)?;
    let path = if tail.is_empty() {
        "/".to_string()
    } else if tail.starts_with('?') {
        format!("/{tail}")
    } else {
        tail.to_string()
    };
    Ok((authority.to_string(), path))
}

pub(super) fn check_authority(authority: &str) -> std::result::Result<(), String> {
    if authority.is_empty() {
        return Err("has no host".into());
    }
    if authority.contains('@') {
        return Err("must not contain user information (user@host)".into());
    }
    let (host_ok, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (addr, after) = v6
            .split_once(']')
            .ok_or("has an unterminated IPv6 address")?;
        let ok = !addr.is_empty()
            && addr
                .chars()
                .all(|c| c.is_ascii_hexdigit() || ":.".contains(c));
        let port = match after {
            "" => None,
            _ => Some(
                after
                    .strip_prefix(':')
                    .ok_or("has junk after the IPv6 address")?,
            ),
        };
        (ok, port)
    } else {
        let (host, port) = match authority.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        };
        let ok = !host.is_empty()
            && host
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-._".contains(c));
        (ok, port)
    };
    if !host_ok {
        return Err(format!("{authority:?} is not a valid host"));
    }
    if let Some(port) = port {
        let valid = !port.is_empty()
            && port.bytes().all(|b| b.is_ascii_digit())
            && port.parse::<u16>().is_ok_and(|p| p != 0);
        if !valid {
            return Err(format!("{port:?} is not a valid port"));
        }
    }
    Ok(())
}

/// `http_uri` of a remote source: (uri, cluster, authority, path, timeout).
pub(super) struct Fetch {
    uri: String,
    cluster: String,
    authority: String,
    path: String,
    timeout_ms: Millis,
}

pub(super) fn compile_http_uri(http: Option<&raw::HttpUri>, path: &str) -> Result<Fetch> {
    let http = required(&http, path, "http_uri")?;
    let hpath = join(path, "http_uri");
    let uri = non_empty(required(&http.uri, &hpath, "uri")?, &join(&hpath, "uri"))?;
    let (authority, fetch_path) =
        split_uri(uri).map_err(|m| ConfigError::new(join(&hpath, "uri"), m))?;
    let cluster = non_empty(
        required(&http.cluster, &hpath, "cluster")?,
        &join(&hpath, "cluster"),
    )?;
    let timeout_ms = match &http.timeout {
        None => DEFAULT_FETCH_TIMEOUT_MS,
        Some(d) => u64::try_from(d.0.as_millis())
            .ok()
            .filter(|ms| (1..=MAX_FETCH_TIMEOUT_MS).contains(ms))
            .ok_or_else(|| {
                ConfigError::new(
                    join(&hpath, "timeout"),
                    format!(
                        "must be between 0.001s and {}s",
                        MAX_FETCH_TIMEOUT_MS / 1000
                    ),
                )
            })?,
    };
    Ok(Fetch {
        uri: uri.to_string(),
        cluster: cluster.to_string(),
        authority,
        path: fetch_path,
        timeout_ms: Millis(timeout_ms),
    })
}

/// `cache_duration`, whole seconds (`default` when absent).
pub(super) fn cache_seconds(
    d: &Option<raw::ProtoDuration>,
    path: &str,
    default: u64,
) -> Result<Millis> {
    match d {
        None => Ok(Millis::from_secs(default)),
        Some(d) => Some(d.0.as_secs())
            .filter(|s| (1..MAX_CACHE_DURATION_SECONDS).contains(s))
            .map(Millis::from_secs)
            .ok_or_else(|| {
                ConfigError::new(
                    join(path, "cache_duration"),
                    format!("must be at least 1s and below {MAX_CACHE_DURATION_SECONDS}s"),
                )
            }),
    }
}

/// An optional duration field, within `min..=max` milliseconds (`default` when absent).
pub(super) fn duration_ms(
    d: &Option<raw::ProtoDuration>,
    path: &str,
    field: &str,
    default: u64,
    min: u64,
    max: u64,
) -> Result<Millis> {
    match d {
        None => Ok(Millis(default)),
        Some(d) => u64::try_from(d.0.as_millis())
            .ok()
            .filter(|v| (min..=max).contains(v))
            .map(Millis)
            .ok_or_else(|| {
                // Not `min as f64 / 1000.0`: f64's Display would bring ~18 KB of float
                // formatting into the module.
                let min_s = match min % 1000 {
                    0 => (min / 1000).to_string(),
                    ms => format!("{}.{ms:03}", min / 1000),
                };
                ConfigError::new(
                    join(path, field),
                    format!("must be between {min_s}s and {}s", max / 1000),
                )
            }),
    }
}

/// Longest `max_stale` accepted: 30 days.
pub(super) const MAX_STALE_LIMIT_MS: u64 = 30 * 24 * 3600 * 1000;
/// Longest `request_wait_timeout` accepted.
pub(super) const MAX_WAIT_TIMEOUT_MS: u64 = 60_000;

#[inline(never)] // one TurboFan zone per part (mk/wasm-opt.mk)
pub(super) fn compile_remote_jwks(
    r: &raw::RemoteJwks,
    path: &str,
    provider: &str,
    issuer: Option<&str>,
    sources: &mut Sources,
) -> Result<JwksId> {
    let fetch = compile_http_uri(r.http_uri.as_ref(), path)?;
    let cache_duration = cache_seconds(&r.cache_duration, path, DEFAULT_CACHE_DURATION_SECONDS)?;
    let max_stale_ms = duration_ms(
        &r.max_stale,
        path,
        "max_stale",
        DEFAULT_MAX_STALE_MS,
        0,
        MAX_STALE_LIMIT_MS,
    )?;
    let refetch_interval_ms = duration_ms(
        &r.unknown_kid_refetch_interval,
        path,
        "unknown_kid_refetch_interval",
        DEFAULT_REFETCH_INTERVAL_MS,
        1_000,
        24 * 3600 * 1000,
    )?;
    let wait_timeout_ms = duration_ms(
        &r.request_wait_timeout,
        path,
        "request_wait_timeout",
        DEFAULT_WAIT_TIMEOUT_MS,
        0,
        MAX_WAIT_TIMEOUT_MS,
    )?;
    let discovery_issuer = if r.discovery.unwrap_or(false) {
        match issuer {
            Some(iss) => Some(iss.to_string()),
            None => return Err(ConfigError::new(
                join(path, "discovery"),
                "OIDC discovery needs the provider's issuer: the discovered issuer must equal it",
            )),
        }
    } else {
        None
    };
    let remote = RemoteJwks {
        document: Document::Jwks,
        uri: fetch.uri,
        cluster: fetch.cluster,
        authority: fetch.authority,
        path: fetch.path,
        timeout_ms: fetch.timeout_ms,
        cache_duration,
        max_stale_ms,
        refetch_interval_ms,
        wait_timeout_ms,
        discovery_issuer,
    };
    add_remote(remote, path, provider, sources)
}

/// Extension: a provider's remote revocation list.
#[inline(never)] // one TurboFan zone per part (mk/wasm-opt.mk)
pub(super) fn compile_revocation_list(
    r: &raw::RevocationList,
    path: &str,
    provider: &str,
    sources: &mut Sources,
) -> Result<JwksId> {
    let fetch = compile_http_uri(r.http_uri.as_ref(), path)?;
    let remote = RemoteJwks {
        document: Document::RevocationList,
        uri: fetch.uri,
        cluster: fetch.cluster,
        authority: fetch.authority,
        path: fetch.path,
        timeout_ms: fetch.timeout_ms,
        cache_duration: cache_seconds(&r.cache_duration, path, DEFAULT_REVOCATION_CACHE_SECONDS)?,
        max_stale_ms: duration_ms(
            &r.max_stale,
            path,
            "max_stale",
            DEFAULT_REVOCATION_MAX_STALE_MS,
            0,
            MAX_STALE_LIMIT_MS,
        )?,
        // Not used: a revocation list has no `kid` to be missing from.
        refetch_interval_ms: Millis(DEFAULT_REFETCH_INTERVAL_MS),
        wait_timeout_ms: duration_ms(
            &r.request_wait_timeout,
            path,
            "request_wait_timeout",
            DEFAULT_WAIT_TIMEOUT_MS,
            0,
            MAX_WAIT_TIMEOUT_MS,
        )?,
        discovery_issuer: None,
    };
    add_remote(remote, path, provider, sources)
}

/// Registers a remote source, sharing an identical one another provider already declared.
pub(super) fn add_remote(
    remote: RemoteJwks,
    path: &str,
    provider: &str,
    sources: &mut Sources,
) -> Result<JwksId> {
    let key = (remote.document, remote.uri.clone(), remote.cluster.clone());
    if let Some((id, first)) = sources.remote.get(&key) {
        return match sources.list.get(*id) {
            Some(JwksSource::Remote(existing)) if *existing == remote => Ok(*id),
            _ => Err(ConfigError::new(
                path,
                format!(
                    "same uri and cluster as provider {first:?} but different settings \
                     (timeout, cache_duration, max_stale, ...): providers sharing a {} must \
                     agree",
                    match remote.document {
                        Document::Jwks => "key set",
                        Document::RevocationList => "revocation list",
                    }
                ),
            )),
        };
    }
    let id = sources.list.len();
    sources.list.push(JwksSource::Remote(remote));
    sources.remote.insert(key, (id, provider.to_string()));
    Ok(id)
}

#[inline(never)] // one TurboFan zone per part (mk/wasm-opt.mk)
pub(super) fn compile_local_jwks(
    l: &raw::DataSource,
    path: &str,
    sources: &mut Sources,
) -> Result<JwksId> {
    let wasm = "not supported in a Wasm filter: use inline_string";
    only_default(path, "filename", &l.filename, wasm)?;
    only_default(path, "environment_variable", &l.environment_variable, wasm)?;
    let (bytes, bpath) = match (&l.inline_string, &l.inline_bytes) {
        (Some(_), Some(_)) => {
            return Err(ConfigError::new(
                path,
                "set one of inline_string and inline_bytes, not both",
            ))
        }
        (None, None) => {
            return Err(ConfigError::new(
                path,
                "local_jwks needs the key set in inline_string",
            ))
        }
        (Some(s), None) => (s.as_bytes().to_vec(), join(path, "inline_string")),
        (None, Some(b)) => {
            let bpath = join(path, "inline_bytes");
            let bytes = b64::decode_standard(b)
                .map_err(|e| ConfigError::new(&bpath, format!("not valid base64: {e}")))?;
            (bytes, bpath)
        }
    };
    let load = parse_jwks(
        &bytes,
        JwksOptions {
            allow_symmetric: true,
        },
    )
    .map_err(|e| ConfigError::new(&bpath, describe_jwks_error(&e)))?;
    for skipped in &load.skipped {
        log::warn!("{bpath}: {}", describe_skipped(skipped));
    }
    let id = sources.list.len();
    sources.list.push(JwksSource::Local(Arc::new(load.keys)));
    Ok(id)
}

pub(super) fn describe_skipped(k: &SkippedKey) -> String {
    match &k.kid {
        Some(kid) => format!("key {} (kid {kid:?}) skipped: {}", k.index, k.reason),
        None => format!("key {} skipped: {}", k.index, k.reason),
    }
}

pub(super) fn describe_jwks_error(e: &JwksError) -> String {
    match e {
        JwksError::NotJson(why) => format!("not a JSON Web Key Set: {why}"),
        JwksError::NoKeysArray => "not a JSON Web Key Set: no \"keys\" array".to_string(),
        JwksError::NoUsableKey(skipped) => {
            let why: Vec<String> = skipped.iter().map(describe_skipped).collect();
            if why.is_empty() {
                "the key set has no usable key (\"keys\" is empty)".to_string()
            } else {
                format!("the key set has no usable key: {}", why.join("; "))
            }
        }
        JwksError::TooLarge(n) => format!("the key set is too large ({n} bytes)"),
    }
}
