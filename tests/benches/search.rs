//! Web-logs-to-search benchmarks, each against a baseline in the same run:
//!
//! - `enrich` in wasm vs the same code native, over log-parse's documents
//!   of the Apache fixture, with the sample geo table (host lookups in wasm,
//!   an equivalent in-process table natively).
//! - the whole pipeline on a tansu broker: Kafka → log-parse → enrich →
//!   sink, against a consume-only baseline on the same topic. The sink is
//!   an NDJSON file (what the engine can do) and the OpenSearch sink on
//!   osmem-server (an emulator: its speed is not OpenSearch's).
//!   Goal: at least 0.5× the consume-only baseline.
//!
//! `cargo bench -p sluice-tests --bench search` (part of `make bench`).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bytes::Bytes;
use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use sluice::lookup::{KeyMatch, LookupTable, Lookups};
use sluice::pipeline::Pipeline;
use sluice::record::{Origin, Record};
use sluice::wasm::{Grants, Limits, TransformInstance, WasmHost};
use sluice_guest::testing::{self, TestRecord};
use sluice_tests::broker::Tansu;
use sluice_tests::opensearch::Emulator;
use sluice_tests::{fixture, guest, host, root};
use tokio_util::sync::CancellationToken;

const PIPELINE_LINES: usize = 100_000;

fn main() {
    // The engine's allocator settings, as the `sluice` binary sets them at start.
    sluice::memory::tune_allocator();
    let filter = std::env::args().skip(1).find(|a| !a.starts_with("--"));
    let wanted = |name: &str| filter.as_deref().is_none_or(|f| name.contains(f));
    if wanted("enrich") {
        enrich();
    }
    if wanted("pipeline") {
        pipeline();
    }
}

fn geo_table() -> Arc<LookupTable> {
    let path = root().join("pipelines/lookups/geoip-sample.csv");
    Arc::new(LookupTable::load("geoip", &path, KeyMatch::Ip).unwrap())
}

/// log-parse's documents for the Apache fixture.
fn parsed_documents() -> Vec<Vec<u8>> {
    let text = std::fs::read(fixture("logs/apache_combined_sample.log")).unwrap();
    let config = log_parse::ParseConfig::from_json("{}").unwrap();
    text.split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|line| {
            let mut out = Vec::new();
            log_parse::parse_line(line, &config, &mut out).unwrap();
            out
        })
        .collect()
}

/// `enrich` as a wasm instance granted the sample geo table.
fn wasm_enrich(table: Arc<LookupTable>) -> TransformInstance {
    let mut lookups = Lookups::new();
    lookups.insert("geoip".into(), table);
    let grants = Grants { lookups: Arc::new(lookups), ..Grants::default() };
    let module = WasmHost::new().load_file(&guest("enrich"), false).unwrap();
    TransformInstance::new(&module, &Limits::default(), &grants, ENRICH_CONFIG).unwrap()
}

const ENRICH_CONFIG: &str = r#"{"geoip_table": "geoip"}"#;

/// Documents as records at consecutive offsets.
fn as_records(documents: &[Vec<u8>]) -> Vec<Record> {
    documents
        .iter()
        .enumerate()
        .map(|(i, d)| {
            Record::new(
                Bytes::from(d.clone()),
                Origin { source: "bench".into(), partition: 0, offset: i as i64 },
            )
        })
        .collect()
}

/// The fixture's documents after log-parse and enrich (the wasm modules),
/// as the search sink receives them.
fn enriched_documents() -> Vec<Vec<u8>> {
    let records = as_records(&parsed_documents());
    let output = wasm_enrich(geo_table()).call(&records).unwrap();
    output.records.into_iter().map(|r| r.value.to_vec()).collect()
}

fn mean<R>(mut f: impl FnMut() -> R) -> Duration {
    for _ in 0..5 {
        std::hint::black_box(f());
    }
    let mut iterations = 0u32;
    let started = Instant::now();
    while started.elapsed() < Duration::from_millis(2000) {
        std::hint::black_box(f());
        iterations += 1;
    }
    started.elapsed() / iterations
}

fn enrich() {
    let documents = parsed_documents();
    let count = documents.len() as f64;
    let table = geo_table();
    let mut wasm = wasm_enrich(table.clone());
    let records = as_records(&documents);

    testing::grant_lookup("geoip", move |key| table.get(key).map(|row| row.to_string()));
    let mut native = testing::init::<enrich::Enrich>(ENRICH_CONFIG).unwrap();
    let inputs: Vec<TestRecord> = documents.iter().map(|d| TestRecord::new(d.clone())).collect();

    let w = count / mean(|| wasm.call(&records).unwrap()).as_secs_f64();
    let n = count / mean(|| testing::run(&mut native, &inputs)).as_secs_f64();
    println!("enrich ({} fixture documents, geo lookup on)", documents.len());
    println!("  wasm   {w:>10.0} documents/s");
    println!("  native {n:>10.0} documents/s");
    println!("  wasm/native = {:.2}", w / n);
}

fn pipeline() {
    let broker = Tansu::start();
    broker.create_topic("weblogs", 3);
    let lines: Vec<String> = std::fs::read_to_string(fixture("logs/apache_combined_sample.log"))
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &broker.bootstrap)
        .set("linger.ms", "20")
        .create()
        .unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let mut deliveries = Vec::with_capacity(PIPELINE_LINES);
        for i in 0..PIPELINE_LINES {
            let line = &lines[i % lines.len()];
            let key = i.to_string();
            loop {
                match producer.send_result(FutureRecord::to("weblogs").key(&key).payload(line)) {
                    Ok(delivery) => {
                        deliveries.push(delivery);
                        break;
                    }
                    Err(_) => tokio::time::sleep(Duration::from_millis(5)).await,
                }
            }
        }
        for delivery in deliveries {
            delivery.await.unwrap().unwrap();
        }
    });

    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &broker.bootstrap)
        .set("group.id", "bench-baseline")
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    consumer.subscribe(&["weblogs"]).unwrap();
    let started = Instant::now();
    let mut seen = 0;
    while seen < PIPELINE_LINES {
        if let Some(message) = consumer.poll(Duration::from_millis(100)) {
            message.unwrap();
            seen += 1;
        }
    }
    let baseline = PIPELINE_LINES as f64 / started.elapsed().as_secs_f64();
    drop(consumer);

    let stages = format!(
        "[batch]\nmax_records = 1024\nlinger_ms = 20\n\
         [[stage]]\nname = \"parse\"\nmodule = {parse}\n\
         [[stage]]\nname = \"enrich\"\nmodule = {enrich}\ncapabilities = [\"lookup:geoip\"]\n[stage.config]\ngeoip_table = \"geoip\"\n\
         [lookup.geoip]\nfile = {table}\nmatch = \"ip\"\n",
        parse = toml::Value::String(guest("log-parse").display().to_string()),
        enrich = toml::Value::String(guest("enrich").display().to_string()),
        table = toml::Value::String(root().join("pipelines/lookups/geoip-sample.csv").display().to_string()),
    );
    let dir = tempfile::tempdir().unwrap();
    let emulator = Emulator::start();
    let sinks = [
        ("file", "[sink]\ntype = \"file\"\npath = \"out.ndjson\"\n".to_string()),
        (
            "opensearch (emulator)",
            format!(
                "[sink]\ntype = \"opensearch\"\nhosts = [\"{}\"]\nindex = \"bench\"\nmax_docs = 2000\n",
                emulator.url
            ),
        ),
    ];
    println!("pipeline ({PIPELINE_LINES} Apache lines, tansu, 3 partitions)");
    println!("  consume-only baseline                      {baseline:>10.0} records/s");
    for (i, (name, sink)) in sinks.iter().enumerate() {
        let text = format!(
            "name = \"bench-{i}\"\n[source]\ntype = \"kafka\"\nbrokers = \"{b}\"\ntopics = [\"weblogs\"]\nstart_from = \"earliest\"\n{stages}{sink}",
            b = broker.bootstrap
        );
        let config = sluice::config::parse_str(&dir.path().join("bench.toml"), &text).unwrap().remove(0);
        let pipeline = Pipeline::build(config, host()).unwrap();
        let stats = Arc::clone(&pipeline.stats);
        let shutdown = CancellationToken::new();
        let started = Instant::now();
        let run = runtime.spawn(pipeline.run(shutdown.clone()));
        while (stats.written.load(Ordering::Relaxed) as usize) < PIPELINE_LINES {
            assert!(started.elapsed() < Duration::from_secs(600), "pipeline stalled");
            std::thread::sleep(Duration::from_millis(5));
        }
        let rate = PIPELINE_LINES as f64 / started.elapsed().as_secs_f64();
        shutdown.cancel();
        runtime.block_on(run).unwrap().unwrap();
        println!(
            "  kafka → parse → enrich → {name:<22} {rate:>10.0} records/s  ({:.2}× the baseline; goal ≥ 0.5×)",
            rate / baseline
        );
    }
    // What the emulator itself takes: the same number of enriched documents
    // sent as sequential 2,000-document _bulk requests, no sluice involved.
    let documents = enriched_documents();
    let client = reqwest::blocking::Client::new();
    let started = Instant::now();
    for chunk in (0..PIPELINE_LINES).collect::<Vec<_>>().chunks(2000) {
        let mut body = Vec::new();
        for &i in chunk {
            body.extend_from_slice(
                format!("{{\"index\":{{\"_index\":\"bench-direct\",\"_id\":\"{i}\"}}}}\n").as_bytes(),
            );
            body.extend_from_slice(&documents[i % documents.len()]);
            body.push(b'\n');
        }
        let response = client
            .post(format!("{}/_bulk", emulator.url))
            .header("content-type", "application/x-ndjson")
            .body(body)
            .send()
            .unwrap();
        assert!(response.status().is_success());
    }
    let direct = PIPELINE_LINES as f64 / started.elapsed().as_secs_f64();
    println!(
        "  _bulk straight to the emulator (no sluice)  {direct:>10.0} documents/s  (the emulator's own ceiling)"
    );
}
