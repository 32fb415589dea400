//! REST ingest against a real broker (tansu): every body kind goes in over
//! HTTP, through Kafka and a wasm stage, and comes out once with its key
//! and headers; bad requests are refused whole with a precise answer.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use reqwest::blocking::{Client, multipart};
use serde_json::{Value, json};
use sluice_tests::broker::{Tansu, read_topic};
use sluice_tests::engine::{Engine, TOKEN};
use sluice_tests::{fixture, guest, read_ndjson};

use super::{SLUICE, toml_path, write_pipeline};

/// Kafka topic `in` → passthrough → `out.ndjson` (whole records as JSON).
fn pipeline(dir: &Path) -> PathBuf {
    write_pipeline(
        dir,
        &format!(
            "name = \"ingested\"\n[source]\ntype = \"kafka\"\ntopics = [\"in\"]\n[batch]\nlinger_ms = 10\n\
             [[stage]]\nname = \"copy\"\nmodule = {}\n[sink]\ntype = \"file\"\npath = \"out.ndjson\"\ncodec = \"record\"\n",
            toml_path(&guest("passthrough"))
        ),
    )
}

fn post(
    client: &Client,
    url: &str,
    content_type: &str,
    body: impl Into<reqwest::blocking::Body>,
) -> (u16, Value) {
    let response = client
        .post(url)
        .bearer_auth(TOKEN)
        .header("content-type", content_type)
        .body(body)
        .send()
        .expect("ingest request");
    let status = response.status().as_u16();
    (status, response.json().unwrap_or(Value::Null))
}

pub fn wait_for_records(path: &Path, count: usize) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let records = read_ndjson(path);
        if records.len() >= count || Instant::now() > deadline {
            return records;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The value of a record written by the file sink's `record` codec.
fn value_of(record: &Value) -> Vec<u8> {
    use base64::Engine as _;
    match (&record["value"], &record["value_base64"]) {
        (Value::String(text), _) => text.as_bytes().to_vec(),
        (_, Value::String(b64)) => base64::engine::general_purpose::STANDARD.decode(b64).unwrap(),
        _ => panic!("no value in {record}"),
    }
}

#[test]
fn every_body_kind_arrives_once_with_keys_and_headers() {
    let broker = Tansu::start();
    broker.create_topic("in", 3);
    let dir = tempfile::tempdir().unwrap();
    let pipeline = pipeline(dir.path());
    let engine = Engine::start(
        SLUICE,
        &[&pipeline],
        &["--brokers", &broker.bootstrap],
        &dir.path().join("engine.log"),
    );
    let client = Client::new();
    let url = format!("{}/ingest/in", engine.url);

    let health: Value = client.get(format!("{}/health", engine.url)).send().unwrap().json().unwrap();
    assert_eq!(health["status"], "ready");
    assert_eq!(health["ingest_topics"], json!(["in"]));

    // JSON with a key and a header.
    let response = client
        .post(format!("{url}?key=k-json"))
        .bearer_auth(TOKEN)
        .header("content-type", "application/json; charset=utf-8")
        .header("sluice-header-trace", "t-1")
        .body(r#"{"kind":"json"}"#)
        .send()
        .unwrap();
    assert_eq!(response.status(), 200);
    let body: Value = response.json().unwrap();
    assert_eq!(body["count"], 1);
    assert!(body["records"][0]["offset"].as_i64().unwrap() >= 0);

    let (status, body) = post(&client, &url, "application/x-ndjson", "{\"n\":1}\n{\"n\":2}\n\n{\"n\":3}\n");
    assert_eq!((status, body["count"].clone()), (200, json!(3)), "{body}");
    let (status, _) = post(&client, &url, "text/plain", "line one\r\nline two\nline three");
    assert_eq!(status, 200);
    let binary = vec![0u8, 255, 1, 2, 254];
    let (status, _) = post(&client, &url, "application/octet-stream", binary.clone());
    assert_eq!(status, 200);

    let jpeg = std::fs::read(fixture("images/rocket.jpg")).unwrap();
    let png = std::fs::read(fixture("images/coffee.png")).unwrap();
    let form = multipart::Form::new()
        .text("note", "form fields are not records")
        .part(
            "a",
            multipart::Part::bytes(jpeg.clone()).file_name("rocket.jpg").mime_str("image/jpeg").unwrap(),
        )
        .part(
            "b",
            multipart::Part::bytes(png.clone()).file_name("coffee.png").mime_str("image/png").unwrap(),
        );
    let response = client.post(&url).bearer_auth(TOKEN).multipart(form).send().unwrap();
    assert_eq!(response.status(), 200);
    let body: Value = response.json().unwrap();
    assert_eq!(body["count"], 2);

    let records = wait_for_records(&dir.path().join("out.ndjson"), 10);
    assert_eq!(records.len(), 10, "{records:#?}");
    let mut values: Vec<Vec<u8>> = records.iter().map(value_of).collect();
    values.sort();
    let mut expected: Vec<Vec<u8>> = [
        &br#"{"kind":"json"}"#[..],
        br#"{"n":1}"#,
        br#"{"n":2}"#,
        br#"{"n":3}"#,
        b"line one",
        b"line two",
        b"line three",
        &binary,
        &jpeg,
        &png,
    ]
    .iter()
    .map(|v| v.to_vec())
    .collect();
    expected.sort();
    assert_eq!(values, expected, "every record exactly once");

    let json_record = records.iter().find(|r| r["value"] == r#"{"kind":"json"}"#).unwrap();
    assert_eq!(json_record["key"], "k-json");
    assert_eq!(json_record["headers"]["trace"], "t-1");
    let image = records.iter().find(|r| r["key"] == "rocket.jpg").expect("image keyed by file name");
    assert_eq!(image["headers"]["filename"], "rocket.jpg");
    assert_eq!(image["headers"]["content-type"], "image/jpeg");
    assert!(image["timestamp"].as_i64().unwrap() > 1_700_000_000_000, "Kafka timestamps pass through");
    drop(engine);
}

#[test]
fn bad_requests_are_refused_whole_with_the_reason() {
    let broker = Tansu::start();
    broker.create_topic("in", 1);
    let dir = tempfile::tempdir().unwrap();
    let pipeline = pipeline(dir.path());
    let limits = [
        "--brokers",
        &broker.bootstrap,
        "--ingest-max-body-bytes",
        "4096",
        "--ingest-max-records",
        "5",
        "--ingest-max-record-bytes",
        "100",
    ];
    let engine = Engine::start(SLUICE, &[&pipeline], &limits, &dir.path().join("engine.log"));
    let client = Client::new();
    let url = format!("{}/ingest/in", engine.url);

    let response = client.post(&url).header("content-type", "text/plain").body("x").send().unwrap();
    assert_eq!(response.status(), 401, "no token");
    let response = client
        .post(&url)
        .bearer_auth("wrong-token-000000")
        .header("content-type", "text/plain")
        .body("x")
        .send()
        .unwrap();
    assert_eq!(response.status(), 403, "wrong token");

    let (status, body) = post(&client, &format!("{}/ingest/other", engine.url), "text/plain", "x");
    assert_eq!(status, 404);
    assert!(body["error"].as_str().unwrap().contains("not open for ingest"), "{body}");

    let (status, body) = post(&client, &url, "text/plain", "y".repeat(5000));
    assert_eq!(status, 413, "{body}");
    assert!(body["error"].as_str().unwrap().contains("4096"), "{body}");

    let (status, body) = post(&client, &url, "text/plain", "1\n2\n3\n4\n5\n6\n");
    assert_eq!(status, 413);
    assert!(body["error"].as_str().unwrap().contains("limit is 5"), "{body}");

    let (status, body) = post(&client, &url, "text/plain", format!("short\n{}\n", "z".repeat(200)));
    assert_eq!(status, 413);
    assert_eq!(body["records"], json!([1]), "names the oversized record: {body}");

    let (status, body) =
        post(&client, &url, "application/x-ndjson", "{\"ok\":1}\n{\"broken\":\n{\"ok\":2}\nnope\n");
    assert_eq!(status, 400);
    let lines: Vec<i64> =
        body["lines"].as_array().unwrap().iter().map(|l| l["line"].as_i64().unwrap()).collect();
    assert_eq!(lines, vec![2, 4], "{body}");

    let (status, body) = post(&client, &url, "text/plain", b"fine\n\xff\xfe\n".to_vec());
    assert_eq!(status, 400);
    assert_eq!(body["lines"][0]["line"], 2, "{body}");

    let (status, body) = post(&client, &url, "application/json", "{\"unterminated\": ");
    assert_eq!(status, 400, "{body}");

    let (status, body) = post(
        &client,
        &url,
        "multipart/form-data; boundary=XYZ",
        "--XYZ\r\nContent-Disposition: form-data; name=\"f\"; filename=\"a.jpg\"\r\n\r\nno closing boundary",
    );
    assert_eq!(status, 400);
    assert!(body["error"].as_str().unwrap().contains("multipart"), "{body}");

    let (status, _) = post(&client, &url, "application/xml", "<a/>");
    assert_eq!(status, 415);

    // Nothing of the refused requests reached the topic.
    assert_eq!(read_topic(&broker.bootstrap, "in"), vec![]);
    drop(engine);
}

#[test]
fn start_from_latest_skips_what_was_in_the_topic_before() {
    let broker = Tansu::start();
    broker.create_topic("in", 1);
    let dir = tempfile::tempdir().unwrap();
    let old = dir.path().join("old.ndjson");
    std::fs::write(&old, "{\"id\":1}\n{\"id\":2}\n").unwrap();
    // Records already in the topic before the pipeline first runs.
    let pipeline = write_pipeline(
        dir.path(),
        &format!(
            "name = \"fresh\"\n[source]\ntype = \"kafka\"\ntopics = [\"in\"]\nstart_from = \"latest\"\n[batch]\nlinger_ms = 10\n\
             [[stage]]\nname = \"copy\"\nmodule = {}\n[sink]\ntype = \"file\"\npath = \"out.ndjson\"\n",
            toml_path(&guest("passthrough"))
        ),
    );
    let args = ["--brokers", broker.bootstrap.as_str()];
    let log = dir.path().join("engine.log");
    let ingest_only =
        Engine::start(SLUICE, &[], &["--brokers", &broker.bootstrap, "--ingest-topic", "in"], &log);
    let client = Client::new();
    let (status, _) = post(
        &client,
        &format!("{}/ingest/in", ingest_only.url),
        "application/x-ndjson",
        std::fs::read(&old).unwrap(),
    );
    assert_eq!(status, 200);
    drop(ingest_only);

    let engine = Engine::start(SLUICE, &[&pipeline], &args, &log);
    let deadline = Instant::now() + Duration::from_secs(30);
    while !std::fs::read_to_string(&log).unwrap().contains("partitions assigned") {
        assert!(Instant::now() < deadline, "no partitions assigned");
        std::thread::sleep(Duration::from_millis(50));
    }
    // The assignment's offset lookup finishes just after the log line.
    std::thread::sleep(Duration::from_millis(1500));
    let (status, _) =
        post(&client, &format!("{}/ingest/in", engine.url), "application/x-ndjson", "{\"id\":3}\n");
    assert_eq!(status, 200);
    let records = wait_for_records(&dir.path().join("out.ndjson"), 1);
    std::thread::sleep(Duration::from_millis(500));
    let records_after = read_ndjson(&dir.path().join("out.ndjson"));
    assert_eq!(records_after, vec![json!({"id": 3})], "only what came after the start: {records:?}");
    drop(engine);
}
