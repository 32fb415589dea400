//! `sluice transform`: run one module over records and print, per input
//! record and in input order, its outputs or its error as a JSON line.

use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use bytes::Bytes;
use toml::Spanned;

use crate::config::{OnError, StageConfig};
use crate::lookup::{KeyMatch, LookupTable, Lookups};
use crate::pipeline::stage::Stage;
use crate::record::{Header, Origin, Record, SourceName};
use crate::wasm::WasmHost;

#[derive(clap::Args)]
pub struct TransformArgs {
    /// The transform component.
    module: PathBuf,
    /// A stage config entry, `key=value`; the value is read as a TOML value
    /// (`max=5`, `flag=true`, `list=["a"]`) or else as a string. Repeatable.
    #[arg(long = "config", short = 'c', value_name = "KEY=VALUE")]
    config: Vec<String>,
    /// Time budget per call, in milliseconds.
    #[arg(long, default_value_t = 1000)]
    timeout_ms: u64,
    /// Memory cap of the instance, in MiB.
    #[arg(long, default_value_t = 64)]
    max_memory_mb: u64,
    /// Records per call.
    #[arg(long, default_value_t = 1024)]
    batch: usize,
    /// Grant a lookup table: `NAME=FILE.csv` (exact keys) or
    /// `NAME=FILE.csv:ip` (keys are addresses, rows are networks), as
    /// `[lookup.NAME]` and `capabilities = ["lookup:NAME"]` do. Repeatable.
    #[arg(long = "lookup", value_name = "NAME=FILE[:ip]")]
    lookups: Vec<String>,
    /// Input records: each file is one record (key = its name). Without
    /// files, each line of standard input is one record.
    files: Vec<PathBuf>,
}

pub fn transform(args: TransformArgs) -> anyhow::Result<ExitCode> {
    let stage_config = StageConfig {
        name: "transform".into(),
        module: Spanned::new(0..0, args.module.display().to_string()),
        config: Spanned::new(0..0, parse_config(&args.config)?),
        timeout_ms: args.timeout_ms,
        max_memory_mb: args.max_memory_mb,
        max_fuel: None,
        max_output_bytes: 1 << 30,
        on_error: OnError::Dlq,
        quarantine: crate::pipeline::quarantine::QuarantineConfig::never(),
        capabilities: Spanned::new(0..0, Vec::new()),
        parallelism: Some(1),
        config_positions: Default::default(),
    };
    let lookups = load_lookups(&args.lookups)?;
    let host = WasmHost::new();
    let mut stage = Stage::build_at(&stage_config, &args.module, lookups, &host)
        .map_err(|e| anyhow::anyhow!("{}: {}", e.module, e.source))?;

    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let mut batch = Vec::with_capacity(args.batch);
    let mut next_index = 0i64;
    let mut flush = |batch: &mut Vec<Record>, out: &mut dyn Write| -> anyhow::Result<()> {
        print_results(&mut stage, std::mem::take(batch), out)
    };
    if args.files.is_empty() {
        let stdin = SourceName::new("stdin");
        for line in std::io::stdin().lock().split(b'\n') {
            let mut line = line.context("cannot read standard input")?;
            if line.last() == Some(&b'\r') {
                line.pop();
            }
            batch.push(Record::new(line, origin(stdin, next_index)));
            next_index += 1;
            if batch.len() >= args.batch {
                flush(&mut batch, &mut out)?;
            }
        }
    } else {
        for path in &args.files {
            let value = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
            let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            let mut record = Record::new(value, origin(SourceName::new(&path.to_string_lossy()), next_index));
            record.key = Some(Bytes::from(name.clone()));
            record.headers.push(Header { name: "filename".into(), value: Bytes::from(name) });
            batch.push(record);
            next_index += 1;
            if batch.len() >= args.batch {
                flush(&mut batch, &mut out)?;
            }
        }
    }
    flush(&mut batch, &mut out)?;
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

/// The record's position among all inputs rides in its origin offset, which
/// a stage copies to every output and failure of that record.
fn origin(source: SourceName, index: i64) -> Origin {
    Origin { source, partition: 0, offset: index }
}

fn print_results(stage: &mut Stage, inputs: Vec<Record>, out: &mut dyn Write) -> anyhow::Result<()> {
    let Some(first) = inputs.first().map(|r| r.origin.offset) else {
        return Ok(());
    };
    let count = inputs.len();
    let result = stage.process(inputs);
    let mut lines: Vec<serde_json::Value> =
        (0..count).map(|i| serde_json::json!({ "input": first + i as i64, "outputs": [] })).collect();
    for record in result.records {
        let slot = (record.origin.offset - first) as usize;
        let mut json = record.to_json();
        if let Some(object) = json.as_object_mut() {
            object.remove("timestamp");
        }
        if let Some(outputs) = lines.get_mut(slot).and_then(|l| l["outputs"].as_array_mut()) {
            outputs.push(json);
        }
    }
    for letter in result.failed {
        let slot = (letter.record.origin.offset - first) as usize;
        if let Some(line) = lines.get_mut(slot) {
            *line = serde_json::json!({
                "input": letter.record.origin.offset,
                "error": { "kind": letter.kind.name(), "message": letter.message },
            });
        }
    }
    for line in lines {
        serde_json::to_writer(&mut *out, &line)?;
        out.write_all(b"\n")?;
    }
    Ok(())
}

fn load_lookups(specs: &[String]) -> anyhow::Result<Lookups> {
    let mut lookups = Lookups::new();
    for spec in specs {
        let (name, file) =
            spec.split_once('=').with_context(|| format!("--lookup {spec}: expected NAME=FILE[:ip]"))?;
        let (file, key_match) = match file.strip_suffix(":ip") {
            Some(file) => (file, KeyMatch::Ip),
            None => (file, KeyMatch::Exact),
        };
        let table = LookupTable::load(name, std::path::Path::new(file), key_match)?;
        lookups.insert(name.to_string(), std::sync::Arc::new(table));
    }
    Ok(lookups)
}

fn parse_config(entries: &[String]) -> anyhow::Result<toml::Table> {
    let mut table = toml::Table::new();
    for entry in entries {
        let (key, raw) =
            entry.split_once('=').with_context(|| format!("--config {entry}: expected KEY=VALUE"))?;
        let value = toml::from_str::<toml::Table>(&format!("v = {raw}"))
            .ok()
            .and_then(|mut t| t.remove("v"))
            .unwrap_or_else(|| toml::Value::String(raw.to_string()));
        table.insert(key.trim().to_string(), value);
    }
    Ok(table)
}
