//! The WebAssembly transform host: loading and validating components,
//! running batches through them under limits, and turning every kind of
//! guest failure into a per-record outcome.

mod abi;
mod bindings;
mod compiled_cache;
pub mod config_spec;
mod deadline;
mod epoch;
mod error;
mod hash;
mod host;
mod instance;
mod limits;
mod lookup;
mod lowering;
mod packed;
mod stdio;

pub use abi::{CallOutput, RecordOutcome};
pub use error::{FailureKind, LoadError};
pub use host::{Module, WasmHost};
pub use instance::{CallFailure, Grants, StageCall, TransformInstance, instance_grants};
pub use limits::Limits;
pub use packed::{FailedPackedCall, PackedBatch, PackedCall};
