//! Golden test: log-parse's own golden outputs (combined and API-server
//! lines) through enrich, natively, against `tests/golden/*.expected.ndjson`.
//! The lookup table here is a stand-in granted by the test (the host's CSV
//! tables are tested in the engine); the same cases run on the wasm
//! component through `sluice test pipelines/weblogs-to-search.toml`.
//!
//! After an intended change, regenerate with `UPDATE_GOLDEN=1 cargo test`
//! and review the diff.

use std::path::PathBuf;

use enrich::Enrich;
use serde_json::{Value, json};
use sluice_guest::testing::{self, TestRecord};

fn path(relative: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(relative)
}

fn enrich_file(input: &str) -> String {
    testing::grant_lookup("geoip", |ip| {
        if ip.starts_with("192.0.2.") {
            Some(json!({"geo": {"country_iso_code": "ZZ"}, "as": {"number": 64496}}).to_string())
        } else if ip.starts_with("2001:db8:") {
            Some(json!({"as": {"number": 64500}}).to_string())
        } else {
            None
        }
    });
    let mut transform = testing::init::<Enrich>(r#"{"geoip_table": "geoip"}"#).unwrap();
    let text = std::fs::read_to_string(path(input)).unwrap();
    let inputs: Vec<TestRecord> = text.lines().map(TestRecord::new).collect();
    let mut out = String::new();
    for result in testing::run(&mut transform, &inputs) {
        let outputs = result.unwrap_or_else(|e| panic!("{input}: {e:?}"));
        assert_eq!(outputs.len(), 1);
        // Re-serialized so the file is stable whatever the key order.
        let doc: Value = serde_json::from_slice(&outputs[0].value).unwrap();
        out.push_str(&doc.to_string());
        out.push('\n');
    }
    out
}

fn check(input: &str, expected: &str) {
    let actual = enrich_file(input);
    let expected_path = path(expected);
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&expected_path, &actual).unwrap();
    }
    let expected = std::fs::read_to_string(&expected_path).unwrap();
    for (i, (a, e)) in actual.lines().zip(expected.lines()).enumerate() {
        assert_eq!(a, e, "line {} of {}", i + 1, expected_path.display());
    }
    assert_eq!(actual.lines().count(), expected.lines().count());
}

#[test]
fn combined_lines() {
    check("../log-parse/tests/golden/combined.expected.ndjson", "tests/golden/combined.expected.ndjson");
}

#[test]
fn api_server_lines() {
    check("../log-parse/tests/golden/api_server.expected.ndjson", "tests/golden/api_server.expected.ndjson");
}

#[test]
fn an_ungranted_table_fails_init_with_how_to_grant_it() {
    let error = testing::init::<Enrich>(r#"{"geoip_table": "asn"}"#).err().unwrap();
    assert!(error.contains("lookup table `asn` is not granted"), "{error}");
    let error = testing::init::<Enrich>(r#"{"geoip": "x"}"#).err().unwrap();
    assert!(error.contains("unknown field `geoip`"), "{error}");
}
