//! A start that cannot succeed ends the process: it prints why and exits
//! non-zero within seconds, whatever pipelines had started already (a
//! Kafka consumer's thread once kept a failed start alive forever). While
//! it starts, `/health` answers 503 `starting`.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use rdkafka::mocking::MockCluster;
use sluice_tests::broker::free_port;
use sluice_tests::engine::TOKEN;
use sluice_tests::guest;

use super::{SLUICE, toml_path};

/// A Kafka pipeline: a consumer thread is running by the time a later
/// step fails.
fn kafka_pipeline(dir: &Path) -> std::path::PathBuf {
    let path = dir.join("kafka.toml");
    let toml = format!(
        "name = \"consumer\"\n[source]\ntype = \"kafka\"\ntopics = [\"in\"]\n[[stage]]\nname = \"copy\"\nmodule = {}\n\
         [sink]\ntype = \"file\"\npath = \"out.ndjson\"\n",
        toml_path(&guest("passthrough"))
    );
    std::fs::write(&path, toml).unwrap();
    path
}

/// Runs `sluice run ARGS` and waits at most 30 s for it to exit.
fn run(dir: &Path, args: &[&str], token: &str) -> (Output, Duration) {
    let started = Instant::now();
    let mut child = Command::new(SLUICE)
        .arg("run")
        .args(args)
        .current_dir(dir)
        .env("SLUICE_API_TOKEN", token)
        .env("SLUICE_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    while child.try_wait().unwrap().is_none() {
        if started.elapsed() > Duration::from_secs(30) {
            let _ = child.kill();
            let output = child.wait_with_output().unwrap();
            panic!("still running after 30 s; stderr:\n{}", String::from_utf8_lossy(&output.stderr));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    (child.wait_with_output().unwrap(), started.elapsed())
}

fn assert_fails_with(output: &Output, message: &str) {
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "exit status {:?}; stderr:\n{stderr}", output.status);
    assert!(stderr.contains(message), "stderr should say {message:?}:\n{stderr}");
}

#[test]
fn a_port_in_use_fails_the_start_at_once() {
    let cluster = MockCluster::new(1).unwrap();
    cluster.create_topic("in", 1, 1).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let listen = taken.local_addr().unwrap().to_string();
    let pipeline = kafka_pipeline(dir.path());
    let bootstrap = cluster.bootstrap_servers();
    let args =
        [pipeline.to_str().unwrap(), "--listen", &listen, "--brokers", &bootstrap, "--data-dir", "data"];
    let (output, _) = run(dir.path(), &args, TOKEN);
    assert_fails_with(&output, &format!("cannot listen on {listen}"));
}

#[test]
fn a_short_token_fails_the_start_at_once() {
    let cluster = MockCluster::new(1).unwrap();
    cluster.create_topic("in", 1, 1).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let pipeline = kafka_pipeline(dir.path());
    let bootstrap = cluster.bootstrap_servers();
    let args = [
        pipeline.to_str().unwrap(),
        "--listen",
        "127.0.0.1:0",
        "--brokers",
        &bootstrap,
        "--data-dir",
        "data",
    ];
    let (output, _) = run(dir.path(), &args, "short");
    assert_fails_with(&output, "must be at least 16 characters");
}

#[test]
fn a_file_that_cannot_be_read_fails_the_start() {
    let dir = tempfile::tempdir().unwrap();
    let args = ["missing.toml", "--listen", "127.0.0.1:0", "--data-dir", "data"];
    let (output, _) = run(dir.path(), &args, TOKEN);
    assert_fails_with(&output, "missing.toml");

    // A lookup table that cannot be read is found when its stage is built,
    // after the Kafka pipeline before it is consuming.
    let cluster = MockCluster::new(1).unwrap();
    cluster.create_topic("in", 1, 1).unwrap();
    let kafka = kafka_pipeline(dir.path());
    let lookup = dir.path().join("lookup.toml");
    std::fs::write(
        &lookup,
        format!(
            "name = \"enriching\"\n[source]\ntype = \"file\"\npath = \"in.txt\"\n[[stage]]\nname = \"copy\"\nmodule = {}\n\
             capabilities = [\"lookup:geo\"]\n[lookup.geo]\nfile = \"gone.csv\"\nmatch = \"ip\"\n[sink]\ntype = \"file\"\npath = \"o.ndjson\"\n",
            toml_path(&guest("passthrough"))
        ),
    )
    .unwrap();
    std::fs::write(dir.path().join("in.txt"), "x\n").unwrap();
    let bootstrap = cluster.bootstrap_servers();
    let args = [
        kafka.to_str().unwrap(),
        lookup.to_str().unwrap(),
        "--listen",
        "127.0.0.1:0",
        "--brokers",
        &bootstrap,
        "--data-dir",
        "data",
    ];
    let (output, _) = run(dir.path(), &args, TOKEN);
    assert_fails_with(&output, "gone.csv");
}

#[test]
fn an_embedded_broker_that_cannot_start_fails_the_start() {
    let dir = tempfile::tempdir().unwrap();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let pipeline = kafka_pipeline(dir.path());
    let args = [
        pipeline.to_str().unwrap(),
        "--listen",
        "127.0.0.1:0",
        "--embedded-kafka-port",
        &port,
        "--data-dir",
        "data",
    ];
    let (output, _) = run(dir.path(), &args, TOKEN);
    assert_fails_with(&output, "the tansu broker");
}

#[test]
fn a_data_directory_in_use_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let _lock = sluice::identity::lock_data_dir(&dir.path().join("data")).unwrap();
    let (output, _) =
        run(dir.path(), &["--ingest-topic", "t", "--data-dir", "data", "--listen", "127.0.0.1:0"], TOKEN);
    assert_fails_with(&output, "uses the data directory");
}

#[test]
fn health_says_starting_until_the_engine_is_ready() {
    let dir = tempfile::tempdir().unwrap();
    let listen = format!("127.0.0.1:{}", free_port());
    let pipeline = kafka_pipeline(dir.path());
    // The embedded broker takes a moment to start: the port answers meanwhile.
    let mut child = Command::new(SLUICE)
        .args(["run", pipeline.to_str().unwrap(), "--listen", &listen, "--data-dir", "data"])
        .current_dir(dir.path())
        .env("SLUICE_API_TOKEN", TOKEN)
        .env("SLUICE_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let http = reqwest::blocking::Client::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut seen = Vec::new();
    loop {
        if let Ok(response) = http.get(format!("http://{listen}/health")).send() {
            let status = response.status().as_u16();
            let body: serde_json::Value = response.json().unwrap_or_default();
            seen.push((status, body["status"].as_str().unwrap_or_default().to_string()));
            if status == 200 {
                break;
            }
            assert_eq!((status, body["status"].as_str()), (503, Some("starting")));
        }
        assert!(Instant::now() < deadline, "never ready: {seen:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(seen.last().unwrap(), &(200, "ready".to_string()));
    let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
    assert!(child.wait().unwrap().success());
}
