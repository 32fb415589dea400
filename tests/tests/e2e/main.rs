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

/// The test binary's copy of the CLI.
pub const SLUICE: &str = env!("CARGO_BIN_EXE_sluice-under-test");

pub use sluice_tests::ingest::{ids_in, post_ids, post_ndjson, wait_for_ids};
pub use sluice_tests::{run_pipeline_file, toml_path, write_pipeline};
