//! End-to-end tests: real components built from source, real pipelines,
//! the real CLI. One binary, a module per area.

mod abi;
mod broker_faults;
mod config_errors;
mod crash;
mod file_source;
mod hostile;
mod images;
mod ingest;
mod interop;
mod kafka_sink;
mod rebalance;
mod shutdown;
mod transform_cli;
mod weblogs;

use std::path::{Path, PathBuf};

use sluice::config;
use sluice::pipeline::{Pipeline, PipelineReport};
use tokio_util::sync::CancellationToken;

/// The test binary's copy of the CLI.
pub const SLUICE: &str = env!("CARGO_BIN_EXE_sluice-under-test");

/// Writes `toml` as `pipeline.toml` in `dir` and returns its path.
pub fn write_pipeline(dir: &Path, toml: &str) -> PathBuf {
    let path = dir.join("pipeline.toml");
    std::fs::write(&path, toml).unwrap();
    path
}

/// Loads and runs the pipelines in `file` to completion in-process.
pub fn run_pipeline_file(file: &Path) -> anyhow::Result<PipelineReport> {
    let mut configs = config::load_file(file).map_err(|d| anyhow::anyhow!("{d}"))?;
    assert_eq!(configs.len(), 1);
    let pipeline = Pipeline::build(configs.remove(0), sluice_tests::host())?;
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(pipeline.run(CancellationToken::new()))
}

/// A TOML string literal for a path.
pub fn toml_path(path: &Path) -> String {
    toml::Value::String(path.display().to_string()).to_string()
}
