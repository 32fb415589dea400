//! A real Kafka-protocol broker for tests: a `tansu` process on a free
//! loopback port, and helpers to create topics and read them back with an
//! independent consumer.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::{Offset, TopicPartitionList};

/// A tansu broker; killed when dropped.
pub struct Tansu {
    child: Child,
    pub bootstrap: String,
    _dir: tempfile::TempDir,
}

/// The tansu binary: `SLUICE_TANSU`, `PATH` or `~/.cargo/bin` (where
/// `.ci/run` installs it).
pub fn tansu_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("SLUICE_TANSU") {
        return PathBuf::from(path);
    }
    let mut places: Vec<PathBuf> =
        std::env::var_os("PATH").map(|p| std::env::split_paths(&p).collect()).unwrap_or_default();
    if let Some(home) = std::env::var_os("HOME") {
        places.push(PathBuf::from(home).join(".cargo/bin"));
    }
    places.into_iter().map(|d| d.join("tansu")).find(|p| p.is_file()).expect(
        "the tansu broker is not installed: run .ci/run, or `cargo install tansu --locked --features dynostore,libsql`",
    )
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

impl Tansu {
    /// Starts a broker keeping its data in SQLite in a temporary directory.
    pub fn start() -> Tansu {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let url = format!("tcp://127.0.0.1:{port}");
        let log = std::fs::File::create(dir.path().join("tansu.log")).unwrap();
        let child = Command::new(tansu_binary())
            .arg("broker")
            .args(["--listener-url", &url, "--advertised-listener-url", &url])
            .arg("--storage-engine")
            // tansu resolves the SQLite path against its working directory.
            .arg("sqlite://tansu.db")
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start tansu");
        let bootstrap = format!("127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(&bootstrap).is_err() {
            assert!(Instant::now() < deadline, "tansu did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        Tansu { child, bootstrap, _dir: dir }
    }

    pub fn create_topic(&self, name: &str, partitions: i32) {
        create_topic(&self.bootstrap, name, partitions);
    }
}

impl Drop for Tansu {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn create_topic(bootstrap: &str, name: &str, partitions: i32) {
    let admin: AdminClient<DefaultClientContext> =
        ClientConfig::new().set("bootstrap.servers", bootstrap).create().unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let topic = NewTopic::new(name, partitions, TopicReplication::Fixed(1));
    let results =
        runtime
            .block_on(admin.create_topics(
                [&topic],
                &AdminOptions::new().operation_timeout(Some(Duration::from_secs(10))),
            ))
            .unwrap();
    for result in results {
        result.unwrap_or_else(|(topic, code)| panic!("create topic {topic}: {code}"));
    }
}

/// A record read back from a topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Read {
    pub partition: i32,
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub value: Vec<u8>,
    pub headers: Vec<(String, Vec<u8>)>,
}

/// Everything in `topic` now, read from the start of every partition by a
/// consumer outside any group.
pub fn read_topic(bootstrap: &str, topic: &str) -> Vec<Read> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "sluice-test-reader")
        // What the producers wrote, transactions or not; and tansu over
        // PostgreSQL 15 answers only read-uncommitted ListOffsets.
        .set("isolation.level", "read_uncommitted")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let metadata = consumer.fetch_metadata(Some(topic), Duration::from_secs(10)).unwrap();
    let partitions: Vec<i32> = metadata.topics()[0].partitions().iter().map(|p| p.id()).collect();
    let mut ends = HashMap::new();
    let mut list = TopicPartitionList::new();
    for &partition in &partitions {
        let (_, high) = consumer.fetch_watermarks(topic, partition, Duration::from_secs(10)).unwrap();
        if high > 0 {
            ends.insert(partition, high);
            list.add_partition_offset(topic, partition, Offset::Beginning).unwrap();
        }
    }
    let mut records = Vec::new();
    if ends.is_empty() {
        return records;
    }
    consumer.assign(&list).unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut positions: HashMap<i32, i64> = HashMap::new();
    while ends.iter().any(|(p, end)| positions.get(p).copied().unwrap_or(-1) + 1 < *end) {
        assert!(Instant::now() < deadline, "could not read {topic} to its end");
        let Some(message) = consumer.poll(Duration::from_millis(200)) else { continue };
        let message = message.unwrap();
        positions.insert(message.partition(), message.offset());
        records.push(Read {
            partition: message.partition(),
            offset: message.offset(),
            key: message.key().map(<[u8]>::to_vec),
            value: message.payload().unwrap_or_default().to_vec(),
            headers: message
                .headers()
                .map(|h| {
                    h.iter().map(|h| (h.key.to_string(), h.value.unwrap_or_default().to_vec())).collect()
                })
                .unwrap_or_default(),
        });
    }
    records
}

/// Three tansu brokers over one PostgreSQL (`scripts/kafka/pg-cluster.sh`),
/// on free loopback ports: stateless brokers sharing a store, so any of
/// them serves any request. Stopped when dropped.
pub struct BrokerCluster {
    dir: tempfile::TempDir,
    /// All three addresses, comma-separated.
    pub bootstrap: String,
}

impl BrokerCluster {
    pub fn start() -> BrokerCluster {
        let dir = tempfile::tempdir().unwrap();
        let output = BrokerCluster::script(dir.path(), &["start"]);
        let bootstrap = String::from_utf8(output).expect("utf-8").trim().to_string();
        assert_eq!(bootstrap.split(',').count(), 3, "pg-cluster.sh printed {bootstrap:?}");
        BrokerCluster { dir, bootstrap }
    }

    fn script(dir: &std::path::Path, args: &[&str]) -> Vec<u8> {
        let mut command = Command::new("bash");
        command.arg(crate::root().join("scripts/kafka/pg-cluster.sh")).arg(args[0]).arg(dir).args(&args[1..]);
        command.env("SLUICE_TANSU", tansu_binary());
        let output = command.output().expect("run pg-cluster.sh");
        assert!(
            output.status.success(),
            "pg-cluster.sh {args:?} failed (scripts/test-deps.sh installs PostgreSQL and tansu):\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
        output.stdout
    }

    /// Stops broker `n` (1 to 3) with SIGTERM and waits for it to exit.
    pub fn stop_broker(&self, n: u8) {
        BrokerCluster::script(self.dir.path(), &["stop-broker", &n.to_string()]);
    }

    /// Starts broker `n` again on its port and waits until it answers.
    pub fn start_broker(&self, n: u8) {
        BrokerCluster::script(self.dir.path(), &["start-broker", &n.to_string()]);
    }
}

impl Drop for BrokerCluster {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg(crate::root().join("scripts/kafka/pg-cluster.sh"))
            .arg("stop")
            .arg(self.dir.path())
            .output();
    }
}
