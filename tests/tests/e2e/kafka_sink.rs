//! The `kafka` sink against rdkafka's in-process mock cluster (3 brokers):
//! every record arrives with its key, headers and value, and a broker that
//! never acknowledges fails the run instead of losing records silently.
//! (Tests against a real broker process come with the Kafka source.)

use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::mocking::MockCluster;
use sluice_tests::guest;

use super::{run_pipeline_file, toml_path, write_pipeline};

fn pipeline(dir: &std::path::Path, brokers: &str, extra: &str) -> std::path::PathBuf {
    let inputs = dir.join("in");
    std::fs::create_dir_all(&inputs).unwrap();
    for i in 0..20 {
        std::fs::write(inputs.join(format!("f-{i:02}.txt")), format!("value {i}")).unwrap();
    }
    write_pipeline(
        dir,
        &format!(
            "name = \"to-kafka\"\n[source]\ntype = \"file\"\npath = \"in\"\nread = \"files\"\n[[stage]]\nname = \"copy\"\nmodule = {}\n[sink]\ntype = \"kafka\"\nbrokers = \"{brokers}\"\ntopic = \"out\"\n{extra}\n",
            toml_path(&guest("passthrough"))
        ),
    )
}

#[test]
fn records_arrive_with_keys_and_headers() {
    let cluster = MockCluster::new(3).unwrap();
    cluster.create_topic("out", 3, 3).unwrap();
    let brokers = cluster.bootstrap_servers();
    let dir = tempfile::tempdir().unwrap();
    let report = run_pipeline_file(&pipeline(dir.path(), &brokers, "")).unwrap();
    assert_eq!((report.read, report.written), (20, 20));

    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .set("group.id", "check")
        .set("auto.offset.reset", "earliest")
        .create()
        .unwrap();
    consumer.subscribe(&["out"]).unwrap();
    let mut seen = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while seen.len() < 20 && Instant::now() < deadline {
        if let Some(Ok(message)) = consumer.poll(Duration::from_millis(200)) {
            let key = String::from_utf8(message.key().unwrap().to_vec()).unwrap();
            let value = String::from_utf8(message.payload().unwrap().to_vec()).unwrap();
            let header = message.headers().unwrap().get(0);
            assert_eq!(header.key, "filename");
            assert_eq!(header.value, Some(key.as_bytes()));
            seen.push((key, value));
        }
    }
    seen.sort();
    let expected: Vec<(String, String)> =
        (0..20).map(|i| (format!("f-{i:02}.txt"), format!("value {i}"))).collect();
    assert_eq!(seen, expected);
}

#[test]
fn unacknowledged_records_fail_the_run() {
    let cluster = MockCluster::new(1).unwrap();
    cluster.create_topic("out", 1, 1).unwrap();
    cluster.broker_down(1).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = pipeline(
        dir.path(),
        &cluster.bootstrap_servers(),
        "[sink.options]\n\"message.timeout.ms\" = \"1500\"",
    );
    let error = run_pipeline_file(&path).expect_err("no broker acknowledges");
    let message = format!("{error:#}");
    assert!(message.contains("topic `out` did not acknowledge record"), "{message}");
}
