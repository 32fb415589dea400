//! The error a transform returns for a record it cannot handle.

use std::borrow::Cow;
use std::fmt;

/// Why a record was refused. `kind` is a short machine-readable class that
/// ends up in the dead-letter envelope and in metrics; `message` is for people.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    kind: Cow<'static, str>,
    message: String,
}

impl Error {
    pub fn new(kind: impl Into<Cow<'static, str>>, message: impl Into<String>) -> Self {
        Error { kind: kind.into(), message: message.into() }
    }

    /// The record is not what this transform accepts (malformed, truncated…).
    pub fn invalid_input(message: impl Into<String>) -> Self {
        Self::new("invalid-input", message)
    }

    /// The record is well-formed but of a kind this transform does not handle.
    pub fn unsupported(message: impl Into<String>) -> Self {
        Self::new("unsupported", message)
    }

    pub fn kind(&self) -> &str {
        &self.kind
    }

    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.kind, self.message)
    }
}

impl std::error::Error for Error {}
