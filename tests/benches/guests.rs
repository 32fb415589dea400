//! What a transform costs in each guest language, side by side in one run:
//! Rust, Python (componentize-py) and JavaScript (componentize-js).
//!
//! For each language, at batch 1024:
//! - a passthrough (the SDK and the interpreter, nothing else);
//! - the example transform `sluice new` writes (parse a JSON document, set
//!   a field, write it back): the same logic in all three languages;
//!
//! and per language: instantiation (a fresh instance, `init` and a first
//! one-record call), the linear memory an instance holds after a batch,
//! and the component's size. The shipped examples `redact` (Python) and
//! `route` (JavaScript) are measured on parsed log documents too.
//!
//! `cargo bench -p sluice-tests --bench guests` (part of `make bench`);
//! needs the guest toolchains (`scripts/guest-toolchains.sh`). Writes
//! `target/bench/guests.json`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use sluice::record::Record;
use sluice::wasm::{Grants, Limits, Module, TransformInstance, WasmHost};
use sluice_tests::bench::{alone, log_lines, small_records};
use sluice_tests::{built_project, guest, root};

const SLUICE: &str = env!("CARGO_BIN_EXE_sluice-under-test");
const ROUNDS: usize = 7;
const ROUND: Duration = Duration::from_millis(300);

struct Language {
    name: &'static str,
    passthrough: PathBuf,
    tag: PathBuf,
}

fn main() {
    // The engine's allocator settings, as the `sluice` binary sets them at start.
    sluice::memory::tune_allocator();
    let projects = root().join("target/bench/projects");
    let languages = [
        Language { name: "rust", passthrough: guest("passthrough"), tag: scaffolded(&projects, "rust") },
        Language {
            name: "python",
            passthrough: built_project(SLUICE, &root().join("tests/guests/passthrough-py")),
            tag: scaffolded(&projects, "python"),
        },
        Language {
            name: "js",
            passthrough: built_project(SLUICE, &root().join("tests/guests/passthrough-js")),
            tag: scaffolded(&projects, "js"),
        },
    ];
    let host = WasmHost::new();
    let limits =
        Limits { timeout: Duration::from_secs(30), max_memory_bytes: 256 << 20, ..Limits::default() };
    let records = small_records(1024);
    let tag_config = r#"{"field": "seen_by", "value": "bench"}"#;

    let mut summary = BTreeMap::new();
    let mut rows = Vec::new();
    for language in &languages {
        let passthrough = per_record(&host, &limits, &language.passthrough, "{}", &records);
        let tag = per_record(&host, &limits, &language.tag, tag_config, &records);
        let (instantiate, memory) = instantiate(&host, &limits, &language.tag, tag_config, &records);
        let size = std::fs::metadata(&language.tag).map(|m| m.len()).unwrap_or(0) as f64;
        let name = language.name;
        summary.insert(format!("{name}_passthrough_ns_per_record"), passthrough);
        summary.insert(format!("{name}_example_ns_per_record"), tag);
        summary.insert(format!("{name}_instantiate_ms"), instantiate);
        summary.insert(format!("{name}_instance_memory_mb"), memory);
        summary.insert(format!("{name}_component_mb"), size / 1e6);
        rows.push((name, passthrough, tag, instantiate, memory, size / 1e6));
    }
    let (rust_pass, rust_tag) = (rows[0].1, rows[0].2);
    println!();
    println!(
        "| language | passthrough ns/record | example ns/record | vs Rust (pass / example) | instantiate ms | memory per instance MB | component MB |"
    );
    println!("|---|---|---|---|---|---|---|");
    for (name, pass, tag, inst, memory, size) in &rows {
        println!(
            "| {name} | {pass:.0} | {tag:.0} | {:.1}× / {:.1}× | {inst:.2} | {memory:.1} | {size:.1} |",
            pass / rust_pass,
            tag / rust_tag
        );
    }

    // The shipped examples, on what reaches them in weblogs-private: parsed
    // and enriched documents.
    let documents = parsed_documents(&host);
    let redact = built_project(SLUICE, &root().join("pipelines/transforms/redact"));
    let route = built_project(SLUICE, &root().join("pipelines/transforms/route"));
    let redact_ns = per_record(&host, &limits, &redact, r#"{"emails": "hash", "salt": "bench"}"#, &documents);
    let route_ns = per_record(
        &host,
        &limits,
        &route,
        r#"{"rules": [{"when": {"http.response.status_code": {"gte": 500}}, "route": "errors"},
                      {"when": {"user_agent.bot": true}, "route": "bots"}]}"#,
        &documents,
    );
    println!();
    println!("redact (Python) on enriched log documents: {redact_ns:.0} ns/record");
    println!("route (JavaScript) on enriched log documents: {route_ns:.0} ns/record");
    summary.insert("python_redact_ns_per_record".into(), redact_ns);
    summary.insert("js_route_ns_per_record".into(), route_ns);

    let out = root().join("target/bench/guests.json");
    std::fs::create_dir_all(out.parent().unwrap()).unwrap();
    std::fs::write(&out, serde_json::to_string_pretty(&summary).unwrap()).unwrap();
    println!("\nwrote {}", out.display());
}

/// The `tag` project `sluice new` writes in `language`, built.
fn scaffolded(projects: &Path, language: &str) -> PathBuf {
    // Written afresh, so it carries the SDK of this checkout.
    let dir = projects.join(format!("tag-{language}"));
    let _ = std::fs::remove_dir_all(&dir);
    let status = std::process::Command::new(SLUICE)
        .args(["new", &format!("tag-{language}"), "--lang", language, "--dir"])
        .arg(&dir)
        .stdout(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    built_project(SLUICE, &dir)
}

/// Nanoseconds per record of one call over `records` (median of rounds).
fn per_record(host: &WasmHost, limits: &Limits, module: &Path, config: &str, records: &[Record]) -> f64 {
    let module = host.load_file(module, false).unwrap();
    let config = with_defaults(&module, config);
    let mut instance = TransformInstance::new(&module, limits, &Grants::default(), &config).unwrap();
    let call = alone(ROUNDS, ROUND, || instance.call(records).unwrap());
    call.as_nanos() as f64 / records.len() as f64
}

/// Milliseconds to a fresh instance that has run `init` and one call, and
/// the linear memory it holds after a whole batch (MB).
fn instantiate(
    host: &WasmHost,
    limits: &Limits,
    module: &Path,
    config: &str,
    records: &[Record],
) -> (f64, f64) {
    let module = host.load_file(module, false).unwrap();
    let config = with_defaults(&module, config);
    let one = &records[..1];
    let time = alone(ROUNDS, ROUND, || {
        let mut instance = TransformInstance::new(&module, limits, &Grants::default(), &config).unwrap();
        instance.call(one).unwrap()
    });
    let mut instance = TransformInstance::new(&module, limits, &Grants::default(), &config).unwrap();
    instance.call(records).unwrap();
    (time.as_secs_f64() * 1e3, instance.memory_bytes() as f64 / 1e6)
}

/// `config` with the module's declared defaults, as a stage gives it.
fn with_defaults(module: &Module, config: &str) -> String {
    let table: toml::Table = serde_json::from_str(config).unwrap();
    let filled = module.config_spec.as_ref().map_or_else(|| table.clone(), |spec| spec.with_defaults(&table));
    serde_json::to_string(&filled).unwrap()
}

/// The fixture's lines parsed and enriched by the shipped Rust stages.
fn parsed_documents(host: &WasmHost) -> Vec<Record> {
    let limits = Limits::default();
    let parse = host.load_file(&guest("log-parse"), false).unwrap();
    let mut parse = TransformInstance::new(&parse, &limits, &Grants::default(), "{}").unwrap();
    let enrich = host.load_file(&guest("enrich"), false).unwrap();
    let mut enrich = TransformInstance::new(&enrich, &limits, &Grants::default(), "{}").unwrap();
    let parsed = parse.call(&log_lines()).unwrap().records;
    let mut documents = enrich.call(&parsed).unwrap().records;
    // About a batch of them.
    while documents.len() < 1000 {
        documents.extend_from_within(..documents.len().min(1000 - documents.len()));
    }
    documents
}
