//! Request matching: jwt_authn's `RouteMatch`, `HeaderMatcher`, `QueryParameterMatcher` and
//! `StringMatcher`, evaluated against a [`RequestView`](crate::authn::request::RequestView).

use regex_lite::Regex;

use crate::authn::request::RequestView;

/// `envoy.type.matcher.v3.StringMatcher`.
#[derive(Debug, Clone)]
pub struct StringMatcher {
    pub pattern: StringPattern,
    pub ignore_case: bool,
}

/// The one pattern of a [`StringMatcher`].
#[derive(Debug, Clone)]
pub enum StringPattern {
    Exact(String),
    Prefix(String),
    Suffix(String),
    Contains(String),
    /// Anchored at both ends, as Envoy's `safe_regex` (RE2 full match).
    Regex(Regex),
}

impl PartialEq for StringPattern {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (StringPattern::Exact(a), StringPattern::Exact(b))
            | (StringPattern::Prefix(a), StringPattern::Prefix(b))
            | (StringPattern::Suffix(a), StringPattern::Suffix(b))
            | (StringPattern::Contains(a), StringPattern::Contains(b)) => a == b,
            (StringPattern::Regex(a), StringPattern::Regex(b)) => a.as_str() == b.as_str(),
            _ => false,
        }
    }
}

impl PartialEq for StringMatcher {
    fn eq(&self, other: &Self) -> bool {
        self.pattern == other.pattern && self.ignore_case == other.ignore_case
    }
}

impl StringMatcher {
    /// Builds an anchored regex pattern (full match), or the regex compile error.
    pub fn regex(pattern: &str) -> Result<StringPattern, String> {
        Regex::new(&format!("^(?:{pattern})$"))
            .map(StringPattern::Regex)
            .map_err(|e| e.to_string())
    }

    /// True when `value` matches.
    pub fn matches(&self, value: &str) -> bool {
        if self.ignore_case {
            let v = value.to_ascii_lowercase();
            match &self.pattern {
                StringPattern::Exact(p) => v == p.to_ascii_lowercase(),
                StringPattern::Prefix(p) => v.starts_with(&p.to_ascii_lowercase()),
                StringPattern::Suffix(p) => v.ends_with(&p.to_ascii_lowercase()),
                StringPattern::Contains(p) => v.contains(&p.to_ascii_lowercase()),
                // Envoy ignores ignore_case for regexes; so do we.
                StringPattern::Regex(r) => r.is_match(value),
            }
        } else {
            match &self.pattern {
                StringPattern::Exact(p) => value == p,
                StringPattern::Prefix(p) => value.starts_with(p.as_str()),
                StringPattern::Suffix(p) => value.ends_with(p.as_str()),
                StringPattern::Contains(p) => value.contains(p.as_str()),
                StringPattern::Regex(r) => r.is_match(value),
            }
        }
    }
}

/// How the path part of a route match is given (exactly one in the config).
#[derive(Debug, Clone, PartialEq)]
pub enum PathMatch {
    Prefix(String),
    Exact(String),
    /// Full match against the path without the query string.
    Regex(StringPattern),
}

/// `envoy.config.route.v3.RouteMatch`, the parts jwt_authn rules use.
#[derive(Debug, Clone, PartialEq)]
pub struct RouteMatch {
    pub path: PathMatch,
    /// `case_sensitive`, default true (applies to prefix and path).
    pub case_sensitive: bool,
    pub headers: Vec<HeaderMatch>,
    pub query_parameters: Vec<QueryMatch>,
    /// Extension: request methods (upper-case); empty means any.
    pub methods: Vec<String>,
}

/// `HeaderMatcher`.
#[derive(Debug, Clone, PartialEq)]
pub struct HeaderMatch {
    /// Lower-case name; `:method`, `:path`, `:authority` work as in Envoy.
    pub name: String,
    pub rule: HeaderRule,
    pub invert: bool,
}

/// What a [`HeaderMatch`] checks.
#[derive(Debug, Clone, PartialEq)]
pub enum HeaderRule {
    /// `present_match: true` (false means "absent").
    Present(bool),
    Value(StringMatcher),
}

/// `QueryParameterMatcher`.
#[derive(Debug, Clone, PartialEq)]
pub struct QueryMatch {
    pub name: String,
    pub rule: QueryRule,
}

/// What a [`QueryMatch`] checks.
#[derive(Debug, Clone, PartialEq)]
pub enum QueryRule {
    Present,
    Value(StringMatcher),
}

impl RouteMatch {
    /// True when the request fits every part of this match.
    pub fn matches(&self, req: &RequestView<'_>) -> bool {
        let path = req.path_without_query();
        let path_ok = match &self.path {
            PathMatch::Prefix(p) => {
                if self.case_sensitive {
                    path.starts_with(p.as_str())
                } else {
                    path.len() >= p.len()
                        && path
                            .get(..p.len())
                            .is_some_and(|head| head.eq_ignore_ascii_case(p))
                }
            }
            PathMatch::Exact(p) => {
                if self.case_sensitive {
                    path == p
                } else {
                    path.eq_ignore_ascii_case(p)
                }
            }
            PathMatch::Regex(StringPattern::Regex(r)) => r.is_match(path),
            PathMatch::Regex(_) => false,
        };
        if !path_ok {
            return false;
        }
        if !self.methods.is_empty() && !self.methods.iter().any(|m| m == req.method()) {
            return false;
        }
        self.headers.iter().all(|h| h.matches(req))
            && self.query_parameters.iter().all(|q| q.matches(req))
    }
}

impl HeaderMatch {
    /// Envoy 1.40's rule (checked against it, see `integration-tests/test_jwt_authn_parity.py`):
    /// a repeated header matches when any one of its values matches (not their `,`-joined
    /// form, which a client could use to slip past a rule); `invert_match` inverts that; a
    /// value matcher never matches an absent header, inverted or not; `present_match`
    /// compares presence, then `invert_match` applies.
    fn matches(&self, req: &RequestView<'_>) -> bool {
        let mut values = req.header_values(&self.name).peekable();
        let present = values.peek().is_some();
        match &self.rule {
            HeaderRule::Present(want) => (present == *want) != self.invert,
            HeaderRule::Value(_) if !present => false,
            HeaderRule::Value(m) => values.any(|v| m.matches(v)) != self.invert,
        }
    }
}

impl QueryMatch {
    fn matches(&self, req: &RequestView<'_>) -> bool {
        match (&self.rule, req.query_param(&self.name)) {
            (QueryRule::Present, v) => v.is_some(),
            (QueryRule::Value(m), Some(v)) => m.matches(&v),
            (QueryRule::Value(_), None) => false,
        }
    }
}
