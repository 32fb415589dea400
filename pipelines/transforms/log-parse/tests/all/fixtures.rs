//! Every line of the shared fixtures, checked field by field against an
//! independent parse: a regex for the Apache log, serde_json for the API
//! server's lines. The whole expected document is built, so extra or
//! misnamed fields fail too.

use std::sync::LazyLock;

use regex::Regex;
use serde_json::{Map, Value, json};

use crate::support::{fixture, naive_utc, run_lines};

const MONTHS: [&str; 12] =
    ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];

// Compiled once: regex compilation dominates a debug-build test run.
static LINE_RE: LazyLock<Regex> = LazyLock::new(|| {
    let quoted = r#""((?:[^"\\]|\\.)*)""#;
    Regex::new(&format!(
        r"^(\S+) \S+ (\S+) \[(\d\d)/(\w\w\w)/(\d{{4}}):(\d\d):(\d\d):(\d\d) ([+-])(\d\d)(\d\d)\] {quoted} (\d{{3}}) (\d+|-) {quoted} {quoted}$"
    ))
    .unwrap()
});
static REQUEST_RE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^(\S+) (.+?)(?: HTTP/([0-9.]+))?$").unwrap());
static ESCAPE_RE: LazyLock<Regex> = LazyLock::new(|| Regex::new(r#"\\(["\\])"#).unwrap());

/// The expected ECS document for one combined-format line, or `None` if
/// the regex does not match.
pub fn expected_combined(line: &str) -> Option<Value> {
    let caps = LINE_RE.captures(line)?;
    let text = |i: usize| caps.get(i).unwrap().as_str();
    let num = |i: usize| text(i).parse::<i64>().unwrap();
    let month = MONTHS.iter().position(|m| *m == text(4))? as i64 + 1;
    let sign = if text(9) == "-" { -1 } else { 1 };
    let timestamp =
        naive_utc((num(5), month, num(3)), (num(6), num(7), num(8)), sign * (num(10) * 60 + num(11)));

    let mut doc = Map::new();
    doc.insert("@timestamp".into(), json!(timestamp));
    doc.insert("client".into(), json!({ "ip": text(1) }));
    if text(2) != "-" {
        doc.insert("user".into(), json!({ "name": text(2) }));
    }
    let mut request = Map::new();
    let mut http = Map::new();
    if let Some(req) = REQUEST_RE.captures(text(12)) {
        let target = unescape(&req[2]);
        request.insert("method".into(), json!(&req[1]));
        if let Some(version) = req.get(3) {
            http.insert("version".into(), json!(version.as_str()));
        }
        let mut url = Map::new();
        url.insert("original".into(), json!(target));
        let (path, query) = target.split_once('?').unwrap_or((&target, ""));
        url.insert("path".into(), json!(path));
        if !query.is_empty() {
            url.insert("query".into(), json!(query));
        }
        doc.insert("url".into(), Value::Object(url));
    }
    if text(15) != "-" {
        request.insert("referrer".into(), json!(unescape(text(15))));
    }
    if !request.is_empty() {
        http.insert("request".into(), Value::Object(request));
    }
    let mut response = json!({ "status_code": num(13) });
    if text(14) != "-" {
        response["body"] = json!({ "bytes": num(14) });
    }
    http.insert("response".into(), response);
    doc.insert("http".into(), Value::Object(http));
    if text(16) != "-" {
        doc.insert("user_agent".into(), json!({ "original": unescape(text(16)) }));
    }
    Some(Value::Object(doc))
}

/// Apache's `\"` and `\\` escapes to the characters they stand for.
fn unescape(text: &str) -> String {
    ESCAPE_RE.replace_all(text, "$1").into_owned()
}

#[test]
fn every_apache_fixture_line_matches_an_independent_parse() {
    let log = fixture("apache_combined_sample.log");
    let lines: Vec<&str> = log.lines().collect();
    assert_eq!(lines.len(), 500);
    let bytes: Vec<&[u8]> = lines.iter().map(|l| l.as_bytes()).collect();
    // `nginx` is the same layout; run both names over the whole file.
    for config in [r#"{}"#, r#"{"format": "apache_combined"}"#, r#"{"format": "nginx"}"#] {
        let results = run_lines(config, &bytes);
        for (n, (line, result)) in lines.iter().zip(results).enumerate() {
            let expected = expected_combined(line).unwrap_or_else(|| panic!("line {}: regex", n + 1));
            let doc = result.unwrap_or_else(|e| panic!("line {}: {e}\n{line}", n + 1));
            assert_eq!(doc, expected, "line {}: {line}", n + 1);
        }
    }
}

#[test]
fn every_api_server_fixture_line_matches_serde_json() {
    let log = fixture("api_server_sample.ndjson");
    let lines: Vec<&str> = log.lines().collect();
    assert_eq!(lines.len(), 500);
    let bytes: Vec<&[u8]> = lines.iter().map(|l| l.as_bytes()).collect();
    let results = run_lines(r#"{"format": "json"}"#, &bytes);
    let datetime_re = Regex::new(r"^(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)([+-])(\d\d):(\d\d)$").unwrap();
    for (n, (line, result)) in lines.iter().zip(results).enumerate() {
        let input: Value = serde_json::from_str(line).unwrap();
        let caps = datetime_re.captures(input["datetime"].as_str().unwrap()).unwrap();
        let num = |i: usize| caps[i].parse::<i64>().unwrap();
        let sign = if &caps[7] == "-" { -1 } else { 1 };
        let timestamp =
            naive_utc((num(1), num(2), num(3)), (num(4), num(5), num(6)), sign * (num(8) * 60 + num(9)));
        let url = input["url"].as_str().unwrap();
        let (path, query) = url.split_once('?').unwrap_or((url, ""));
        let mut expected = json!({
            "@timestamp": timestamp,
            "client": { "ip": input["ip"] },
            "http": {
                "request": { "method": input["method"] },
                "response": { "status_code": input["responseCode"] },
            },
            "url": { "original": url, "path": path },
            "event": { "duration": input["responseTime"].as_u64().unwrap() * 1_000_000 },
            "labels": { "session_id": input["sessionID"] },
        });
        if !query.is_empty() {
            expected["url"]["query"] = json!(query);
        }
        let doc = result.unwrap_or_else(|e| panic!("line {}: {e}\n{line}", n + 1));
        assert_eq!(doc, expected, "line {}: {line}", n + 1);
    }
}
