//! Images to the lake, end to end, as a user runs it: the fixture images
//! (and broken ones) are POSTed to REST ingest, go through Kafka and
//! image-serialize into Avro files on a local directory and on a real HDFS;
//! an independent reader (Python fastavro; Hadoop's own client for HDFS)
//! and `sluice avro extract` get every image back byte-exact. Then the
//! crash test: SIGKILL the engine again and again while images stream in,
//! and find every acknowledged image in the lake exactly once.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::mocking::MockCluster;
use reqwest::blocking::multipart;
use serde_json::Value;
use sluice_tests::broker::free_port;
use sluice_tests::engine::{Engine, TOKEN};
use sluice_tests::hdfs::Hdfs;
use sluice_tests::{fixture, guest, root};

use super::{SLUICE, toml_path, write_pipeline};

const GIF: &[u8] = b"GIF89a\x01\x00\x01\x00\x80\x00\x00\xff\xff\xff\x00\x00\x00!\xf9\x04\x01\x00\x00\x00\x00,\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;";

fn fixtures() -> BTreeMap<String, Vec<u8>> {
    ["rocket.jpg", "coffee.png", "chelsea.png"]
        .into_iter()
        .map(|name| (name.to_string(), std::fs::read(fixture(&format!("images/{name}"))).unwrap()))
        .collect()
}

fn sha256(bytes: &[u8]) -> String {
    use sha2::Digest as _;
    hex::encode(sha2::Sha256::digest(bytes))
}

/// images-to-lake.toml's pipeline, pointed at `lake`.
fn pipeline(dir: &Path, lake: &str, max_records: usize, extra_source: &str) -> std::path::PathBuf {
    write_pipeline(
        dir,
        &format!(
            "name = \"images-to-lake\"\n\
             [source]\ntype = \"kafka\"\ntopics = [\"images\"]\n{extra_source}\n\
             [batch]\nmax_records = 16\nlinger_ms = 10\n\
             [[stage]]\nname = \"serialize\"\nmodule = {module}\nmax_memory_mb = 512\ntimeout_ms = 10000\n\
             [stage.config]\nverify = true\nthumbnail_px = 64\n\
             [sink]\ntype = \"hdfs\"\nurl = \"{lake}\"\nschema = {schema}\ninput = \"avro\"\ncodec = \"zstd\"\n\
             timestamp_field = \"ingested_at\"\nmax_records = {max_records}\nmax_age_ms = 300\n\
             [dead_letter]\ntype = \"file\"\npath = \"dead.ndjson\"\n",
            module = toml_path(&guest("image-serialize")),
            schema = toml_path(&root().join("pipelines/schemas/image.avsc")),
        ),
    )
}

fn post_images(
    http: &reqwest::blocking::Client,
    url: &str,
    images: &[(String, Vec<u8>)],
) -> reqwest::Result<reqwest::blocking::Response> {
    let mut form = multipart::Form::new();
    for (name, bytes) in images {
        form = form.part("file", multipart::Part::bytes(bytes.clone()).file_name(name.clone()));
    }
    http.post(format!("{url}/ingest/images")).bearer_auth(TOKEN).multipart(form).send()
}

/// `sluice avro cat` over a lake directory or URL.
fn avro_cat(target: &str) -> Vec<Value> {
    let output = Command::new(SLUICE).args(["avro", "cat", target]).output().unwrap();
    assert!(output.status.success(), "sluice avro cat {target}: {}", String::from_utf8_lossy(&output.stderr));
    output
        .stdout
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| serde_json::from_slice(l).unwrap())
        .collect()
}

/// fastavro's view of every visible Avro file under `dir`.
fn fastavro(dir: &Path) -> Vec<Value> {
    let script = root().join("tests/scripts/read_avro.py");
    let output = Command::new("python3").arg(script).arg(dir).output().expect("python3");
    assert!(output.status.success(), "fastavro: {}", String::from_utf8_lossy(&output.stderr));
    output
        .stdout
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| serde_json::from_slice(l).unwrap())
        .collect()
}

fn wait_until(seconds: u64, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(seconds);
    while Instant::now() < deadline {
        if done() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    done()
}

/// The whole flow on one lake URL; `local` is where the lake's files can
/// be read on this machine (fetched with Hadoop's client for HDFS).
fn images_round_trip(lake: &str, fetch: impl Fn(&Path)) {
    let dir = tempfile::tempdir().unwrap();
    let file = pipeline(dir.path(), lake, 5, "");
    let data_dir = dir.path().join("data");
    let log = dir.path().join("engine.log");
    let engine = Engine::start(SLUICE, &[&file], &["--data-dir", data_dir.to_str().unwrap()], &log);

    let originals = fixtures();
    let png = &originals["coffee.png"];
    let mut posted: Vec<(String, Vec<u8>)> = originals.iter().map(|(n, b)| (n.clone(), b.clone())).collect();
    posted.push(("cut.png".into(), png[..png.len() / 2].to_vec()));
    posted.push(("noise.jpg".into(), b"random bytes, not a picture".to_vec()));
    posted.push(("zero.png".into(), Vec::new()));
    posted.push(("gif-renamed.png".into(), GIF.to_vec()));
    let http = reqwest::blocking::Client::new();
    let response = post_images(&http, &engine.url, &posted).unwrap();
    assert_eq!(response.status(), 200, "{}", response.text().unwrap());

    let dead = dir.path().join("dead.ndjson");
    // Three images and max_records = 5: the files are committed by the
    // max_age timer while no more records arrive.
    let arrived = wait_until(60, || avro_cat(lake).len() >= 3 && sluice_tests::read_ndjson(&dead).len() >= 4);
    assert!(arrived, "images did not reach the lake; engine log tail:\n{}", log_tail(&log));
    let status = engine.signal("TERM");
    assert!(status.success());

    // Broken images: dead-lettered with their reasons, nothing else moved.
    let mut reasons: Vec<(String, String)> = sluice_tests::read_ndjson(&dead)
        .iter()
        .map(|d| {
            (
                d["record"]["key"].as_str().unwrap().to_string(),
                d["error"]["kind"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    reasons.sort();
    assert_eq!(reasons[0].0, "cut.png");
    assert!(["truncated", "corrupt"].contains(&reasons[0].1.as_str()), "{reasons:?}");
    assert_eq!(
        reasons[1..],
        [
            ("gif-renamed.png".into(), "format-mismatch".into()),
            ("noise.jpg".into(), "unsupported-format".into()),
            ("zero.png".into(), "empty".into())
        ]
    );

    // sluice's own reader: each image once, with the right hash.
    let records = avro_cat(lake);
    let seen: BTreeMap<String, String> = records
        .iter()
        .map(|r| {
            (r["filename"].as_str().unwrap().to_string(), r["data"]["sha256"].as_str().unwrap().to_string())
        })
        .collect();
    assert_eq!(records.len(), 3);
    let expected: BTreeMap<String, String> = originals.iter().map(|(n, b)| (n.clone(), sha256(b))).collect();
    assert_eq!(seen, expected);

    // The independent reader, on the files as they lie in the lake.
    let local = dir.path().join("lake-copy");
    fetch(&local);
    let independent = fastavro(&local);
    assert_eq!(independent.len(), 3, "{independent:?}");
    for row in &independent {
        assert_eq!(row["codec"], "zstandard");
        let name = row["record"]["filename"].as_str().unwrap();
        assert_eq!(row["record"]["data"]["sha256"].as_str().unwrap(), expected[name], "{name}");
        assert_eq!(row["record"]["size"].as_u64().unwrap(), originals[name].len() as u64);
        let file = row["file"].as_str().unwrap();
        let file_name = file.rsplit('/').next().unwrap();
        assert!(file.starts_with("topics/images/date="), "{file}");
        assert!(file_name.starts_with("images+") && file_name.ends_with(".avro"), "{file}");
    }

    // And back out as files, byte-exact.
    let out = dir.path().join("extracted");
    let output = Command::new(SLUICE).args(["avro", "extract", lake, "--out"]).arg(&out).output().unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    for (name, bytes) in &originals {
        assert_eq!(&std::fs::read(out.join(name)).unwrap(), bytes, "{name} is not byte-exact");
    }
    let schema = Command::new(SLUICE).args(["avro", "cat", "--schema", lake]).output().unwrap();
    assert!(String::from_utf8_lossy(&schema.stdout).contains("\"name\":\"sluice.images.Image\""));

    // Replay: the lake source → image-deserialize → records with the
    // original bytes (SHA-256 checked by the transform).
    let replay = write_pipeline(
        dir.path(),
        &format!(
            "name = \"replay\"\n[source]\ntype = \"lake\"\nurl = \"{lake}\"\npath = \"topics/images\"\n\
             [[stage]]\nname = \"deserialize\"\nmodule = {}\nmax_memory_mb = 256\n\
             [sink]\ntype = \"file\"\npath = \"replayed.ndjson\"\ncodec = \"record\"\n",
            toml_path(&guest("image-deserialize"))
        ),
    );
    let report = super::run_pipeline_file(&replay).unwrap();
    assert_eq!((report.read, report.written, report.dead_lettered), (3, 3, 0));
    let mut replayed = BTreeMap::new();
    for record in sluice_tests::read_ndjson(&dir.path().join("replayed.ndjson")) {
        use base64::Engine as _;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(record["value_base64"].as_str().unwrap())
            .unwrap();
        replayed.insert(record["headers"]["filename"].as_str().unwrap().to_string(), bytes);
    }
    assert_eq!(replayed, originals);
}

#[test]
fn images_reach_a_local_lake_once_and_come_back_byte_exact() {
    let lake_dir = tempfile::tempdir().unwrap();
    let lake = format!("file://{}", lake_dir.path().display());
    images_round_trip(&lake, |local| {
        copy_dir(lake_dir.path(), local);
    });
}

#[test]
fn images_reach_hdfs_once_and_come_back_byte_exact() {
    let hdfs = Hdfs::shared();
    let lake = hdfs.directory("images");
    images_round_trip(&lake, |local| {
        hdfs.get(&lake, local);
    });
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &to.join(entry.file_name()));
        } else {
            std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
        }
    }
}

/// Kills the engine with SIGKILL `kills` times while a client posts images
/// (each with its own name), then checks the lake holds every image the
/// client was told was accepted, exactly once.
fn crash_loop(lake: &str, kills: usize) {
    let cluster = MockCluster::new(1).unwrap();
    cluster.create_topic("images", 2, 1).unwrap();
    let bootstrap = cluster.bootstrap_servers();
    let dir = tempfile::tempdir().unwrap();
    let file = pipeline(
        dir.path(),
        lake,
        100,
        "commit_interval_ms = 200\n[source.options]\n\"session.timeout.ms\" = \"6000\"\n\"heartbeat.interval.ms\" = \"500\"",
    );
    let listen = format!("127.0.0.1:{}", free_port());
    let log = dir.path().join("engine.log");
    let data_dir = dir.path().join("data");
    let args = ["--brokers", bootstrap.as_str(), "--data-dir", data_dir.to_str().unwrap()];
    let start = || Engine::start_on(SLUICE, &listen, &[&file], &args, &log);

    // Small images: librdkafka's mock cluster keeps only a few megabytes
    // per partition and silently drops older messages beyond that.
    let image = GIF.to_vec();
    let accepted = Arc::new(Mutex::new(BTreeSet::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let client = {
        let (accepted, stop, url) = (accepted.clone(), stop.clone(), format!("http://{listen}"));
        std::thread::spawn(move || {
            let http = reqwest::blocking::Client::builder().timeout(Duration::from_secs(20)).build().unwrap();
            let mut next = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let batch: Vec<(String, Vec<u8>)> =
                    (next..next + 3).map(|n| (format!("img-{n:05}.gif"), image.clone())).collect();
                let ok = post_images(&http, &url, &batch).is_ok_and(|r| r.status() == 200);
                if ok {
                    accepted.lock().unwrap().extend(batch.into_iter().map(|(name, _)| name));
                    next += 3;
                    // A steady stream, not a flood: the point is where the
                    // kills land, not how much piles up.
                    std::thread::sleep(Duration::from_millis(20));
                } else {
                    std::thread::sleep(Duration::from_millis(50));
                }
            }
        })
    };

    // Each kill lands while the engine owns partitions and images flow
    // (a kill before the group has rebalanced would test nothing).
    let mut engine = start();
    for round in 0..kills {
        assert!(
            wait_until(60, || occurrences(&log, "partitions assigned") > round),
            "never assigned; see {}",
            log.display()
        );
        std::thread::sleep(Duration::from_millis(200 + (round as u64 * 337) % 1000));
        assert!(!engine.signal("KILL").success());
        engine = start();
    }
    std::thread::sleep(Duration::from_millis(500));
    stop.store(true, Ordering::Relaxed);
    client.join().unwrap();
    let accepted = accepted.lock().unwrap().clone();
    assert!(accepted.len() >= 30, "too few images got through: {}", accepted.len());

    // Everything accepted reaches the lake; then a clean stop.
    let names = || -> Vec<String> {
        avro_cat(lake).iter().map(|r| r["filename"].as_str().unwrap().to_string()).collect()
    };
    let complete = wait_until(120, || {
        let names: BTreeSet<String> = names().into_iter().collect();
        accepted.iter().all(|n| names.contains(n))
    });
    assert!(engine.signal("TERM").success());
    let names = names();
    let unique: BTreeSet<&String> = names.iter().collect();
    let missing: Vec<&String> = accepted.iter().filter(|n| !unique.contains(n)).collect();
    // Exactly once is about Kafka records: an ingest request retried after
    // a kill may have put an image in the topic twice (at-least-once
    // ingest), and then both copies belong in the lake, once each.
    let mut in_topic: BTreeMap<String, usize> = BTreeMap::new();
    for message in sluice_tests::broker::read_topic(&bootstrap, "images") {
        *in_topic.entry(String::from_utf8(message.key.unwrap()).unwrap()).or_default() += 1;
    }
    let mut in_lake: BTreeMap<String, usize> = BTreeMap::new();
    for name in &names {
        *in_lake.entry(name.clone()).or_default() += 1;
    }
    assert!(
        complete && missing.is_empty(),
        "{} accepted images are not in the lake, e.g. {:?}; dead letters: {:?}; engine log tail:\n{}",
        missing.len(),
        &missing[..missing.len().min(5)],
        sluice_tests::read_ndjson(&dir.path().join("dead.ndjson"))
            .iter()
            .map(|d| d["error"].to_string())
            .take(3)
            .collect::<Vec<_>>(),
        log_tail(&log)
    );
    let differences: Vec<_> = in_topic
        .iter()
        .filter(|(name, count)| in_lake.get(*name) != Some(count))
        .map(|(name, count)| (name, *count, in_lake.get(name).copied().unwrap_or(0)))
        .collect();
    assert!(differences.is_empty(), "(image, times in the topic, times in the lake): {differences:?}");
    assert_eq!(in_lake.len(), in_topic.len(), "the lake holds images that are not in the topic");
    // Restarts resumed from what the lake held, not from scratch.
    let log_text = std::fs::read_to_string(&log).unwrap();
    assert!(log_text.contains("last_committed=Some"), "no restart found committed files");
    println!(
        "lake crash test ({lake}): {kills} kills, {} images accepted, {} records in the topic, each once in the lake",
        accepted.len(),
        names.len()
    );
}

#[test]
fn sigkill_while_images_stream_into_a_local_lake_loses_and_duplicates_nothing() {
    let lake_dir = tempfile::tempdir().unwrap();
    crash_loop(&format!("file://{}", lake_dir.path().display()), 6);
    let leftovers: Vec<_> = walk(lake_dir.path()).into_iter().filter(|p| p.ends_with(".tmp")).collect();
    assert!(leftovers.is_empty(), "unfinished files left behind: {leftovers:?}");
}

#[test]
fn sigkill_while_images_stream_into_hdfs_loses_and_duplicates_nothing() {
    let lake = Hdfs::shared().directory("crash");
    crash_loop(&lake, 4);
}

fn walk(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path.display().to_string());
        }
    }
    out
}

fn log_tail(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

fn occurrences(log: &Path, needle: &str) -> usize {
    std::fs::read_to_string(log).unwrap_or_default().matches(needle).count()
}

/// Kafka ids → `fanout` (three outputs per input, all with the input's
/// offset) → the lake, while the engine is killed with SIGKILL: every
/// output of every input is in the lake exactly once, as fastavro reads it.
#[test]
fn every_output_of_a_fanning_out_transform_is_in_the_lake_once_across_crashes() {
    let cluster = MockCluster::new(1).unwrap();
    cluster.create_topic("in", 2, 1).unwrap();
    let bootstrap = cluster.bootstrap_servers();
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    let schema = r#"{"type":"record","name":"Copy","fields":[{"name":"id","type":"long"},{"name":"copy","type":"long"}]}"#;
    let file = write_pipeline(
        dir.path(),
        &format!(
            "name = \"fanned\"\n[source]\ntype = \"kafka\"\ntopics = [\"in\"]\ncommit_interval_ms = 200\n\
             [source.options]\n\"session.timeout.ms\" = \"6000\"\n\"heartbeat.interval.ms\" = \"500\"\n\
             [batch]\nmax_records = 20\nlinger_ms = 10\n\
             [[stage]]\nname = \"fan\"\nmodule = {module}\n[stage.config]\ncopies = 3\n\
             [sink]\ntype = \"hdfs\"\nurl = \"file://{lake}\"\nschema = '{schema}'\nmax_records = 7\nmax_age_ms = 300\n\
             [dead_letter]\ntype = \"file\"\npath = \"dead.ndjson\"\n",
            module = toml_path(&guest("fanout")),
            lake = lake.display(),
        ),
    );
    let listen = format!("127.0.0.1:{}", free_port());
    let log = dir.path().join("engine.log");
    let args = ["--brokers", bootstrap.as_str()];
    let start = || Engine::start_on(SLUICE, &listen, &[&file], &args, &log);

    let mut engine = start();
    let http = reqwest::blocking::Client::builder().timeout(Duration::from_secs(20)).build().unwrap();
    let mut accepted = BTreeSet::new();
    let mut next = 0u64;
    for round in 0..4 {
        for _ in 0..10 {
            let ids: Vec<u64> = (next..next + 10).collect();
            if super::post_ids(&http, &format!("http://{listen}"), &ids).status() == 200 {
                accepted.extend(ids);
                next += 10;
            }
            std::thread::sleep(Duration::from_millis(30 + round * 20));
        }
        assert!(!engine.signal("KILL").success());
        engine = start();
    }
    for _ in 0..5 {
        let ids: Vec<u64> = (next..next + 10).collect();
        assert_eq!(super::post_ids(&http, &format!("http://{listen}"), &ids).status(), 200);
        accepted.extend(ids);
        next += 10;
    }
    let copies = || -> Vec<(u64, u64)> {
        fastavro(&lake)
            .iter()
            .map(|r| (r["record"]["id"].as_u64().unwrap(), r["record"]["copy"].as_u64().unwrap()))
            .collect()
    };
    let complete = wait_until(120, || {
        let seen: BTreeSet<(u64, u64)> = copies().into_iter().collect();
        accepted.iter().all(|id| (0..3).all(|k| seen.contains(&(*id, k))))
    });
    assert!(engine.signal("TERM").success());
    let copies = copies();
    let mut counts: BTreeMap<(u64, u64), usize> = BTreeMap::new();
    for pair in &copies {
        *counts.entry(*pair).or_default() += 1;
    }
    // The topic may hold an id twice (an ingest request retried after a
    // kill); each Kafka record's outputs are in the lake once.
    let mut in_topic: BTreeMap<u64, usize> = BTreeMap::new();
    for message in sluice_tests::broker::read_topic(&bootstrap, "in") {
        let value: Value = serde_json::from_slice(&message.value).unwrap();
        *in_topic.entry(value["id"].as_u64().unwrap()).or_default() += 1;
    }
    let wrong: Vec<_> = in_topic
        .iter()
        .flat_map(|(id, n)| (0..3).map(move |k| ((*id, k), *n)))
        .filter(|(pair, n)| counts.get(pair).copied().unwrap_or(0) != *n)
        .collect();
    assert!(complete, "not every accepted id reached the lake; see {}", log.display());
    assert!(
        wrong.is_empty(),
        "outputs not in the lake exactly once per Kafka record: {:?}",
        &wrong[..wrong.len().min(10)]
    );
    assert_eq!(copies.len(), in_topic.values().sum::<usize>() * 3);
}
