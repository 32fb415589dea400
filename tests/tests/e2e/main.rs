//! End-to-end tests: real components built from source, real pipelines,
//! the real CLI. One binary, a module per area.

mod abi;
mod api;
mod broker_faults;
mod cluster;
mod config_errors;
mod crash;
mod dashboard;
mod demo;
mod embedded_crash;
mod file_source;
mod guests;
mod hostile;
mod images;
mod ingest;
mod interop;
mod kafka_sink;
mod lake;
mod parallel;
mod prometheus;
mod rebalance;
mod resilience;
mod search;
mod search_pipeline;
mod shutdown;
mod startup;
mod transform_cli;
mod weblogs;

use std::path::Path;

use sluice::config;
use sluice::pipeline::{Pipeline, PipelineReport};
use tokio_util::sync::CancellationToken;

/// The test binary's copy of the CLI.
pub const SLUICE: &str = env!("CARGO_BIN_EXE_sluice-under-test");

pub use sluice_tests::ingest::{ids_in, post_ids, post_ndjson, wait_for_ids};
pub use sluice_tests::{toml_path, write_pipeline};

/// Loads and runs the pipelines in `file` to completion in-process.
pub fn run_pipeline_file(file: &Path) -> anyhow::Result<PipelineReport> {
    let mut configs = config::load_file(file).map_err(|d| anyhow::anyhow!("{d}"))?;
    assert_eq!(configs.len(), 1);
    let pipeline = Pipeline::build(configs.remove(0), sluice_tests::host())?;
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(pipeline.run(CancellationToken::new()))
}
