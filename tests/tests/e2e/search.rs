//! Web logs to search: log-parse output indexed through the `opensearch`
//! sink (and a fanning-out transform's outputs, each indexed once), against
//! osmem-server (an OpenSearch-API emulator, not OpenSearch:
//! none can be installed here) and against a scripted `_bulk` endpoint
//! that answers 429 and 503 the way OpenSearch documents them, which the
//! emulator never does. With `SLUICE_TEST_OPENSEARCH_URL` set, the first
//! test also runs against that real cluster.

use std::time::{Duration, Instant};

use sluice_tests::opensearch::{BulkRequests, Emulator, all_created, scripted_bulk};
use sluice_tests::{fixture, guest, read_ndjson, root};

use super::{run_pipeline_file, toml_path, write_pipeline};

fn weblogs_pipeline(dir: &std::path::Path, host: &str) -> std::path::PathBuf {
    write_pipeline(
        dir,
        &format!(
            "name = \"weblogs-search\"\n[source]\ntype = \"file\"\npath = {log}\n\
             [[stage]]\nname = \"parse\"\nmodule = {module}\n\
             [sink]\ntype = \"opensearch\"\nhosts = [\"{host}\"]\nmax_docs = 200\nflush_interval_ms = 100\n\
             [sink.template]\nname = \"weblogs-test\"\nfile = {template}\n\
             [dead_letter]\ntype = \"file\"\npath = \"dead.ndjson\"\n",
            log = toml_path(&fixture("logs/apache_combined_sample.log")),
            module = toml_path(&guest("log-parse")),
            template = toml_path(&root().join("pipelines/schemas/weblogs-template.json")),
        ),
    )
}

fn count(url: &str, pattern: &str) -> u64 {
    let client = reqwest::blocking::Client::new();
    let _ = client.post(format!("{url}/{pattern}/_refresh")).send();
    let body: serde_json::Value =
        client.get(format!("{url}/{pattern}/_count")).send().unwrap().json().unwrap();
    body["count"].as_u64().unwrap_or_else(|| panic!("no count in {body}"))
}

fn index_twice_and_count(url: &str) {
    let dir = tempfile::tempdir().unwrap();
    let file = weblogs_pipeline(dir.path(), url);
    let first = run_pipeline_file(&file).unwrap();
    assert_eq!((first.read, first.written, first.dead_lettered), (500, 500, 0));
    assert_eq!(count(url, "weblogs-*"), 500);
    // The index is named from each document's @timestamp (the fixture's
    // requests are all from 17 May 2015), not from the time of indexing.
    assert_eq!(count(url, "weblogs-2015.05.17"), 500);
    // Running it again (a replay) overwrites: ids come from the origin.
    let second = run_pipeline_file(&file).unwrap();
    assert_eq!(second.written, 500);
    assert_eq!(count(url, "weblogs-*"), 500, "a replay duplicated documents");
}

#[test]
fn parsed_logs_are_indexed_daily_once_even_when_replayed() {
    let emulator = Emulator::start();
    index_twice_and_count(&emulator.url);
    // The template's mapping was applied (status codes are integers).
    let hits = emulator.get("/weblogs-*/_search?q=http.response.status_code:404&size=1");
    assert!(hits["hits"]["total"]["value"].as_u64().unwrap() > 0, "{hits}");
}

#[test]
fn each_output_of_a_fanning_out_transform_is_indexed_once_and_none_when_it_drops() {
    let emulator = Emulator::start();
    for copies in [3u64, 0] {
        let dir = tempfile::tempdir().unwrap();
        let ids: String = (0..50).map(|id| format!("{{\"id\":{id}}}\n")).collect();
        std::fs::write(dir.path().join("in.log"), ids).unwrap();
        let file = write_pipeline(
            dir.path(),
            &format!(
                "name = \"fanout\"\n[source]\ntype = \"file\"\npath = \"in.log\"\n\
                 [[stage]]\nname = \"fanout\"\nmodule = {module}\n[stage.config]\ncopies = {copies}\n\
                 [sink]\ntype = \"opensearch\"\nhosts = [\"{url}\"]\nindex = \"fanout-{copies}\"\nflush_interval_ms = 100\n",
                module = toml_path(&guest("fanout")),
                url = emulator.url,
            ),
        );
        // Twice: a replay overwrites, since each copy's id comes from its
        // input's origin and its place among that input's outputs.
        for run in 0..2 {
            let report = run_pipeline_file(&file).unwrap();
            assert_eq!(
                (report.read, report.written, report.dead_lettered),
                (50, 50 * copies, 0),
                "run {run}"
            );
            assert_eq!(count(&emulator.url, &format!("fanout-{copies}*")), 50 * copies, "run {run}");
        }
        if copies > 0 {
            let hits = emulator.get(&format!("/fanout-{copies}/_search?size=1000"));
            let mut found: Vec<(u64, u64)> = hits["hits"]["hits"]
                .as_array()
                .unwrap()
                .iter()
                .map(|hit| (hit["_source"]["id"].as_u64().unwrap(), hit["_source"]["copy"].as_u64().unwrap()))
                .collect();
            found.sort_unstable();
            let expected: Vec<(u64, u64)> =
                (0..50).flat_map(|id| (0..copies).map(move |c| (id, c))).collect();
            assert_eq!(found, expected, "every copy of every record, once");
        }
    }
}

/// No real OpenSearch can be installed on the build machines, so this runs
/// only on request, and the runner's summary counts it as ignored:
/// `SLUICE_TEST_OPENSEARCH_URL=http://host:9200 cargo test -p sluice-tests --test e2e -- --ignored real_cluster`.
#[test]
#[ignore = "needs a real OpenSearch: set SLUICE_TEST_OPENSEARCH_URL and run with --ignored"]
fn against_a_real_cluster() {
    let url = std::env::var("SLUICE_TEST_OPENSEARCH_URL")
        .expect("SLUICE_TEST_OPENSEARCH_URL=http://host:9200 names the cluster to test against");
    index_twice_and_count(&url);
}

#[test]
fn documents_opensearch_rejects_are_dead_lettered_with_its_reason() {
    let emulator = Emulator::start();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("template.json"),
        r#"{"index_patterns":["typed-*"],"template":{"mappings":{"properties":{"n":{"type":"long"}}}}}"#,
    )
    .unwrap();
    std::fs::write(
        dir.path().join("in.ndjson"),
        "{\"@timestamp\":\"2024-03-01T00:00:00Z\",\"n\":1}\n{\"@timestamp\":\"2024-03-01T00:00:01Z\",\"n\":\"many\"}\nnot json\n[1,2]\n{\"@timestamp\":\"2024-03-01T00:00:02Z\",\"n\":3}\n",
    )
    .unwrap();
    let file = write_pipeline(
        dir.path(),
        &format!(
            "name = \"typed\"\n[source]\ntype = \"file\"\npath = \"in.ndjson\"\n\
             [sink]\ntype = \"opensearch\"\nhosts = [\"{}\"]\nindex = \"typed-{{yyyy.MM}}\"\n\
             [sink.template]\nname = \"typed\"\nfile = \"template.json\"\n\
             [dead_letter]\ntype = \"file\"\npath = \"dead.ndjson\"\n",
            emulator.url
        ),
    );
    let report = run_pipeline_file(&file).unwrap();
    assert_eq!((report.read, report.written, report.dead_lettered), (5, 2, 3));
    assert_eq!(count(&emulator.url, "typed-2024.03"), 2);
    let dead: Vec<(i64, String, String)> = read_ndjson(&dir.path().join("dead.ndjson"))
        .iter()
        .map(|d| {
            (
                d["origin"]["offset"].as_i64().unwrap(),
                d["error"]["kind"].as_str().unwrap().to_string(),
                d["error"]["message"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let mut dead = dead;
    dead.sort();
    assert_eq!(dead.len(), 3, "{dead:?}");
    assert_eq!((dead[0].0, dead[0].1.as_str()), (2, "mapper_parsing_exception"), "{dead:?}");
    assert!(dead[0].2.starts_with("400: failed to parse field [n] of type [long]"), "{dead:?}");
    assert_eq!((dead[1].0, dead[1].1.as_str()), (3, "invalid-json"));
    assert_eq!(
        (dead[2].0, dead[2].1.as_str(), dead[2].2.as_str()),
        (4, "invalid-json", "the value is JSON but not an object")
    );
}

/// A `_bulk` endpoint that answers 503 for its first `down` requests,
/// then 200 with the first document of the next request refused with 429
/// (es_rejected_execution_exception), then accepts everything.
fn scripted_server(down: usize) -> (String, BulkRequests) {
    scripted_bulk(move |request, ids| {
        if request <= down {
            let busy = r#"{"error":{"type":"unavailable_shards_exception","reason":"primary shard is not active"},"status":503}"#;
            return (503, busy.to_string());
        }
        if request > down + 1 {
            return (200, all_created(ids));
        }
        let items: Vec<serde_json::Value> = ids
            .iter()
            .enumerate()
            .map(|(i, id)| match i {
                0 => serde_json::json!({"index": {"_id": id, "status": 429, "error": {"type": "es_rejected_execution_exception", "reason": "rejected execution of coordinating operation"}}}),
                _ => serde_json::json!({"index": {"_id": id, "status": 201, "result": "created"}}),
            })
            .collect();
        (200, serde_json::json!({"took": 1, "errors": true, "items": items}).to_string())
    })
}

#[test]
fn busy_and_unreachable_nodes_are_retried_until_every_document_is_indexed() {
    let (scripted, seen) = scripted_server(3);
    // The first host refuses connections: requests fail over to the second.
    let dead = format!("http://127.0.0.1:{}", sluice_tests::broker::free_port());
    let dir = tempfile::tempdir().unwrap();
    let lines: String =
        (0..5).map(|n| format!("{{\"@timestamp\":\"2024-03-01T00:00:0{n}Z\",\"n\":{n}}}\n")).collect();
    std::fs::write(dir.path().join("in.ndjson"), lines).unwrap();
    let file = write_pipeline(
        dir.path(),
        &format!(
            "name = \"retry\"\n[source]\ntype = \"file\"\npath = \"in.ndjson\"\n\
             [sink]\ntype = \"opensearch\"\nhosts = [\"{dead}\", \"{scripted}\"]\nretry_initial_ms = 20\nretry_max_ms = 200\n\
             [dead_letter]\ntype = \"file\"\npath = \"dead.ndjson\"\n"
        ),
    );
    let started = Instant::now();
    let report = run_pipeline_file(&file).unwrap();
    assert_eq!((report.read, report.written, report.dead_lettered), (5, 5, 0));
    let seen = seen.lock().unwrap().clone();
    // Three 503s, then one request with a 429 item, then only that item.
    assert_eq!(seen.len(), 5, "{seen:?}");
    assert!(seen[..4].iter().all(|ids| ids.len() == 5), "{seen:?}");
    assert_eq!(seen[4], vec![seen[3][0].clone()], "only the refused document is sent again");
    assert!(seen[4][0].ends_with("in.ndjson-0-1"), "ids come from the origin: {seen:?}");
    assert!(started.elapsed() < Duration::from_secs(20));
}
