//! Broker faults, injected with rdkafka's mock cluster (a real Kafka
//! protocol server in this process, with error injection): failing
//! produce, fetch and commit requests, a moving group coordinator and a
//! slow broker are retried through without loss. A broker that is down is
//! tested in its own binary, `tests/broker_outage.rs`, and says why.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use rdkafka::mocking::{MockCluster, MockCoordinator};
use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};
use sluice_tests::engine::Engine;

use sluice_tests::ingest::{kafka_to_file_pipeline, post_ids_answer};

use super::{SLUICE, post_ids, post_ndjson, wait_for_ids};

#[test]
fn failing_requests_and_a_moving_coordinator_lose_nothing() {
    let cluster = MockCluster::new(3).unwrap();
    cluster.create_topic("in", 3, 3).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let pipeline = kafka_to_file_pipeline(dir.path());
    let log = dir.path().join("engine.log");
    let engine = Engine::start(SLUICE, &[&pipeline], &["--brokers", &cluster.bootstrap_servers()], &log);
    let http = reqwest::blocking::Client::new();
    use RDKafkaRespErr::*;

    let mut expected = BTreeSet::new();
    for round in 0..10u64 {
        match round {
            1 => cluster.request_errors(RDKafkaApiKey::Produce, &[RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS; 4]),
            3 => {
                cluster.request_errors(RDKafkaApiKey::Fetch, &[RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION; 4])
            }
            5 => {
                cluster.request_errors(RDKafkaApiKey::OffsetCommit, &[RD_KAFKA_RESP_ERR_NOT_COORDINATOR; 3]);
                cluster.request_errors(RDKafkaApiKey::Heartbeat, &[RD_KAFKA_RESP_ERR_NOT_COORDINATOR; 2]);
            }
            6 => cluster.coordinator(MockCoordinator::Group("sluice-faulty".into()), 2).unwrap(),
            7 => cluster.broker_round_trip_time(1, Duration::from_millis(300)).unwrap(),
            _ => {}
        }
        let ids: Vec<u64> = (round * 50..round * 50 + 50).collect();
        let (status, _) = post_ids_answer(&http, &engine, &ids);
        assert_eq!(status, 200, "round {round}: librdkafka retries transient errors within the request");
        expected.extend(ids);
        std::thread::sleep(Duration::from_millis(200));
    }
    let seen = wait_for_ids(&[&dir.path().join("out.ndjson")], &expected, 90);
    let missing: Vec<u64> = expected.difference(&seen).copied().collect();
    assert!(missing.is_empty(), "lost {missing:?}; see {}", log.display());
    drop(engine);
}

/// Sends `ids` on another thread, so requests can overlap.
fn post_in_background(engine: &Engine, ids: Vec<u64>) -> std::thread::JoinHandle<(u16, Option<String>)> {
    let url = engine.url.clone();
    std::thread::spawn(move || {
        let response = post_ids(&reqwest::blocking::Client::new(), &url, &ids);
        let retry = response.headers().get("retry-after").map(|v| v.to_str().unwrap().to_string());
        (response.status().as_u16(), retry)
    })
}

#[test]
fn beyond_its_limits_ingest_answers_429_with_retry_after_and_buffers_nothing() {
    let cluster = MockCluster::new(1).unwrap();
    cluster.create_topic("in", 1, 1).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let pipeline = kafka_to_file_pipeline(dir.path());
    let log = dir.path().join("engine.log");
    let bootstrap = cluster.bootstrap_servers();
    // 30 records, or 2,000 bytes of bodies, in flight at most.
    let args =
        ["--brokers", &bootstrap, "--ingest-max-in-flight", "30", "--ingest-max-in-flight-bytes", "2000"];
    let engine = Engine::start(SLUICE, &[&pipeline], &args, &log);
    let http = reqwest::blocking::Client::new();
    assert_eq!(post_ids_answer(&http, &engine, &[0]).0, 200);

    // A slow broker keeps the first request's records in flight.
    cluster.broker_round_trip_time(1, Duration::from_millis(1500)).unwrap();
    let first = post_in_background(&engine, (1..21).collect());
    std::thread::sleep(Duration::from_millis(300));
    // 20 records in flight + 20 more passes max_in_flight = 30.
    let (status, retry) = post_ids_answer(&http, &engine, &(100..120).collect::<Vec<_>>());
    assert_eq!((status, retry.as_deref()), (429, Some("1")), "records in flight");
    assert_eq!(first.join().unwrap().0, 200);

    // Bodies: two of 10 records padded to ~1,300 bytes pass
    // max_in_flight_bytes = 2000 (while 20 records stay under 30).
    let padded = |ids: std::ops::Range<u64>| -> String {
        ids.map(|id| format!("{{\"id\":{id},\"pad\":\"{}\"}}\n", "p".repeat(120))).collect()
    };
    let url = engine.url.clone();
    let send = move |body: String| {
        let response = post_ndjson(&reqwest::blocking::Client::new(), &url, "in", body).unwrap();
        let retry = response.headers().get("retry-after").map(|v| v.to_str().unwrap().to_string());
        (response.status().as_u16(), retry)
    };
    let first = {
        let (send, body) = (send.clone(), padded(200..210));
        std::thread::spawn(move || send(body))
    };
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(send(padded(300..310)), (429, Some("1".to_string())), "bytes in flight");
    assert_eq!(first.join().unwrap().0, 200);

    // With the load gone, the same request passes.
    cluster.broker_round_trip_time(1, Duration::ZERO).unwrap();
    assert_eq!(send(padded(300..310)).0, 200);
    let expected: BTreeSet<u64> = [0].into_iter().chain(1..21).chain(200..210).chain(300..310).collect();
    let seen = wait_for_ids(&[&dir.path().join("out.ndjson")], &expected, 60);
    assert!(expected.is_subset(&seen), "every acknowledged record arrives");
    assert!(seen.iter().all(|id| !(100..120).contains(id)), "refused records were not produced");
}

#[test]
fn records_the_brokers_refuse_for_good_get_an_error_without_retry_after() {
    let cluster = MockCluster::new(1).unwrap();
    cluster.create_topic("in", 1, 1).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let pipeline = kafka_to_file_pipeline(dir.path());
    let log = dir.path().join("engine.log");
    let engine = Engine::start(SLUICE, &[&pipeline], &["--brokers", &cluster.bootstrap_servers()], &log);
    let http = reqwest::blocking::Client::new();
    use RDKafkaRespErr::*;

    for (error, expected) in
        [(RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE, 413), (RD_KAFKA_RESP_ERR_INVALID_RECORD, 400)]
    {
        cluster.request_errors(RDKafkaApiKey::Produce, &[error]);
        let response = post_ids(&http, &engine.url, &[1]);
        assert_eq!(response.status().as_u16(), expected, "{error:?}");
        assert!(response.headers().get("retry-after").is_none(), "{error:?}: retrying cannot help");
        let body: serde_json::Value = response.json().unwrap();
        assert_eq!(body["failed"][0]["retryable"], false, "{body}");
    }
    // A record larger than the broker's default limit never leaves.
    let big = format!("{{\"id\":1,\"pad\":\"{}\"}}\n", "x".repeat(1_100_000));
    let response = post_ndjson(&http, &engine.url, "in", big).unwrap();
    assert_eq!(response.status().as_u16(), 413);
    assert!(response.headers().get("retry-after").is_none());
    drop(engine);
}

/// The group's committed offset of `topic`'s partition 0, read by a
/// client outside the engine.
fn committed(bootstrap: &str, group: &str, topic: &str) -> i64 {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    let consumer: BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", group)
        .create()
        .unwrap();
    let mut list = rdkafka::TopicPartitionList::new();
    list.add_partition(topic, 0);
    let committed = consumer.committed_offsets(list, Duration::from_secs(10)).unwrap();
    match committed.elements()[0].offset() {
        rdkafka::Offset::Offset(offset) => offset,
        _ => -1,
    }
}

#[test]
fn a_failed_offset_commit_is_retried_even_when_nothing_new_arrives() {
    let cluster = MockCluster::new(1).unwrap();
    cluster.create_topic("in", 1, 1).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let pipeline = kafka_to_file_pipeline(dir.path());
    let log = dir.path().join("engine.log");
    let engine = Engine::start(SLUICE, &[&pipeline], &["--brokers", &cluster.bootstrap_servers()], &log);
    let http = reqwest::blocking::Client::new();
    assert_eq!(post_ids_answer(&http, &engine, &[0, 1, 2]).0, 200);
    let expected: BTreeSet<u64> = [0, 1, 2].into();
    wait_for_ids(&[&dir.path().join("out.ndjson")], &expected, 60);
    let deadline = Instant::now() + Duration::from_secs(30);
    while committed(&cluster.bootstrap_servers(), "sluice-faulty", "in") != 3 {
        assert!(Instant::now() < deadline, "the first records were never committed");
        std::thread::sleep(Duration::from_millis(100));
    }
    // The next commits fail; then the partition goes quiet.
    use RDKafkaRespErr::*;
    cluster.request_errors(RDKafkaApiKey::OffsetCommit, &[RD_KAFKA_RESP_ERR_INVALID_COMMIT_OFFSET_SIZE; 3]);
    assert_eq!(post_ids_answer(&http, &engine, &[3, 4]).0, 200);
    let deadline = Instant::now() + Duration::from_secs(30);
    while committed(&cluster.bootstrap_servers(), "sluice-faulty", "in") != 5 {
        assert!(
            Instant::now() < deadline,
            "offset 5 was never committed after failed commits; see {}",
            log.display()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("offset commit failed"), "the failures were seen: {text}");
    drop(engine);
}
