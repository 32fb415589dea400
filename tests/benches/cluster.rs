//! Cluster mode on this machine: engines (`sluice serve --cluster`) on
//! three tansu brokers over one PostgreSQL, everything on loopback.
//!
//! - throughput with 1, 2 and 3 engines: once a pipeline's six partitions
//!   are spread over the engines, 100,000 records are produced to its topic
//!   and timed until all went through a passthrough module into the
//!   engines' file sinks;
//! - state convergence: a change made through engine A (pause, resume)
//!   until engines B and C show it;
//! - failover: SIGKILL one of three engines while records stream in, and
//!   time until every partition it owned has its committed offset move
//!   again (the group session is 6 s).
//!
//! Numbers, not pass/fail: `cargo bench -p sluice-tests --bench cluster`.
//! On 2 cores the engines, brokers and PostgreSQL share the same CPUs, so
//! more engines cannot mean more throughput here; the numbers show what a
//! cluster costs and how fast it heals, not how it scales.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};
use serde_json::Value;
use sluice_tests::broker::{BrokerCluster, create_topic};
use sluice_tests::engine::{Engine, TOKEN};
use sluice_tests::guest;

const SLUICE: &str = env!("CARGO_BIN_EXE_sluice-under-test");
const PARTITIONS: i32 = 6;
const RECORDS: usize = 100_000;

struct Cluster {
    brokers: BrokerCluster,
    name: String,
    dir: PathBuf,
    http: reqwest::blocking::Client,
}

impl Cluster {
    fn engine(&self, name: &str) -> Engine {
        let data = self.dir.join(name);
        std::fs::create_dir_all(&data).unwrap();
        Engine::serve_with_env(
            SLUICE,
            &data,
            &["--brokers", &self.brokers.bootstrap, "--cluster", &self.name],
            &[],
            &self.dir.join(format!("{name}.log")),
        )
    }

    fn send(&self, method: reqwest::Method, url: &str, body: Vec<u8>) -> Value {
        let response = self.http.request(method, url).bearer_auth(TOKEN).body(body).send().unwrap();
        let status = response.status();
        let body: Value = response.json().unwrap_or(Value::Null);
        assert!(status.is_success(), "{url}: {status} {body}");
        body
    }

    fn get(&self, url: &str) -> Value {
        self.http.get(url).bearer_auth(TOKEN).send().and_then(|r| r.json()).unwrap_or(Value::Null)
    }
}

fn pipeline(name: &str, topic: &str) -> String {
    format!(
        "name = \"{name}\"\n[source]\ntype = \"kafka\"\ntopics = [\"{topic}\"]\ncommit_interval_ms = 200\n\
         [source.options]\n\"session.timeout.ms\" = \"6000\"\n\"heartbeat.interval.ms\" = \"500\"\n\
         \"isolation.level\" = \"read_uncommitted\"\n\
         [batch]\nmax_records = 1024\nlinger_ms = 20\n\
         [[stage]]\nname = \"copy\"\nmodule = \"copy\"\n\
         [sink]\ntype = \"file\"\npath = \"{name}.ndjson\"\n"
    )
}

fn written(engines: &[&Engine], pipeline: &str) -> f64 {
    let label = format!("pipeline=\"{pipeline}\"");
    engines.iter().map(|e| e.metric("sluice_records_written_total", &[&label])).sum()
}

fn produce(bootstrap: &str, topic: &str) {
    let producer: BaseProducer =
        ClientConfig::new().set("bootstrap.servers", bootstrap).set("linger.ms", "20").create().unwrap();
    for id in 0..RECORDS {
        let value = format!("{{\"id\":{id},\"path\":\"/some/page/{id}.html\",\"status\":200}}");
        let key = id.to_string();
        let mut record = BaseRecord::to(topic).key(&key).payload(&value);
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((_, back)) => {
                    producer.poll(Duration::from_millis(10));
                    record = back;
                }
            }
        }
    }
    producer.flush(Duration::from_secs(120)).unwrap();
}

/// Records per second through `engines`: a pipeline on a topic of its own
/// is spread over them first, then the records are produced and timed
/// until every one is written (a join mid-run would time a rebalance).
fn throughput(cluster: &Cluster, engines: &[&Engine], name: &str) -> f64 {
    create_topic(&cluster.brokers.bootstrap, name, PARTITIONS);
    let url = &engines[0].url;
    cluster.send(
        reqwest::Method::PUT,
        &format!("{url}/api/pipelines/{name}"),
        pipeline(name, name).into_bytes(),
    );
    let ids: BTreeSet<String> = engines.iter().map(|e| member_id(cluster, e)).collect();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let owned = owners(cluster, engines[0], name);
        if owned.len() == PARTITIONS as usize && owned.values().cloned().collect::<BTreeSet<_>>() == ids {
            break;
        }
        assert!(Instant::now() < deadline, "{name} never spread over {ids:?}: {owned:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
    let started = Instant::now();
    produce(&cluster.brokers.bootstrap, name);
    let deadline = Instant::now() + Duration::from_secs(600);
    while written(engines, name) < RECORDS as f64 {
        assert!(Instant::now() < deadline, "{name}: not all {RECORDS} written after 10 minutes");
        std::thread::sleep(Duration::from_millis(20));
    }
    let elapsed = started.elapsed().as_secs_f64();
    cluster.send(reqwest::Method::DELETE, &format!("{url}/api/pipelines/{name}"), Vec::new());
    RECORDS as f64 / elapsed
}

/// Milliseconds from a change on `from` until every engine of `to` shows it.
fn convergence(cluster: &Cluster, from: &Engine, to: &[&Engine], rounds: usize) -> Vec<f64> {
    let mut times = Vec::new();
    for round in 0..rounds {
        let (action, status) = if round % 2 == 0 { ("pause", "paused") } else { ("resume", "running") };
        let started = Instant::now();
        cluster.send(reqwest::Method::POST, &format!("{}/api/pipelines/conv/{action}", from.url), Vec::new());
        for engine in to {
            while cluster.get(&format!("{}/api/pipelines/conv", engine.url))["status"] != status {
                assert!(started.elapsed() < Duration::from_secs(30), "{action} never reached {}", engine.url);
                std::thread::sleep(Duration::from_millis(5));
            }
        }
        times.push(started.elapsed().as_secs_f64() * 1000.0);
        std::thread::sleep(Duration::from_millis(300));
    }
    times
}

/// Milliseconds from an upload through `from` until every engine of `to`
/// lists the new version: the state topic's round trip.
fn module_convergence(cluster: &Cluster, from: &Engine, to: &[&Engine], rounds: usize) -> Vec<f64> {
    let module = std::fs::read(guest("passthrough")).unwrap();
    let mut times = Vec::new();
    for round in 0..rounds {
        // Same code, other bytes: a custom section makes a new version.
        let mut bytes = module.clone();
        let name = format!("round-{round}");
        bytes.extend_from_slice(&[0, (name.len() + 1) as u8, name.len() as u8]);
        bytes.extend_from_slice(name.as_bytes());
        let started = Instant::now();
        cluster.send(reqwest::Method::PUT, &format!("{}/api/modules/conv", from.url), bytes);
        for engine in to {
            while cluster.get(&format!("{}/api/modules/conv", engine.url))["versions"]
                .as_array()
                .is_none_or(|v| v.len() <= round)
            {
                assert!(
                    started.elapsed() < Duration::from_secs(30),
                    "round {round} never reached {}",
                    engine.url
                );
                std::thread::sleep(Duration::from_millis(5));
            }
        }
        times.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    times
}

fn member_id(cluster: &Cluster, engine: &Engine) -> String {
    let view = cluster.get(&format!("{}/api/cluster", engine.url));
    let this = view["members"].as_array().unwrap().iter().find(|m| m["this_engine"] == true).unwrap().clone();
    this["id"].as_str().unwrap().to_string()
}

/// The partitions of `pipeline` each member owns, as `engine` sees it.
fn owners(cluster: &Cluster, engine: &Engine, pipeline: &str) -> BTreeMap<i32, String> {
    let view = cluster.get(&format!("{}/api/cluster", engine.url));
    view["pipelines"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|p| p["pipeline"] == pipeline)
        .flat_map(|p| p["partitions"].as_array().cloned().unwrap_or_default())
        .map(|p| (p["partition"].as_i64().unwrap() as i32, p["member"].as_str().unwrap().to_string()))
        .collect()
}

fn committed(consumer: &BaseConsumer, topic: &str, partitions: &BTreeSet<i32>) -> BTreeMap<i32, i64> {
    let mut list = TopicPartitionList::new();
    for p in partitions {
        list.add_partition(topic, *p);
    }
    let Ok(list) = consumer.committed_offsets(list, Duration::from_secs(5)) else { return BTreeMap::new() };
    list.elements()
        .iter()
        .filter_map(|e| match e.offset() {
            Offset::Offset(o) => Some((e.partition(), o)),
            _ => None,
        })
        .collect()
}

/// Seconds from SIGKILL of the engine called `victim` until each of its
/// partitions has a committed offset beyond where it stood.
fn failover(cluster: &Cluster, survivor: &Engine, victim: Engine, victim_id: &str) -> f64 {
    // A joining engine can take two rebalances to settle: wait for a full
    // assignment in which the victim has its share.
    let deadline = Instant::now() + Duration::from_secs(60);
    let theirs: BTreeSet<i32> = loop {
        let owned = owners(cluster, survivor, "failover");
        let theirs = owned.iter().filter(|(_, m)| *m == victim_id).map(|(p, _)| *p).collect::<BTreeSet<_>>();
        if owned.len() == PARTITIONS as usize && !theirs.is_empty() {
            break theirs;
        }
        assert!(Instant::now() < deadline, "the victim never got its share: {owned:?}");
        std::thread::sleep(Duration::from_millis(200));
    };
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &cluster.brokers.bootstrap)
        .set("group.id", "sluice-failover")
        .set("isolation.level", "read_uncommitted")
        .create()
        .unwrap();
    let killed = Instant::now();
    assert!(!victim.signal("KILL").success());
    let at_kill = committed(&consumer, "streaming", &theirs);
    let mut moved = BTreeSet::new();
    while moved.len() < theirs.len() {
        assert!(killed.elapsed() < Duration::from_secs(120), "partitions {theirs:?} never moved on");
        for (partition, offset) in committed(&consumer, "streaming", &theirs) {
            if at_kill.get(&partition).is_none_or(|before| offset > *before) {
                moved.insert(partition);
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    killed.elapsed().as_secs_f64()
}

fn summary(values: &mut [f64]) -> String {
    values.sort_by(f64::total_cmp);
    format!("median {:.2}, max {:.2}", values[values.len() / 2], values[values.len() - 1])
}

fn main() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = Cluster {
        brokers: BrokerCluster::start(),
        name: format!("bench{}", std::process::id()),
        dir: dir.path().to_path_buf(),
        http: reqwest::blocking::Client::builder().timeout(Duration::from_secs(30)).build().unwrap(),
    };
    let a = cluster.engine("a");
    cluster.send(
        reqwest::Method::PUT,
        &format!("{}/api/modules/copy", a.url),
        std::fs::read(guest("passthrough")).unwrap(),
    );
    let one = throughput(&cluster, &[&a], "tput-1");
    let b = cluster.engine("b");
    let two = throughput(&cluster, &[&a, &b], "tput-2");
    let c = cluster.engine("c");
    let three = throughput(&cluster, &[&a, &b, &c], "tput-3");
    println!("\n| engines | records/s (Kafka → passthrough → file, {RECORDS} records) | vs 1 engine |");
    println!("|---|---|---|");
    for (n, rate) in [(1, one), (2, two), (3, three)] {
        println!("| {n} | {rate:.0} | {:.2}× |", rate / one);
    }

    create_topic(&cluster.brokers.bootstrap, "quiet", 1);
    cluster.send(
        reqwest::Method::PUT,
        &format!("{}/api/pipelines/conv", a.url),
        pipeline("conv", "quiet").into_bytes(),
    );
    for engine in [&b, &c] {
        while cluster.get(&format!("{}/api/pipelines/conv", engine.url))["status"] != "running" {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    let mut uploads = module_convergence(&cluster, &a, &[&b, &c], 20);
    println!(
        "\nstate convergence (a module uploaded through A until B and C list it), ms: {}",
        summary(&mut uploads)
    );
    let mut converged = convergence(&cluster, &a, &[&b, &c], 20);
    println!(
        "pause/resume through A until B and C report the pipeline paused/running (includes draining and stopping its consumer), ms: {}",
        summary(&mut converged)
    );

    // Failover: records stream into `streaming` through A's ingest.
    create_topic(&cluster.brokers.bootstrap, "streaming", PARTITIONS);
    cluster.send(
        reqwest::Method::PUT,
        &format!("{}/api/pipelines/failover", a.url),
        pipeline("failover", "streaming").into_bytes(),
    );
    let stop = Arc::new(AtomicBool::new(false));
    let ingest = {
        let (url, stop) = (a.url.clone(), stop.clone());
        std::thread::spawn(move || {
            let http = reqwest::blocking::Client::new();
            let mut id = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let body: String = (id..id + 50).map(|i| format!("{{\"id\":{i}}}\n")).collect();
                let _ = http
                    .post(format!("{url}/ingest/streaming"))
                    .bearer_auth(TOKEN)
                    .header("content-type", "application/x-ndjson")
                    .body(body)
                    .send();
                id += 50;
                std::thread::sleep(Duration::from_millis(50));
            }
        })
    };
    let ids = [member_id(&cluster, &a), member_id(&cluster, &b), member_id(&cluster, &c)];
    let spread = |among: &[&str]| {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let owned = owners(&cluster, &a, "failover");
            let holders: BTreeSet<&str> = owned.values().map(String::as_str).collect();
            if owned.len() == PARTITIONS as usize && holders == among.iter().copied().collect() {
                return;
            }
            assert!(Instant::now() < deadline, "never spread over {among:?}: {owned:?}");
            std::thread::sleep(Duration::from_millis(200));
        }
    };
    spread(&[&ids[0], &ids[1], &ids[2]]);
    let mut victim = c;
    let mut times = Vec::new();
    for round in 0..3 {
        std::thread::sleep(Duration::from_secs(2));
        times.push(failover(&cluster, &a, victim, &ids[2]));
        println!("failover round {round}: {:.1} s", times[round]);
        spread(&[&ids[0], &ids[1]]);
        victim = cluster.engine("c");
        spread(&[&ids[0], &ids[1], &ids[2]]);
    }
    stop.store(true, Ordering::Relaxed);
    ingest.join().unwrap();
    println!(
        "\nfailover (SIGKILL one of three engines until its partitions' committed offsets move again; session.timeout.ms = 6000), s: {}",
        summary(&mut times)
    );
    drop((a, b, victim));
}
