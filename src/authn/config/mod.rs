//! Filter configuration: Envoy jwt_authn's `JwtAuthentication` as JSON (plus marked jwt-edge
//! extensions) in, a validated [`Policy`] out.
//!
//! Two phases: [`raw`] mirrors the JSON, read by [`read`] (unknown fields and wrong types are
//! errors with their path), then [`compile`] checks meaning and builds the policy (errors again carry
//! the JSON path). `filter-config/schema.json` documents every field.

pub mod compile;
pub mod error;
pub mod raw;
pub mod read;

pub use compile::compile;
pub(crate) use compile::split_uri;
pub use error::ConfigError;

use crate::authn::policy::Policy;

/// Parses and compiles a filter configuration.
pub fn parse(json: &str) -> Result<Policy, ConfigError> {
    compile(parse_raw(json)?)
}

/// Phase 1 only: the JSON read into [`raw`] types, or the first error with its path.
pub fn parse_raw(json: &str) -> Result<raw::JwtAuthentication, ConfigError> {
    let tree = read::parse_tree(json)?;
    read::FromJson::from_json(&tree, read::Path::Root)
}
