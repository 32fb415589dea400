//! Pipeline definitions: reading TOML files into validated config structs.
//!
//! Each component's config struct lives beside the component
//! (`sources/file.rs`, `sinks/file.rs`, …); this module owns the pipeline's
//! shape, the spanned-TOML machinery and the error format.

mod diagnostic;
mod document;
mod pipeline;
#[cfg(test)]
mod reference;

pub use diagnostic::{Diagnostic, Diagnostics, did_you_mean};
pub use document::{Document, Value, join, line_column, struct_fields};
pub use pipeline::{
    BatchConfig, KeyPosition, OnError, PipelineConfig, StageConfig, load_file, load_files, parse_str,
};
