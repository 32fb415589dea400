//! The control-plane API against `sluice serve` as a process: module
//! uploads and their validation, pipelines from TOML with positioned
//! errors, pause/resume/delete, state across restarts, dead-letter
//! replay, the live tap, hot swaps under load, and the OpenAPI document.

use std::collections::BTreeMap;
use std::io::{BufRead as _, BufReader};
use std::path::Path;
use std::time::{Duration, Instant};

use reqwest::blocking::{Client, RequestBuilder};
use serde_json::{Value, json};
use sluice_tests::engine::{Engine, TOKEN};
use sluice_tests::{fixture, guest, read_ndjson};

use super::{SLUICE, toml_path};

pub(super) struct Api {
    pub(super) client: Client,
    pub(super) url: String,
}

impl Api {
    pub(super) fn new(engine: &Engine) -> Api {
        // No connection reuse: the server closes a connection whose body it
        // refused to read (413), and a pooled one could be picked up just then.
        let client =
            Client::builder().timeout(Duration::from_secs(120)).pool_max_idle_per_host(0).build().unwrap();
        Api { client, url: engine.url.clone() }
    }

    pub(super) fn send(&self, request: RequestBuilder) -> (u16, Value) {
        let response = request.send().expect("API request");
        let status = response.status().as_u16();
        let text = response.text().unwrap_or_default();
        (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
    }

    pub(super) fn get(&self, path: &str) -> (u16, Value) {
        self.send(self.client.get(format!("{}{path}", self.url)))
    }

    pub(super) fn put(&self, path: &str, body: impl Into<reqwest::blocking::Body>) -> (u16, Value) {
        self.send(self.client.put(format!("{}{path}", self.url)).bearer_auth(TOKEN).body(body))
    }

    pub(super) fn post(&self, path: &str, body: Value) -> (u16, Value) {
        self.send(self.client.post(format!("{}{path}", self.url)).bearer_auth(TOKEN).json(&body))
    }

    pub(super) fn delete(&self, path: &str) -> (u16, Value) {
        self.send(self.client.delete(format!("{}{path}", self.url)).bearer_auth(TOKEN))
    }

    pub(super) fn upload(&self, name: &str, guest_name: &str) -> (u16, Value) {
        self.put(&format!("/api/modules/{name}"), std::fs::read(guest(guest_name)).unwrap())
    }

    pub(super) fn ingest_lines(&self, topic: &str, lines: &str) {
        let (status, body) = self.send(
            self.client
                .post(format!("{}/ingest/{topic}", self.url))
                .bearer_auth(TOKEN)
                .header("content-type", "text/plain")
                .body(lines.to_string()),
        );
        assert_eq!(status, 200, "ingest: {body}");
    }

    /// Polls the pipeline until `done` holds for it (60 s at most).
    pub(super) fn wait_pipeline(&self, name: &str, what: &str, done: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let (_, view) = self.get(&format!("/api/pipelines/{name}"));
            if done(&view) {
                return view;
            }
            assert!(Instant::now() < deadline, "pipeline `{name}` never got to {what}: {view:#}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// Kafka topic `TOPIC` → one stage running registry module `MODULE` → a file.
pub(super) fn kafka_pipeline(name: &str, topic: &str, module: &str, out: &Path) -> String {
    format!(
        "name = \"{name}\"\n[source]\ntype = \"kafka\"\ntopics = [\"{topic}\"]\n[batch]\nlinger_ms = 10\nmax_records = 50\n\
         [[stage]]\nname = \"work\"\nmodule = \"{module}\"\n\
         [sink]\ntype = \"file\"\npath = {}\n\
         [dead_letter]\ntype = \"file\"\npath = {}\n",
        toml_path(out),
        toml_path(&out.with_extension("dead-letter.ndjson")),
    )
}

#[test]
fn module_uploads_are_validated_versioned_and_guarded() {
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::serve(
        SLUICE,
        &dir.path().join("data"),
        &[],
        &["--max-module-bytes", "1000000"],
        &dir.path().join("log"),
    );
    let api = Api::new(&engine);

    let (status, first) = api.upload("copy", "passthrough");
    assert_eq!(status, 201, "{first}");
    assert_eq!(first["version"], 1);
    assert_eq!(first["sha256"].as_str().unwrap().len(), 64);
    let (status, again) = api.upload("copy", "passthrough");
    assert_eq!((status, &again), (200, &first), "same bytes: no new version");
    let (status, second) = api.upload("copy", "log_parse");
    assert_eq!((status, second["version"].clone()), (201, json!(2)));

    // Authentication: missing → 401, wrong → 403; reads are open on loopback.
    let body = std::fs::read(guest("passthrough")).unwrap();
    let url = format!("{}/api/modules/other", engine.url);
    let (status, error) = api.send(api.client.put(&url).body(body.clone()));
    assert_eq!(status, 401, "{error}");
    let (status, error) = api.send(api.client.put(&url).bearer_auth("wrong-token-0123456789").body(body));
    assert_eq!(status, 403, "{error}");

    // What is not a sluice transform is refused with the reason.
    let cases: [(&str, Vec<u8>, u16, &str); 5] = [
        ("text", b"hello".to_vec(), 422, "not a WebAssembly file"),
        ("core", b"\0asm\x01\0\0\0".to_vec(), 422, "core WebAssembly module, not a component"),
        (
            "other-world",
            std::fs::read(guest("not-a-transform")).unwrap(),
            422,
            "does not implement the sluice:transform",
        ),
        (
            "big",
            std::fs::read(guest("enrich")).unwrap(),
            413,
            "the module is larger than the limit of 1000000 bytes",
        ),
        ("Upper", b"\0asm".to_vec(), 400, "invalid module name `Upper`"),
    ];
    for (name, bytes, expected, message) in cases {
        let (status, error) = api.put(&format!("/api/modules/{name}"), bytes);
        assert_eq!(status, expected, "{name}: {error}");
        assert!(error["error"].as_str().unwrap_or_default().contains(message), "{name}: {error}");
    }
    for bad in ["..%2Fx", "a%2Fb", "x.wasm"] {
        let (status, error) = api.put(&format!("/api/modules/{bad}"), b"\0asm".to_vec());
        assert_eq!(status, 400, "{bad}: {error}");
    }

    let (status, list) = api.get("/api/modules");
    assert_eq!(status, 200);
    let names: Vec<&str> = list.as_array().unwrap().iter().map(|m| m["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["copy"], "nothing refused was stored");
    let (_, copy) = api.get("/api/modules/copy");
    assert_eq!(copy["versions"].as_array().unwrap().len(), 2);
    assert_eq!(api.get("/api/modules/missing").0, 404);

    // In use: refused; unused: deleted.
    let out = dir.path().join("out.ndjson");
    let (status, view) = api.put("/api/pipelines/user", kafka_pipeline("user", "in", "copy@1", &out));
    assert_eq!(status, 201, "{view}");
    let (status, error) = api.delete("/api/modules/copy");
    assert_eq!(status, 409, "{error}");
    assert_eq!(error["used_by"], json!(["user"]));
    assert_eq!(api.delete("/api/pipelines/user").0, 204);
    assert_eq!(api.delete("/api/modules/copy").0, 204);
    assert_eq!(api.get("/api/modules/copy").0, 404);
    assert_eq!(api.delete("/api/modules/copy").0, 404);
}

#[test]
fn pipelines_from_toml_with_positioned_errors_and_state_across_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let log = dir.path().join("log");
    let file_pipeline = super::write_pipeline(
        dir.path(),
        &format!(
            "name = \"from-file\"\n[source]\ntype = \"file\"\npath = {}\nfollow = true\n[[stage]]\nname = \"parse\"\nmodule = {}\n[sink]\ntype = \"file\"\npath = \"file-out.ndjson\"\n",
            toml_path(&fixture("logs/apache_combined_sample.log")),
            toml_path(&guest("log_parse"))
        ),
    );
    let engine = Engine::serve(SLUICE, &data, &[&file_pipeline], &[], &log);
    let api = Api::new(&engine);
    assert_eq!(api.upload("parse", "log_parse").0, 201);
    let out = dir.path().join("out.ndjson");

    // Every error, with its line, column and key.
    let invalid = "name = \"web\"\n[source]\ntype = \"kafka\"\ntopic = [\"weblogs\"]\n[[stage]]\nname = \"p\"\nmodule = \"nope\"\n[sink]\ntype = \"file\"\npath = \"x\"\n";
    let (status, error) = api.put("/api/pipelines/web", invalid);
    assert_eq!(status, 422, "{error}");
    let errors = error["errors"].as_array().unwrap();
    let positions: Vec<(u64, u64, &str)> = errors
        .iter()
        .map(|e| {
            (e["line"].as_u64().unwrap(), e["column"].as_u64().unwrap(), e["key"].as_str().unwrap_or(""))
        })
        .collect();
    assert!(positions.contains(&(4, 1, "source.topic")), "{error:#}");
    assert!(
        errors.iter().any(|e| e["message"].as_str().unwrap().contains("did you mean `topics`")),
        "{error:#}"
    );

    let unknown_module = kafka_pipeline("web", "weblogs", "nope", &out);
    let (status, error) = api.put("/api/pipelines/web", unknown_module.clone());
    assert_eq!(status, 422, "{error}");
    let line = unknown_module.lines().position(|l| l.starts_with("module")).unwrap() + 1;
    assert_eq!(error["errors"][0]["line"], line, "{error:#}");
    assert_eq!(error["errors"][0]["column"], 10, "{error:#}");
    assert_eq!(error["errors"][0]["key"], "stage[0].module");
    assert!(
        error["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("no module named `nope` is uploaded (uploaded: parse)")
    );

    let (status, error) = api.put("/api/pipelines/other", kafka_pipeline("web", "weblogs", "parse", &out));
    assert_eq!(status, 422, "{error}");
    assert!(error["errors"][0]["message"].as_str().unwrap().contains("named `web` but was sent to `other`"));
    assert_eq!(api.put("/api/pipelines/..%2Fweb", "name = \"x\"").0, 400);
    assert_eq!(api.put("/api/pipelines/from-file", kafka_pipeline("from-file", "t", "parse", &out)).0, 409);
    assert_eq!(api.delete("/api/pipelines/from-file").0, 409);
    let (status, _) = api.send(api.client.put(format!("{}/api/pipelines/web", engine.url)).body("name = 1"));
    assert_eq!(status, 401);

    // A valid one runs; ingest opens its topic.
    let (status, view) = api.put("/api/pipelines/web", kafka_pipeline("web", "weblogs", "parse", &out));
    assert_eq!(status, 201, "{view}");
    assert_eq!(view["status"], "running");
    assert_eq!(view["stages"][0]["module"], "parse@1");
    let lines = std::fs::read_to_string(fixture("logs/apache_combined_sample.log")).unwrap();
    let first_100: String = lines.lines().take(100).map(|l| format!("{l}\n")).collect();
    api.ingest_lines("weblogs", &first_100);
    api.wait_pipeline("web", "100 written", |v| v["records"]["written"] == 100);

    let (status, paused) = api.post("/api/pipelines/web/pause", Value::Null);
    assert_eq!((status, paused["status"].as_str()), (200, Some("paused")));
    api.ingest_lines("weblogs", "while paused\n");
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(read_ndjson(&out).len(), 100, "a paused pipeline reads nothing");

    // A restart keeps modules, pipelines and the pause.
    assert!(engine.signal("TERM").success());
    let engine = Engine::serve(SLUICE, &data, &[&file_pipeline], &[], &log);
    let api = Api::new(&engine);
    let (_, view) = api.get("/api/pipelines/web");
    assert_eq!(view["status"], "paused", "{view:#}");
    assert_eq!(api.get("/api/modules/parse").1["versions"][0]["version"], 1);
    let (_, list) = api.get("/api/pipelines");
    let names: Vec<&str> = list.as_array().unwrap().iter().map(|p| p["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["from-file", "web"]);

    let (status, resumed) = api.post("/api/pipelines/web/resume", Value::Null);
    assert_eq!((status, resumed["status"].as_str()), (200, Some("running")), "{resumed}");
    // `while paused` is not a log line: read, then dead-lettered.
    let view = api.wait_pipeline("web", "the line sent while paused, dead-lettered", |v| {
        v["records"]["dead_lettered"] == 1
    });
    assert_eq!(view["records"]["read"], 1, "only what came while paused: {view:#}");
    assert_eq!(read_ndjson(&out).len(), 100, "nothing read twice");

    // Replacing restarts it with the new definition; the group carries on.
    let replaced =
        kafka_pipeline("web", "weblogs", "parse", &out).replace("max_records = 50", "max_records = 10");
    let (status, view) = api.put("/api/pipelines/web", replaced.clone());
    assert_eq!((status, view["toml"].as_str()), (200, Some(replaced.as_str())));
    let next_10: String = lines.lines().skip(100).take(10).map(|l| format!("{l}\n")).collect();
    api.ingest_lines("weblogs", &next_10);
    api.wait_pipeline("web", "110 lines in the file", |_| read_ndjson(&out).len() == 110);

    assert_eq!(api.delete("/api/pipelines/web").0, 204);
    assert_eq!(api.get("/api/pipelines/web").0, 404);
    assert!(engine.signal("TERM").success());
    let engine = Engine::serve(SLUICE, &data, &[], &[], &log);
    let (_, list) = Api::new(&engine).get("/api/pipelines");
    assert_eq!(list, json!([]), "deleted stays deleted");
}

#[test]
fn dead_letters_are_browsed_and_replayed_and_the_tap_shows_records() {
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::serve(SLUICE, &dir.path().join("data"), &[], &[], &dir.path().join("log"));
    let api = Api::new(&engine);
    assert_eq!(api.upload("parse", "log_parse").0, 201);
    let out = dir.path().join("out.ndjson");
    assert_eq!(api.put("/api/pipelines/web", kafka_pipeline("web", "weblogs", "parse", &out)).0, 201);

    // The tap: a reader on the stage's output sees the parsed document.
    let tap_url = format!("{}/api/pipelines/web/tap?stage=work&side=out&limit=1", engine.url);
    let tap = std::thread::spawn(move || {
        let response = Client::new().get(tap_url).send().expect("tap");
        assert_eq!(response.status().as_u16(), 200);
        let events: Vec<String> = BufReader::new(response).lines().map_while(Result::ok).collect();
        events
    });
    std::thread::sleep(Duration::from_millis(500));
    let good = std::fs::read_to_string(fixture("logs/apache_combined_sample.log")).unwrap();
    let good = good.lines().next().unwrap();
    api.ingest_lines("weblogs", &format!("{good}\nnot a log line\n"));
    let events = tap.join().unwrap();
    let data = events.iter().find_map(|l| l.strip_prefix("data: {")).expect("a record event");
    let tapped: Value = serde_json::from_str(&format!("{{{data}")).unwrap();
    assert_eq!(tapped["side"], "out");
    let document: Value = serde_json::from_str(tapped["record"]["value"].as_str().unwrap()).unwrap();
    assert_eq!(document["client"]["ip"], "83.149.9.216");
    assert!(events.iter().any(|l| l == "event: end"), "{events:?}");
    assert_eq!(api.get("/api/pipelines/web/tap?stage=nope").0, 404);

    api.wait_pipeline("web", "one line written and one dead letter", |v| {
        v["dead_letters_pending"] == 1 && v["records"]["written"] == 1
    });
    let (_, page) = api.get("/api/pipelines/web/dead-letters");
    let letter = &page["dead_letters"][0];
    assert_eq!(letter["record"]["value"], "not a log line");
    assert_eq!(letter["stage"], "work");
    assert_eq!(letter["module"]["name"], "parse@1");
    assert!(letter["error"]["message"].as_str().unwrap().len() > 10, "{letter}");
    let id = letter["id"].as_u64().unwrap();
    assert_eq!(api.get(&format!("/api/pipelines/web/dead-letters/{id}")).1["id"], id);

    // Replayed through the same version it fails again (and is a new dead letter)…
    let (status, outcome) = api.post("/api/pipelines/web/dead-letters/replay", json!({ "ids": [id] }));
    assert_eq!(status, 200, "{outcome}");
    assert_eq!(outcome, json!({ "replayed": 1, "dead_lettered_again": 1 }));
    let (status, error) = api.post("/api/pipelines/web/dead-letters/replay", json!({ "ids": [id] }));
    assert_eq!(status, 409, "{error}");
    // …through a version that accepts it, it is written.
    assert_eq!(api.upload("parse", "passthrough").1["version"], 2);
    let (status, stage) = api.post("/api/pipelines/web/stages/work/deploy", Value::Null);
    assert_eq!((status, stage["module"].as_str()), (200, Some("parse@2")), "{stage}");
    let (_, page) = api.get("/api/pipelines/web/dead-letters?limit=1");
    let again = page["dead_letters"][0]["id"].as_u64().unwrap();
    assert!(again > id);
    let (status, outcome) = api.post("/api/pipelines/web/dead-letters/replay", json!({ "ids": [again] }));
    assert_eq!((status, outcome), (200, json!({ "replayed": 1, "dead_lettered_again": 0 })));
    // log-parse wrote the good line as a document; v2 (a passthrough) the replayed one as is.
    let written = std::fs::read_to_string(&out).unwrap();
    assert_eq!(written.lines().nth(1), Some("not a log line"), "{written}");
    assert_eq!(api.get("/api/pipelines/web").1["dead_letters_pending"], 0);
    assert_eq!(api.post("/api/pipelines/web/dead-letters/replay", json!({ "ids": [999999] })).0, 404);
}

/// Records stream in while a stage flips between two module versions;
/// every record is written or dead-lettered exactly once.
#[test]
fn hot_swap_under_load_loses_and_duplicates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::serve(SLUICE, &dir.path().join("data"), &[], &[], &dir.path().join("log"));
    let api = Api::new(&engine);
    // v1 passes `{"id": N}` records through; v2 (a log parser) refuses them:
    // which version handled a record shows in where it ends up.
    assert_eq!(api.upload("step", "passthrough").1["version"], 1);
    assert_eq!(api.upload("step", "log_parse").1["version"], 2);
    let out = dir.path().join("out.ndjson");
    let dead = out.with_extension("dead-letter.ndjson");
    assert_eq!(api.put("/api/pipelines/swap", kafka_pipeline("swap", "events", "step@1", &out)).0, 201);

    // Bad requests leave the stage as it is.
    let cases = [
        ("/api/pipelines/nope/stages/work/deploy", json!({}), 404, "no pipeline named `nope`"),
        ("/api/pipelines/swap/stages/nope/deploy", json!({}), 404, "has no stage `nope`"),
        (
            "/api/pipelines/swap/stages/work/deploy",
            json!({ "version": 9 }),
            404,
            "has no version 9 (versions: 1, 2)",
        ),
        (
            "/api/pipelines/swap/stages/work/deploy",
            json!({ "module": "ghost" }),
            404,
            "no module named `ghost`",
        ),
        ("/api/pipelines/swap/stages/work/deploy", json!({ "versoin": 2 }), 400, "unknown field `versoin`"),
        ("/api/pipelines/swap/stages/work/rollback", Value::Null, 409, "no earlier module version"),
        ("/api/pipelines/nope/pause", Value::Null, 404, "no pipeline named `nope`"),
        ("/api/pipelines/swap/dead-letters/replay", json!({ "ids": [] }), 400, "name the dead letters"),
    ];
    for (path, body, expected, message) in cases {
        let (status, error) = api.post(path, body);
        assert_eq!(status, expected, "{path}: {error}");
        assert!(error["error"].as_str().unwrap_or_default().contains(message), "{path}: {error}");
    }
    // A version whose init refuses the stage's config is not swapped in:
    // v2 (log-parse) takes `format`, v1 (the passthrough) takes no config.
    let picky = kafka_pipeline("picky", "picky", "step@2", &dir.path().join("picky.ndjson"))
        .replace("module = \"step@2\"\n", "module = \"step@2\"\n[stage.config]\nformat = \"json\"\n");
    let (status, view) = api.put("/api/pipelines/picky", picky);
    assert_eq!(status, 201, "{view}");
    let (status, error) = api.post("/api/pipelines/picky/stages/work/deploy", json!({ "version": 1 }));
    assert_eq!(status, 422, "{error}");
    let message = error["error"].as_str().unwrap();
    assert_eq!(
        message.matches("init rejected the stage config: unknown config key `format`").count(),
        1,
        "{error}"
    );
    assert_eq!(api.get("/api/pipelines/picky").1["stages"][0]["module"], "step@2");

    const TOTAL: u64 = 20_000;
    // The swaps must land while records flow: start once the pipeline's
    // consumer has joined its group and reads.
    let first: String = (0..200).map(|id| format!("{{\"id\":{id}}}\n")).collect();
    let (status, body) = api.send(
        api.client
            .post(format!("{}/ingest/events", engine.url))
            .bearer_auth(TOKEN)
            .header("content-type", "application/x-ndjson")
            .body(first),
    );
    assert_eq!(status, 200, "{body}");
    api.wait_pipeline("swap", "reading", |v| v["records"]["read"].as_u64() >= Some(200));
    let url = engine.url.clone();
    let producer = std::thread::spawn(move || {
        let client = Client::new();
        for chunk in (200..TOTAL).collect::<Vec<_>>().chunks(200) {
            let body: String = chunk.iter().map(|id| format!("{{\"id\":{id}}}\n")).collect();
            let response = client
                .post(format!("{url}/ingest/events"))
                .bearer_auth(TOKEN)
                .header("content-type", "application/x-ndjson")
                .body(body)
                .send()
                .unwrap();
            assert_eq!(response.status().as_u16(), 200);
            std::thread::sleep(Duration::from_millis(10));
        }
    });
    let mut flips = Vec::new();
    for round in 0..3 {
        std::thread::sleep(Duration::from_millis(300));
        let (status, stage) = api.post("/api/pipelines/swap/stages/work/deploy", json!({ "version": 2 }));
        assert_eq!((status, stage["module"].as_str()), (200, Some("step@2")), "round {round}: {stage}");
        std::thread::sleep(Duration::from_millis(300));
        let (status, stage) = api.post("/api/pipelines/swap/stages/work/rollback", Value::Null);
        assert_eq!((status, stage["module"].as_str()), (200, Some("step@1")), "round {round}: {stage}");
        flips.push(stage);
    }
    producer.join().unwrap();

    let ids = |path: &Path| -> Vec<u64> {
        read_ndjson(path)
            .iter()
            .map(|r| {
                let record =
                    if r["record"].is_object() { r["record"]["value"].as_str().unwrap() } else { "" };
                let value: Value =
                    if record.is_empty() { r.clone() } else { serde_json::from_str(record).unwrap() };
                value["id"].as_u64().unwrap()
            })
            .collect()
    };
    let deadline = Instant::now() + Duration::from_secs(120);
    while (ids(&out).len() + ids(&dead).len()) < TOTAL as usize && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
    }
    let written = ids(&out);
    let dead_lettered = ids(&dead);
    let mut seen = BTreeMap::new();
    for id in written.iter().chain(&dead_lettered) {
        *seen.entry(*id).or_insert(0) += 1;
    }
    let duplicates: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).map(|(id, _)| id).collect();
    assert!(duplicates.is_empty(), "processed twice: {duplicates:?}");
    assert_eq!(seen.len() as u64, TOTAL, "lost: {} records", TOTAL - seen.len() as u64);
    assert!(!written.is_empty() && !dead_lettered.is_empty(), "both versions ran");
    // The counters agree with the files (they are bumped just after the writes).
    let view = api.wait_pipeline("swap", "counters matching the files", |v| {
        v["records"]["written"].as_u64().unwrap_or(0) + v["records"]["dead_lettered"].as_u64().unwrap_or(0)
            == TOTAL
    });
    assert_eq!(view["records"]["read"], TOTAL);
    assert_eq!(view["stages"][0]["module"], "step@1");
    eprintln!("hot swap: {} written by v1, {} refused by v2, 6 swaps", written.len(), dead_lettered.len());
}

#[test]
fn openapi_document_describes_every_route() {
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::serve(SLUICE, &dir.path().join("data"), &[], &[], &dir.path().join("log"));
    let api = Api::new(&engine);
    let (status, doc) = api.get("/api/openapi.json");
    assert_eq!(status, 200);
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    let mut routes: Vec<String> = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            routes.push(format!("{} {path}", method.to_uppercase()));
        }
    }
    routes.sort();
    let expected = [
        "DELETE /api/modules/{name}",
        "DELETE /api/pipelines/{name}",
        "GET /api/cluster",
        "GET /api/history",
        "GET /api/modules",
        "GET /api/modules/{name}",
        "GET /api/pipelines",
        "GET /api/pipelines/{name}",
        "GET /api/pipelines/{name}/dead-letters",
        "GET /api/pipelines/{name}/dead-letters/{id}",
        "GET /api/pipelines/{name}/history",
        "GET /api/pipelines/{name}/tap",
        "GET /health",
        "GET /metrics",
        "POST /api/pipelines/{name}/dead-letters/replay",
        "POST /api/pipelines/{name}/pause",
        "POST /api/pipelines/{name}/resume",
        "POST /api/pipelines/{name}/stages/{stage}/deploy",
        "POST /api/pipelines/{name}/stages/{stage}/rollback",
        "PUT /api/modules/{name}",
        "PUT /api/pipelines/{name}",
    ];
    assert_eq!(routes, expected);
    // Every documented route answers (not 404/405 for lack of a handler).
    for route in &routes {
        let (method, path) = route.split_once(' ').unwrap();
        let path = path.replace("{name}", "none").replace("{stage}", "none").replace("{id}", "1");
        let request =
            api.client.request(method.parse().unwrap(), format!("{}{path}", engine.url)).bearer_auth(TOKEN);
        let status = request.send().unwrap().status().as_u16();
        assert_ne!(status, 405, "{route}");
        if status == 404 {
            let body: Value = api
                .client
                .request(method.parse().unwrap(), format!("{}{path}", engine.url))
                .bearer_auth(TOKEN)
                .send()
                .unwrap()
                .json()
                .unwrap_or_default();
            assert!(body["error"].is_string(), "{route} has no handler");
        }
    }
    // Mutations are marked as needing the token.
    assert!(doc["paths"]["/api/modules/{name}"]["put"]["security"].is_array());
    assert_eq!(doc["components"]["securitySchemes"]["token"]["scheme"], "bearer");
}
