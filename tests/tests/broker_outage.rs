//! Brokers that are down: ingest answers 503 + Retry-After until the
//! broker is back, and what was acknowledged arrives; a Kafka sink whose
//! broker never acknowledges fails the run instead of losing records.
//!
//! In a test binary of its own, one test at a time: rdkafka's `MockCluster::broker_down`
//! closes the mock broker's listening socket and binds a new one to the
//! same port at once. A process spawned by another test at that moment
//! still holds the old socket between `fork` and `exec`, the bind fails
//! and librdkafka aborts the whole process (reproduced: one thread taking
//! a mock broker down and up while another spawns processes aborts within
//! a thousand cycles). Here nothing else spawns while a broker goes down.

use std::collections::BTreeSet;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use rdkafka::mocking::MockCluster;
use sluice_tests::engine::Engine;
use sluice_tests::ingest::{kafka_to_file_pipeline, post_ids_answer, wait_for_ids};
use sluice_tests::{guest, run_pipeline_file, toml_path, write_pipeline};

const SLUICE: &str = env!("CARGO_BIN_EXE_sluice-under-test");

/// Held by each test for its whole run: the harness runs tests in parallel,
/// and one test's engine start must not overlap another's `broker_down`.
fn one_at_a_time() -> MutexGuard<'static, ()> {
    static ONE: Mutex<()> = Mutex::new(());
    ONE.lock().unwrap_or_else(|e| e.into_inner())
}

#[test]
fn a_broker_that_is_down_gets_503_with_retry_after_and_service_resumes() {
    let _alone = one_at_a_time();
    let cluster = MockCluster::new(1).unwrap();
    cluster.create_topic("in", 1, 1).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let pipeline = kafka_to_file_pipeline(dir.path());
    let log = dir.path().join("engine.log");
    let args = ["--brokers", &cluster.bootstrap_servers(), "--ingest-delivery-timeout-ms", "3000"];
    let engine = Engine::start(SLUICE, &[&pipeline], &args, &log);
    let http = reqwest::blocking::Client::new();

    assert_eq!(post_ids_answer(&http, &engine, &[0, 1, 2]).0, 200);
    cluster.broker_down(1).unwrap();
    // The first request may wait out the delivery timeout; it must then
    // fail with 503, and later ones are refused at once.
    let (status, retry) = post_ids_answer(&http, &engine, &[3, 4]);
    assert_eq!(status, 503);
    assert!(retry.is_some(), "Retry-After is set");
    let started = Instant::now();
    let (status, retry) = post_ids_answer(&http, &engine, &[3, 4]);
    assert_eq!((status, retry.is_some()), (503, true));
    assert!(started.elapsed() < Duration::from_secs(3), "refused without waiting for the timeout");

    cluster.broker_up(1).unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (status, _) = post_ids_answer(&http, &engine, &[5, 6]);
        if status == 200 {
            break;
        }
        assert!(matches!(status, 503 | 429), "only retryable answers meanwhile, got {status}");
        assert!(Instant::now() < deadline, "ingest did not resume after the broker came back");
        std::thread::sleep(Duration::from_millis(500));
    }
    // What was acknowledged arrives; what was refused may or may not have
    // been written (the client was told to retry).
    let acknowledged: BTreeSet<u64> = [0, 1, 2, 5, 6].into();
    let seen = wait_for_ids(&[&dir.path().join("out.ndjson")], &acknowledged, 90);
    assert!(acknowledged.is_subset(&seen), "acknowledged records arrive: {seen:?}");
    let log_text = std::fs::read_to_string(&log).unwrap();
    assert!(log_text.contains("ingest producer"), "the broker failure is logged");
    drop(engine);
}

#[test]
fn unacknowledged_records_fail_the_run() {
    let _alone = one_at_a_time();
    let cluster = MockCluster::new(1).unwrap();
    cluster.create_topic("out", 1, 1).unwrap();
    cluster.broker_down(1).unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("in")).unwrap();
    std::fs::write(dir.path().join("in").join("one.txt"), "value").unwrap();
    let path = write_pipeline(
        dir.path(),
        &format!(
            "name = \"to-kafka\"\n[source]\ntype = \"file\"\npath = \"in\"\nread = \"files\"\n\
             [[stage]]\nname = \"copy\"\nmodule = {}\n\
             [sink]\ntype = \"kafka\"\nbrokers = \"{}\"\ntopic = \"out\"\n\
             [sink.options]\n\"message.timeout.ms\" = \"1500\"\n",
            toml_path(&guest("passthrough")),
            cluster.bootstrap_servers()
        ),
    );
    let error = run_pipeline_file(&path).expect_err("no broker acknowledges");
    let message = format!("{error:#}");
    assert!(message.contains("topic `out` did not acknowledge record"), "{message}");
}
