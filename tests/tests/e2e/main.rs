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

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

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

/// The `id` field of every line of an NDJSON file (the records the Kafka
/// tests send are `{"id": N}`). A torn or corrupt line fails the test.
pub fn ids_in(path: &Path) -> Vec<u64> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|line| {
            let value: serde_json::Value =
                serde_json::from_str(line).unwrap_or_else(|e| panic!("torn or corrupt line {line:?}: {e}"));
            value["id"].as_u64().expect("an id")
        })
        .collect()
}

/// Waits up to `seconds` until `paths` together hold every id in
/// `expected`; returns the ids they hold.
pub fn wait_for_ids(paths: &[&Path], expected: &BTreeSet<u64>, seconds: u64) -> BTreeSet<u64> {
    let deadline = Instant::now() + Duration::from_secs(seconds);
    loop {
        let seen: BTreeSet<u64> = paths.iter().flat_map(|p| ids_in(p)).collect();
        if expected.is_subset(&seen) || Instant::now() > deadline {
            return seen;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// POSTs `ids` as NDJSON (`{"id": N}` lines) to `{url}/ingest/in`.
pub fn post_ids(http: &reqwest::blocking::Client, url: &str, ids: &[u64]) -> reqwest::blocking::Response {
    let body: String = ids.iter().map(|id| format!("{{\"id\":{id}}}\n")).collect();
    post_ndjson(http, url, "in", body).expect("ingest request")
}

/// POSTs an NDJSON body to `{url}/ingest/{topic}` with the test token.
pub fn post_ndjson(
    http: &reqwest::blocking::Client,
    url: &str,
    topic: &str,
    body: String,
) -> reqwest::Result<reqwest::blocking::Response> {
    http.post(format!("{url}/ingest/{topic}"))
        .bearer_auth(sluice_tests::engine::TOKEN)
        .header("content-type", "application/x-ndjson")
        .body(body)
        .send()
}
