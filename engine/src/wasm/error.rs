//! Why a module could not be loaded, and how a call into it can fail.

use std::fmt;
use std::path::PathBuf;

use serde::Serialize;

/// A module that cannot be used as a transform.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("cannot read {}: {source}", path.display())]
    Read { path: PathBuf, source: std::io::Error },
    #[error("not a WebAssembly file (it does not start with the `\\0asm` magic bytes)")]
    NotWasm,
    #[error(
        "this is a core WebAssembly module, not a component; build the transform for \
         `wasm32-wasip2` (cargo build --release --target wasm32-wasip2) or wrap it with \
         `wasm-tools component new`"
    )]
    CoreModule,
    #[error("invalid WebAssembly component: {0:#}")]
    Invalid(anyhow::Error),
    #[error("the component does not implement the sluice:transform/transform world: {0}")]
    WrongWorld(String),
    /// A granted capability cannot be provided (e.g. its lookup table
    /// does not load).
    #[error("capability: {0}")]
    Capability(String),
    #[error("init rejected the stage config: {0}")]
    InitRejected(String),
    /// The stage config does not fit what the module declares it takes.
    #[error("the stage config does not fit what the module declares: {}", problems.iter().map(|p| p.to_string()).collect::<Vec<_>>().join("; "))]
    ConfigMismatch { problems: Vec<super::config_spec::ConfigProblem> },
    /// The module's config declaration itself is broken.
    #[error("the module's config declaration: {0}")]
    BadDeclaration(String),
    #[error("init failed: {0}")]
    InitFailed(String),
}

/// The class of a failed record, as it appears in dead-letter envelopes and
/// metrics. Guest-chosen kinds (a transform's own `Error::new(kind, …)`) are
/// carried as [`FailureKind::Rejected`] with their name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum FailureKind {
    /// The transform returned an error for this record.
    Rejected(String),
    /// The call ran past the stage's `timeout_ms`.
    Timeout,
    /// The module tried to grow its memory past `max_memory_mb`.
    OutOfMemory,
    StackOverflow,
    /// The guest panicked (Rust guests abort on panic).
    Panic,
    /// Any other trap: `unreachable`, out-of-bounds access, …
    Trap,
    /// The call used up its `max_fuel`.
    FuelExhausted,
    /// The outputs for one record exceed `max_output_bytes`, or are malformed.
    InvalidOutput,
    /// A source could not deliver the record whole (e.g. over its size limit).
    TooLarge,
}

impl FailureKind {
    /// The kind a name stands for (the inverse of [`FailureKind::name`]).
    pub fn from_name(name: &str) -> FailureKind {
        [
            FailureKind::Timeout,
            FailureKind::OutOfMemory,
            FailureKind::StackOverflow,
            FailureKind::Panic,
            FailureKind::Trap,
            FailureKind::FuelExhausted,
            FailureKind::InvalidOutput,
            FailureKind::TooLarge,
        ]
        .into_iter()
        .find(|kind| kind.name() == name)
        .unwrap_or_else(|| FailureKind::Rejected(name.to_string()))
    }

    pub fn name(&self) -> &str {
        match self {
            FailureKind::Rejected(kind) => kind,
            FailureKind::Timeout => "timeout",
            FailureKind::OutOfMemory => "out-of-memory",
            FailureKind::StackOverflow => "stack-overflow",
            FailureKind::Panic => "panic",
            FailureKind::Trap => "trap",
            FailureKind::FuelExhausted => "fuel-exhausted",
            FailureKind::InvalidOutput => "invalid-output",
            FailureKind::TooLarge => "too-large",
        }
    }
}

impl fmt::Display for FailureKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}
