//! Cluster mode on real processes: three engines (`sluice serve --cluster`)
//! on three tansu brokers over one PostgreSQL, a lake on an HDFS with two
//! NameNodes, and the search emulator. Pipelines and modules are deployed
//! through one engine's API and run on all of them. While records stream
//! in through engine A's REST ingest, engine B is SIGKILLed, a broker is
//! stopped and started again, engine C is restarted, a new module version
//! is deployed through C, the active NameNode fails over, and a fourth
//! engine joins. Afterwards every record of the topic is in the lake
//! (read by fastavro) and in the index exactly once, or dead-lettered —
//! listed by any engine — and the new version runs on every engine.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;
use sluice_tests::broker::{BrokerCluster, create_topic, read_topic};
use sluice_tests::engine::{Api, Engine, TOKEN};
use sluice_tests::hdfs::HdfsHa;
use sluice_tests::opensearch::Emulator;
use sluice_tests::{guest, root};

use super::SLUICE;

const PARTITIONS: i32 = 6;
/// One record in this many is not JSON: the sinks dead-letter it (and the
/// second module version's stage does). Rare enough that a slow run's
/// letters stay within the 1000 an engine keeps to list.
const INVALID_EVERY: u64 = 40;
/// Dead letters an engine keeps per pipeline for the API.
const LETTERS_KEPT: usize = 1000;

/// What the cluster test asks an engine's API.
trait ClusterView {
    fn member_id(&self) -> String;
    fn owners(&self) -> BTreeMap<String, Vec<(i64, String)>>;
    fn search_stage_version(&self) -> Option<u64>;
    fn dead_letters(&self, pipeline: &str) -> Vec<((i64, i64), String)>;
}

impl ClusterView for Api {
    /// This engine's member id.
    fn member_id(&self) -> String {
        let (_, view) = self.get("/api/cluster");
        view["members"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|m| m["this_engine"] == true)
            .and_then(|m| m["id"].as_str())
            .expect("the engine lists itself")
            .to_string()
    }

    /// Per pipeline, (partition, member) for each partition a live member
    /// says it owns, as this engine sees it.
    fn owners(&self) -> BTreeMap<String, Vec<(i64, String)>> {
        let (_, view) = self.get("/api/cluster");
        let mut owners: BTreeMap<String, Vec<(i64, String)>> = BTreeMap::new();
        for pipeline in view["pipelines"].as_array().into_iter().flatten() {
            let name = pipeline["pipeline"].as_str().unwrap_or_default().to_string();
            for partition in pipeline["partitions"].as_array().into_iter().flatten() {
                owners.entry(name.clone()).or_default().push((
                    partition["partition"].as_i64().unwrap_or(-1),
                    partition["member"].as_str().unwrap_or_default().to_string(),
                ));
            }
        }
        owners
    }

    /// The module version the `search` pipeline's stage runs here.
    fn search_stage_version(&self) -> Option<u64> {
        let (status, view) = self.get("/api/pipelines/search");
        if status != 200 {
            return None;
        }
        view["stages"][0]["version"].as_u64()
    }

    /// Every dead letter of `pipeline` this engine lists: (partition,
    /// offset) of the failed record, and the record's value.
    fn dead_letters(&self, pipeline: &str) -> Vec<((i64, i64), String)> {
        let (status, page) =
            self.get(&format!("/api/pipelines/{pipeline}/dead-letters?limit={LETTERS_KEPT}"));
        assert_eq!(status, 200, "{page}");
        page["dead_letters"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|letter| {
                let origin = &letter["origin"];
                let position = (origin["partition"].as_i64().unwrap(), origin["offset"].as_i64().unwrap());
                let value = letter["record"]["value"].as_str().unwrap_or_default().to_string();
                (position, value)
            })
            .collect()
    }
}

fn wait_until(what: &str, seconds: u64, mut done: impl FnMut() -> bool) -> Duration {
    let started = Instant::now();
    while !done() {
        assert!(started.elapsed() < Duration::from_secs(seconds), "not within {seconds} s: {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
    started.elapsed()
}

/// Every partition of both pipelines owned, by exactly the members in `ids`.
fn spread_over(api: &Api, ids: &[&str]) -> bool {
    let owners = api.owners();
    let expected: BTreeSet<&str> = ids.iter().copied().collect();
    ["lake", "search"].iter().all(|pipeline| {
        let Some(partitions) = owners.get(*pipeline) else { return false };
        let holders: BTreeSet<&str> = partitions.iter().map(|(_, member)| member.as_str()).collect();
        let distinct: BTreeSet<i64> = partitions.iter().map(|(partition, _)| *partition).collect();
        partitions.len() == PARTITIONS as usize && distinct.len() == partitions.len() && holders == expected
    })
}

struct Node {
    engine: Option<Engine>,
    data: PathBuf,
    log: PathBuf,
}

struct Harness {
    brokers: BrokerCluster,
    hdfs: HdfsHa,
    cluster: String,
}

impl Harness {
    fn start_engine(&self, dir: &Path, name: &str) -> Node {
        let data = dir.join(name);
        std::fs::create_dir_all(&data).unwrap();
        let log = dir.join(format!("{name}.log"));
        let engine = self.launch(&data, &log);
        Node { engine: Some(engine), data, log }
    }

    fn launch(&self, data: &Path, log: &Path) -> Engine {
        let conf = self.hdfs.conf_dir();
        Engine::serve_with_env(
            SLUICE,
            data,
            &["--brokers", &self.brokers.bootstrap, "--cluster", &self.cluster],
            &[("HADOOP_CONF_DIR", &conf)],
            log,
        )
    }
}

/// A pipeline reading `events` into `sink` through the `shape` module. A
/// short group session, so a dead engine's partitions move in seconds; and
/// read-uncommitted, the only isolation tansu 0.6 over PostgreSQL 15 can
/// list offsets for.
fn pipeline_toml(name: &str, sink: &str) -> String {
    format!(
        "name = \"{name}\"\n\
         [source]\ntype = \"kafka\"\ntopics = [\"events\"]\ncommit_interval_ms = 200\n\
         [source.options]\n\"session.timeout.ms\" = \"6000\"\n\"heartbeat.interval.ms\" = \"500\"\n\
         \"isolation.level\" = \"read_uncommitted\"\n\
         [batch]\nmax_records = 100\nlinger_ms = 10\n\
         [[stage]]\nname = \"shape\"\nmodule = \"shape\"\ntimeout_ms = 2000\n\
         {sink}"
    )
}

/// fastavro's view of the lake: how many times each id is there.
fn ids_in_lake(hdfs: &HdfsHa, url: &str, scratch: &Path) -> BTreeMap<u64, usize> {
    // Files are renamed into place while the copy runs: try again then.
    let mut attempts = 0;
    let local = loop {
        let local = scratch.join(format!("lake-copy-{}", sluice_tests::unique()));
        std::fs::create_dir_all(&local).unwrap();
        match hdfs.try_get(url, &local) {
            Ok(()) => break local,
            Err(error) if attempts < 5 => {
                attempts += 1;
                println!("cluster test: copying the lake failed, again: {error}");
            }
            Err(error) => panic!("hdfs dfs -get {url}: {error}"),
        }
    };
    let output = std::process::Command::new("python3")
        .arg(root().join("tests/scripts/read_avro.py"))
        .arg(&local)
        .output()
        .expect("python3");
    assert!(output.status.success(), "fastavro: {}", String::from_utf8_lossy(&output.stderr));
    let mut counts = BTreeMap::new();
    for line in output.stdout.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
        let row: Value = serde_json::from_slice(line).unwrap();
        *counts.entry(row["record"]["id"].as_u64().expect("an id")).or_default() += 1;
    }
    counts
}

/// The index's view: per document id (its Kafka position), the record id
/// and whether the second module version shaped it.
fn documents(emulator: &Emulator) -> Vec<(u64, bool)> {
    // One page: the test sends fewer documents than a search may return.
    let found = emulator.get("/events/_search?size=10000");
    assert!(
        found["hits"]["total"]["value"].as_u64().is_some_and(|n| n < 10_000),
        "{}",
        found["hits"]["total"]
    );
    found["hits"]["hits"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|hit| {
            let source = &hit["_source"];
            (source["id"].as_u64().expect("an id"), source["url"]["extension"] == "html")
        })
        .collect()
}

/// The test's directory, kept when the test fails: the engines' logs say
/// what went wrong.
struct KeptOnFailure(Option<tempfile::TempDir>);

impl KeptOnFailure {
    fn path(&self) -> &Path {
        self.0.as_ref().expect("present until dropped").path()
    }
}

impl Drop for KeptOnFailure {
    fn drop(&mut self) {
        if std::thread::panicking()
            && let Some(dir) = self.0.take()
        {
            eprintln!("cluster test: logs kept in {}", dir.keep().display());
        }
    }
}

#[test]
fn three_engines_fail_over_without_loss_or_duplicates() {
    let dir = KeptOnFailure(Some(tempfile::tempdir().unwrap()));
    let harness = Harness {
        brokers: BrokerCluster::start(),
        hdfs: HdfsHa::start(),
        cluster: format!("it{}", sluice_tests::unique().replace('-', "")),
    };
    let emulator = Emulator::start();
    create_topic(&harness.brokers.bootstrap, "events", PARTITIONS);
    let lake_url = format!("{}/lake-{}", harness.hdfs.url, sluice_tests::unique());

    let mut a = harness.start_engine(dir.path(), "a");
    let mut b = harness.start_engine(dir.path(), "b");
    let mut c = harness.start_engine(dir.path(), "c");
    let api_a = Api::new(a.engine.as_ref().unwrap());

    // Modules and pipelines go in through A only.
    let (status, body) =
        api_a.send(reqwest::Method::PUT, "/api/modules/shape", std::fs::read(guest("passthrough")).unwrap());
    assert_eq!(status, 201, "{body}");
    let schema = r#"{"type":"record","name":"Event","fields":[{"name":"id","type":"long"}]}"#;
    let lake = pipeline_toml(
        "lake",
        &format!(
            "[sink]\ntype = \"hdfs\"\nurl = \"{lake_url}\"\nschema = '{schema}'\ninput = \"json\"\n\
             ignore_unknown_fields = true\nmax_records = 300\nmax_age_ms = 700\n"
        ),
    );
    let search = pipeline_toml(
        "search",
        &format!(
            "[sink]\ntype = \"opensearch\"\nhosts = [\"{}\"]\nindex = \"events\"\nflush_interval_ms = 200\n",
            emulator.url
        ),
    );
    for (name, toml) in [("lake", lake), ("search", search)] {
        let (status, body) =
            api_a.send(reqwest::Method::PUT, &format!("/api/pipelines/{name}"), toml.into_bytes());
        assert_eq!(status, 201, "{body}");
        // Read-your-writes: the engine that took the change shows it.
        assert_eq!(api_a.get(&format!("/api/pipelines/{name}")).0, 200);
    }
    let ids = [&a, &b, &c].map(|n| Api::new(n.engine.as_ref().unwrap()).member_id());
    wait_until("the partitions spread over A, B and C", 90, || {
        spread_over(&api_a, &[&ids[0], &ids[1], &ids[2]])
    });

    // Records stream in through A for the rest of the test.
    let stop = Arc::new(AtomicBool::new(false));
    let next_id = Arc::new(AtomicU64::new(0));
    let ingest = {
        let (url, stop, next_id) = (api_a.url.clone(), stop.clone(), next_id.clone());
        std::thread::spawn(move || {
            let http = reqwest::blocking::Client::builder().timeout(Duration::from_secs(20)).build().unwrap();
            let mut refused = 0;
            while !stop.load(Ordering::Relaxed) {
                let first = next_id.load(Ordering::Relaxed);
                let body: String = (first..first + 10)
                    .map(|id| {
                        if id % INVALID_EVERY == INVALID_EVERY - 1 {
                            format!("not json {id}\n")
                        } else {
                            format!("{{\"id\":{id},\"url\":{{\"original\":\"/p/{id}.html\"}}}}\n")
                        }
                    })
                    .collect();
                let posted = http
                    .post(format!("{url}/ingest/events"))
                    .bearer_auth(TOKEN)
                    .header("content-type", "text/plain")
                    .body(body)
                    .send();
                match posted {
                    Ok(r) if r.status() == 200 => {
                        next_id.store(first + 10, Ordering::Relaxed);
                    }
                    // A broker restart may refuse a request; it is sent again
                    // (the topic, not this client, says what was written).
                    answer => {
                        if refused < 3 {
                            let answer =
                                answer.map(|r| format!("{} {}", r.status(), r.text().unwrap_or_default()));
                            println!("cluster test: ingest refused: {answer:?}");
                        }
                        refused += 1
                    }
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            refused
        })
    };
    std::thread::sleep(Duration::from_secs(3));

    // (a) B dies.
    assert!(!b.engine.take().unwrap().signal("KILL").success());
    let moved = wait_until("B's partitions move to A and C", 60, || spread_over(&api_a, &[&ids[0], &ids[2]]));
    println!("cluster test: B's partitions moved after {moved:?}");

    // (b) A broker stops and comes back.
    harness.brokers.stop_broker(2);
    std::thread::sleep(Duration::from_secs(3));
    harness.brokers.start_broker(2);

    // (c) C restarts on its data directory: the same member.
    assert!(c.engine.take().unwrap().signal("TERM").success());
    c.engine = Some(harness.launch(&c.data, &c.log));
    let api_c = Api::new(c.engine.as_ref().unwrap());
    assert_eq!(api_c.member_id(), ids[2], "a restarted engine keeps its id");
    wait_until("C takes its share again", 90, || spread_over(&api_a, &[&ids[0], &ids[2]]));

    // (d) A new version of the module, uploaded and deployed through C.
    let (status, body) =
        api_c.send(reqwest::Method::PUT, "/api/modules/shape", std::fs::read(guest("enrich")).unwrap());
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["version"], 2, "{body}");
    let (status, body) =
        api_c.send(reqwest::Method::POST, "/api/pipelines/search/stages/shape/deploy", b"{}".to_vec());
    assert_eq!(status, 200, "{body}");
    assert_eq!(api_c.search_stage_version(), Some(2), "read-your-writes on C");
    wait_until("A runs the new version", 30, || api_a.search_stage_version() == Some(2));
    let deployed_everywhere = next_id.load(Ordering::Relaxed);

    // (e) The active NameNode hands over to the other one mid-stream.
    harness.hdfs.failover();

    // (f) A fourth engine joins: it reads the state and takes partitions.
    let mut d = harness.start_engine(dir.path(), "d");
    let api_d = Api::new(d.engine.as_ref().unwrap());
    wait_until("D catches up the state", 30, || api_d.search_stage_version() == Some(2));
    let id_d = api_d.member_id();
    wait_until("D takes partitions", 90, || spread_over(&api_a, &[&ids[0], &ids[2], &id_d]));

    std::thread::sleep(Duration::from_secs(3));
    stop.store(true, Ordering::Relaxed);
    let refused = ingest.join().unwrap();
    let sent = next_id.load(Ordering::Relaxed);
    assert!(sent > 1000 && deployed_everywhere < sent, "too little went through: {sent} records");

    // What the topic holds is what must come out, once each.
    let topic = read_topic(&harness.brokers.bootstrap, "events");
    let mut valid: BTreeMap<u64, usize> = BTreeMap::new();
    let mut invalid: BTreeSet<(i64, i64)> = BTreeSet::new();
    for record in &topic {
        match serde_json::from_slice::<Value>(&record.value) {
            Ok(value) => *valid.entry(value["id"].as_u64().unwrap()).or_default() += 1,
            Err(_) => {
                invalid.insert((record.partition as i64, record.offset));
            }
        }
    }
    let valid_records: usize = valid.values().sum();
    println!("cluster test: {sent} records sent, {} in the topic, {} not JSON", topic.len(), invalid.len());
    assert!(
        invalid.len() <= LETTERS_KEPT,
        "{} invalid records: more than an engine keeps to list; the run was too slow",
        invalid.len()
    );

    let mut lake_ids = BTreeMap::new();
    wait_until("every valid record in the lake and the index", 180, || {
        lake_ids = ids_in_lake(&harness.hdfs, &lake_url, dir.path());
        lake_ids.values().sum::<usize>() >= valid_records
            && emulator.count("events") as usize >= valid_records
    });
    assert_eq!(lake_ids, valid, "every valid record of the topic is in the lake exactly once");
    let docs = documents(&emulator);
    let mut in_index: BTreeMap<u64, usize> = BTreeMap::new();
    for (id, _) in &docs {
        *in_index.entry(*id).or_default() += 1;
    }
    assert_eq!(in_index, valid, "every valid record of the topic is in the index exactly once");

    // Records read = written + dead-lettered: the rest of the topic is
    // dead-lettered, and any engine lists every engine's letters.
    for pipeline in ["lake", "search"] {
        let mut lettered = BTreeSet::new();
        wait_until(&format!("{pipeline}'s dead letters listed by D"), 30, || {
            lettered = api_d.dead_letters(pipeline).into_iter().map(|(position, _)| position).collect();
            lettered.len() >= invalid.len()
        });
        assert_eq!(
            lettered, invalid,
            "{pipeline}: the records that are not JSON, and only them, are dead letters"
        );
        let on_a: BTreeSet<(i64, i64)> = api_a.dead_letters(pipeline).into_iter().map(|(p, _)| p).collect();
        assert_eq!(on_a, lettered, "A lists the same dead letters as D");
    }

    // A letter an engine listed is replayed through another: D replays
    // one that A's share of the work dead-lettered, and A sees it replayed.
    let (_, page) = api_a.get("/api/pipelines/search/dead-letters?limit=1");
    let letter = page["dead_letters"][0]["id"].as_u64().expect("a dead letter");
    let (status, outcome) = api_d.send(
        reqwest::Method::POST,
        "/api/pipelines/search/dead-letters/replay",
        format!("{{\"ids\":[{letter}]}}").into_bytes(),
    );
    assert_eq!(status, 200, "{outcome}");
    assert_eq!(outcome["replayed"], 1, "{outcome}");
    assert_eq!(outcome["dead_lettered_again"], 1, "still not JSON: {outcome}");
    wait_until("A shows the letter replayed", 30, || {
        api_a.get(&format!("/api/pipelines/search/dead-letters/{letter}")).1["replayed"] == true
    });

    // The new version runs everywhere: each engine says so, and every
    // record sent after it did went through it.
    for api in [&api_a, &api_c, &api_d] {
        assert_eq!(api.search_stage_version(), Some(2), "{} runs version 2", api.url);
    }
    // Metrics tell the engines apart.
    for (api, id) in [(&api_a, ids[0].as_str()), (&api_c, ids[2].as_str()), (&api_d, id_d.as_str())] {
        let text = reqwest::blocking::get(format!("{}/metrics", api.url)).unwrap().text().unwrap();
        let info = text.lines().find(|l| l.starts_with("sluice_engine_info{")).expect("sluice_engine_info");
        assert!(info.contains(&format!("engine_id=\"{id}\"")), "{info}");
        assert!(info.contains(&format!("cluster=\"{}\"", harness.cluster)), "{info}");
    }
    let late: Vec<&(u64, bool)> = docs.iter().filter(|(id, _)| *id >= deployed_everywhere).collect();
    assert!(!late.is_empty());
    assert!(late.iter().all(|(_, shaped)| *shaped), "records after the deploy went through version 2");

    println!(
        "cluster test: {sent} records sent ({refused} requests refused and sent again), {} in the topic, {valid_records} valid, {} dead-lettered",
        topic.len(),
        invalid.len()
    );
    for node in [&mut a, &mut c, &mut d] {
        if let Some(engine) = node.engine.take() {
            assert!(engine.signal("TERM").success(), "a clean stop; see {}", node.log.display());
        }
    }
}
