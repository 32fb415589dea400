//! What keeps a pipeline going, or stopped safely, when parts of it fail:
//! a module that crashes on everything is quarantined and holds its
//! records until a fixed version arrives; a pipeline whose sink fails is
//! restarted with backoff; a record the Kafka sink's brokers refuse is
//! dead-lettered; kept dead letters survive a restart.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use rdkafka::mocking::MockCluster;
use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};
use serde_json::{Value, json};
use sluice_tests::engine::Engine;
use sluice_tests::guest;
use sluice_tests::opensearch::{all_created, scripted_bulk};

use super::api::{Api, kafka_pipeline};
use super::{SLUICE, post_ids, post_ndjson, toml_path, write_pipeline};

#[test]
fn a_module_that_crashes_on_everything_is_quarantined_and_a_fixed_version_loses_nothing() {
    let cluster = MockCluster::new(1).unwrap();
    cluster.create_topic("jobs", 1, 1).unwrap();
    let bootstrap = cluster.bootstrap_servers();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let log = dir.path().join("log");
    let serve = || Engine::serve(SLUICE, &data, &[], &["--brokers", &bootstrap], &log);
    let engine = serve();
    let api = Api::new(&engine);
    // v1 (the hostile guest) traps on every record we send (`trap`); v2,
    // a passthrough, is the fix.
    assert_eq!(api.upload("job", "hostile").0, 201);
    assert_eq!(api.upload("job", "passthrough").0, 201);
    let out = dir.path().join("out.ndjson");
    // One worker: the crash below replays the records from the last
    // commit, and this test checks that the same ones are crashed on again
    // and none is both dead-lettered and written. With several workers the
    // point where quarantine trips depends on which worker got there first,
    // so a record the old version dead-lettered before the crash may be
    // held after it and written by the fix (parallel.rs covers workers).
    let toml = kafka_pipeline("jobs", "jobs", "job@1", &out)
        .replace("name = \"work\"\n", "name = \"work\"\nparallelism = 1\n")
        + "[stage.quarantine]\nwindow = 100\nmin_records = 20\nfailure_ratio = 0.5\n";
    let (status, view) = api.put("/api/pipelines/jobs", toml);
    assert_eq!(status, 201, "{view}");

    // 500 records, every one of which crashes v1.
    let body: String = (0..500).map(|_| "trap\n").collect();
    api.ingest_lines("jobs", &body);
    api.wait_pipeline("jobs", "quarantine", |v| v["stages"][0]["quarantined"] == true);
    // Holding is reported once every batch in flight has come back, so
    // the dead letters of all the stage's workers are counted by then.
    let held = api.wait_pipeline("jobs", "holding records", |v| v["stages"][0]["held"].as_u64() > Some(0));
    let dead_before = held["records"]["dead_lettered"].as_u64().unwrap();
    assert!((20..=100).contains(&dead_before), "quarantined within the window: {dead_before} dead letters");
    assert_eq!(engine.metric("sluice_stage_quarantined", &["pipeline=\"jobs\""]), 1.0);
    assert!(engine.metric("sluice_stage_held_records", &["pipeline=\"jobs\""]) > 0.0, "{held}");
    // It holds still: nothing more is dead-lettered or written.
    std::thread::sleep(Duration::from_secs(2));
    let (_, still) = api.get("/api/pipelines/jobs");
    assert_eq!(still["records"]["dead_lettered"].as_u64(), Some(dead_before));
    assert_eq!(still["records"]["written"], 0);

    // A crash now: no offset was committed past what the stage did not
    // process, so the restarted engine reads those records again.
    assert!(!engine.signal("KILL").success());
    let engine = serve();
    let api = Api::new(&engine);
    api.wait_pipeline("jobs", "quarantine after the restart", |v| v["stages"][0]["quarantined"] == true);

    // The fixed version takes the held records and everything after them.
    let (status, stage) =
        api.post("/api/pipelines/jobs/stages/work/deploy", json!({ "module": "job", "version": 2 }));
    assert_eq!(status, 200, "{stage}");
    // Every offset ends up written or dead-lettered: written exactly once
    // (the file sink skips replays), dead-lettered at least once (a record
    // crashed on just before the kill may be crashed on again after it).
    let dead_offsets = || -> BTreeSet<i64> {
        let dead = std::fs::read_to_string(out.with_extension("dead-letter.ndjson")).unwrap_or_default();
        dead.lines()
            .map(|l| serde_json::from_str::<Value>(l).unwrap()["origin"]["offset"].as_i64().unwrap())
            .collect()
    };
    let written = || std::fs::read_to_string(&out).unwrap_or_default().lines().count();
    let deadline = Instant::now() + Duration::from_secs(60);
    while written() + dead_offsets().len() < 500 {
        assert!(
            Instant::now() < deadline,
            "written {} + dead-lettered {} < 500",
            written(),
            dead_offsets().len()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(written() + dead_offsets().len(), 500, "no record twice in the sink");
    let (_, view) = api.get("/api/pipelines/jobs");
    assert_eq!(
        (view["stages"][0]["quarantined"].clone(), view["stages"][0]["held"].clone()),
        (json!(false), json!(0))
    );
    drop(engine);
}

#[test]
fn a_pipeline_whose_sink_fails_restarts_with_backoff_and_delivers_everything() {
    // The first three _bulk requests are refused with 401 (a credentials
    // problem, which fails the pipeline); then the cluster accepts.
    let refused = Arc::new(AtomicUsize::new(0));
    let count = refused.clone();
    let (url, requests) = scripted_bulk(move |_, ids| {
        if count.fetch_add(1, Ordering::Relaxed) < 3 {
            return (401, r#"{"error":"unauthorized"}"#.to_string());
        }
        (200, all_created(ids))
    });
    let cluster = MockCluster::new(1).unwrap();
    cluster.create_topic("docs", 1, 1).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let pipeline = write_pipeline(
        dir.path(),
        &format!(
            // librdkafka's mock cluster holds a rebalance open for a whole
            // session after a member leaves: keep sessions short.
            "name = \"indexer\"\n[source]\ntype = \"kafka\"\ntopics = [\"docs\"]\ncommit_interval_ms = 100\n\
             [source.options]\n\"session.timeout.ms\" = \"6000\"\n\"heartbeat.interval.ms\" = \"500\"\n[batch]\nlinger_ms = 5\n\
             [[stage]]\nname = \"copy\"\nmodule = {}\n\
             [sink]\ntype = \"opensearch\"\nhosts = [\"{url}\"]\nflush_interval_ms = 50\n",
            toml_path(&guest("passthrough"))
        ),
    );
    let log = dir.path().join("engine.log");
    let engine = Engine::start(SLUICE, &[&pipeline], &["--brokers", &cluster.bootstrap_servers()], &log);
    let http = reqwest::blocking::Client::new();
    let body: String = (0..100).map(|i| format!("{{\"id\":{i}}}\n")).collect();
    let response = post_ndjson(&http, &engine.url, "docs", body).unwrap();
    assert_eq!(response.status(), 200);
    let api = Api::new(&engine);
    let restarting = api.wait_pipeline("indexer", "restarting", |v| v["status"] == "restarting");
    assert!(restarting["restart"]["attempts"].as_u64() >= Some(1), "{restarting}");
    assert!(restarting["restart"]["last_error"].as_str().unwrap_or_default().contains("401"), "{restarting}");
    let running = api.wait_pipeline("indexer", "every document indexed", |v| {
        v["status"] == "running" && v["records"]["written"].as_u64() >= Some(100)
    });
    assert!(running["restart"]["total"].as_u64() >= Some(1), "{running}");
    assert!(engine.metric("sluice_pipeline_restarts_total", &["pipeline=\"indexer\""]) >= 1.0);
    let indexed: BTreeSet<String> = requests.lock().unwrap().iter().skip(3).flatten().cloned().collect();
    assert_eq!(indexed.len(), 100, "each record indexed (ids are offsets, so a replay overwrites)");
    drop(engine);
}

#[test]
fn a_record_the_kafka_sinks_brokers_refuse_is_dead_lettered_and_the_pipeline_goes_on() {
    // Records come in through one cluster and go out to another, so faults
    // can be injected on the sink's side only.
    let inbound = MockCluster::new(1).unwrap();
    inbound.create_topic("in", 1, 1).unwrap();
    let outbound = MockCluster::new(1).unwrap();
    outbound.create_topic("out", 1, 1).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let pipeline = write_pipeline(
        dir.path(),
        &format!(
            "name = \"relay\"\n[source]\ntype = \"kafka\"\ntopics = [\"in\"]\n[batch]\nlinger_ms = 5\n\
             [[stage]]\nname = \"copy\"\nmodule = {}\n\
             [sink]\ntype = \"kafka\"\nbrokers = \"{}\"\ntopic = \"out\"\n[sink.options]\n\"message.max.bytes\" = \"2000\"\n\
             [dead_letter]\ntype = \"file\"\npath = \"dead.ndjson\"\n",
            toml_path(&guest("passthrough")),
            outbound.bootstrap_servers(),
        ),
    );
    let log = dir.path().join("engine.log");
    let engine = Engine::start(SLUICE, &[&pipeline], &["--brokers", &inbound.bootstrap_servers()], &log);
    let http = reqwest::blocking::Client::new();
    assert_eq!(post_ids(&http, &engine.url, &[0]).status(), 200);
    let written = wait_for_written(&outbound.bootstrap_servers(), 1, 60);
    assert_eq!(written, [0]);
    // Record 1 is larger than the sink's producer accepts.
    let big = format!("{{\"id\":1,\"pad\":\"{}\"}}\n", "x".repeat(5000));
    let response = post_ndjson(&http, &engine.url, "in", big).unwrap();
    assert_eq!(response.status(), 200);
    let dead_path = dir.path().join("dead.ndjson");
    assert!(wait_for_dead(&dead_path, 1).contains(&1), "the oversized record is dead-lettered");
    // The sink's brokers refuse record 2 as invalid.
    outbound.request_errors(RDKafkaApiKey::Produce, &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_INVALID_RECORD]);
    assert_eq!(post_ids(&http, &engine.url, &[2]).status(), 200);
    assert!(wait_for_dead(&dead_path, 2).contains(&2), "the invalid record is dead-lettered");
    assert_eq!(post_ids(&http, &engine.url, &[3, 4]).status(), 200);
    let written = wait_for_written(&outbound.bootstrap_servers(), 3, 60);
    assert_eq!(written, [0, 3, 4], "the pipeline goes on");
    let letters = sluice_tests::read_ndjson(&dead_path);
    let kinds: Vec<&str> = letters.iter().map(|l| l["error"]["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["too-large", "invalid-record"], "{letters:?}");
    let api = Api::new(&engine);
    assert_eq!(api.get("/api/pipelines/relay").1["status"], "running");
    drop(engine);
}

/// The ids of the records in a dead-letter file, once at least `count` are there.
fn wait_for_dead(path: &std::path::Path, count: usize) -> Vec<u64> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let ids: Vec<u64> = sluice_tests::read_ndjson(path)
            .iter()
            .filter_map(|l| {
                serde_json::from_str::<Value>(l["record"]["value"].as_str()?).ok()?["id"].as_u64()
            })
            .collect();
        if ids.len() >= count || Instant::now() > deadline {
            return ids;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The ids written to topic `out`, once at least `count` are there.
fn wait_for_written(bootstrap: &str, count: usize, seconds: u64) -> Vec<u64> {
    let deadline = Instant::now() + Duration::from_secs(seconds);
    loop {
        let ids: Vec<u64> = sluice_tests::broker::read_topic(bootstrap, "out")
            .iter()
            .filter_map(|r| serde_json::from_slice::<Value>(&r.value).ok()?["id"].as_u64())
            .collect();
        if ids.len() >= count || Instant::now() > deadline {
            return ids;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn kept_dead_letters_survive_a_restart() {
    let cluster = MockCluster::new(1).unwrap();
    cluster.create_topic("words", 1, 1).unwrap();
    let bootstrap = cluster.bootstrap_servers();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let log = dir.path().join("log");
    let engine = Engine::serve(SLUICE, &data, &[], &["--brokers", &bootstrap], &log);
    let api = Api::new(&engine);
    assert_eq!(api.upload("words", "hostile").0, 201);
    let out = dir.path().join("out.ndjson");
    assert_eq!(api.put("/api/pipelines/words", kafka_pipeline("words", "words", "words", &out)).0, 201);
    api.ingest_lines("words", "a\nreject\nb\n");
    api.wait_pipeline("words", "one dead letter", |v| v["dead_letters_pending"] == 1);
    let (_, before) = api.get("/api/pipelines/words/dead-letters");
    assert!(engine.signal("KILL").code().is_none());

    let engine = Engine::serve(SLUICE, &data, &[], &["--brokers", &bootstrap], &log);
    let api = Api::new(&engine);
    let (_, after) = api.get("/api/pipelines/words/dead-letters");
    assert_eq!(after["dead_letters"][0]["id"], before["dead_letters"][0]["id"]);
    assert_eq!(after["dead_letters"][0]["record"]["value"], "reject");
    assert!(after["pending"].as_u64() >= Some(1), "{after}");
    drop(engine);
}
