//! Stage config validation: what a deploy accepts and what it rejects.

use log_parse::{Format, LogParse, OnParseFailure, ParseConfig};
use sluice_guest::testing;

fn init_error(config: &str) -> String {
    match testing::init::<LogParse>(config) {
        Ok(_) => panic!("config {config} was accepted"),
        Err(e) => e,
    }
}

#[test]
fn defaults() {
    let config = ParseConfig::from_json("").unwrap();
    assert_eq!(config, ParseConfig::default());
    assert_eq!(config.format, Format::ApacheCombined);
    assert_eq!(config.max_line_bytes, 65_536);
    assert_eq!(config.on_parse_failure, OnParseFailure::Error);
}

#[test]
fn every_key() {
    let config =
        ParseConfig::from_json(r#"{"format": "json", "max_line_bytes": 10, "on_parse_failure": "tag"}"#)
            .unwrap();
    assert_eq!(
        config,
        ParseConfig { format: Format::Json, max_line_bytes: 10, on_parse_failure: OnParseFailure::Tag }
    );
    assert_eq!(ParseConfig::from_json(r#"{"format": "nginx"}"#).unwrap().format, Format::ApacheCombined);
    assert_eq!(
        ParseConfig::from_json(r#"{"format": "apache_common"}"#).unwrap().format,
        Format::ApacheCommon
    );
}

#[test]
fn unknown_key() {
    assert_eq!(
        init_error(r#"{"fromat": "json"}"#),
        "unknown config key `fromat`; expected one of: format, max_line_bytes, on_parse_failure"
    );
}

#[test]
fn unknown_format() {
    assert_eq!(
        init_error(r#"{"format": "regex"}"#),
        "config key `format`: unknown format \"regex\"; expected one of: \
         \"apache_combined\", \"apache_common\", \"nginx\", \"json\""
    );
}

#[test]
fn bad_values() {
    assert_eq!(init_error(r#"{"format": 1}"#), "config key `format`: expected a string, found 1");
    assert_eq!(init_error(r#"{"max_line_bytes": 0}"#), "config key `max_line_bytes`: must be at least 1");
    assert_eq!(
        init_error(r#"{"max_line_bytes": -5}"#),
        "config key `max_line_bytes`: expected a non-negative integer, found -5"
    );
    assert_eq!(
        init_error(r#"{"on_parse_failure": "drop"}"#),
        "config key `on_parse_failure`: unknown value \"drop\"; expected \"error\" or \"tag\""
    );
}

#[test]
fn every_problem_is_reported_at_once() {
    let error = init_error(r#"{"colour": 1, "format": "xml", "on_parse_failure": true}"#);
    let lines: Vec<&str> = error.lines().collect();
    assert_eq!(lines.len(), 3, "{error}");
    assert!(
        lines[0].contains("`colour`")
            && lines[1].contains("\"xml\"")
            && lines[2].contains("on_parse_failure")
    );
}
