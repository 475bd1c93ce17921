//! Route matchers: a rule's `match` (path, headers, query parameters, string matchers).

use super::{
    exactly_one, header_name, is_token, join, non_empty, required, set_fields, unsupported, Result,
};
use crate::authn::config::error::ConfigError;
use crate::authn::config::raw;
use crate::authn::matcher::{
    HeaderMatch, HeaderRule, PathMatch, QueryMatch, QueryRule, RouteMatch, StringMatcher,
    StringPattern,
};

pub(super) fn compile_regex(r: &raw::RegexMatcher, path: &str) -> Result<StringPattern> {
    let pattern = required(&r.regex, path, "regex")?;
    StringMatcher::regex(pattern)
        .map_err(|e| ConfigError::new(join(path, "regex"), format!("invalid regex: {e}")))
}

pub(super) fn compile_string_matcher(m: &raw::StringMatcher, path: &str) -> Result<StringMatcher> {
    unsupported(path, "custom", &m.custom, "")?;
    exactly_one(
        path,
        "a string matcher",
        &[
            ("exact", m.exact.is_some()),
            ("prefix", m.prefix.is_some()),
            ("suffix", m.suffix.is_some()),
            ("contains", m.contains.is_some()),
            ("safe_regex", m.safe_regex.is_some()),
        ],
    )?;
    let pattern = if let Some(s) = &m.exact {
        StringPattern::Exact(s.clone())
    } else if let Some(s) = &m.prefix {
        StringPattern::Prefix(non_empty(s, &join(path, "prefix"))?.to_string())
    } else if let Some(s) = &m.suffix {
        StringPattern::Suffix(non_empty(s, &join(path, "suffix"))?.to_string())
    } else if let Some(s) = &m.contains {
        StringPattern::Contains(non_empty(s, &join(path, "contains"))?.to_string())
    } else if let Some(r) = &m.safe_regex {
        compile_regex(r, &join(path, "safe_regex"))?
    } else {
        return Err(ConfigError::new(path, "a string matcher needs a pattern"));
    };
    Ok(StringMatcher {
        pattern,
        ignore_case: m.ignore_case,
    })
}

pub(super) fn compile_route_match(m: &raw::RouteMatch, path: &str) -> Result<RouteMatch> {
    for (field, value) in [
        ("connect_matcher", &m.connect_matcher),
        ("path_separated_prefix", &m.path_separated_prefix),
        ("path_match_policy", &m.path_match_policy),
        ("runtime_fraction", &m.runtime_fraction),
        ("grpc", &m.grpc),
        ("tls_context", &m.tls_context),
        ("dynamic_metadata", &m.dynamic_metadata),
        ("filter_state", &m.filter_state),
    ] {
        unsupported(path, field, value, " in a rule's match")?;
    }
    exactly_one(
        path,
        "a route match",
        &[
            ("prefix", m.prefix.is_some()),
            ("path", m.path.is_some()),
            ("safe_regex", m.safe_regex.is_some()),
        ],
    )?;
    let slash = |p: &str, field: &str| -> Result<String> {
        if p.starts_with('/') || (field == "prefix" && p.is_empty()) {
            Ok(p.to_string())
        } else {
            Err(ConfigError::new(
                join(path, field),
                format!("{p:?} must start with '/'"),
            ))
        }
    };
    let path_match = if let Some(p) = &m.prefix {
        PathMatch::Prefix(slash(p, "prefix")?)
    } else if let Some(p) = &m.path {
        PathMatch::Exact(slash(p, "path")?)
    } else if let Some(r) = &m.safe_regex {
        PathMatch::Regex(compile_regex(r, &join(path, "safe_regex"))?)
    } else {
        return Err(ConfigError::new(path, "a route match needs a path pattern"));
    };

    let headers = m
        .headers
        .iter()
        .enumerate()
        .map(|(i, h)| compile_header_matcher(h, &format!("{path}.headers[{i}]")))
        .collect::<Result<Vec<_>>>()?;
    let query_parameters = m
        .query_parameters
        .iter()
        .enumerate()
        .map(|(i, q)| compile_query_matcher(q, &format!("{path}.query_parameters[{i}]")))
        .collect::<Result<Vec<_>>>()?;
    let mut methods = Vec::with_capacity(m.methods.len());
    for (i, method) in m.methods.iter().enumerate() {
        let upper = is_token(method) && !method.bytes().any(|b| b.is_ascii_lowercase());
        if !upper {
            return Err(ConfigError::new(
                format!("{path}.methods[{i}]"),
                format!("{method:?} is not a method name: methods are case-sensitive tokens such as \"GET\""),
            ));
        }
        if !methods.contains(method) {
            methods.push(method.clone());
        }
    }

    Ok(RouteMatch {
        path: path_match,
        case_sensitive: m.case_sensitive.unwrap_or(true),
        headers,
        query_parameters,
        methods,
    })
}

pub(super) fn compile_header_matcher(h: &raw::HeaderMatcher, path: &str) -> Result<HeaderMatch> {
    unsupported(path, "range_match", &h.range_match, "")?;
    unsupported(
        path,
        "treat_missing_header_as_empty",
        &h.treat_missing_header_as_empty,
        "",
    )?;
    let raw_name = required(&h.name, path, "name")?;
    let npath = join(path, "name");
    let name = match raw_name.strip_prefix(':') {
        Some(pseudo) => format!(":{}", header_name(pseudo, &npath)?),
        None => header_name(raw_name, &npath)?,
    };
    let fields = [
        ("exact_match", h.exact_match.is_some()),
        ("prefix_match", h.prefix_match.is_some()),
        ("suffix_match", h.suffix_match.is_some()),
        ("contains_match", h.contains_match.is_some()),
        ("present_match", h.present_match.is_some()),
        ("safe_regex_match", h.safe_regex_match.is_some()),
        ("string_match", h.string_match.is_some()),
    ];
    let set = set_fields(&fields);
    if set.len() > 1 {
        return Err(ConfigError::new(
            path,
            format!(
                "a header matcher sets at most one of exact_match, prefix_match, suffix_match, \
                 contains_match, present_match, safe_regex_match, string_match (found {})",
                set.join(", ")
            ),
        ));
    }
    let value = |pattern: StringPattern| {
        HeaderRule::Value(StringMatcher {
            pattern,
            ignore_case: false,
        })
    };
    let rule = if let Some(s) = &h.exact_match {
        value(StringPattern::Exact(s.clone()))
    } else if let Some(s) = &h.prefix_match {
        value(StringPattern::Prefix(
            non_empty(s, &join(path, "prefix_match"))?.to_string(),
        ))
    } else if let Some(s) = &h.suffix_match {
        value(StringPattern::Suffix(
            non_empty(s, &join(path, "suffix_match"))?.to_string(),
        ))
    } else if let Some(s) = &h.contains_match {
        value(StringPattern::Contains(
            non_empty(s, &join(path, "contains_match"))?.to_string(),
        ))
    } else if let Some(b) = h.present_match {
        HeaderRule::Present(b)
    } else if let Some(r) = &h.safe_regex_match {
        value(compile_regex(r, &join(path, "safe_regex_match"))?)
    } else if let Some(sm) = &h.string_match {
        HeaderRule::Value(compile_string_matcher(sm, &join(path, "string_match"))?)
    } else {
        // Envoy: a matcher with only a name matches when the header is present.
        HeaderRule::Present(true)
    };
    Ok(HeaderMatch {
        name,
        rule,
        invert: h.invert_match,
    })
}

pub(super) fn compile_query_matcher(
    q: &raw::QueryParameterMatcher,
    path: &str,
) -> Result<QueryMatch> {
    let name = non_empty(required(&q.name, path, "name")?, &join(path, "name"))?;
    let rule = match (&q.string_match, q.present_match) {
        (Some(_), Some(_)) => {
            return Err(ConfigError::new(
                path,
                "set at most one of string_match and present_match",
            ))
        }
        (Some(sm), None) => {
            QueryRule::Value(compile_string_matcher(sm, &join(path, "string_match"))?)
        }
        (None, Some(false)) => {
            return Err(ConfigError::new(
                join(path, "present_match"),
                "can only be true (Envoy treats false as true); omit it instead",
            ))
        }
        (None, Some(true) | None) => QueryRule::Present,
    };
    Ok(QueryMatch {
        name: name.to_string(),
        rule,
    })
}
