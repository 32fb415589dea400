//! A stage on several workers (`parallelism = N`): output keeps input
//! order (a file's lines, each Kafka partition's records), every record is
//! written or dead-lettered exactly once, and offsets are committed only
//! for what is durable.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde_json::json;

use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use sluice::config;
use sluice::pipeline::Pipeline;
use sluice_tests::{guest, read_ndjson};
use tokio_util::sync::CancellationToken;

use super::api::{Api, kafka_pipeline};
use super::{SLUICE, run_pipeline_file, toml_path, write_pipeline};

/// Lines `{"n":N}`, with every 97th `reject` (the guest refuses it) and
/// every 389th `trap` (the whole call fails; the batch is retried one
/// record at a time, and only that record is dead-lettered).
fn input_lines(count: usize) -> (String, Vec<u64>, usize) {
    let mut text = String::new();
    let mut kept = Vec::new();
    let mut failing = 0;
    for n in 0..count as u64 {
        if n % 97 == 13 {
            text.push_str("reject\n");
            failing += 1;
        } else if n % 389 == 7 {
            text.push_str("trap\n");
            failing += 1;
        } else {
            text.push_str(&format!("{{\"n\":{n}}}\n"));
            kept.push(n);
        }
    }
    (text, kept, failing)
}

fn run_file_pipeline(
    dir: &std::path::Path,
    parallelism: u32,
) -> (Vec<u64>, usize, sluice::pipeline::PipelineReport) {
    let out = format!("out-{parallelism}.ndjson");
    let dead = format!("dead-{parallelism}.ndjson");
    let pipeline = write_pipeline(
        dir,
        &format!(
            "name = \"parallel\"\n[source]\ntype = \"file\"\npath = \"in.log\"\nread = \"lines\"\n\
             [batch]\nmax_records = 37\nlinger_ms = 5\n\
             [[stage]]\nname = \"hostile\"\nmodule = {module}\nparallelism = {parallelism}\n\
             [stage.quarantine]\nfailure_ratio = 0.9\n\
             [sink]\ntype = \"file\"\npath = {out:?}\n[dead_letter]\ntype = \"file\"\npath = {dead:?}\n",
            module = toml_path(&guest("hostile")),
        ),
    );
    let report = run_pipeline_file(&pipeline).unwrap();
    let written: Vec<u64> = read_ndjson(&dir.join(&out)).iter().map(|v| v["n"].as_u64().unwrap()).collect();
    let dead = read_ndjson(&dir.join(&dead)).len();
    (written, dead, report)
}

#[test]
fn four_workers_keep_a_files_order_and_every_record_is_written_or_dead_lettered_once() {
    let dir = tempfile::tempdir().unwrap();
    let (text, kept, failing) = input_lines(12_000);
    std::fs::write(dir.path().join("in.log"), text).unwrap();

    let (written, dead, report) = run_file_pipeline(dir.path(), 4);
    assert_eq!(report.read, 12_000);
    assert_eq!(written, kept, "every good line once, in file order");
    assert_eq!(dead, failing, "every refused or trapping line dead-lettered once");
    assert_eq!(report.dead_lettered as usize, failing);
    assert_eq!(report.stages[0].counters.records_in, 12_000);
    assert_eq!(report.stages[0].counters.workers, 4);

    // One worker writes the very same file.
    let (one, dead_one, _) = run_file_pipeline(dir.path(), 1);
    assert_eq!(one, written);
    assert_eq!(dead_one, dead);
    assert_eq!(
        std::fs::read(dir.path().join("out-1.ndjson")).unwrap(),
        std::fs::read(dir.path().join("out-4.ndjson")).unwrap()
    );
}

#[test]
fn three_workers_keep_each_kafka_partitions_order_and_commit_everything() {
    const PARTITIONS: i32 = 3;
    const PER_PARTITION: u64 = 1_000;
    let cluster = MockCluster::new(1).unwrap();
    cluster.create_topic("events", PARTITIONS, 1).unwrap();
    let bootstrap = cluster.bootstrap_servers();
    let runtime = tokio::runtime::Runtime::new().unwrap();

    // Each partition gets its own increasing sequence, interleaved.
    let producer: FutureProducer = ClientConfig::new().set("bootstrap.servers", &bootstrap).create().unwrap();
    runtime.block_on(async {
        for seq in 0..PER_PARTITION {
            for partition in 0..PARTITIONS {
                let value = if seq % 50 == 3 {
                    "reject".to_string()
                } else {
                    format!("{{\"p\":{partition},\"seq\":{seq}}}")
                };
                let record = FutureRecord::<(), _>::to("events").partition(partition).payload(&value);
                producer.send(record, Duration::from_secs(10)).await.unwrap();
            }
        }
    });

    let dir = tempfile::tempdir().unwrap();
    let pipeline = write_pipeline(
        dir.path(),
        &format!(
            "name = \"parallel-kafka\"\n[source]\ntype = \"kafka\"\nbrokers = {bootstrap:?}\ntopics = [\"events\"]\n\
             group_id = \"parallel\"\ncommit_interval_ms = 100\n\
             [batch]\nmax_records = 40\nlinger_ms = 5\n\
             [[stage]]\nname = \"hostile\"\nmodule = {module}\nparallelism = 3\n\
             [sink]\ntype = \"file\"\npath = \"out.ndjson\"\n[dead_letter]\ntype = \"file\"\npath = \"dead.ndjson\"\n",
            module = toml_path(&guest("hostile")),
        ),
    );
    let mut configs = config::load_file(&pipeline).unwrap();
    let pipeline = Pipeline::build(configs.remove(0), sluice_tests::host()).unwrap();
    let shutdown = CancellationToken::new();
    let run = runtime.spawn(pipeline.run(shutdown.clone()));

    let total = PER_PARTITION as usize * PARTITIONS as usize;
    let rejected = (0..PER_PARTITION).filter(|s| s % 50 == 3).count() * PARTITIONS as usize;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let written = read_ndjson(&dir.path().join("out.ndjson")).len();
        let dead = read_ndjson(&dir.path().join("dead.ndjson")).len();
        if written + dead >= total {
            break;
        }
        assert!(Instant::now() < deadline, "{written} written and {dead} dead-lettered of {total}");
        std::thread::sleep(Duration::from_millis(100));
    }
    // Commits are periodic: give the last one its interval.
    std::thread::sleep(Duration::from_millis(500));
    shutdown.cancel();
    let report = runtime.block_on(run).unwrap().unwrap();
    assert_eq!(report.read as usize, total);

    let mut sequences: BTreeMap<u64, Vec<u64>> = BTreeMap::new();
    for document in read_ndjson(&dir.path().join("out.ndjson")) {
        sequences.entry(document["p"].as_u64().unwrap()).or_default().push(document["seq"].as_u64().unwrap());
    }
    let expected: Vec<u64> = (0..PER_PARTITION).filter(|s| s % 50 != 3).collect();
    for partition in 0..PARTITIONS as u64 {
        assert_eq!(sequences[&partition], expected, "partition {partition}: each record once, in order");
    }
    assert_eq!(read_ndjson(&dir.path().join("dead.ndjson")).len(), rejected);

    // Every offset is committed: everything was durable.
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("group.id", "parallel")
        .create()
        .unwrap();
    let mut list = TopicPartitionList::new();
    for partition in 0..PARTITIONS {
        list.add_partition("events", partition);
    }
    let committed = consumer.committed_offsets(list, Duration::from_secs(10)).unwrap();
    for element in committed.elements() {
        assert_eq!(
            element.offset(),
            Offset::Offset(PER_PARTITION as i64),
            "partition {}",
            element.partition()
        );
    }
}

#[test]
fn two_workers_hold_order_through_quarantine_and_a_fixed_version() {
    let cluster = MockCluster::new(1).unwrap();
    cluster.create_topic("jobs", 1, 1).unwrap();
    let bootstrap = cluster.bootstrap_servers();
    let dir = tempfile::tempdir().unwrap();
    let engine = sluice_tests::engine::Engine::serve(
        SLUICE,
        &dir.path().join("data"),
        &[],
        &["--brokers", &bootstrap],
        &dir.path().join("log"),
    );
    let api = Api::new(&engine);
    // v1 traps on every `trap N` and passes `ok N` through; v2, a
    // passthrough, is the fix.
    assert_eq!(api.upload("job", "hostile").0, 201);
    assert_eq!(api.upload("job", "passthrough").0, 201);
    let out = dir.path().join("out.ndjson");
    let toml = kafka_pipeline("jobs", "jobs", "job@1", &out)
        .replace("name = \"work\"\n", "name = \"work\"\nparallelism = 2\n")
        + "[stage.quarantine]\nwindow = 100\nmin_records = 20\nfailure_ratio = 0.5\n";
    let (status, view) = api.put("/api/pipelines/jobs", toml);
    assert_eq!(status, 201, "{view}");

    // Four in five crash v1: enough to quarantine it, while the other
    // worker's batches still have outputs that must not overtake the
    // records held before them.
    let body: String =
        (0..600).map(|n| if n % 5 == 0 { format!("ok {n}\n") } else { format!("trap {n}\n") }).collect();
    api.ingest_lines("jobs", &body);
    let held = api.wait_pipeline("jobs", "holding records", |v| v["stages"][0]["held"].as_u64() > Some(0));
    assert_eq!(held["stages"][0]["workers"], 2);
    assert_eq!(engine.metric("sluice_stage_workers", &["pipeline=\"jobs\""]), 2.0);
    let (status, stage) =
        api.post("/api/pipelines/jobs/stages/work/deploy", json!({ "module": "job", "version": 2 }));
    assert_eq!(status, 200, "{stage}");

    let written = || -> Vec<u64> {
        std::fs::read_to_string(&out)
            .unwrap_or_default()
            .lines()
            .map(|l| l.split_once(' ').unwrap().1.parse().unwrap())
            .collect()
    };
    let dead = || -> Vec<u64> {
        read_ndjson(&out.with_extension("dead-letter.ndjson"))
            .iter()
            .map(|l| l["record"]["value"].as_str().unwrap().strip_prefix("trap ").unwrap().parse().unwrap())
            .collect()
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while written().len() + dead().len() < 600 {
        assert!(
            Instant::now() < deadline,
            "{} written + {} dead-lettered < 600",
            written().len(),
            dead().len()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_millis(500));
    let (written, dead) = (written(), dead());
    assert!(written.windows(2).all(|w| w[0] < w[1]), "the fix's outputs leave in order: {written:?}");
    let mut all: Vec<u64> = written.iter().chain(&dead).copied().collect();
    all.sort_unstable();
    assert_eq!(all, (0..600).collect::<Vec<_>>(), "each record written or dead-lettered, once");
    // The window trips at 20 records with half of them crashes at least.
    assert!((10..=100).contains(&dead.len()), "{} dead-lettered before the quarantine", dead.len());
}

#[test]
fn fan_out_and_drop_on_two_workers_arrive_counted_in_the_file_and_blackhole_sinks() {
    let dir = tempfile::tempdir().unwrap();
    let ids: String = (0..2_000).map(|n| format!("{{\"id\":{n}}}\n")).collect();
    std::fs::write(dir.path().join("in.log"), ids).unwrap();
    for copies in [3u64, 0] {
        for sink in ["[sink]\ntype = \"blackhole\"\n", "[sink]\ntype = \"file\"\npath = \"out.ndjson\"\n"] {
            let _ = std::fs::remove_file(dir.path().join("out.ndjson"));
            let pipeline = write_pipeline(
                dir.path(),
                &format!(
                    "name = \"fanout\"\n[source]\ntype = \"file\"\npath = \"in.log\"\n[batch]\nmax_records = 64\n\
                     [[stage]]\nname = \"fanout\"\nmodule = {module}\nparallelism = 2\n[stage.config]\ncopies = {copies}\n{sink}",
                    module = toml_path(&guest("fanout")),
                ),
            );
            let report = run_pipeline_file(&pipeline).unwrap();
            assert_eq!(report.read, 2_000);
            assert_eq!(report.written, 2_000 * copies, "{sink}");
            assert_eq!(report.dead_lettered, 0);
            if sink.contains("file") {
                let written: Vec<(u64, u64)> = read_ndjson(&dir.path().join("out.ndjson"))
                    .iter()
                    .map(|v| (v["id"].as_u64().unwrap(), v["copy"].as_u64().unwrap()))
                    .collect();
                let expected: Vec<(u64, u64)> =
                    (0..2_000).flat_map(|id| (0..copies).map(move |c| (id, c))).collect();
                assert_eq!(written, expected, "every copy once, in order");
            }
        }
    }
}

/// Four stages in a row, so batches pass from stage to stage both as
/// records and packed (`pipeline/handoff.rs`: a batch leaves a stage
/// packed unless each output is its input, in place): the second stage
/// rejects some records, traps on others (its batch is then retried
/// record by record) and fans `echo` out a hundredfold, which the last one
/// rejects; the third passes on what it gets. Every record arrives or is
/// dead-lettered once, by the stage that failed it, in order.
#[test]
fn records_passed_packed_between_stages_are_written_or_dead_lettered_once_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let mut text = String::new();
    let (mut kept, mut middle, mut last) = (Vec::new(), Vec::new(), Vec::new());
    for n in 0..3_000u64 {
        match n {
            _ if n % 97 == 13 => text.push_str("reject\n"),
            _ if n % 389 == 7 => text.push_str("trap\n"),
            _ if n % 701 == 5 => text.push_str("echo\n"),
            _ => {
                text.push_str(&format!("{{\"id\":{n}}}\n"));
                kept.push(n);
                continue;
            }
        }
        match n % 701 == 5 && n % 97 != 13 && n % 389 != 7 {
            true => last.extend(std::iter::repeat_n(n, 100)),
            false => middle.push(n),
        }
    }
    std::fs::write(dir.path().join("in.log"), text).unwrap();
    let pipeline = write_pipeline(
        dir.path(),
        &format!(
            "name = \"chain\"\n[source]\ntype = \"file\"\npath = \"in.log\"\n[batch]\nmax_records = 50\n\
             [[stage]]\nname = \"first\"\nmodule = {passthrough}\n\
             [[stage]]\nname = \"middle\"\nmodule = {hostile}\nparallelism = 2\n\
             [stage.quarantine]\nfailure_ratio = 0.9\n\
             [[stage]]\nname = \"relay\"\nmodule = {passthrough}\n\
             [[stage]]\nname = \"last\"\nmodule = {fanout}\nparallelism = 2\n[stage.config]\ncopies = 2\n\
             [sink]\ntype = \"file\"\npath = \"out.ndjson\"\n[dead_letter]\ntype = \"file\"\npath = \"dead.ndjson\"\n",
            passthrough = toml_path(&guest("passthrough")),
            hostile = toml_path(&guest("hostile")),
            fanout = toml_path(&guest("fanout")),
        ),
    );
    let report = run_pipeline_file(&pipeline).unwrap();
    assert_eq!(report.read, 3_000);
    let written: Vec<(u64, u64)> = read_ndjson(&dir.path().join("out.ndjson"))
        .iter()
        .map(|v| (v["id"].as_u64().unwrap(), v["copy"].as_u64().unwrap()))
        .collect();
    let expected: Vec<(u64, u64)> = kept.iter().flat_map(|&id| [(id, 0), (id, 1)]).collect();
    assert_eq!(written, expected, "every good line twice, in file order");
    assert_eq!(report.written, expected.len() as u64);

    let dead = read_ndjson(&dir.path().join("dead.ndjson"));
    let by_stage = |stage: &str| -> Vec<i64> {
        dead.iter().filter(|d| d["stage"] == stage).map(|d| d["origin"]["offset"].as_i64().unwrap()).collect()
    };
    assert_eq!(dead.len(), middle.len() + last.len());
    assert_eq!(report.dead_lettered as usize, dead.len());
    // File offsets count lines from 1.
    let lines = |ns: &[u64]| ns.iter().map(|&n| n as i64 + 1).collect::<Vec<_>>();
    let mut failed_in_middle = by_stage("middle");
    failed_in_middle.sort();
    assert_eq!(failed_in_middle, lines(&middle), "rejected and trapping lines, once each");
    assert_eq!(by_stage("last"), lines(&last), "each echo's hundred copies, refused by the last stage");
    let counters: Vec<_> =
        report.stages.iter().map(|s| (s.counters.records_in, s.counters.records_out)).collect();
    let into_last = (kept.len() + last.len()) as u64;
    assert_eq!(
        counters,
        [(3_000, 3_000), (3_000, into_last), (into_last, into_last), (into_last, 2 * kept.len() as u64)]
    );
}
