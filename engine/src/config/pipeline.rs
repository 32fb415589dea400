//! The shape of a pipeline file.
//!
//! A file holds one pipeline at the top level:
//!
//! ```toml
//! name = "weblogs"
//! [source]
//! type = "file"
//! path = "access.log"
//! [[stage]]
//! name = "parse"
//! module = "transforms/log_parse.wasm"
//! [sink]
//! type = "file"
//! path = "out/weblogs.ndjson"
//! ```
//!
//! or several, as `[[pipeline]]` tables with the same keys.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use toml::Spanned;
use toml::de::DeTable;

use super::diagnostic::{Diagnostic, Diagnostics, did_you_mean};
use super::document::{Document, Value, join};
use crate::lookup::{CAPABILITY_PREFIX, LookupConfig};
use crate::pipeline::test_case::TestCase;
use crate::sinks::SinkConfig;
use crate::sources::SourceConfig;

/// A validated pipeline definition.
#[derive(Debug, Clone)]
pub struct PipelineConfig {
    pub name: String,
    /// Where the pipeline's table is in its file: empty for a top-level
    /// pipeline, `pipeline[N]` otherwise. Prefixes keys in diagnostics.
    pub key: String,
    /// The file it was read from; relative paths inside it are resolved
    /// against this file's directory.
    pub file: PathBuf,
    pub source: SourceConfig,
    pub batch: BatchConfig,
    pub stages: Vec<StageConfig>,
    /// Lookup tables (`[lookup.NAME]`) stages may be granted.
    pub lookups: BTreeMap<String, LookupConfig>,
    pub sink: SinkConfig,
    /// Where failed records go. Defaults to `<name>.dead-letter.ndjson`
    /// beside the pipeline file.
    pub dead_letter: SinkConfig,
    /// `[[tests]]`, run by `sluice test` (ignored by `sluice run`).
    pub tests: Vec<TestCase>,
}

impl PipelineConfig {
    /// `path` resolved against the pipeline file's directory.
    pub fn resolve(&self, path: &Path) -> PathBuf {
        resolve(&self.file, path)
    }
}

pub fn resolve(file: &Path, path: &Path) -> PathBuf {
    if path.is_absolute() {
        return path.to_path_buf();
    }
    file.parent().unwrap_or(Path::new(".")).join(path)
}

/// The keys of a pipeline table (top level or `[[pipeline]]`).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)] // Read only for its field list and type checks.
pub(super) struct PipelineKeys {
    name: String,
    description: Option<String>,
    source: toml::Table,
    batch: Option<toml::Table>,
    stage: Option<Vec<toml::Table>>,
    lookup: Option<toml::Table>,
    sink: toml::Table,
    dead_letter: Option<toml::Table>,
    tests: Option<Vec<toml::Table>>,
}

/// How records are grouped into the batches a transform is called with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BatchConfig {
    /// A batch is cut at this many records…
    pub max_records: usize,
    /// …or this many bytes of keys, values and headers…
    pub max_bytes: usize,
    /// …or this long after its first record arrived, whichever comes first.
    pub linger_ms: u64,
}

impl Default for BatchConfig {
    fn default() -> Self {
        BatchConfig { max_records: 1024, max_bytes: 4 << 20, linger_ms: 50 }
    }
}

/// What a stage does with a record its transform failed on.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnError {
    /// Send it to the dead-letter destination with the reason.
    #[default]
    Dlq,
    /// Count it and drop it.
    Drop,
    /// Stop the pipeline; nothing after the failed record is committed.
    Stop,
}

/// One transform stage.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StageConfig {
    /// Unique within the pipeline; names the stage in metrics and in
    /// dead-letter envelopes.
    pub name: String,
    /// Path of the transform component (`.wasm`), relative to the pipeline file.
    pub module: Spanned<String>,
    /// Handed to the transform's `init` as JSON. A transform that rejects it
    /// fails validation.
    #[serde(default = "defaults::config")]
    pub config: Spanned<toml::Table>,
    /// Time budget of one call (one batch), in milliseconds.
    #[serde(default = "defaults::timeout_ms")]
    pub timeout_ms: u64,
    /// Cap on the instance's memory, in MiB.
    #[serde(default = "defaults::max_memory_mb")]
    pub max_memory_mb: u64,
    /// Fuel (about one unit per wasm instruction) per call; unset disables
    /// metering, which is faster.
    pub max_fuel: Option<u64>,
    /// Cap on the bytes produced from one input record: every output's key,
    /// value and headers, counting those it keeps from the input (a
    /// thousand copies of a record are a thousand times its size at the sink).
    #[serde(default = "defaults::max_output_bytes")]
    pub max_output_bytes: u64,
    #[serde(default)]
    pub on_error: OnError,
    /// When the stage stops calling a module that crashes on most of what
    /// it is given; see [`crate::pipeline::quarantine`].
    #[serde(default)]
    pub quarantine: crate::pipeline::quarantine::QuarantineConfig,
    /// Capabilities granted to the module: `clock`, `random`, `hash` (the
    /// host's native SHA-256), and `lookup:NAME` for a table the pipeline
    /// declares as `[lookup.NAME]`.
    /// Nothing else (files, network, environment) is reachable from a
    /// transform.
    #[serde(default = "defaults::capabilities")]
    pub capabilities: Spanned<Vec<String>>,
    /// Worker threads, each with its own instance of the module, that run
    /// the stage's batches side by side. Output keeps input order (so a
    /// Kafka partition's and a file's records stay in order). Unset: one
    /// per core, at most [`MAX_DEFAULT_PARALLELISM`].
    pub parallelism: Option<u32>,
    /// Where each key of `config` is written, for errors about one key
    /// (a module's declaration does not take it, say).
    #[serde(skip)]
    pub config_positions: BTreeMap<String, KeyPosition>,
}

/// Where a key is written in its file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyPosition {
    pub line: usize,
    pub column: usize,
}

impl std::fmt::Display for KeyPosition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "line {}, column {}", self.line, self.column)
    }
}

/// The default `parallelism` is the core count, capped here: past a few
/// workers a stage is rarely the bottleneck, and each holds an instance.
pub const MAX_DEFAULT_PARALLELISM: usize = 8;
/// Upper bound of an explicit `parallelism`.
pub const MAX_PARALLELISM: u32 = 64;

impl StageConfig {
    /// Worker threads the stage runs on.
    pub fn workers(&self) -> usize {
        match self.parallelism {
            Some(n) => n as usize,
            None => std::thread::available_parallelism().map_or(1, |n| n.get()).min(MAX_DEFAULT_PARALLELISM),
        }
    }
}

/// Capabilities a stage may grant.
pub const CAPABILITIES: &[&str] = &["clock", "random", "hash"];

mod defaults {
    use toml::Spanned;

    pub fn config() -> Spanned<toml::Table> {
        Spanned::new(0..0, toml::Table::new())
    }
    pub fn capabilities() -> Spanned<Vec<String>> {
        Spanned::new(0..0, Vec::new())
    }
    pub fn timeout_ms() -> u64 {
        1000
    }
    pub fn max_memory_mb() -> u64 {
        64
    }
    pub fn max_output_bytes() -> u64 {
        16 << 20
    }
}

/// Reads and validates pipeline files; all problems of all files are reported.
pub fn load_files(paths: &[PathBuf]) -> Result<Vec<PipelineConfig>, Diagnostics> {
    let mut pipelines = Vec::new();
    let mut diagnostics = Vec::new();
    for path in paths {
        match load_file(path) {
            Ok(mut found) => pipelines.append(&mut found),
            Err(mut errors) => diagnostics.append(&mut errors.0),
        }
    }
    let mut seen = HashSet::new();
    for pipeline in &pipelines {
        if !seen.insert(pipeline.name.clone()) {
            diagnostics.push(Diagnostic {
                file: pipeline.file.clone(),
                line: 1,
                column: 1,
                key: Some("name".into()),
                message: format!("another pipeline is already named `{}`", pipeline.name),
            });
        }
    }
    if diagnostics.is_empty() { Ok(pipelines) } else { Err(Diagnostics(diagnostics)) }
}

pub fn load_file(path: &Path) -> Result<Vec<PipelineConfig>, Diagnostics> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        Diagnostics(vec![Diagnostic {
            file: path.to_path_buf(),
            line: 1,
            column: 1,
            key: None,
            message: format!("cannot read the file: {e}"),
        }])
    })?;
    parse_str(path, &text)
}

/// Parses pipeline definitions from `text`, as if read from `path`.
pub fn parse_str(path: &Path, text: &str) -> Result<Vec<PipelineConfig>, Diagnostics> {
    let (mut doc, root) = Document::parse(path, text).map_err(|d| Diagnostics(vec![d]))?;
    let mut pipelines = Vec::new();
    match root.get_ref().get("pipeline") {
        Some(list) => {
            if let Some(key) = root.get_ref().keys().find(|k| k.get_ref() != "pipeline") {
                doc.error(
                    key.span(),
                    key.get_ref(),
                    "a file with [[pipeline]] tables cannot also define a pipeline at the top level",
                );
            }
            match list.get_ref().as_array() {
                Some(items) => {
                    for (i, item) in items.iter().enumerate() {
                        pipelines.extend(parse_pipeline(&mut doc, item, &format!("pipeline[{i}]")));
                    }
                }
                None => doc.error(list.span(), "pipeline", "expected [[pipeline]] tables"),
            }
        }
        None => {
            let whole = Spanned::new(root.span(), toml::de::DeValue::Table(root.get_ref().clone()));
            pipelines.extend(parse_pipeline(&mut doc, &whole, ""));
        }
    }
    if doc.diagnostics.is_empty() { Ok(pipelines) } else { Err(Diagnostics(doc.diagnostics)) }
}

fn parse_pipeline(doc: &mut Document<'_>, value: &Value<'_>, key: &str) -> Option<PipelineConfig> {
    let Some(table) = value.get_ref().as_table() else {
        doc.error(value.span(), key, "expected a table");
        return None;
    };
    // Check the pipeline's own keys and types (not its sections: those are
    // parsed below, each with its own diagnostics).
    let shell: Option<PipelineKeys> = doc.section(value, key, &[]);
    let name = table.get("name").and_then(|v| v.get_ref().as_str()).map(str::to_string);
    if let Some(name) = &name {
        check_name(doc, table, key, name);
    }

    let source = table.get("source").and_then(|v| parse_source(doc, v, &join(key, "source")));
    let batch = match table.get("batch") {
        Some(v) => doc.section(v, &join(key, "batch"), &[]),
        None => Some(BatchConfig::default()),
    };
    if let (Some(batch), Some(v)) = (&batch, table.get("batch"))
        && (batch.max_records == 0 || batch.max_bytes == 0)
    {
        doc.error(v.span(), &join(key, "batch"), "max_records and max_bytes must be at least 1");
    }
    let lookups = parse_lookups(doc, table, key);
    let stages = parse_stages(doc, table, key, lookups.as_ref());
    let sink = table.get("sink").and_then(|v| parse_sink(doc, v, &join(key, "sink")));
    let dead_letter = match table.get("dead_letter") {
        Some(v) => parse_sink(doc, v, &join(key, "dead_letter")),
        None => name.as_ref().map(|name| SinkConfig::default_dead_letter(name)),
    };
    check_lake_placement(doc, table, key, source.as_ref(), sink.as_ref(), dead_letter.as_ref());
    let tests = parse_tests(doc, table, key, stages.as_deref());

    Some(PipelineConfig {
        name: name?,
        key: key.to_string(),
        file: doc.path().to_path_buf(),
        source: source?,
        batch: batch?,
        stages: stages?,
        lookups: lookups?,
        sink: sink?,
        dead_letter: dead_letter?,
        tests: tests?,
    })
    .filter(|_| shell.is_some())
}

/// `[[tests]]` tables; `from` and `to` must name stages, in that order.
fn parse_tests(
    doc: &mut Document<'_>,
    table: &DeTable<'_>,
    key: &str,
    stages: Option<&[StageConfig]>,
) -> Option<Vec<TestCase>> {
    let Some(list) = table.get("tests") else {
        return Some(Vec::new());
    };
    let Some(items) = list.get_ref().as_array() else {
        doc.error(list.span(), &join(key, "tests"), "expected [[tests]] tables");
        return None;
    };
    let mut tests = Vec::new();
    let mut ok = true;
    for (i, item) in items.iter().enumerate() {
        let test_key = join(key, &format!("tests[{i}]"));
        let Some(case) = doc.section::<TestCase>(item, &test_key, &[]) else {
            ok = false;
            continue;
        };
        let span_of = |field: &str| {
            item.get_ref().as_table().and_then(|t| t.get(field)).map_or(item.span(), |v| v.span())
        };
        if case.inputs.is_empty() {
            doc.error(span_of("inputs"), &join(&test_key, "inputs"), "a test needs at least one input");
            ok = false;
        }
        if let Some(stages) = stages {
            let mut position = |field: &str, name: &Option<String>| -> Option<usize> {
                let name = name.as_ref()?;
                let found = stages.iter().position(|s| &s.name == name);
                if found.is_none() {
                    let names: Vec<&str> = stages.iter().map(|s| s.name.as_str()).collect();
                    doc.error(
                        span_of(field),
                        &join(&test_key, field),
                        format!("no stage is named `{name}`; the stages are: {}", names.join(", ")),
                    );
                    ok = false;
                }
                found
            };
            let from = position("from", &case.from);
            let to = position("to", &case.to);
            if let (Some(from), Some(to)) = (from, to)
                && from > to
            {
                doc.error(span_of("to"), &join(&test_key, "to"), "`to` names a stage before `from`");
                ok = false;
            }
            if stages.is_empty() {
                doc.error(item.span(), &test_key, "the pipeline has no stages to test");
                ok = false;
            }
        }
        tests.push(case);
    }
    ok.then_some(tests)
}

/// The lake sink names files by Kafka topic, partition and offset (its
/// exactly-once state), so it needs a Kafka source, and it cannot hold dead
/// letters (their offsets are not its own).
fn check_lake_placement(
    doc: &mut Document<'_>,
    table: &DeTable<'_>,
    key: &str,
    source: Option<&SourceConfig>,
    sink: Option<&SinkConfig>,
    dead_letter: Option<&SinkConfig>,
) {
    let span = |section: &str| table.get(section).map(|v| v.span()).unwrap_or(0..0);
    if matches!(sink, Some(SinkConfig::Hdfs(_)))
        && matches!(source, Some(s) if !matches!(s, SourceConfig::Kafka(_)))
    {
        doc.error(
            span("source"),
            &join(key, "source.type"),
            "an `hdfs` sink needs a `kafka` source: lake files are named by topic, partition and offset",
        );
    }
    if matches!(dead_letter, Some(SinkConfig::Hdfs(_))) {
        doc.error(
            span("dead_letter"),
            &join(key, "dead_letter.type"),
            "dead letters cannot go to an `hdfs` sink; use `file` or `kafka`",
        );
    }
}

fn check_name(doc: &mut Document<'_>, table: &DeTable<'_>, key: &str, name: &str) {
    let valid = !name.is_empty()
        && name.len() <= 64
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if !valid {
        let span = table.get("name").map(|v| v.span()).unwrap_or(0..0);
        doc.error(span, &join(key, "name"), "expected 1-64 characters of a-z, A-Z, 0-9, `-` and `_`");
    }
}

/// `[lookup.NAME]` tables. Each file must be readable now; its content is
/// checked when a stage granted it is built (`sluice validate` does that).
fn parse_lookups(
    doc: &mut Document<'_>,
    table: &DeTable<'_>,
    key: &str,
) -> Option<BTreeMap<String, LookupConfig>> {
    let mut lookups = BTreeMap::new();
    let Some(section) = table.get("lookup") else {
        return Some(lookups);
    };
    let Some(entries) = section.get_ref().as_table() else {
        doc.error(section.span(), &join(key, "lookup"), "expected [lookup.NAME] tables");
        return None;
    };
    let mut ok = true;
    for (name, item) in entries {
        let table_key = join(key, &format!("lookup.{}", name.get_ref()));
        let valid_name = !name.get_ref().is_empty()
            && name.get_ref().chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if !valid_name {
            doc.error(name.span(), &table_key, "a lookup name is made of a-z, A-Z, 0-9, `-` and `_`");
            ok = false;
            continue;
        }
        let Some(config) = doc.section::<LookupConfig>(item, &table_key, &[]) else {
            ok = false;
            continue;
        };
        let path = resolve(doc.path(), Path::new(config.file.get_ref()));
        if let Err(e) = std::fs::metadata(&path) {
            doc.error(
                config.file.span(),
                &join(&table_key, "file"),
                format!("cannot read {}: {e}", path.display()),
            );
            ok = false;
        }
        lookups.insert(name.get_ref().to_string(), config);
    }
    ok.then_some(lookups)
}

fn parse_stages(
    doc: &mut Document<'_>,
    table: &DeTable<'_>,
    key: &str,
    lookups: Option<&BTreeMap<String, LookupConfig>>,
) -> Option<Vec<StageConfig>> {
    let Some(list) = table.get("stage") else {
        return Some(Vec::new());
    };
    let items = list.get_ref().as_array()?;
    let mut stages = Vec::new();
    let mut names = HashSet::new();
    let mut ok = true;
    for (i, item) in items.iter().enumerate() {
        let stage_key = join(key, &format!("stage[{i}]"));
        let Some(mut stage) = doc.section::<StageConfig>(item, &stage_key, &[]) else {
            ok = false;
            continue;
        };
        if let Some(config) =
            item.get_ref().as_table().and_then(|t| t.get("config")).and_then(|c| c.get_ref().as_table())
        {
            for (name, _) in config.iter() {
                let (line, column) = doc.line_column(name.span().start);
                stage.config_positions.insert(name.get_ref().to_string(), KeyPosition { line, column });
            }
        }
        if !names.insert(stage.name.clone()) {
            doc.error(
                item.span(),
                &join(&stage_key, "name"),
                format!("another stage is already named `{}`", stage.name),
            );
            ok = false;
        }
        ok &= validate_stage(doc, &stage, item, &stage_key, lookups);
        stages.push(stage);
    }
    ok.then_some(stages)
}

/// Checks a stage without loading its module (see `check_modules` for that).
fn validate_stage(
    doc: &mut Document<'_>,
    stage: &StageConfig,
    table: &Value<'_>,
    key: &str,
    lookups: Option<&BTreeMap<String, LookupConfig>>,
) -> bool {
    let before = doc.diagnostics.len();
    let span_of = |field: &str| table.get_ref().get(field).map_or(table.span(), |v| v.span());
    for capability in stage.capabilities.get_ref() {
        if let Some(name) = capability.strip_prefix(CAPABILITY_PREFIX) {
            // Undeclared tables are reported once lookups parsed; a broken
            // [lookup] section already has its own error.
            if let Some(lookups) = lookups
                && !lookups.contains_key(name)
            {
                let declared = match did_you_mean(name, lookups.keys().map(String::as_str)) {
                    Some(close) => format!("did you mean `lookup:{close}`?"),
                    None => format!("declare it with a [lookup.{name}] table naming its file"),
                };
                doc.error(
                    stage.capabilities.span(),
                    &join(key, "capabilities"),
                    format!(
                        "`{capability}` grants a lookup table this pipeline does not declare; {declared}"
                    ),
                );
            }
            continue;
        }
        if !CAPABILITIES.contains(&capability.as_str()) {
            let hint = match did_you_mean(capability, CAPABILITIES.iter().copied()) {
                Some(close) => format!("did you mean `{close}`?"),
                None => format!("expected one of: {}, lookup:NAME", CAPABILITIES.join(", ")),
            };
            doc.error(
                stage.capabilities.span(),
                &join(key, "capabilities"),
                format!("unknown capability `{capability}`; {hint}"),
            );
        }
    }
    if stage.timeout_ms == 0 {
        doc.error(span_of("timeout_ms"), &join(key, "timeout_ms"), "must be at least 1");
    }
    if let Some(n) = stage.parallelism
        && !(1..=MAX_PARALLELISM).contains(&n)
    {
        doc.error(
            span_of("parallelism"),
            &join(key, "parallelism"),
            format!("expected 1 to {MAX_PARALLELISM} worker threads"),
        );
    }
    if stage.max_memory_mb == 0 || stage.max_memory_mb > 4096 {
        doc.error(
            span_of("max_memory_mb"),
            &join(key, "max_memory_mb"),
            "expected 1 to 4096 (a wasm32 memory is at most 4 GiB)",
        );
    }
    let quarantine = table.get_ref().get("quarantine");
    for (field, message) in stage.quarantine.problems() {
        let span = quarantine
            .and_then(|q| q.get_ref().get(field).map(|v| v.span()))
            .or_else(|| quarantine.map(|q| q.span()))
            .unwrap_or(table.span());
        doc.error(span, &join(&join(key, "quarantine"), field), message);
    }
    doc.diagnostics.len() == before
}

fn parse_source(doc: &mut Document<'_>, value: &Value<'_>, key: &str) -> Option<SourceConfig> {
    let kind = component_type(doc, value, key, crate::sources::TYPES)?;
    SourceConfig::parse(doc, &kind, value, key)
}

fn parse_sink(doc: &mut Document<'_>, value: &Value<'_>, key: &str) -> Option<SinkConfig> {
    let kind = component_type(doc, value, key, crate::sinks::TYPES)?;
    SinkConfig::parse(doc, &kind, value, key)
}

/// Reads the `type` key of a source or sink table and checks it is known.
fn component_type(doc: &mut Document<'_>, value: &Value<'_>, key: &str, known: &[&str]) -> Option<String> {
    let Some(table) = value.get_ref().as_table() else {
        doc.error(value.span(), key, "expected a table");
        return None;
    };
    let Some(kind) = table.get("type") else {
        doc.error(value.span(), key, format!("missing key `type` (one of: {})", known.join(", ")));
        return None;
    };
    let Some(name) = kind.get_ref().as_str() else {
        doc.error(kind.span(), &join(key, "type"), "expected a string");
        return None;
    };
    if !known.contains(&name) {
        let hint = match did_you_mean(name, known.iter().copied()) {
            Some(close) => format!("did you mean `{close}`?"),
            None => format!("expected one of: {}", known.join(", ")),
        };
        doc.error(kind.span(), &join(key, "type"), format!("unknown type `{name}`; {hint}"));
        return None;
    }
    Some(name.to_string())
}
