//! Kafka benchmarks. Each compares sluice with a baseline in one run, on
//! one broker, and prints the ratio:
//!
//! - `pipeline-tansu`, `pipeline-mock`: Kafka → passthrough wasm → Kafka,
//!   run by sluice, against a consume-only baseline and a produce-only
//!   baseline (plain rdkafka clients with the settings sluice uses:
//!   acks=all, idempotence), and a plain rdkafka relay. On a tansu broker (a
//!   server storing in SQLite), and on rdkafka's mock cluster (in memory, in
//!   this process): the difference shows which one bounds the ratio. Goal:
//!   at least 0.8× the slower baseline.
//! - `ingest`: REST ingest at acks=all (NDJSON, 1,000 records a request,
//!   4 concurrent clients) against `kcat -P` producing the same records.
//!   On rdkafka's mock cluster, because Debian's kcat cannot talk to tansu.
//!   Goal: at least 0.3× kcat.
//!
//! `cargo bench -p sluice-tests --bench kafka` (part of `make bench`).

use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::{ClientConfig, Message};
use sluice::pipeline::Pipeline;
use sluice_tests::broker::Tansu;
use sluice_tests::engine::{Engine, TOKEN};
use sluice_tests::{guest, host};
use tokio_util::sync::CancellationToken;

const SLUICE: &str = env!("CARGO_BIN_EXE_sluice-under-test");
const PIPELINE_RECORDS: usize = 200_000;
/// rdkafka's mock cluster keeps at most 5 MiB (or 100,000 records) per
/// partition and drops the oldest beyond that (`rdkafka_mock.c`), which for
/// these records is about 53,000 per partition: 40,000 in each of three fit.
const MOCK_PIPELINE_RECORDS: usize = 120_000;
const INGEST_RECORDS: usize = 200_000;

fn value(i: usize) -> String {
    format!("{{\"id\":{i},\"msg\":\"a log-line sized record, about one hundred bytes long......\"}}")
}

fn rate(records: usize, elapsed: Duration) -> f64 {
    records as f64 / elapsed.as_secs_f64()
}

fn main() {
    // The engine's allocator settings, as the `sluice` binary sets them at start.
    sluice::memory::tune_allocator();
    // `cargo bench` passes `--bench`; a filter argument picks one benchmark.
    let filter = std::env::args().skip(1).find(|a| !a.starts_with("--"));
    let wanted = |name: &str| filter.as_deref().is_none_or(|f| name.contains(f));
    if wanted("pipeline-tansu") {
        let broker = Tansu::start();
        pipeline_on("tansu", PIPELINE_RECORDS, None, &broker.bootstrap, &|topic| {
            broker.create_topic(topic, 3)
        });
    }
    if wanted("pipeline-mock") {
        let cluster = MockCluster::new(1).unwrap();
        // Spread: a partition given more than its share would drop its oldest.
        pipeline_on(
            "rdkafka mock cluster",
            MOCK_PIPELINE_RECORDS,
            Some(3),
            &cluster.bootstrap_servers(),
            &|topic| cluster.create_topic(topic, 3, 1).unwrap(),
        );
    }
    if wanted("ingest") {
        ingest();
    }
}

/// A producer with the settings the Kafka sink uses.
fn producer(bootstrap: &str) -> FutureProducer {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("acks", "all")
        .set("enable.idempotence", "true")
        .create()
        .unwrap()
}

/// A consumer in a fresh `group` that reads from the start and commits nothing.
fn consumer(bootstrap: &str, group: &str) -> BaseConsumer {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", group)
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap()
}

/// Enqueues a record, waiting while the producer's local queue is full.
fn send(
    producer: &FutureProducer,
    mut record: FutureRecord<'_, (), [u8]>,
) -> rdkafka::producer::DeliveryFuture {
    loop {
        match producer.send_result(record) {
            Ok(delivery) => return delivery,
            Err((_, returned)) => {
                record = returned;
                std::thread::sleep(Duration::from_millis(1));
            }
        }
    }
}

/// Produces `count` records to `topic` the way the Kafka sink does; returns
/// the time until the last one was acknowledged. With `spread`, record `i`
/// goes to partition `i % spread` instead of where librdkafka's sticky
/// partitioner puts it (whole batches of thousands to one partition).
fn produce(bootstrap: &str, topic: &str, count: usize, spread: Option<usize>) -> Duration {
    let producer = producer(bootstrap);
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let started = Instant::now();
    runtime.block_on(async {
        let mut deliveries = Vec::with_capacity(count);
        for i in 0..count {
            let payload = value(i);
            let mut record = FutureRecord::to(topic).payload(payload.as_bytes());
            if let Some(partitions) = spread {
                record = record.partition((i % partitions) as i32);
            }
            deliveries.push(send(&producer, record));
        }
        for delivery in deliveries {
            delivery.await.unwrap().unwrap();
        }
    });
    let elapsed = started.elapsed();
    producer.flush(Duration::from_secs(10)).unwrap();
    elapsed
}

/// Reads `count` records of `topic` from the start in a fresh group.
fn consume(bootstrap: &str, topic: &str, count: usize) -> Duration {
    let consumer = consumer(bootstrap, "bench-baseline");
    consumer.subscribe(&[topic]).unwrap();
    let started = Instant::now();
    let mut seen = 0;
    while seen < count {
        if let Some(message) = consumer.poll(Duration::from_millis(100)) {
            message.unwrap();
            seen += 1;
        }
        assert!(started.elapsed() < Duration::from_secs(300), "consume baseline stalled at {seen}");
    }
    started.elapsed()
}

/// A plain rdkafka consumer feeding a plain rdkafka producer, no sluice:
/// what the broker allows when it reads and writes at once.
fn relay(bootstrap: &str, from: &str, to: &str, count: usize) -> Duration {
    let consumer = consumer(bootstrap, "bench-relay");
    consumer.subscribe(&[from]).unwrap();
    let producer = producer(bootstrap);
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let started = Instant::now();
    runtime.block_on(async {
        let mut deliveries = Vec::with_capacity(count);
        while deliveries.len() < count {
            let Some(message) = consumer.poll(Duration::from_millis(100)) else { continue };
            let message = message.unwrap();
            deliveries
                .push(send(&producer, FutureRecord::to(to).payload(message.payload().unwrap_or_default())));
        }
        for delivery in deliveries {
            delivery.await.unwrap().unwrap();
        }
    });
    started.elapsed()
}

/// The pipeline and its baselines on one broker: `n` records of topic `in`,
/// spread evenly over `spread` partitions if given.
fn pipeline_on(broker: &str, n: usize, spread: Option<usize>, bootstrap: &str, create_topic: &dyn Fn(&str)) {
    for topic in ["in", "out", "relayed"] {
        create_topic(topic);
    }
    let produce_time = produce(bootstrap, "in", n, spread);
    let consume_time = consume(bootstrap, "in", n);
    let relay_time = relay(bootstrap, "in", "relayed", n);

    // The stage on one worker and on the default (one per core): on a
    // machine that also runs the broker, a second worker competes with it.
    let mut pipeline_rates = Vec::new();
    for (label, parallelism) in [("1 worker", "parallelism = 1\n"), ("default workers", "")] {
        let out = format!("out-{}", pipeline_rates.len());
        create_topic(&out);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bench.toml");
        let text = format!(
            "name = \"bench-{n_run}\"\n[source]\ntype = \"kafka\"\nbrokers = \"{b}\"\ntopics = [\"in\"]\nstart_from = \"earliest\"\n\
             [[stage]]\nname = \"copy\"\nmodule = {m}\n{parallelism}[sink]\ntype = \"kafka\"\nbrokers = \"{b}\"\ntopic = \"{out}\"\n",
            n_run = pipeline_rates.len(),
            b = bootstrap,
            m = toml::Value::String(guest("passthrough").display().to_string()),
        );
        let config = sluice::config::parse_str(&path, &text).unwrap().remove(0);
        let pipeline = Pipeline::build(config, host()).unwrap();
        let stats = Arc::clone(&pipeline.stats);
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let shutdown = CancellationToken::new();
        let started = Instant::now();
        let run = runtime.spawn(pipeline.run(shutdown.clone()));
        while (stats.written.load(Ordering::Relaxed) as usize) < n {
            assert!(started.elapsed() < Duration::from_secs(600), "pipeline stalled");
            std::thread::sleep(Duration::from_millis(5));
        }
        let pipeline_time = started.elapsed();
        shutdown.cancel();
        runtime.block_on(run).unwrap().unwrap();
        pipeline_rates.push((label, rate(n, pipeline_time)));
    }

    let (produce_rate, consume_rate, relay_rate) =
        (rate(n, produce_time), rate(n, consume_time), rate(n, relay_time));
    let slower = produce_rate.min(consume_rate);
    println!("pipeline ({n} records of ~100 bytes, {broker}, 3 partitions)");
    println!("  produce-only baseline              {produce_rate:>10.0} records/s");
    println!("  consume-only baseline              {consume_rate:>10.0} records/s");
    println!("  rdkafka consume → produce relay    {relay_rate:>10.0} records/s");
    for (label, pipeline_rate) in pipeline_rates {
        println!("  sluice kafka → wasm → kafka, {label:<16} {pipeline_rate:>10.0} records/s");
        println!(
            "    ratio to the slower baseline: {:.2}× (goal ≥ 0.8×); to the plain relay: {:.2}×",
            pipeline_rate / slower,
            pipeline_rate / relay_rate
        );
    }
}

fn ingest() {
    let cluster = MockCluster::new(1).unwrap();
    cluster.create_topic("kcat", 3, 1).unwrap();
    cluster.create_topic("ingest", 3, 1).unwrap();
    let bootstrap = cluster.bootstrap_servers();
    let n = INGEST_RECORDS;
    let dir = tempfile::tempdir().unwrap();

    let lines = dir.path().join("records.ndjson");
    let body: String = (0..n).map(|i| value(i) + "\n").collect();
    std::fs::write(&lines, &body).unwrap();
    let kcat = ["kcat", "kafkacat"].into_iter().find(|b| Command::new(b).arg("-V").output().is_ok());
    let kcat_rate = kcat.map(|kcat| {
        let started = Instant::now();
        let status = Command::new(kcat)
            .args([
                "-P",
                "-b",
                &bootstrap,
                "-t",
                "kcat",
                "-X",
                "acks=all",
                "-X",
                "enable.idempotence=true",
                "-l",
            ])
            .arg(&lines)
            .status()
            .unwrap();
        assert!(status.success());
        rate(n, started.elapsed())
    });

    let engine = Engine::start(
        SLUICE,
        &[],
        &["--brokers", &bootstrap, "--ingest-topic", "ingest", "--data-dir", dir.path().to_str().unwrap()],
        &dir.path().join("engine.log"),
    );
    let requests: Vec<String> = body.lines().collect::<Vec<_>>().chunks(1000).map(|c| c.join("\n")).collect();
    let requests = Arc::new(requests);
    let started = Instant::now();
    let clients: Vec<_> = (0..4)
        .map(|client| {
            let (requests, url) = (requests.clone(), format!("{}/ingest/ingest", engine.url));
            std::thread::spawn(move || {
                let http = reqwest::blocking::Client::new();
                for body in requests.iter().skip(client).step_by(4) {
                    loop {
                        let response = http
                            .post(&url)
                            .bearer_auth(TOKEN)
                            .header("content-type", "application/x-ndjson")
                            .body(body.clone())
                            .send()
                            .unwrap();
                        match response.status().as_u16() {
                            200 => break,
                            429 | 503 => std::thread::sleep(Duration::from_millis(20)),
                            other => panic!("ingest answered {other}"),
                        }
                    }
                }
            })
        })
        .collect();
    clients.into_iter().for_each(|c| c.join().unwrap());
    let ingest_rate = rate(n, started.elapsed());
    drop(engine);

    println!("ingest ({n} records of ~100 bytes, acks=all, mock cluster, 3 partitions)");
    println!("  REST ingest (NDJSON ×1000, 4 clients)  {ingest_rate:>10.0} records/s");
    match kcat_rate {
        Some(kcat_rate) => {
            println!("  kcat -P                                {kcat_rate:>10.0} records/s");
            println!("  ratio to kcat: {:.2}× (goal ≥ 0.3×)", ingest_rate / kcat_rate);
        }
        None => println!("  kcat not installed (apt-get install kcat): no baseline"),
    }
}
