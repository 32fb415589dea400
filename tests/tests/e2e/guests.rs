//! Transforms in Python and JavaScript, and transform projects in all three
//! languages: built with the real toolchains (componentize-py,
//! componentize-js, cargo) through `sluice build`, run by the real engine.
//!
//! - a new project in each language: `sluice new`, `sluice build`,
//!   `sluice test`, upload through the API, deploy into a pipeline, records
//!   transformed;
//! - the shipped Python and JavaScript examples: their golden tests, and the
//!   fixture web logs through parse → enrich → redact → route in Kafka;
//! - hostile guests in each language, contained like a Rust one;
//! - stage config checked against a module's declaration.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use rdkafka::mocking::MockCluster;
use serde_json::Value;
use sluice_tests::broker::read_topic;
use sluice_tests::engine::{Api, Engine, TOKEN};
use sluice_tests::{built_project, fixture, read_ndjson, root, sluice, toolchain_path};

use super::{SLUICE, run_pipeline_file, toml_path, write_pipeline};

fn example(name: &str) -> PathBuf {
    built_project(SLUICE, &root().join("pipelines/transforms").join(name))
}

fn test_guest(name: &str) -> PathBuf {
    built_project(SLUICE, &root().join("tests/guests").join(name))
}

/// Runs `sluice ARGS` in `dir` with the guest toolchains on `PATH`.
fn sluice_in(dir: &Path, args: &[&str]) -> (bool, String) {
    let output = Command::new(SLUICE)
        .args(args)
        .current_dir(dir)
        .env("PATH", toolchain_path())
        .env("CARGO_TARGET_DIR", root().join("target/wasm-projects"))
        .env("SLUICE_LOG", "warn")
        .output()
        .expect("run sluice");
    let text =
        format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    (output.status.success(), text)
}

/// The walk of the README, in `language`: scaffold, build, test, upload,
/// deploy, and see records transformed. The uploaded module's declaration
/// then refuses a stage config with a typo, through the API, both in a new
/// pipeline and when deploying into a stage.
fn walk(language: &str) {
    let dir = tempfile::tempdir().unwrap();
    let name = format!("walk-{language}");
    let (ok, out) = sluice_in(dir.path(), &["new", &name, "--lang", language]);
    assert!(ok, "{out}");
    let project = dir.path().join(&name);

    let (ok, out) = sluice_in(&project, &["build"]);
    assert!(ok, "sluice build:\n{out}");
    let component = project.join("build").join(format!("{name}.wasm"));
    assert!(
        out.contains(&format!(
            "built {}",
            Path::new(".").join("build").join(format!("{name}.wasm")).display()
        )),
        "{out}"
    );
    assert!(out.contains("declares 2 config keys"), "{out}");

    let (ok, out) = sluice_in(&project, &["test"]);
    assert!(ok && out.contains("2 tests, 2 passed, 0 failed"), "sluice test:\n{out}");

    // A change to the source makes `sluice test` build again, and a broken
    // expectation fails it.
    let pipeline = project.join("pipeline.toml");
    let golden = std::fs::read_to_string(&pipeline).unwrap();
    std::fs::write(&pipeline, golden.replace(r#""tagged_by":"walk"#, r#""tagged_by":"nope"#)).unwrap();
    let (ok, out) = sluice_in(&project, &["test"]);
    assert!(!ok && out.contains("1 failed"), "a wrong expectation fails:\n{out}");
    std::fs::write(&pipeline, golden).unwrap();

    // Into a running engine through the API.
    let data = dir.path().join("data");
    let engine = Engine::serve(SLUICE, &data, &[], &[], &dir.path().join("engine.log"));
    let api = Api::new(&engine);
    let (status, body) =
        api.send(reqwest::Method::PUT, &format!("/api/modules/{name}"), std::fs::read(&component).unwrap());
    assert_eq!(status, 201, "{body}");
    let (_, modules) = api.get("/api/modules");
    let listed = modules.as_array().unwrap().iter().find(|m| m["name"] == name.as_str()).cloned();
    let listed = listed.unwrap_or_else(|| panic!("{name} listed: {modules}"));
    assert_eq!(listed["config"]["field"]["type"], "string", "the declaration is listed: {listed}");
    assert_eq!(listed["config"]["value"]["default"], "yes", "{listed}");

    let input = dir.path().join("in.ndjson");
    std::fs::write(&input, "{\"n\":1}\n{\"n\":2}\nnot json\n").unwrap();
    let output = dir.path().join("out.ndjson");
    let toml = |config: &str| {
        format!(
            "name = \"walk\"\n[source]\ntype = \"file\"\npath = {input}\n\
             [[stage]]\nname = \"tag\"\nmodule = \"{name}\"\ntimeout_ms = 5000\nmax_memory_mb = 96\nparallelism = 1\n\
             [stage.config]\n{config}\n\
             [sink]\ntype = \"file\"\npath = {output}\n\
             [dead_letter]\ntype = \"file\"\npath = {dead}\n",
            input = toml_path(&input),
            output = toml_path(&output),
            dead = toml_path(&dir.path().join("dead.ndjson")),
        )
    };
    let typo = toml("feild = \"seen_by\"");
    let typo_line = typo.lines().position(|l| l.starts_with("feild")).unwrap() + 1;
    let (status, body) = api.send(reqwest::Method::PUT, "/api/pipelines/walk", typo.into_bytes());
    assert_eq!(status, 422, "a config the module does not declare is refused: {body}");
    let message = body.to_string();
    assert!(message.contains("unknown key `feild`; did you mean `field`?"), "{message}");
    let marked = body["errors"].as_array().expect("errors at their lines, for the deploy form");
    assert_eq!(marked[0]["line"], typo_line, "{body}");
    assert_eq!(marked[0]["column"], 1, "{body}");
    assert_eq!(marked[0]["key"], "stage[0].config.feild", "{body}");
    assert!(message.contains("missing required key `field`"), "{message}");

    let (status, body) =
        api.send(reqwest::Method::PUT, "/api/pipelines/walk", toml("field = \"seen_by\"").into_bytes());
    assert_eq!(status, 201, "{body}");
    let deadline = Instant::now() + Duration::from_secs(120);
    while read_ndjson(&output).len() < 2 {
        assert!(
            Instant::now() < deadline,
            "no output; engine log:\n{}",
            std::fs::read_to_string(dir.path().join("engine.log")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let documents = read_ndjson(&output);
    assert_eq!(
        documents,
        [serde_json::json!({"n": 1, "seen_by": "yes"}), serde_json::json!({"n": 2, "seen_by": "yes"})],
        "the declared default of `value` reached init"
    );
    let dead = read_ndjson(&dir.path().join("dead.ndjson"));
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert_eq!(dead[0]["error"]["kind"], "invalid-json", "{}", dead[0]);

    // Deploying a version whose declaration the stage's config does not
    // fit is refused, and the stage keeps running the old one.
    let mut stricter = std::fs::read(&component).unwrap();
    let spec = r#"{"label": {"type": "string", "required": true, "description": "renamed"}}"#;
    sluice::wasm::config_spec::embed(
        &mut stricter,
        &sluice::wasm::config_spec::ConfigSpec::parse(spec.as_bytes()).unwrap(),
    );
    let (status, body) = api.send(reqwest::Method::PUT, &format!("/api/modules/{name}"), stricter);
    assert_eq!(status, 201, "{body}");
    let (status, body) = api.send(
        reqwest::Method::POST,
        "/api/pipelines/walk/stages/tag/deploy",
        format!("{{\"module\":\"{name}\"}}").into_bytes(),
    );
    assert_eq!(status, 422, "{body}");
    let message = body.to_string();
    assert!(
        message.contains("unknown key `field`") && message.contains("missing required key `label` (renamed)"),
        "{message}"
    );
}

#[test]
fn a_new_python_project_goes_from_scaffold_to_records_transformed_in_an_engine() {
    walk("python");
}

#[test]
fn a_new_javascript_project_goes_from_scaffold_to_records_transformed_in_an_engine() {
    walk("js");
}

#[test]
fn a_new_rust_project_goes_from_scaffold_to_records_transformed_in_an_engine() {
    walk("rust");
}

#[test]
fn a_project_without_its_toolchain_says_how_to_get_it_in_one_line() {
    let dir = tempfile::tempdir().unwrap();
    for (language, expected) in [
        ("python", "componentize-py is not installed: run ./setup.sh"),
        ("js", "componentize-js is not installed: run ./setup.sh"),
    ] {
        let project = dir.path().join(language);
        let created =
            sluice(SLUICE, &["new", "x", "--lang", language, "--dir", project.to_str().unwrap()], None);
        assert!(created.status.success());
        let output = Command::new(SLUICE)
            .arg("build")
            .current_dir(&project)
            .env("PATH", "/nonexistent")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success());
        assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
        assert!(stderr.contains(expected), "{stderr}");
    }
    let outside = Command::new(SLUICE).arg("build").current_dir(dir.path()).output().unwrap();
    let stderr = String::from_utf8_lossy(&outside.stderr);
    assert!(stderr.contains("is not a transform project") && stderr.contains("sluice new"), "{stderr}");
    let taken = sluice(
        SLUICE,
        &["new", "python", "--lang", "rust", "--dir", dir.path().join("python").to_str().unwrap()],
        None,
    );
    assert!(String::from_utf8_lossy(&taken.stderr).contains("already exists and is not empty"));
    let bad = sluice(SLUICE, &["new", "../escape", "--lang", "js"], None);
    assert!(String::from_utf8_lossy(&bad.stderr).contains("is not a valid transform name"));
}

#[test]
fn the_shipped_python_and_javascript_examples_pass_their_golden_tests() {
    example("redact");
    example("route");
    let file = root().join("pipelines/weblogs-private.toml");
    let output = sluice(SLUICE, &["test", file.to_str().unwrap()], None);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}{}", String::from_utf8_lossy(&output.stderr));
    assert!(stdout.contains("5 tests, 5 passed, 0 failed"), "{stdout}");

    // validate checks each stage's config against the module's declaration.
    let dir = tempfile::tempdir().unwrap();
    let shipped = std::fs::read_to_string(&file).unwrap();
    let typo = absolute_paths(&shipped, dir.path())
        .replace("emails = \"hash\"", "emial = \"hash\"\nipv4_prefix = \"24\"");
    let path = write_pipeline(dir.path(), &typo);
    let output = sluice(SLUICE, &["validate", path.to_str().unwrap()], None);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    let line = |needle: &str| typo.lines().position(|l| l.starts_with(needle)).unwrap() + 1;
    for expected in [
        format!(
            "pipeline.toml:{}:1: key `stage[2].config.emial`: module `redact.wasm` does not take this config: unknown key `emial`; did you mean `emails`?",
            line("emial")
        ),
        format!(
            "pipeline.toml:{}:1: key `stage[2].config.ipv4_prefix`: module `redact.wasm` does not take this config: `ipv4_prefix` must be an integer, found a string",
            line("ipv4_prefix")
        ),
    ] {
        assert!(stderr.contains(&expected), "missing {expected:?} in:\n{stderr}");
    }
}

/// The shipped pipeline with its relative paths made absolute and its
/// dead letters in `dir`.
fn absolute_paths(toml: &str, dir: &Path) -> String {
    let pipelines = root().join("pipelines");
    toml.replace("\"../target/", &format!("\"{}/target/", root().display()))
        .replace("\"transforms/", &format!("\"{}/transforms/", pipelines.display()))
        .replace("\"lookups/", &format!("\"{}/lookups/", pipelines.display()))
        .replace("\"../data/weblogs-private.dead-letter.ndjson\"", &toml_path(&dir.join("dead.ndjson")))
}

#[test]
fn fixture_logs_are_redacted_and_routed_through_python_and_javascript_stages_in_kafka() {
    example("redact");
    example("route");
    let cluster = MockCluster::new(1).unwrap();
    cluster.create_topic("weblogs", 2, 1).unwrap();
    cluster.create_topic("weblogs-routed", 3, 1).unwrap();
    let bootstrap = cluster.bootstrap_servers();
    let dir = tempfile::tempdir().unwrap();
    let shipped = std::fs::read_to_string(root().join("pipelines/weblogs-private.toml")).unwrap();
    let pipeline = write_pipeline(dir.path(), &absolute_paths(&shipped, dir.path()));
    let engine = Engine::start(
        SLUICE,
        &[&pipeline],
        &["--brokers", bootstrap.as_str()],
        &dir.path().join("engine.log"),
    );

    let fixture_lines = std::fs::read_to_string(fixture("logs/apache_combined_sample.log")).unwrap();
    let mut lines: Vec<String> = fixture_lines.lines().map(str::to_string).collect();
    lines.extend([
        r#"198.51.100.9 - - [17/May/2015:10:05:03 +0000] "GET /checkout HTTP/1.1" 503 10 "-" "curl/8.0""#.to_string(),
        r#"10.1.2.3 - - [17/May/2015:10:05:03 +0000] "GET /healthz HTTP/1.1" 200 2 "-" "kube-probe/1.29""#.to_string(),
        r#"203.0.113.77 - carol@example.org [17/May/2015:10:05:03 +0000] "GET /api?api_key=k3y&q=1 HTTP/1.1" 200 9 "-" "Wget/1.21""#.to_string(),
        r#"10.0.0.1 - - [17/May/2015:10:05:03 +0000] "GET /x HTTP/1.1" 2"#.to_string(),
    ]);
    let http = reqwest::blocking::Client::new();
    for chunk in lines.chunks(100) {
        let response = http
            .post(format!("{}/ingest/weblogs", engine.url))
            .bearer_auth(TOKEN)
            .header("content-type", "text/plain")
            .body(chunk.join("\n"))
            .send()
            .unwrap();
        assert_eq!(response.status(), 200, "{}", response.text().unwrap_or_default());
    }

    // One health check dropped, one truncated line dead-lettered.
    let expected = lines.len() - 2;
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut routed = read_topic(&bootstrap, "weblogs-routed");
    while routed.len() < expected {
        assert!(
            Instant::now() < deadline,
            "{} of {expected} routed; engine log:\n{}",
            routed.len(),
            std::fs::read_to_string(dir.path().join("engine.log")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(500));
        routed = read_topic(&bootstrap, "weblogs-routed");
    }
    assert_eq!(routed.len(), expected, "each document once");
    let email = regex::Regex::new(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}").unwrap();
    let mut routes: BTreeMap<String, usize> = BTreeMap::new();
    for record in &routed {
        let text = String::from_utf8(record.value.clone()).unwrap();
        let document: Value = serde_json::from_str(&text).unwrap();
        let route = String::from_utf8(record.key.clone().expect("keyed by route")).unwrap();
        assert_eq!(document["labels"]["route"], route.as_str(), "{text}");
        assert!(record.headers.iter().any(|(n, v)| n == "route" && v == route.as_bytes()), "{text}");
        let status = document["http"]["response"]["status_code"].as_i64().unwrap();
        let bot = document["user_agent"]["bot"] == true;
        let expected_route = if status >= 500 {
            "errors"
        } else if bot {
            "bots"
        } else {
            "traffic"
        };
        assert_eq!(route, expected_route, "{text}");
        *routes.entry(route).or_default() += 1;
        // Nothing personal is left.
        let ip = document["client"]["ip"].as_str().unwrap();
        let network: std::net::IpAddr = ip.parse().unwrap();
        match network {
            std::net::IpAddr::V4(v4) => assert_eq!(v4.octets()[3], 0, "{text}"),
            std::net::IpAddr::V6(v6) => assert!(v6.segments()[3..].iter().all(|s| *s == 0), "{text}"),
        }
        assert!(!email.is_match(&text) || text.contains("email:"), "an email left in {text}");
        assert!(!text.contains("k3y"), "{text}");
    }
    assert_eq!(routes.get("errors"), Some(&1), "{routes:?}");
    assert!(routes.get("bots").copied().unwrap_or(0) > 10, "{routes:?}");
    let carol = routed
        .iter()
        .map(|r| String::from_utf8_lossy(&r.value).into_owned())
        .find(|t| t.contains("api_key="))
        .expect("the line with a key");
    assert!(carol.contains("api_key=REDACTED") && carol.contains("\"203.0.113.0\""), "{carol}");
    let dead = read_ndjson(&dir.path().join("dead.ndjson"));
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert_eq!(dead[0]["stage"], "parse");
}

/// Lines through a hostile guest of `name`; returns what was written and
/// the dead letters.
fn run_hostile(name: &str, lines: &[&str], stage_extra: &str) -> (Vec<String>, Vec<Value>) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("in.txt"), lines.join("\n")).unwrap();
    let pipeline = write_pipeline(
        dir.path(),
        &format!(
            "name = \"hostile\"\n[source]\ntype = \"file\"\npath = \"in.txt\"\n[batch]\nmax_records = 4\nlinger_ms = 5\n\
             [[stage]]\nname = \"evil\"\nmodule = {module}\ntimeout_ms = 500\nmax_memory_mb = 64\nparallelism = 1\n\
             {stage_extra}\n[sink]\ntype = \"file\"\npath = \"out.ndjson\"\n[dead_letter]\ntype = \"file\"\npath = \"dead.ndjson\"\n",
            module = toml_path(&test_guest(name))
        ),
    );
    let report = run_pipeline_file(&pipeline).expect("the pipeline runs to the end");
    assert_eq!(report.read as usize, lines.len());
    let written = std::fs::read_to_string(dir.path().join("out.ndjson")).unwrap_or_default();
    (written.lines().map(str::to_string).collect(), read_ndjson(&dir.path().join("dead.ndjson")))
}

fn assert_contained(name: &str, cases: &[(&str, &str, &str)]) {
    let mut lines = vec!["a"];
    for (bad, _, _) in cases {
        lines.extend([*bad, "ok"]);
    }
    let (written, dead) = run_hostile(name, &lines, "");
    let good: Vec<&str> = lines.iter().copied().filter(|l| *l == "a" || *l == "ok").collect();
    assert_eq!(written, good, "{name}: the other records pass, in order; dead letters: {dead:?}");
    assert_eq!(dead.len(), cases.len(), "{dead:?}");
    for (letter, (bad, kind, message)) in dead.iter().zip(cases) {
        assert_eq!(letter["record"]["value"], *bad, "{letter}");
        assert_eq!(letter["error"]["kind"], *kind, "{name} `{bad}`: {letter}");
        let text = letter["error"]["message"].as_str().unwrap();
        assert!(text.contains(message), "{name} `{bad}`: {text:?} should mention {message:?}");
    }
}

#[test]
fn a_hostile_python_guest_is_contained_like_a_rust_one() {
    assert_contained(
        "hostile-py",
        &[
            ("loop", "timeout", "timeout_ms = 500"),
            ("oom", "out-of-memory", "MemoryError"),
            ("raise", "exception", "ValueError: refused on purpose (at /0/transform.py:"),
            ("recurse", "stack-overflow", "RecursionError"),
            ("exit", "trap", "the guest exited"),
        ],
    );
}

#[test]
fn a_hostile_javascript_guest_is_contained_like_a_rust_one() {
    assert_contained(
        "hostile-js",
        &[
            ("loop", "timeout", "timeout_ms = 500"),
            ("oom", "out-of-memory", "out of memory"),
            ("throw", "exception", "TypeError: refused on purpose (at transform.js:"),
            ("throw-string", "exception", "thrown: a bare string"),
        ],
    );
}

/// Lookups and the host's hash through the Python and JavaScript SDKs:
/// answered when the stage is granted them, refused (a dead letter naming
/// the grant) or, for Python's hash, computed in the guest when not.
#[test]
fn python_and_javascript_guests_reach_lookups_and_the_hash_only_when_granted() {
    let table = toml_path(&root().join("pipelines/lookups/geoip-sample.csv"));
    let granted = format!(
        "capabilities = [\"lookup:geoip\", \"hash\"]\n[lookup.geoip]\nfile = {table}\nmatch = \"ip\"\n"
    );
    let declared_only = format!("[lookup.geoip]\nfile = {table}\nmatch = \"ip\"\n");
    // SHA-256 of "abc", from FIPS 180-2.
    let abc = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
    for name in ["hostile-py", "hostile-js"] {
        let (written, dead) = run_hostile(name, &["lookup:203.0.113.200", "sha256:abc"], &granted);
        assert!(dead.is_empty(), "{name}: {dead:?}");
        let row: Value = serde_json::from_str(&written[0]).unwrap();
        assert_eq!(row["row"]["geo"]["country_iso_code"], "ZZ", "{name}: {row}");
        assert_eq!(written[1], abc, "{name}");

        let (written, dead) = run_hostile(name, &["lookup:203.0.113.200", "sha256:abc"], &declared_only);
        let refused = dead.iter().find(|l| l["record"]["value"] == "lookup:203.0.113.200").expect("refused");
        let message = refused["error"]["message"].as_str().unwrap();
        assert!(message.contains("lookup:geoip"), "{name}: the refusal names the grant: {message}");
        if name == "hostile-py" {
            assert_eq!(written, [abc], "Python hashes in the guest when not granted `hash`");
        } else {
            assert!(written.is_empty(), "{written:?}");
            assert_eq!(dead.len(), 2, "JavaScript has no fallback for `hash`: {dead:?}");
        }
    }
}
