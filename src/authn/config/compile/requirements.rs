//! Requirements: `requires`, `requirement_map` entries, and their `scopes` / `claims`.

use std::collections::BTreeMap;

use super::{exactly_one, join, non_empty, required, unsupported, Result};
use crate::authn::config::error::ConfigError;
use crate::authn::config::raw;
use crate::authn::policy::{ClaimRequirement, ProviderId, Requirement};

/// The `scopes` and `claims` extensions of a requirement.
pub(super) fn compile_authz(
    r: &raw::JwtRequirement,
    path: &str,
    is_provider: bool,
) -> Result<(Vec<String>, Vec<ClaimRequirement>)> {
    if !is_provider && (r.scopes.is_some() || r.claims.is_some()) {
        let field = if r.scopes.is_some() {
            "scopes"
        } else {
            "claims"
        };
        return Err(ConfigError::new(
            join(path, field),
            "applies only next to provider_name or provider_and_audiences",
        ));
    }
    let mut scopes = Vec::new();
    for (i, scope) in r.scopes.iter().flatten().enumerate() {
        let spath = format!("{}[{i}]", join(path, "scopes"));
        if scope.is_empty() || scope.contains(' ') || scope.contains('"') || scope.contains('\\') {
            return Err(ConfigError::new(
                spath,
                "a scope is one non-empty word without spaces, quotes or backslashes (RFC 6749 §3.3)",
            ));
        }
        scopes.push(scope.clone());
    }
    let mut claims = Vec::new();
    for (i, c) in r.claims.iter().flatten().enumerate() {
        let cpath = format!("{}[{i}]", join(path, "claims"));
        let name = non_empty(required(&c.name, &cpath, "name")?, &join(&cpath, "name"))?;
        let values = required(&c.values, &cpath, "values")?;
        if values.is_empty() {
            return Err(ConfigError::new(
                join(&cpath, "values"),
                "must list at least one value",
            ));
        }
        for (j, v) in values.iter().enumerate() {
            if !(v.is_string() || v.is_number() || v.is_boolean()) {
                return Err(ConfigError::new(
                    format!("{}[{j}]", join(&cpath, "values")),
                    "must be a string, a number or a boolean",
                ));
            }
        }
        let path_parts: Vec<String> = name.split('.').map(str::to_owned).collect();
        if path_parts.iter().any(String::is_empty) {
            return Err(ConfigError::new(
                join(&cpath, "name"),
                "has an empty path segment",
            ));
        }
        claims.push(ClaimRequirement {
            name: name.to_owned(),
            path: path_parts,
            values: values.clone(),
        });
    }
    Ok((scopes, claims))
}

#[inline(never)] // one TurboFan zone per part (mk/wasm-opt.mk)
pub(super) fn compile_requirement(
    r: &raw::JwtRequirement,
    path: &str,
    providers: &BTreeMap<String, ProviderId>,
) -> Result<Requirement> {
    unsupported(
        path,
        "extract_only_without_validation",
        &r.extract_only_without_validation,
        ": jwt-edge never uses an unverified token",
    )?;
    exactly_one(
        path,
        "a requirement",
        &[
            ("provider_name", r.provider_name.is_some()),
            ("provider_and_audiences", r.provider_and_audiences.is_some()),
            ("requires_any", r.requires_any.is_some()),
            ("requires_all", r.requires_all.is_some()),
            ("allow_missing", r.allow_missing.is_some()),
            (
                "allow_missing_or_failed",
                r.allow_missing_or_failed.is_some(),
            ),
        ],
    )?;
    let provider_id = |name: &str, npath: String| -> Result<ProviderId> {
        providers.get(name).copied().ok_or_else(|| {
            let known: Vec<&str> = providers.keys().map(String::as_str).collect();
            ConfigError::new(
                npath,
                format!(
                    "no provider named {name:?} (providers: {})",
                    known.join(", ")
                ),
            )
        })
    };
    let is_provider = r.provider_name.is_some() || r.provider_and_audiences.is_some();
    let (scopes, claims) = compile_authz(r, path, is_provider)?;
    if let Some(name) = &r.provider_name {
        return Ok(Requirement::Provider {
            provider: provider_id(name, join(path, "provider_name"))?,
            audiences: None,
            scopes,
            claims,
        });
    }
    if let Some(pa) = &r.provider_and_audiences {
        let ppath = join(path, "provider_and_audiences");
        let name = required(&pa.provider_name, &ppath, "provider_name")?;
        let provider = provider_id(name, join(&ppath, "provider_name"))?;
        if pa.audiences.is_empty() {
            return Err(ConfigError::new(
                join(&ppath, "audiences"),
                "must list at least one audience (use provider_name to keep the provider's)",
            ));
        }
        for (i, aud) in pa.audiences.iter().enumerate() {
            non_empty(aud, &format!("{ppath}.audiences[{i}]"))?;
        }
        return Ok(Requirement::Provider {
            provider,
            audiences: Some(pa.audiences.clone()),
            scopes,
            claims,
        });
    }
    for (field, list, make) in [
        (
            "requires_any",
            &r.requires_any,
            Requirement::Any as fn(Vec<Requirement>) -> Requirement,
        ),
        ("requires_all", &r.requires_all, Requirement::All),
    ] {
        if let Some(list) = list {
            let lpath = format!("{path}.{field}.requirements");
            if list.requirements.len() < 2 {
                return Err(ConfigError::new(
                    lpath,
                    format!(
                        "needs at least 2 requirements (found {})",
                        list.requirements.len()
                    ),
                ));
            }
            let children = list
                .requirements
                .iter()
                .enumerate()
                .map(|(i, c)| compile_requirement(c, &format!("{lpath}[{i}]"), providers))
                .collect::<Result<Vec<_>>>()?;
            return Ok(make(children));
        }
    }
    if r.allow_missing.is_some() {
        return Ok(Requirement::AllowMissing);
    }
    Ok(Requirement::AllowMissingOrFailed)
}

pub(super) fn lookup_requirement(
    name: &str,
    path: String,
    map: &BTreeMap<String, Requirement>,
) -> Result<Requirement> {
    map.get(name).cloned().ok_or_else(|| {
        ConfigError::new(
            path,
            format!("no requirement named {name:?} in requirement_map"),
        )
    })
}
