//! The default users run: the engine with its own embedded broker (tansu
//! as a child process, data in the data directory), killed with SIGKILL
//! again and again while images and log lines stream in through REST
//! ingest, restarted on the same data directory each time. Afterwards
//! every acknowledged image is in the lake exactly once (as Python's
//! fastavro reads it) and every acknowledged line in the file sink exactly
//! once; after each restart, consumption resumed within a bounded time.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::blocking::multipart;
use serde_json::Value;
use sluice_tests::broker::free_port;
use sluice_tests::engine::{Engine, TOKEN};
use sluice_tests::{guest, root};

use super::{SLUICE, ids_in, post_ndjson, toml_path};

const GIF: &[u8] = b"GIF89a\x01\x00\x01\x00\x80\x00\x00\xff\xff\xff\x00\x00\x00!\xf9\x04\x01\x00\x00\x00\x00,\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;";
const KILLS: usize = 10;
/// How long a restarted engine may take to read again (measured: ~1.5 s
/// on a busy 2-core machine with a debug build; the bound is loose).
const RESUME_WITHIN: Duration = Duration::from_secs(20);

fn pipelines(dir: &Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let images = dir.join("images.toml");
    std::fs::write(
        &images,
        format!(
            "name = \"images-to-lake\"\n[source]\ntype = \"kafka\"\ntopics = [\"images\"]\n\
             [batch]\nmax_records = 16\nlinger_ms = 10\n\
             [[stage]]\nname = \"serialize\"\nmodule = {module}\nmax_memory_mb = 512\ntimeout_ms = 10000\n\
             [stage.config]\nverify = true\nthumbnail_px = 16\n\
             [sink]\ntype = \"hdfs\"\nschema = {schema}\ninput = \"avro\"\ncodec = \"zstd\"\n\
             timestamp_field = \"ingested_at\"\nmax_records = 50\nmax_age_ms = 300\n\
             [dead_letter]\ntype = \"file\"\npath = \"images.dead.ndjson\"\n",
            module = toml_path(&guest("image-serialize")),
            schema = toml_path(&root().join("pipelines/schemas/image.avsc")),
        ),
    )
    .unwrap();
    let lines = dir.join("lines.toml");
    std::fs::write(
        &lines,
        format!(
            "name = \"lines\"\n[source]\ntype = \"kafka\"\ntopics = [\"in\"]\ncommit_interval_ms = 200\n\
             [batch]\nmax_records = 50\nlinger_ms = 10\n[[stage]]\nname = \"copy\"\nmodule = {}\n\
             [sink]\ntype = \"file\"\npath = \"out.ndjson\"\n",
            toml_path(&guest("passthrough"))
        ),
    )
    .unwrap();
    (images, lines)
}

/// fastavro's view of every visible Avro file under `dir`: the file names
/// of the images there.
fn images_in_lake(dir: &Path) -> Vec<String> {
    let output = Command::new("python3")
        .arg(root().join("tests/scripts/read_avro.py"))
        .arg(dir)
        .output()
        .expect("python3");
    assert!(output.status.success(), "fastavro: {}", String::from_utf8_lossy(&output.stderr));
    output
        .stdout
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| {
            serde_json::from_slice::<Value>(l).unwrap()["record"]["filename"].as_str().unwrap().to_string()
        })
        .collect()
}

fn occurrences(log: &Path, needle: &str) -> usize {
    std::fs::read_to_string(log).unwrap_or_default().matches(needle).count()
}

#[test]
fn sigkill_loop_through_the_embedded_broker_delivers_every_acknowledged_record_once() {
    let dir = tempfile::tempdir().unwrap();
    let (images, lines) = pipelines(dir.path());
    let listen = format!("127.0.0.1:{}", free_port());
    let log = dir.path().join("engine.log");
    let data = dir.path().join("data");
    let args = ["--data-dir", data.to_str().unwrap()];
    let start = || Engine::start_on(SLUICE, &listen, &[&images, &lines], &args, &log);

    let accepted_images = Arc::new(Mutex::new(BTreeSet::new()));
    let accepted_lines = Arc::new(Mutex::new(BTreeSet::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let client = {
        let (images, lines, stop) = (accepted_images.clone(), accepted_lines.clone(), stop.clone());
        let url = format!("http://{listen}");
        std::thread::spawn(move || {
            let http = reqwest::blocking::Client::builder().timeout(Duration::from_secs(20)).build().unwrap();
            let mut next = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let names: Vec<String> = (next..next + 2).map(|n| format!("img-{n:05}.gif")).collect();
                let mut form = multipart::Form::new();
                for name in &names {
                    form = form.part("file", multipart::Part::bytes(GIF.to_vec()).file_name(name.clone()));
                }
                let posted =
                    http.post(format!("{url}/ingest/images")).bearer_auth(TOKEN).multipart(form).send();
                if posted.is_ok_and(|r| r.status() == 200) {
                    images.lock().unwrap().extend(names);
                }
                let ids: Vec<u64> = (next..next + 10).collect();
                let body: String = ids.iter().map(|id| format!("{{\"id\":{id}}}\n")).collect();
                let posted = post_ndjson(&http, &url, "in", body);
                if posted.is_ok_and(|r| r.status() == 200) {
                    lines.lock().unwrap().extend(ids);
                }
                next += 10;
                std::thread::sleep(Duration::from_millis(30));
            }
        })
    };

    let mut started = Instant::now();
    let mut engine = start();
    assert!(
        std::fs::read_to_string(&log).unwrap().contains("embedded tansu broker started"),
        "this test is about the tansu child (is tansu installed?); see {}",
        log.display()
    );
    let mut resumed = Vec::new();
    for round in 0..KILLS {
        // Each kill lands while both pipelines read and records flow. From
        // the restart (the process start) to both reading again:
        while occurrences(&log, "partitions assigned") < 2 * (round + 1) {
            assert!(
                started.elapsed() < RESUME_WITHIN,
                "round {round}: not reading after {:?}; see {}",
                started.elapsed(),
                log.display()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        resumed.push(started.elapsed());
        std::thread::sleep(Duration::from_millis(400 + (round as u64 * 317) % 900));
        assert!(!engine.signal("KILL").success());
        started = Instant::now();
        engine = start();
    }
    std::thread::sleep(Duration::from_millis(1000));
    stop.store(true, Ordering::Relaxed);
    client.join().unwrap();
    let accepted_images = accepted_images.lock().unwrap().clone();
    let accepted_lines = accepted_lines.lock().unwrap().clone();
    assert!(accepted_images.len() >= 20 && accepted_lines.len() >= 100, "too little got through");
    println!("embedded crash test: resumed after {resumed:?}");

    let lake = data.join("lake");
    let out = dir.path().join("out.ndjson");
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let in_lake: BTreeSet<String> = images_in_lake(&lake).into_iter().collect();
        let in_file: BTreeSet<u64> = ids_in(&out).into_iter().collect();
        if accepted_images.is_subset(&in_lake) && accepted_lines.is_subset(&in_file) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "acknowledged records missing: {} images, {} lines; see {}",
            accepted_images.difference(&in_lake).count(),
            accepted_lines.difference(&in_file).count(),
            log.display()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // Exactly once per Kafka record: an ingest request retried after a
    // kill may have put a record in a topic twice, and then both copies
    // belong in the sink. Read the topics back from the engine's broker.
    let bootstrap = std::fs::read_to_string(&log)
        .unwrap()
        .lines()
        .rev()
        .find_map(|l| Some(l.split("bootstrap=").nth(1)?.split_whitespace().next()?.to_string()))
        .expect("the broker's address in the log");
    let count = |values: Vec<String>| -> BTreeMap<String, usize> {
        values.into_iter().fold(BTreeMap::new(), |mut counts, v| {
            *counts.entry(v).or_default() += 1;
            counts
        })
    };
    let topic_images = count(
        sluice_tests::broker::read_topic(&bootstrap, "images")
            .into_iter()
            .map(|r| String::from_utf8(r.key.unwrap()).unwrap())
            .collect(),
    );
    let topic_lines = count(
        sluice_tests::broker::read_topic(&bootstrap, "in")
            .into_iter()
            .map(|r| serde_json::from_slice::<Value>(&r.value).unwrap()["id"].to_string())
            .collect(),
    );
    assert!(engine.signal("TERM").success(), "a clean stop after the crashes");
    let lake_images = count(images_in_lake(&lake));
    let file_lines = count(ids_in(&out).into_iter().map(|id| id.to_string()).collect());
    assert_eq!(lake_images, topic_images, "every image of the topic is in the lake exactly once");
    assert_eq!(file_lines, topic_lines, "every line of the topic is in the file exactly once");
    assert_eq!(occurrences(&data.join("kafka/tansu.log"), "panicked"), 0, "the broker never panicked");
    println!(
        "embedded crash test: {KILLS} kills, {} images and {} lines acknowledged, {} and {} records in the topics",
        accepted_images.len(),
        accepted_lines.len(),
        topic_images.values().sum::<usize>(),
        topic_lines.values().sum::<usize>()
    );
}

/// `/health` and the API's view of the embedded broker.
fn broker_health(url: &str) -> (u16, Value) {
    let response = reqwest::blocking::get(format!("{url}/health")).unwrap();
    let status = response.status().as_u16();
    (status, response.json().unwrap_or_default())
}

fn wait_for_health(url: &str, what: &str, done: impl Fn(u16, &Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (status, body) = broker_health(url);
        if done(status, &body) {
            return body;
        }
        assert!(Instant::now() < deadline, "never {what}: {status} {body}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn post_line(url: &str, id: u64) -> u16 {
    let body = format!("{{\"id\":{id}}}\n");
    post_ndjson(&reqwest::blocking::Client::new(), url, "in", body).map_or(0, |r| r.status().as_u16())
}

#[test]
fn a_broker_that_dies_or_stops_answering_is_reported_and_started_again() {
    let dir = tempfile::tempdir().unwrap();
    let (_, lines) = pipelines(dir.path());
    let log = dir.path().join("engine.log");
    let data = dir.path().join("data");
    let engine = Engine::start(SLUICE, &[&lines], &["--data-dir", data.to_str().unwrap()], &log);
    let (status, health) = broker_health(&engine.url);
    assert_eq!((status, health["kafka"]["up"].as_bool()), (200, Some(true)), "{health}");
    assert_eq!(post_line(&engine.url, 1), 200);

    // It dies: reported, started again, and ingest works again.
    let pid = health["kafka"]["pid"].as_u64().unwrap().to_string();
    assert!(Command::new("kill").args(["-KILL", &pid]).status().unwrap().success());
    let health =
        wait_for_health(&engine.url, "restarted", |status, h| status == 200 && h["kafka"]["restarts"] == 1);
    assert!(health["kafka"]["last_error"].as_str().unwrap_or_default().contains("exited"), "{health}");
    let deadline = Instant::now() + Duration::from_secs(30);
    while post_line(&engine.url, 2) != 200 {
        assert!(Instant::now() < deadline, "ingest never worked again");
        std::thread::sleep(Duration::from_millis(200));
    }

    // It stops answering (stopped, not dead): after three unanswered probes
    // it is killed and started again.
    let pid = health["kafka"]["pid"].as_u64().unwrap().to_string();
    assert!(Command::new("kill").args(["-STOP", &pid]).status().unwrap().success());
    let health = wait_for_health(&engine.url, "restarted after hanging", |status, h| {
        status == 200 && h["kafka"]["restarts"] == 2
    });
    assert!(
        health["kafka"]["last_error"].as_str().unwrap_or_default().contains("stopped answering"),
        "{health}"
    );
    assert_eq!(engine.metric("sluice_embedded_broker_restarts_total", &[]), 2.0);
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("ERROR") && text.contains("the embedded broker exited"), "said loudly in the log");

    // Both lines are delivered: what the broker acknowledged survived it.
    let out = dir.path().join("out.ndjson");
    let deadline = Instant::now() + Duration::from_secs(60);
    while !(ids_in(&out).contains(&1) && ids_in(&out).contains(&2)) {
        assert!(Instant::now() < deadline, "lines lost: {:?}; see {}", ids_in(&out), log.display());
        std::thread::sleep(Duration::from_millis(100));
    }
    drop(engine);
}
