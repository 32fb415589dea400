//! The `kafka` sink against rdkafka's in-process mock cluster (3 brokers):
//! every record arrives with its key, headers and value, each output of a
//! fanning-out transform arrives once (none when it drops every record).
//! A broker that never acknowledges is tested in `tests/broker_outage.rs`.
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

    let mut seen = Vec::new();
    for message in read_topic(&brokers, "out", 20, Duration::from_secs(30)) {
        let header = message.headers.first().expect("a filename header");
        assert_eq!(header.0, "filename");
        assert_eq!(header.1, message.key.as_bytes());
        seen.push((message.key, message.value));
    }
    seen.sort();
    let expected: Vec<(String, String)> =
        (0..20).map(|i| (format!("f-{i:02}.txt"), format!("value {i}"))).collect();
    assert_eq!(seen, expected);
}

#[test]
fn each_output_of_a_fanning_out_transform_arrives_once_and_none_when_it_drops() {
    let cluster = MockCluster::new(3).unwrap();
    let brokers = cluster.bootstrap_servers();
    for copies in [3usize, 0] {
        let topic = format!("fanout-{copies}");
        cluster.create_topic(&topic, 3, 3).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let inputs = dir.path().join("in");
        std::fs::create_dir_all(&inputs).unwrap();
        for id in 0..20 {
            std::fs::write(inputs.join(format!("f-{id:02}.json")), format!("{{\"id\":{id}}}")).unwrap();
        }
        let path = write_pipeline(
            dir.path(),
            &format!(
                "name = \"fanout\"\n[source]\ntype = \"file\"\npath = \"in\"\nread = \"files\"\n\
                 [[stage]]\nname = \"fanout\"\nmodule = {module}\n[stage.config]\ncopies = {copies}\n\
                 [sink]\ntype = \"kafka\"\nbrokers = \"{brokers}\"\ntopic = \"{topic}\"\n",
                module = toml_path(&guest("fanout")),
            ),
        );
        let report = run_pipeline_file(&path).unwrap();
        assert_eq!((report.read, report.written, report.dead_lettered), (20, 20 * copies as u64, 0));

        // Waits past the expected count, so an extra copy would show.
        let mut seen: Vec<(String, String)> =
            read_topic(&brokers, &topic, 20 * copies + 1, Duration::from_secs(5))
                .into_iter()
                .map(|message| (message.key, message.value))
                .collect();
        seen.sort();
        // Every copy keeps its input's key (the file name).
        let mut expected: Vec<(String, String)> = (0..20)
            .flat_map(|id| {
                (0..copies)
                    .map(move |copy| (format!("f-{id:02}.json"), format!(r#"{{"id":{id},"copy":{copy}}}"#)))
            })
            .collect();
        expected.sort();
        assert_eq!(seen, expected, "{copies} copies of each of 20 records");
    }
}

/// A message as the test reads it back.
struct Received {
    key: String,
    value: String,
    headers: Vec<(String, Vec<u8>)>,
}

/// Reads `topic` from the start until `count` messages came or `patience`
/// passed.
fn read_topic(brokers: &str, topic: &str, count: usize, patience: Duration) -> Vec<Received> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", format!("check-{topic}"))
        .set("auto.offset.reset", "earliest")
        .create()
        .unwrap();
    consumer.subscribe(&[topic]).unwrap();
    let mut received = Vec::new();
    let deadline = Instant::now() + patience;
    while received.len() < count && Instant::now() < deadline {
        if let Some(Ok(message)) = consumer.poll(Duration::from_millis(200)) {
            let headers = message
                .headers()
                .map(|h| {
                    h.iter().map(|h| (h.key.to_string(), h.value.unwrap_or_default().to_vec())).collect()
                })
                .unwrap_or_default();
            received.push(Received {
                key: String::from_utf8(message.key().unwrap_or_default().to_vec()).unwrap(),
                value: String::from_utf8(message.payload().unwrap_or_default().to_vec()).unwrap(),
                headers,
            });
        }
    }
    received
}
