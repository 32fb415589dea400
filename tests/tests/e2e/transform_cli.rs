//! `sluice transform`: one JSON line per input record, in input order.

use sluice_tests::{guest, sluice};

use super::SLUICE;

fn json_lines(stdout: &[u8]) -> Vec<serde_json::Value> {
    String::from_utf8_lossy(stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

#[test]
fn stdin_lines_are_records() {
    let module = guest("hostile");
    let output = sluice(SLUICE, &["transform", module.to_str().unwrap()], Some(b"one\nreject\r\nthree"));
    assert!(output.status.success(), "{output:?}");
    let lines = json_lines(&output.stdout);
    assert_eq!(lines.len(), 3);
    assert_eq!(
        lines[0],
        serde_json::json!({"input": 0, "outputs": [{"key": null, "value": "one", "headers": {}}]})
    );
    assert_eq!(
        lines[1],
        serde_json::json!({"input": 1, "error": {"kind": "refused", "message": "the value was `reject`"}})
    );
    assert_eq!(lines[2]["outputs"][0]["value"], "three");
}

#[test]
fn files_are_records_and_binary_values_are_base64() {
    let dir = tempfile::tempdir().unwrap();
    let binary = dir.path().join("bin.dat");
    std::fs::write(&binary, [0u8, 159, 146, 150]).unwrap();
    let text = dir.path().join("a.txt");
    std::fs::write(&text, "hello").unwrap();
    let module = guest("passthrough");
    let output = sluice(
        SLUICE,
        &["transform", module.to_str().unwrap(), binary.to_str().unwrap(), text.to_str().unwrap()],
        None,
    );
    assert!(output.status.success(), "{output:?}");
    let lines = json_lines(&output.stdout);
    let first = &lines[0]["outputs"][0];
    assert_eq!(first["key"], "bin.dat");
    assert_eq!(first["value_base64"], "AJ+Slg==");
    assert_eq!(first["headers"]["filename"], "bin.dat");
    assert_eq!(lines[1]["outputs"][0]["value"], "hello");
}

#[test]
fn config_flags_reach_init() {
    let module = guest("hostile");
    let output =
        sluice(SLUICE, &["transform", module.to_str().unwrap(), "--config", "reject=true"], Some(b"x"));
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("init rejected the stage config: reject = true"), "{stderr}");
}

#[test]
fn a_module_that_cannot_load_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let bogus = dir.path().join("bogus.wasm");
    std::fs::write(&bogus, "not wasm at all").unwrap();
    let output = sluice(SLUICE, &["transform", bogus.to_str().unwrap()], Some(b"x"));
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("not a WebAssembly file"), "{stderr}");
    assert!(output.stdout.is_empty());
}
