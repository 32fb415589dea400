//! Hand-written edge cases: `tests/golden/<name>.log` must turn into
//! `tests/golden/<name>.expected.ndjson`, line for line, byte for byte.
//!
//! The expected files were written by hand, not generated, so they check
//! the field mapping rather than freeze whatever the code does.

use crate::support::{document, golden, run_lines_raw, run_one};

fn check_golden(name: &str, config: &str) {
    let input = golden(&format!("{name}.log"));
    let expected = golden(&format!("{name}.expected.ndjson"));
    let lines: Vec<&[u8]> = input.lines().map(str::as_bytes).collect();
    let expected: Vec<&str> = expected.lines().collect();
    assert_eq!(lines.len(), expected.len(), "{name}: one expected line per input line");
    for (n, (result, expected)) in run_lines_raw(config, &lines).into_iter().zip(expected).enumerate() {
        let text = result.unwrap_or_else(|e| panic!("{name}.log:{}: {e}", n + 1));
        // Compare as text: key order and escaping are part of the output.
        assert_eq!(text, expected, "{name}.log:{}", n + 1);
        document(&text);
    }
}

#[test]
fn combined_edge_cases() {
    check_golden("combined", r#"{"format": "apache_combined"}"#);
}

#[test]
fn common_edge_cases() {
    check_golden("common", r#"{"format": "apache_common"}"#);
}

#[test]
fn api_server_edge_cases() {
    check_golden("api_server", r#"{"format": "json"}"#);
}

#[test]
fn line_terminators_are_ignored() {
    let line = r#"192.0.2.1 - - [17/May/2015:10:05:03 +0000] "GET / HTTP/1.1" 200 1 "-" "-""#;
    let plain = run_one("{}", line).unwrap();
    for terminator in ["\r\n", "\n", "\r"] {
        assert_eq!(run_one("{}", format!("{line}{terminator}")).unwrap(), plain, "{terminator:?}");
    }
    let json =
        r#"{"ip":"10.1.1.1","datetime":"2015-05-17T10:05:03Z","method":"GET","url":"/","responseCode":200}"#;
    let plain = run_one(r#"{"format":"json"}"#, json).unwrap();
    assert_eq!(run_one(r#"{"format":"json"}"#, format!("{json}\r\n")).unwrap(), plain);
}

/// The output keeps the input's key and timestamp, and a failed record in
/// the middle of a batch leaves no empty record behind.
#[test]
fn outputs_keep_key_and_timestamp_and_failures_leave_nothing() {
    use sluice_guest::testing::{self, TestRecord};
    let line = r#"192.0.2.1 - - [17/May/2015:10:05:03 +0000] "GET / HTTP/1.1" 200 1 "-" "-""#;
    let mut transform = crate::support::transform("{}");
    let inputs = [
        TestRecord::new(line).with_key("k1").with_timestamp(1_431_857_103_000),
        TestRecord::new("garbage"),
        TestRecord::new(line),
    ];
    let results = testing::run(&mut transform, &inputs);
    let first = results[0].as_ref().unwrap();
    assert_eq!(first.len(), 1);
    assert_eq!(first[0].key.as_deref(), Some(&b"k1"[..]));
    assert_eq!(first[0].timestamp, Some(1_431_857_103_000));
    assert!(results[1].is_err());
    assert_eq!(results[2].as_ref().unwrap().len(), 1);
    assert_eq!(results[2].as_ref().unwrap()[0].key, None);
}
