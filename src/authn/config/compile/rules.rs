//! Which requirement a request gets: `rules` and `per_route`.

use std::collections::BTreeMap;

use super::matchers::compile_route_match;
use super::requirements::{compile_requirement, lookup_requirement};
use super::{exactly_one, join, required, Result};
use crate::authn::config::error::ConfigError;
use crate::authn::config::raw;
use crate::authn::policy::{ProviderId, Requirement, RouteOverride, Rule};

#[inline(never)] // one TurboFan zone per part (mk/wasm-opt.mk)
pub(super) fn compile_rule(
    r: &raw::RequirementRule,
    path: &str,
    providers: &BTreeMap<String, ProviderId>,
    requirement_map: &BTreeMap<String, Requirement>,
) -> Result<Rule> {
    let m = required(&r.route_match, path, "match")?;
    let matcher = compile_route_match(m, &join(path, "match"))?;
    let requires = match (&r.requires, &r.requirement_name) {
        (Some(_), Some(_)) => {
            return Err(ConfigError::new(
                path,
                "set at most one of requires and requirement_name, not both",
            ))
        }
        (Some(req), None) => Some(compile_requirement(
            req,
            &join(path, "requires"),
            providers,
        )?),
        (None, Some(name)) => Some(lookup_requirement(
            name,
            join(path, "requirement_name"),
            requirement_map,
        )?),
        (None, None) => None,
    };
    if r.report_only && requires.is_none() {
        return Err(ConfigError::new(
            join(path, "report_only"),
            "needs requires or requirement_name: a rule without a requirement refuses nothing",
        ));
    }
    Ok(Rule {
        matcher,
        requires,
        report_only: r.report_only,
    })
}

#[inline(never)] // one TurboFan zone per part (mk/wasm-opt.mk)
pub(super) fn compile_route_override(
    o: &raw::PerRouteConfig,
    path: &str,
    requirement_map: &BTreeMap<String, Requirement>,
) -> Result<RouteOverride> {
    exactly_one(
        path,
        "a per_route entry",
        &[
            ("disabled", o.disabled.is_some()),
            ("requirement_name", o.requirement_name.is_some()),
        ],
    )?;
    match (&o.disabled, &o.requirement_name) {
        (Some(true), _) => Ok(RouteOverride::Disabled),
        (Some(false), _) => Err(ConfigError::new(
            join(path, "disabled"),
            "can only be true; to require a token set requirement_name instead",
        )),
        (None, Some(name)) => Ok(RouteOverride::Require(lookup_requirement(
            name,
            join(path, "requirement_name"),
            requirement_map,
        )?)),
        (None, None) => Err(ConfigError::new(path, "is empty")),
    }
}
