//! The example transform in a real pipeline over the fixture logs: every
//! line is accounted for (written or dead-lettered, never lost), and the
//! shipped example pipelines are valid.

use sluice_tests::{fixture, guest, read_ndjson, root, sluice};

use super::{SLUICE, run_pipeline_file, toml_path, write_pipeline};

fn pipeline(input: &std::path::Path, format: &str) -> String {
    format!(
        r#"
name = "weblogs"
[source]
type = "file"
path = {input}
[batch]
max_records = 128
[[stage]]
name = "parse"
module = {module}
[stage.config]
format = "{format}"
[sink]
type = "file"
path = "out.ndjson"
[dead_letter]
type = "file"
path = "dead.ndjson"
"#,
        input = toml_path(input),
        module = toml_path(&guest("log-parse"))
    )
}

#[test]
fn every_fixture_line_becomes_a_document_in_order() {
    for (file, format) in
        [("logs/apache_combined_sample.log", "apache_combined"), ("logs/api_server_sample.ndjson", "json")]
    {
        let dir = tempfile::tempdir().unwrap();
        let input = fixture(file);
        let report = run_pipeline_file(&write_pipeline(dir.path(), &pipeline(&input, format))).unwrap();
        assert_eq!((report.read, report.written, report.dead_lettered), (500, 500, 0), "{file}");
        let docs = read_ndjson(&dir.path().join("out.ndjson"));
        let lines: Vec<String> =
            std::fs::read_to_string(&input).unwrap().lines().map(str::to_string).collect();
        for (doc, line) in docs.iter().zip(&lines) {
            // Order is kept: each document's client address starts its line
            // (or is the `ip` of its JSON object).
            let ip = doc["client"]["ip"].as_str().unwrap();
            let line_ip = match format {
                "json" => serde_json::from_str::<serde_json::Value>(line).unwrap()["ip"]
                    .as_str()
                    .unwrap()
                    .to_string(),
                _ => line.split(' ').next().unwrap().to_string(),
            };
            assert_eq!(ip, line_ip);
            assert!(doc["@timestamp"].as_str().unwrap().ends_with('Z'));
            assert!(doc["http"]["response"]["status_code"].is_u64());
        }
        assert!(!dir.path().join("dead.ndjson").exists(), "no dead letters for clean input");
    }
}

#[test]
fn bad_lines_are_dead_lettered_with_reasons_and_counts_add_up() {
    let dir = tempfile::tempdir().unwrap();
    let good: Vec<String> = std::fs::read_to_string(fixture("logs/apache_combined_sample.log"))
        .unwrap()
        .lines()
        .take(20)
        .map(str::to_string)
        .collect();
    let mut lines: Vec<Vec<u8>> = Vec::new();
    for (i, line) in good.iter().enumerate() {
        lines.push(line.as_bytes().to_vec());
        match i {
            3 => lines.push(Vec::new()),
            7 => lines.push(line.as_bytes()[..line.len() / 2].to_vec()),
            11 => lines.push(b"\xff\xfe binary \x00 junk".to_vec()),
            15 => lines.push("x".repeat(1 << 20).into_bytes()),
            _ => {}
        }
    }
    let input = lines.join(&b'\n');
    let path = dir.path().join("mixed.log");
    std::fs::write(&path, &input).unwrap();
    let report = run_pipeline_file(&write_pipeline(dir.path(), &pipeline(&path, "apache_combined"))).unwrap();
    assert_eq!(report.read, 24);
    assert_eq!(report.written, 20);
    assert_eq!(report.dead_lettered, 4);
    let dead = read_ndjson(&dir.path().join("dead.ndjson"));
    let kinds: Vec<(&str, i64)> = dead
        .iter()
        .map(|d| (d["error"]["kind"].as_str().unwrap(), d["origin"]["offset"].as_i64().unwrap()))
        .collect();
    assert_eq!(kinds, [("empty", 5), ("truncated", 10), ("invalid-utf8", 15), ("too-long", 20)]);
    // The binary line is kept losslessly in the envelope.
    assert!(dead[2]["record"]["value_base64"].as_str().unwrap().starts_with("//4g"));
}

#[test]
fn example_pipelines_are_valid() {
    let pipelines = root().join("pipelines");
    for name in ["weblogs-file.toml", "apilogs-file.toml"] {
        let path = pipelines.join(name);
        let output = sluice(SLUICE, &["validate", path.to_str().unwrap()], None);
        assert!(output.status.success(), "{name}: {}", String::from_utf8_lossy(&output.stderr));
    }
}
