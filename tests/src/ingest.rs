//! REST ingest from the tests' side: the `{"id": N}` records the Kafka and
//! ingest tests post, finding them again in NDJSON files, and the Kafka →
//! passthrough → file pipeline the broker-fault tests run.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::engine::{Engine, TOKEN};
use crate::{guest, toml_path, write_pipeline};

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

/// POSTs `ids` to `engine`; returns the status and the Retry-After header.
pub fn post_ids_answer(
    http: &reqwest::blocking::Client,
    engine: &Engine,
    ids: &[u64],
) -> (u16, Option<String>) {
    let response = post_ids(http, &engine.url, ids);
    let retry = response.headers().get("retry-after").map(|v| v.to_str().unwrap().to_string());
    (response.status().as_u16(), retry)
}

/// POSTs an NDJSON body to `{url}/ingest/{topic}` with the test token.
pub fn post_ndjson(
    http: &reqwest::blocking::Client,
    url: &str,
    topic: &str,
    body: String,
) -> reqwest::Result<reqwest::blocking::Response> {
    http.post(format!("{url}/ingest/{topic}"))
        .bearer_auth(TOKEN)
        .header("content-type", "application/x-ndjson")
        .body(body)
        .send()
}

/// Topic `in` → passthrough → `out.ndjson` in `dir`, committing offsets
/// every 100 ms: the pipeline the broker-fault tests run.
pub fn kafka_to_file_pipeline(dir: &Path) -> PathBuf {
    write_pipeline(
        dir,
        &format!(
            "name = \"faulty\"\n[source]\ntype = \"kafka\"\ntopics = [\"in\"]\ncommit_interval_ms = 100\n\
             [batch]\nlinger_ms = 5\n[[stage]]\nname = \"copy\"\nmodule = {}\n\
             [sink]\ntype = \"file\"\npath = \"out.ndjson\"\n",
            toml_path(&guest("passthrough"))
        ),
    )
}
