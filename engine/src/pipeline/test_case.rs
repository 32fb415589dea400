//! `[[tests]]` in pipeline files: records fed into a pipeline's transform
//! chain, and what must come out — run by `sluice test` (like `vector
//! test`), so a transform's golden cases live beside the pipeline using it.
//!
//! ```toml
//! [[tests]]
//! name = "a crawler is flagged and located"
//! from = "parse"                 # the stage the inputs enter; default: the first
//! to = "enrich"                  # the last stage run; default: the last
//! inputs = ['66.249.73.135 - - [17/May/2015:10:05:03 +0000] "GET / HTTP/1.1" 200 12 "-" "Googlebot/2.1"']
//! [[tests.outputs]]              # listed outputs: exactly these, in order
//! fields = { "user_agent.bot" = true, "client.geo.country_iso_code" = "US" }
//! absent = ["user.name"]
//! [[tests.dead_letters]]         # every dead letter must be listed
//! input = 1
//! kind = "truncated"
//! message = "inside the request"   # a substring of the reason
//! ```
//!
//! The whole chain runs in-process on the real modules, with the stages'
//! limits, capabilities and lookup tables, but no source or sink.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::Value as Json;

use super::dead_letter::DeadLetter;
use super::stage::{Stage, StageError};
use crate::config::PipelineConfig;
use crate::record::{Header, Origin, Record, SourceName};
use crate::wasm::WasmHost;

/// One `[[tests]]` table.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TestCase {
    pub name: String,
    /// The stage the inputs go into (by name); default: the first.
    pub from: Option<String>,
    /// The last stage to run; default: the last.
    pub to: Option<String>,
    /// The records: a string is a value; a table sets `value`, `key`,
    /// `headers`, `timestamp_ms`.
    pub inputs: Vec<TestInput>,
    /// When given, exactly these outputs must come out, in this order.
    pub outputs: Option<Vec<ExpectedOutput>>,
    /// Every input that fails must be listed here, and every one listed must fail.
    #[serde(default)]
    pub dead_letters: Vec<ExpectedDeadLetter>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(untagged)]
pub enum TestInput {
    Value(String),
    Record {
        value: String,
        key: Option<String>,
        #[serde(default)]
        headers: BTreeMap<String, String>,
        timestamp_ms: Option<i64>,
    },
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ExpectedOutput {
    /// The whole value. When both sides are JSON they are compared as JSON
    /// (key order and spacing do not matter), otherwise as text.
    pub equals: Option<String>,
    /// Fields of a JSON value: a dotted path and the value it must hold.
    /// A key that itself contains dots (`"@timestamp"`) is found too.
    pub fields: BTreeMap<String, toml::Value>,
    /// Dotted paths that must not be present.
    pub absent: Vec<String>,
    /// The output's key, as text.
    pub key: Option<String>,
    /// Headers the output must carry, with these values.
    pub headers: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExpectedDeadLetter {
    /// The failing input's position in `inputs`, from 0.
    pub input: usize,
    /// The stage that refused it.
    pub stage: Option<String>,
    /// The error kind, e.g. `truncated`.
    pub kind: Option<String>,
    /// A substring of the error message.
    pub message: Option<String>,
}

/// What one case made, and what was wrong with it.
#[derive(Debug)]
pub struct TestOutcome {
    pub name: String,
    /// Empty when the case passed.
    pub failures: Vec<String>,
}

impl TestOutcome {
    pub fn passed(&self) -> bool {
        self.failures.is_empty()
    }
}

/// Runs one case through fresh instances of the pipeline's stages.
pub fn run_case(
    pipeline: &PipelineConfig,
    case: &TestCase,
    host: &WasmHost,
) -> Result<TestOutcome, StageError> {
    let position = |name: &Option<String>, default: usize| {
        name.as_ref().and_then(|n| pipeline.stages.iter().position(|s| &s.name == n)).unwrap_or(default)
    };
    // Validation made sure `from`/`to` name stages in this order.
    let from = position(&case.from, 0);
    let to = position(&case.to, pipeline.stages.len().saturating_sub(1));
    let mut stages = Vec::new();
    for config in pipeline.stages.get(from..=to).unwrap_or_default() {
        stages.push(Stage::build(config, pipeline, host)?);
    }

    let source = SourceName::new("test");
    let mut records: Vec<Record> =
        case.inputs.iter().enumerate().map(|(i, input)| input.record(source, i)).collect();
    let mut dead = Vec::new();
    let mut quarantined = Vec::new();
    for stage in &mut stages {
        let output = stage.process(std::mem::take(&mut records));
        records = output.records;
        dead.extend(output.failed);
        if !output.held.is_empty() {
            quarantined.push(format!(
                "stage `{}` was quarantined (its module crashed on most inputs); {} inputs were not run",
                stage.name,
                output.held.len()
            ));
        }
    }

    let mut failures = quarantined;
    if let Some(expected) = &case.outputs {
        if expected.len() != records.len() {
            failures.push(format!(
                "expected {} output{}, got {}{}",
                expected.len(),
                plural(expected.len()),
                records.len(),
                if records.is_empty() { String::new() } else { format!(":\n{}", list_values(&records)) }
            ));
        }
        for (index, (want, got)) in expected.iter().zip(&records).enumerate() {
            check_output(index, want, got, &mut failures);
        }
    }

    for letter in &dead {
        let input = letter.record.origin.offset as usize;
        let listed = case.dead_letters.iter().any(|want| want.matches(letter));
        if !listed {
            failures.push(format!(
                "input {input} was dead-lettered by stage `{}` ({}: {}), which the test does not expect",
                letter.stage,
                letter.kind.name(),
                letter.message
            ));
        }
    }
    for want in &case.dead_letters {
        let found: Vec<_> = dead.iter().filter(|d| d.record.origin.offset as usize == want.input).collect();
        if !found.iter().any(|letter| want.matches(letter)) {
            let wanted = [
                want.stage.as_ref().map(|s| format!("stage `{s}`")),
                want.kind.as_ref().map(|k| format!("kind `{k}`")),
                want.message.as_ref().map(|m| format!("a message containing {m:?}")),
            ]
            .into_iter()
            .flatten()
            .collect::<Vec<_>>()
            .join(", ");
            let got = match found.first() {
                Some(letter) => format!(
                    "it failed in stage `{}` with {}: {}",
                    letter.stage,
                    letter.kind.name(),
                    letter.message
                ),
                None => "it was not dead-lettered".to_string(),
            };
            failures.push(format!("input {} should be dead-lettered ({wanted}); {got}", want.input));
        }
    }
    Ok(TestOutcome { name: case.name.clone(), failures })
}

impl ExpectedDeadLetter {
    fn matches(&self, letter: &DeadLetter) -> bool {
        self.input == letter.record.origin.offset as usize
            && self.stage.as_ref().is_none_or(|s| *s == letter.stage)
            && self.kind.as_ref().is_none_or(|k| k == letter.kind.name())
            && self.message.as_ref().is_none_or(|m| letter.message.contains(m.as_str()))
    }
}

impl TestInput {
    fn record(&self, source: SourceName, index: usize) -> Record {
        let origin = Origin { source, partition: 0, offset: index as i64 };
        match self {
            TestInput::Value(value) => Record::new(value.clone().into_bytes(), origin),
            TestInput::Record { value, key, headers, timestamp_ms } => {
                let mut record = Record::new(value.clone().into_bytes(), origin);
                record.key = key.as_ref().map(|k| Bytes::from(k.clone().into_bytes()));
                record.headers = headers
                    .iter()
                    .map(|(name, value)| Header {
                        name: name.clone(),
                        value: Bytes::from(value.clone().into_bytes()),
                    })
                    .collect();
                record.timestamp = *timestamp_ms;
                record
            }
        }
    }
}

fn check_output(index: usize, want: &ExpectedOutput, got: &Record, failures: &mut Vec<String>) {
    let text = String::from_utf8_lossy(&got.value);
    let json: Option<Json> = serde_json::from_slice(&got.value).ok();
    if let Some(expected) = &want.equals {
        match (serde_json::from_str::<Json>(expected).ok(), &json) {
            (Some(expected), Some(actual)) if !json_equal(&expected, actual) => failures.push(format!(
                "output {index} differs (- expected, + actual):\n{}",
                diff(&pretty(&expected), &pretty(actual))
            )),
            (Some(_), Some(_)) => {}
            _ if expected.trim_end_matches('\n') != text.trim_end_matches('\n') => failures
                .push(format!("output {index} differs (- expected, + actual):\n{}", diff(expected, &text))),
            _ => {}
        }
    }
    if !want.fields.is_empty() || !want.absent.is_empty() {
        let Some(document) = &json else {
            failures.push(format!("output {index} is not JSON, so its fields cannot be checked: {text}"));
            return;
        };
        for (path, expected) in &want.fields {
            let expected = toml_to_json(expected);
            match field(document, path) {
                Some(actual) if json_equal(&expected, actual) => {}
                Some(actual) => {
                    failures.push(format!("output {index}: `{path}` is {actual}, expected {expected}"))
                }
                None => failures.push(format!("output {index}: `{path}` is missing, expected {expected}")),
            }
        }
        for path in &want.absent {
            if let Some(actual) = field(document, path) {
                failures.push(format!("output {index}: `{path}` should be absent, found {actual}"));
            }
        }
    }
    if let Some(key) = &want.key {
        let actual = got.key.as_ref().map(|k| String::from_utf8_lossy(k).into_owned());
        if actual.as_deref() != Some(key.as_str()) {
            failures.push(format!("output {index}: key is {actual:?}, expected {key:?}"));
        }
    }
    for (name, value) in &want.headers {
        let actual = got.header(name).map(|v| String::from_utf8_lossy(v).into_owned());
        if actual.as_deref() != Some(value.as_str()) {
            failures.push(format!("output {index}: header `{name}` is {actual:?}, expected {value:?}"));
        }
    }
}

/// The value at a dotted path. At each step the longest run of parts that
/// is a key wins, so `@timestamp`, `url.path` and keys with dots all work.
pub fn field<'a>(document: &'a Json, path: &str) -> Option<&'a Json> {
    let parts: Vec<&str> = path.split('.').collect();
    let mut current = document;
    let mut start = 0;
    'step: while start < parts.len() {
        let object = current.as_object()?;
        for end in (start + 1..=parts.len()).rev() {
            if let Some(next) = object.get(&parts[start..end].join(".")) {
                current = next;
                start = end;
                continue 'step;
            }
        }
        return None;
    }
    Some(current)
}

/// Equal as JSON, with numbers compared by value (TOML `200` equals JSON `200.0`).
fn json_equal(a: &Json, b: &Json) -> bool {
    match (a, b) {
        (Json::Number(x), Json::Number(y)) => x == y || x.as_f64() == y.as_f64(),
        (Json::Array(x), Json::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(x, y)| json_equal(x, y))
        }
        (Json::Object(x), Json::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| json_equal(v, w)))
        }
        _ => a == b,
    }
}

fn toml_to_json(value: &toml::Value) -> Json {
    match value {
        toml::Value::String(s) => Json::String(s.clone()),
        toml::Value::Integer(i) => Json::from(*i),
        toml::Value::Float(f) => serde_json::Number::from_f64(*f).map_or(Json::Null, Json::Number),
        toml::Value::Boolean(b) => Json::Bool(*b),
        toml::Value::Datetime(d) => Json::String(d.to_string()),
        toml::Value::Array(items) => Json::Array(items.iter().map(toml_to_json).collect()),
        toml::Value::Table(table) => {
            Json::Object(table.iter().map(|(k, v)| (k.clone(), toml_to_json(v))).collect())
        }
    }
}

fn pretty(value: &Json) -> String {
    serde_json::to_string_pretty(value).unwrap_or_default()
}

/// A line diff: ` ` same, `-` expected only, `+` actual only.
fn diff(expected: &str, actual: &str) -> String {
    let mut out = String::new();
    for change in similar::TextDiff::from_lines(expected, actual).iter_all_changes() {
        let sign = match change.tag() {
            similar::ChangeTag::Equal => ' ',
            similar::ChangeTag::Delete => '-',
            similar::ChangeTag::Insert => '+',
        };
        let _ = write!(out, "{sign} {}", change.value());
        if !change.value().ends_with('\n') {
            out.push('\n');
        }
    }
    out
}

fn list_values(records: &[Record]) -> String {
    records
        .iter()
        .enumerate()
        .map(|(i, r)| format!("  [{i}] {}\n", String::from_utf8_lossy(&r.value)))
        .collect()
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn dotted_paths_find_nested_and_dotted_keys() {
        let doc = json!({"@timestamp": "t", "url": {"path": "/"}, "labels": {"a.b": 1}, "x.y": {"z": true}});
        assert_eq!(field(&doc, "@timestamp"), Some(&json!("t")));
        assert_eq!(field(&doc, "url.path"), Some(&json!("/")));
        assert_eq!(field(&doc, "labels.a.b"), Some(&json!(1)));
        assert_eq!(field(&doc, "x.y.z"), Some(&json!(true)));
        assert_eq!(field(&doc, "url.query"), None);
        assert_eq!(field(&doc, "url.path.more"), None);
    }

    #[test]
    fn numbers_compare_by_value_and_diffs_mark_lines() {
        assert!(json_equal(&json!({"a": [1, 2.0]}), &json!({"a": [1.0, 2]})));
        assert!(!json_equal(&json!({"a": 1}), &json!({"a": 1, "b": 2})));
        assert_eq!(diff("a\nb\n", "a\nc\n"), "  a\n- b\n+ c\n");
    }
}
