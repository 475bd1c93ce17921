//! The one error type of configuration: where in the JSON, and what is wrong there.

use std::fmt;

/// A configuration the filter refuses. `path` names the offending JSON field the way an
/// operator would look it up (`providers.auth0.remote_jwks.http_uri.timeout`, `rules[2].match`);
/// `.` is the document itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub path: String,
    pub message: String,
}

impl ConfigError {
    /// An error at `path`.
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        ConfigError {
            path: path.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

impl std::error::Error for ConfigError {}
