//! Helpers shared by the test modules.

use std::path::PathBuf;

use log_parse::LogParse;
use serde_json::Value;
use sluice_guest::Error;
use sluice_guest::testing::{self, TestRecord};

/// `shared/fixtures/logs/<name>`, from the crate folder.
pub fn fixture(name: &str) -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../../shared/fixtures/logs").join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// `tests/golden/<name>`.
pub fn golden(name: &str) -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden").join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

pub fn transform(config_json: &str) -> LogParse {
    testing::init::<LogParse>(config_json).unwrap_or_else(|e| panic!("config {config_json}: {e}"))
}

/// Runs `lines` as one batch; each line gives its single output value, as
/// text, or its error. Checks that a line never yields more than one record.
pub fn run_lines_raw(config_json: &str, lines: &[&[u8]]) -> Vec<Result<String, Error>> {
    let mut transform = transform(config_json);
    let inputs: Vec<TestRecord> = lines.iter().map(|line| TestRecord::new(*line)).collect();
    testing::run(&mut transform, &inputs)
        .into_iter()
        .map(|result| {
            result.map(|outputs| {
                assert_eq!(outputs.len(), 1, "one document per line");
                String::from_utf8(outputs[0].value.clone()).expect("output is UTF-8")
            })
        })
        .collect()
}

/// Like [`run_lines_raw`], with each document parsed.
pub fn run_lines(config_json: &str, lines: &[&[u8]]) -> Vec<Result<Value, Error>> {
    run_lines_raw(config_json, lines).into_iter().map(|r| r.map(|text| document(&text))).collect()
}

pub fn run_one(config_json: &str, line: impl AsRef<[u8]>) -> Result<Value, Error> {
    run_lines(config_json, &[line.as_ref()]).pop().unwrap()
}

/// Parses an output value, which must be one compact JSON object.
pub fn document(text: &str) -> Value {
    // Some outputs are a megabyte long: show only their start.
    let start = &text[..text.floor_char_boundary(300)];
    assert!(!text.ends_with('\n'), "no trailing newline: {start}");
    let doc: Value = serde_json::from_str(text).unwrap_or_else(|e| panic!("{e}: {start}"));
    assert!(doc.is_object(), "{start}");
    doc
}

/// Days since 1970-01-01, counted naively, month by month: independent of
/// the production code's closed-form conversion.
fn naive_days(year: i64, month: i64, day: i64) -> i64 {
    let leap = |y: i64| (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    let month_len = |y: i64, m: i64| match m {
        2 if leap(y) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    };
    let mut days = 0;
    for y in 1970..year {
        days += if leap(y) { 366 } else { 365 };
    }
    for m in 1..month {
        days += month_len(year, m);
    }
    days + day - 1
}

/// The inverse of `naive_days`, year by year and month by month.
fn naive_date(mut days: i64) -> (i64, i64, i64) {
    let mut year = 1970;
    loop {
        let len = naive_days(year + 1, 1, 1) - naive_days(year, 1, 1);
        if days < len {
            break;
        }
        days -= len;
        year += 1;
    }
    let mut month = 1;
    loop {
        let len = naive_days(year, month + 1, 1) - naive_days(year, month, 1);
        if month == 12 || days < len {
            break;
        }
        days -= len;
        month += 1;
    }
    (year, month, days + 1)
}

/// A local date and time with a UTC offset, as `YYYY-MM-DDTHH:MM:SSZ` in UTC.
/// For dates from 1970 on, which is all the tests need.
pub fn naive_utc(date: (i64, i64, i64), time: (i64, i64, i64), offset_minutes: i64) -> String {
    let local = naive_days(date.0, date.1, date.2) * 86_400 + time.0 * 3600 + time.1 * 60 + time.2;
    let utc = local - offset_minutes * 60;
    let (y, m, d) = naive_date(utc / 86_400);
    let s = utc % 86_400;
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z", s / 3600, s / 60 % 60, s % 60)
}

#[test]
fn naive_utc_converts_offsets() {
    assert_eq!(naive_utc((2015, 12, 31), (20, 30, 0), -7 * 60), "2016-01-01T03:30:00Z");
    assert_eq!(naive_utc((2016, 3, 1), (0, 10, 0), 60), "2016-02-29T23:10:00Z");
}
