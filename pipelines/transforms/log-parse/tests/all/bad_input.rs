//! Lines that must be refused, with the right kind and a useful message,
//! and the `tag` documents emitted for them instead when configured.

use log_parse::{ParseConfig, parse_line};
use serde_json::json;
use sluice_guest::testing::{self, TestRecord};
use sluice_guest::{Config, Error, Output, Record, Transform};

use crate::support::{fixture, run_one};

const LINE: &str = r#"83.149.9.216 - - [17/May/2015:10:05:03 +0000] "GET /presentations/logstash-monitorama-2013/images/kibana-search.png HTTP/1.1" 200 203023 "http://semicomplete.com/presentations/logstash-monitorama-2013/" "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_9_1) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/32.0.1700.77 Safari/537.36""#;
const JSON_LINE: &str = r#"{"ip": "83.149.9.216", "datetime": "2015-05-17T10:05:03+00:00", "method": "GET", "url": "/a?b", "responseCode": 200, "responseTime": 852, "sessionID": "e7d5"}"#;

fn error(config: &str, line: impl AsRef<[u8]>) -> Error {
    match run_one(config, line.as_ref()) {
        Ok(doc) => panic!("expected an error for {:?}, got {doc}", String::from_utf8_lossy(line.as_ref())),
        Err(e) => e,
    }
}

fn assert_error(config: &str, line: impl AsRef<[u8]>, kind: &str, message: &str) {
    let e = error(config, line);
    assert_eq!((e.kind(), e.message()), (kind, message));
}

#[test]
fn empty_lines() {
    for line in ["", "\n", "\r\n", "\r"] {
        assert_error("{}", line, "empty", "empty line");
    }
    assert_error(r#"{"format":"json"}"#, "", "empty", "empty line");
}

/// Every proper prefix of a valid line is reported as truncated, whatever
/// field the cut falls in.
#[test]
fn every_cut_of_a_valid_line_is_truncated() {
    let common = r#"127.0.0.1 - frank [10/Oct/2000:13:55:36 -0700] "GET /a\"b HTTP/1.0" 200 2326"#;
    let cases =
        [("{}", LINE), (r#"{"format":"apache_common"}"#, common), (r#"{"format":"json"}"#, JSON_LINE)];
    for (config, line) in cases {
        assert!(run_one(config, line).is_ok(), "{line}");
        // A common-format line ends with a number, and a number cut short
        // is still a number: those cuts cannot be told from valid lines.
        let last_cut = if line == common { line.rfind(' ').unwrap() + 1 } else { line.len() };
        for cut in 1..last_cut {
            let e = error(config, &line.as_bytes()[..cut]);
            assert_eq!(e.kind(), "truncated", "cut at {cut}: {:?}: {e}", &line[..cut]);
        }
    }
}

#[test]
fn truncation_messages_name_what_is_missing() {
    let cut = |at: &str| &LINE[..LINE.find(at).unwrap()];
    assert_error("{}", &LINE[..13], "truncated", "line ends at byte 13; expected the identity field");
    assert_error(
        "{}",
        &LINE[..11],
        "truncated",
        "line ends at byte 11 inside the client address (starting at byte 0)",
    );
    assert_error(
        "{}",
        cut(":10:05"),
        "truncated",
        "line ends at byte 29 inside the timestamp; expected ':' after the year at byte 29",
    );
    assert_error(
        "{}",
        &LINE[..34],
        "truncated",
        "line ends at byte 34 inside the timestamp; expected a 2-digit minute at byte 33",
    );
    assert_error(
        "{}",
        cut("/images"),
        "truncated",
        "line ends at byte 90 inside the request line (opened at byte 46)",
    );
    assert_error("{}", cut("00 2030"), "truncated", "line ends at byte 127 inside the status code");
    assert_error(
        "{}",
        cut(" \"http:"),
        "truncated",
        "line ends at byte 136 after the response size; expected the referrer \
         (for lines without referrer and user agent use format = \"apache_common\")",
    );
    assert_error(
        r#"{"format":"json"}"#,
        r#"{"ip": "83.1"#,
        "truncated",
        "EOF while parsing a string at line 1 column 12",
    );
}

#[test]
fn parse_errors_name_the_field_and_byte() {
    let cases = [
        (LINE.replace(" [17", " 17"), "expected '[' opening the timestamp at byte 17, found '1'"),
        (LINE.replace("May", "Mai"), "timestamp: expected a month abbreviation from Jan to Dec at byte 21"),
        (LINE.replace("17/May", "31/Apr"), "timestamp: expected a day that exists in that month at byte 18"),
        (LINE.replace("+0000", "UTC  "), "timestamp: expected '+' or '-' starting the UTC offset at byte 39"),
        (LINE.replace("\"GET", "GET"), "expected '\"' opening the request line at byte 46, found 'G'"),
        (LINE.replace(" 200 ", " 2000 "), "expected a 3-digit status code at byte 126"),
        (
            LINE.replace("203023", "20x"),
            "expected the response size (an unsigned 64-bit number or '-') at byte 130",
        ),
        (
            LINE.replace("\"GET", "\"G(T"),
            "request line: expected an HTTP method followed by a space at byte 48, found '('",
        ),
        (
            LINE.replace("HTTP/1.1", "HTTP/x"),
            "request line: expected an HTTP version like 1.1 after \"HTTP/\" at byte 121",
        ),
        (format!("{LINE} extra"), "expected the end of the line after the user agent at byte 324"),
        (
            "hello world, this is not a log line".to_string(),
            "expected '[' opening the timestamp at byte 18, found 'i'",
        ),
        (
            r#"1.2.3.4 - - [17/May/2015:10:05:03 +0000] "\x16\x03\x01" 400 0 "-" "-""#.to_string(),
            "request line: expected an HTTP method followed by a space at byte 42, found '\\'",
        ),
    ];
    for (line, message) in cases {
        assert_error("{}", &line, "parse-error", message);
    }
    let common_with_extra = r#"127.0.0.1 - - [10/Oct/2000:13:55:36 -0700] "GET / HTTP/1.0" 200 2326 "-" "-""#;
    assert_error(
        r#"{"format":"apache_common"}"#,
        common_with_extra,
        "parse-error",
        "expected the end of the line after the response size at byte 68",
    );
}

#[test]
fn json_errors_name_the_field() {
    let json = r#"{"format":"json"}"#;
    let with = |from: &str, to: &str| JSON_LINE.replace(from, to);
    let cases = [
        (
            with("\"responseCode\": 200", "\"responseCode\": \"200\""),
            "field `responseCode`: invalid type: string \"200\", expected u16 at line 1 column 117",
        ),
        (with("\"responseCode\": 200, ", ""), "missing field `responseCode` at line 1 column 137"),
        (
            with("+00:00", "+0000"),
            "field `datetime`: expected ':' in the UTC offset at byte 22 of \"2015-05-17T10:05:03+0000\" (an RFC 3339 timestamp) at line 1 column 61",
        ),
        (with("852", "-3"), "field `responseTime`: must not be negative at line 1 column 135"),
        (with("\"method\": \"GET\"", "\"ip\": \"x\""), "duplicate field `ip` at line 1 column 68"),
        (
            "[1, 2]".to_string(),
            "invalid type: sequence, expected a JSON object with ip, datetime, method, url and responseCode at line 1 column 0",
        ),
        (format!("{JSON_LINE} x"), "trailing characters at line 1 column 160"),
    ];
    for (line, message) in cases {
        assert_error(json, &line, "parse-error", message);
    }
}

/// The UTF-8 error is the SDK's own `Record::value_str` error.
#[test]
fn invalid_utf8_matches_the_sdk() {
    struct ValueStr;
    impl Transform for ValueStr {
        fn init(_: &Config) -> Result<Self, String> {
            Ok(ValueStr)
        }
        fn process(&mut self, record: &Record<'_>, _: &mut Output) -> Result<(), Error> {
            record.value_str().map(drop)
        }
    }
    let mut line = LINE.as_bytes().to_vec();
    line.insert(300, 0xff);
    let sdk = testing::run_one(&mut testing::init::<ValueStr>("").unwrap(), TestRecord::new(line.clone()));
    let ours = error("{}", &line);
    assert_eq!(Err(ours.clone()), sdk);
    assert_eq!(ours.kind(), "invalid-utf8");
    assert_eq!(error(r#"{"format":"json"}"#, [0xc3, 0x28]).kind(), "invalid-utf8");
}

#[test]
fn long_lines_are_refused_before_parsing() {
    let huge = vec![b'a'; 1 << 20];
    assert_error("{}", &huge, "too-long", "line is 1048576 bytes, over max_line_bytes = 65536");
    let big = r#"{"max_line_bytes": 2000000}"#;
    assert_eq!(error(big, &huge).kind(), "truncated");
    let huge_agent = format!("{}{}\"", &LINE[..LINE.len() - 1], "x".repeat(1 << 20));
    assert!(run_one(big, &huge_agent).is_ok());
    assert_eq!(error(r#"{"max_line_bytes": 100}"#, LINE).kind(), "too-long");
}

#[test]
fn tag_mode_emits_a_failure_document() {
    let tag = r#"{"on_parse_failure": "tag"}"#;
    let doc = run_one(tag, "not a log line\r\n").unwrap();
    assert_eq!(
        doc,
        json!({
            "event": { "original": "not a log line\r\n" },
            "tags": ["_parse_failure"],
            "error": { "type": "parse-error", "message": "expected '[' opening the timestamp at byte 10, found 'l'" },
        })
    );
    let doc = run_one(tag, b"bad \xff\xfe bytes").unwrap();
    assert_eq!(doc["event"]["original"], "bad \u{fffd}\u{fffd} bytes");
    assert_eq!(doc["error"]["type"], "invalid-utf8");
    assert_eq!(run_one(tag, "").unwrap()["error"]["type"], "empty");
    assert_eq!(run_one(tag, &LINE[..100]).unwrap()["error"]["type"], "truncated");
    // A huge line's original is cut at max_line_bytes.
    let doc = run_one(r#"{"on_parse_failure": "tag", "max_line_bytes": 1000}"#, vec![b'a'; 1 << 20]).unwrap();
    assert_eq!(doc["event"]["original"].as_str().unwrap().len(), 1000);
    assert_eq!(doc["error"]["type"], "too-long");
    // Good lines are unaffected.
    assert_eq!(run_one(tag, LINE).unwrap(), run_one("{}", LINE).unwrap());
}

/// Random corruptions of real lines never panic, and whatever is emitted
/// is one valid JSON object. A small deterministic fuzz, in every format
/// and both failure modes.
#[test]
fn corrupted_lines_never_panic_and_outputs_are_json() {
    let apache = fixture("apache_combined_sample.log");
    let api = fixture("api_server_sample.ndjson");
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut random = move |below: usize| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        (seed % below as u64) as usize
    };
    for (format, lines) in [("apache_combined", &apache), ("apache_common", &apache), ("json", &api)] {
        let lines: Vec<&str> = lines.lines().collect();
        for mode in ["error", "tag"] {
            let config =
                ParseConfig::from_json(&format!(r#"{{"format": "{format}", "on_parse_failure": "{mode}"}}"#))
                    .unwrap();
            for _ in 0..3000 {
                let mut line = lines[random(lines.len())].as_bytes().to_vec();
                for _ in 0..1 + random(3) {
                    let at = random(line.len());
                    match random(4) {
                        0 => line[at] = random(256) as u8,
                        1 => line[at] = b"\"\\ []-:/+\r\n0{}"[random(14)],
                        2 => drop(line.drain(at..(at + random(20)).min(line.len()))),
                        _ => line.insert(at, random(128) as u8),
                    }
                }
                let mut out = Vec::new();
                if parse_line(&line, &config, &mut out).is_ok() {
                    crate::support::document(std::str::from_utf8(&out).unwrap());
                } else {
                    assert!(out.is_empty(), "nothing written on error");
                }
            }
        }
    }
}
