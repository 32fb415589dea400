//! `make bench-quick`: the WASM stage's key numbers in under three minutes,
//! each measured side by side in this one run, written as one flat JSON
//! object to `target/bench/summary.json` (and printed).
//!
//! - `boundary_ns_per_record`: passthrough at batch 1024 as a stage between
//!   two wasm stages runs it (the batch arrives packed, as the stage before
//!   returned it, and leaves packed for the next: `pipeline/handoff.rs`),
//!   wasm minus the same transform run natively on the same packed batch.
//!   `boundary_records_ns_per_record`: the same with built records in and
//!   out (the borrowing call tools and tests use; what
//!   `boundary_ns_per_record` measured before stages passed batches on
//!   packed). `passthrough_stage_call_ns_per_record`: the passthrough as
//!   a stage with a sink after it calls it, on a new batch each call that
//!   it takes over and drops; `…_shared_ns_per_record`: the same with
//!   outputs sharing their inputs' bytes instead of taking them.
//!   `two_stages_{records,packed}_ns_per_record`: two passthrough stages
//!   in a row, from new records to records, with records between them or
//!   as a pipeline hands batches on (packed unless every output is its
//!   input in place, which a passthrough's are).
//! - `logparse_wasm_over_native`, `enrich_wasm_over_native`,
//!   `image_serialize_wasm_over_native` (verify + 128 px thumbnail, as the
//!   shipped pipeline runs it), `image_hash_wasm_over_native` (sniff and
//!   SHA-256 only): throughput of the wasm component over the same crate
//!   compiled natively.
//! - `sandbox_overhead_ratio`: log-parse with the sandbox's limits (epoch
//!   deadline, memory cap) over the same module without them.
//! - `instantiate_us`: a fresh instance, `init` and a first call.
//! - `pipeline_file_logparse_mb_per_s`: `sluice run` as a process, a
//!   200,000-line Apache log (file) → log-parse → NDJSON file, MB of input
//!   per second of the whole process; with the stage's default parallelism.
//! - `stage_parallel_speedup_2_workers`: the log-parse stage with
//!   `parallelism = 2` over `parallelism = 1`, fed from memory into a
//!   `blackhole` sink, so the stage is what the cores run;
//!   `pipeline_parallel_speedup_2_workers`: the same for the whole
//!   `sluice run` above, where reading and writing the files share the
//!   cores with the stage.
//!
//! `make bench` keeps the full set, with criterion's statistics.
//!
//! While working on one number, name its sections (`boundary`, `logparse`,
//! `enrich`, `image`, `sandbox`, `instantiate`, `stage`, `pipeline`):
//! `cargo bench -p sluice-tests --bench quick -- enrich`. Such a partial
//! run prints its numbers and leaves `summary.json` alone.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use sluice::lookup::{KeyMatch, LookupTable, Lookups};
use sluice::pipeline::stage::Stage;
use sluice::pipeline::{History, Pipeline};
use sluice::record::{Origin, Record};
use sluice::sources::{Source, SourceContext};
use sluice::wasm::{Grants, Limits, PackedBatch, StageCall, TransformInstance, WasmHost};
use sluice_guest::testing::{self, TestRecord, pack, run_packed};
use sluice_tests::bench::{
    alone, image_records, images, log_lines, median, side_by_side, side_by_side_on_fresh_inputs,
    small_records,
};
use sluice_tests::{fixture, guest, root};
use tokio_util::sync::CancellationToken;

/// Alternating rounds per comparison, and the length of one round.
const ROUNDS: usize = 15;
const ROUND: Duration = Duration::from_millis(200);
/// Lines in the pipeline's input file (the fixture, repeated).
const PIPELINE_LINES: usize = 200_000;
/// Batches of the fixture's 500 lines in one run of the stage on its own
/// (1,000,000 lines): a run of a fraction of a second varied by a quarter
/// from one `bench-quick` to the next on a 2-core VM.
const STAGE_BATCHES: usize = 2_000;
/// Runs of each side of the 1-vs-2-worker comparisons, and of the
/// pipeline, whose median is taken.
const RUNS: usize = 9;

/// What a partial run can name.
const SECTIONS: &[&str] =
    &["boundary", "logparse", "enrich", "image", "sandbox", "instantiate", "stage", "pipeline"];

fn main() {
    // The engine's allocator settings, as the `sluice` binary sets them at start.
    sluice::memory::tune_allocator();
    let started = Instant::now();
    let mut summary = BTreeMap::<&str, f64>::new();
    let host = WasmHost::new();
    // Cargo passes `--bench`; anything else names sections to run.
    let only: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with("--")).collect();
    if let Some(unknown) = only.iter().find(|o| !SECTIONS.contains(&o.as_str())) {
        eprintln!("no section `{unknown}`; the sections are {}", SECTIONS.join(", "));
        std::process::exit(2);
    }
    let runs = |section: &str| only.is_empty() || only.iter().any(|o| o == section);

    if runs("boundary") {
        let (packed, packed_wasm, packed_native) = boundary_packed(&host);
        println!(
            "boundary between two stages, batch 1024 (packed in, packed out): wasm {packed_wasm:.1} ns/record, \
             native {packed_native:.1}: {packed:.1} ns/record"
        );
        summary.insert("boundary_ns_per_record", packed);
        summary.insert("passthrough_wasm_ns_per_record", packed_wasm);
        let (records, records_wasm, records_native) = boundary(&host);
        println!(
            "boundary with records in and out: wasm {records_wasm:.1} ns/record, native {records_native:.1}: \
             {records:.1} ns/record"
        );
        summary.insert("boundary_records_ns_per_record", records);
        summary.insert("passthrough_records_wasm_ns_per_record", records_wasm);
        let (shared, consuming) = stage_calls(&host);
        println!(
            "passthrough as a stage before a sink calls it (a new batch each call, dropped after): {consuming:.1} \
             ns/record, {shared:.1} if outputs shared their inputs' bytes instead of taking them"
        );
        summary.insert("passthrough_stage_call_ns_per_record", consuming);
        summary.insert("passthrough_stage_call_shared_ns_per_record", shared);
        let (records, packed) = two_stages(&host);
        println!(
            "two passthrough stages in a row, records to records: {records:.1} ns/record with records between \
             them, {packed:.1} as a pipeline hands batches on (packed when that saves work)"
        );
        summary.insert("two_stages_records_ns_per_record", records);
        summary.insert("two_stages_packed_ns_per_record", packed);
    }

    if runs("logparse") {
        let (ratio, wasm_mb, native_mb) = logparse(&host);
        println!("log-parse: wasm {wasm_mb:.0} MB/s, native {native_mb:.0} MB/s: {ratio:.2}×");
        summary.insert("logparse_wasm_over_native", ratio);
        summary.insert("logparse_wasm_mb_per_s", wasm_mb);
    }

    if runs("enrich") {
        let (ratio, wasm_docs, native_docs) = enrich(&host);
        println!("enrich: wasm {wasm_docs:.0} documents/s, native {native_docs:.0}: {ratio:.2}×");
        summary.insert("enrich_wasm_over_native", ratio);
    }

    if runs("image") {
        for (key, hash_key, verify) in [
            ("image_serialize_wasm_over_native", "image_serialize_wasm_mb_per_s", true),
            ("image_hash_wasm_over_native", "image_hash_wasm_mb_per_s", false),
        ] {
            let (ratio, wasm_mb, native_mb) = image_serialize(&host, verify);
            println!("{key}: wasm {wasm_mb:.0} MB/s, native {native_mb:.0} MB/s: {ratio:.2}×");
            summary.insert(key, ratio);
            summary.insert(hash_key, wasm_mb);
        }
    }

    if runs("sandbox") {
        let (ratio, on_mb, off_mb) = sandbox();
        println!("sandbox on vs off (log-parse): {on_mb:.0} vs {off_mb:.0} MB/s: {ratio:.3}");
        summary.insert("sandbox_overhead_ratio", ratio);
    }

    if runs("instantiate") {
        let instantiate = instantiate(&host);
        println!("instantiate + init + first call: {instantiate:.1} us");
        summary.insert("instantiate_us", instantiate);
    }

    if runs("stage") {
        let (one, two) = stage_one_vs_two_workers(&host);
        println!(
            "log-parse stage, records from memory: 1 worker {one:.0} MB/s, 2 workers {two:.0} MB/s: {:.2}×",
            two / one
        );
        summary.insert("stage_parallel_speedup_2_workers", two / one);
        summary.insert("stage_logparse_2_workers_mb_per_s", two);
    }

    if runs("pipeline") {
        let pipeline = PipelineBench::prepare();
        let default_mb = pipeline.mb_per_s(None);
        let (one, two) = pipeline.one_vs_two_workers();
        println!(
            "sluice run, file → log-parse → file: {default_mb:.0} MB/s (default parallelism); 1 worker {one:.0} MB/s, 2 workers {two:.0} MB/s: {:.2}×",
            two / one
        );
        summary.insert("pipeline_file_logparse_mb_per_s", default_mb);
        summary.insert("pipeline_file_logparse_1_worker_mb_per_s", one);
        summary.insert("pipeline_parallel_speedup_2_workers", two / one);
    }
    if !only.is_empty() {
        println!("sections {only:?} only: summary.json left as it was");
        return;
    }
    summary.insert("cores", std::thread::available_parallelism().map_or(1, |n| n.get()) as f64);
    summary.insert("bench_seconds", started.elapsed().as_secs_f64().round());

    let out = target_dir().join("bench");
    std::fs::create_dir_all(&out).expect("create target/bench");
    let json = serde_json::to_string_pretty(&summary).expect("numbers serialise");
    std::fs::write(out.join("summary.json"), format!("{json}\n")).expect("write summary.json");
    println!("{json}\nwritten to {}", out.join("summary.json").display());
}

/// The repository's `target/`, where `summary.json` is promised to be,
/// wherever cargo puts its build (`CARGO_TARGET_DIR`).
fn target_dir() -> PathBuf {
    root().join("target")
}

fn instance(host: &WasmHost, name: &str, config: &str) -> TransformInstance {
    let module = host.load_file(&guest(name), false).unwrap();
    TransformInstance::new(&module, &Limits::default(), &Grants::default(), config).unwrap()
}

/// `records` packed by the guest SDK's own code, for the native side.
fn packed_natively(records: &[Record]) -> sluice_guest::bindings::Batch {
    let test_records: Vec<TestRecord> = records
        .iter()
        .map(|r| {
            TestRecord::new(r.value.to_vec()).with_key(r.key.as_ref().map(|k| k.to_vec()).unwrap_or_default())
        })
        .collect();
    pack(&test_records)
}

/// Boundary cost per record, and the two timings it is the difference of.
fn boundary(host: &WasmHost) -> (f64, f64, f64) {
    const BATCH: usize = 1024;
    let records = small_records(BATCH);
    let mut wasm = instance(host, "passthrough", "{}");
    let packed = packed_natively(&records);
    let mut native = passthrough::Passthrough;
    let (w, n) =
        side_by_side(ROUNDS, ROUND, || wasm.call(&records).unwrap(), || run_packed(&mut native, &packed));
    let per_record = |d: Duration| d.as_nanos() as f64 / BATCH as f64;
    (per_record(w) - per_record(n), per_record(w), per_record(n))
}

/// Boundary cost per record between two wasm stages: the batch arrives
/// packed (the previous stage's output) and leaves packed.
fn boundary_packed(host: &WasmHost) -> (f64, f64, f64) {
    const BATCH: usize = 1024;
    let records = small_records(BATCH);
    let mut wasm = instance(host, "passthrough", "{}");
    let input = PackedBatch::from_records(&records).unwrap();
    let packed = packed_natively(&records);
    let mut native = passthrough::Passthrough;
    let (w, n) = side_by_side_on_fresh_inputs(
        ROUNDS * 2,
        200,
        || input.clone(),
        |batch| wasm.call_packed(batch).unwrap(),
        |_| run_packed(&mut native, &packed),
    );
    let per_record = |d: Duration| d.as_nanos() as f64 / BATCH as f64;
    (per_record(w) - per_record(n), per_record(w), per_record(n))
}

/// Two stages in a row, per record, from a new batch of records to records
/// for a sink: with records between them (each takes over its input, as a
/// stage with a sink after it does), and as a pipeline runs them, the
/// first stage leaving what it outputs packed when that saves work.
fn two_stages(host: &WasmHost) -> (f64, f64) {
    const BATCH: usize = 1024;
    let records = small_records(BATCH);
    let (mut first, mut second) = (instance(host, "passthrough", "{}"), instance(host, "passthrough", "{}"));
    let (mut packed_first, mut packed_second) =
        (instance(host, "passthrough", "{}"), instance(host, "passthrough", "{}"));
    let (built, packed) = side_by_side_on_fresh_inputs(
        ROUNDS * 2,
        200,
        || records.clone(),
        |mut batch| {
            let mut between = first.call_consuming(&mut batch).unwrap().records;
            second.call_consuming(&mut between).unwrap().records
        },
        |mut batch| match packed_first.call_for_next_stage(&mut batch).unwrap() {
            StageCall::Records(mut between) => {
                packed_second.call_consuming(&mut between.records).unwrap().records
            }
            StageCall::Packed(between) => {
                packed_second.call_packed(between.batch).unwrap().batch.into_records()
            }
        },
    );
    let per_record = |d: Duration| d.as_nanos() as f64 / BATCH as f64;
    (per_record(built), per_record(packed))
}

/// Passthrough per record as a pipeline stage runs it, with outputs
/// sharing their inputs' key and value and (what the stage does) taking
/// them over: on a new batch each call, dropped after it.
fn stage_calls(host: &WasmHost) -> (f64, f64) {
    const BATCH: usize = 1024;
    let records = small_records(BATCH);
    let (mut sharing, mut taking) =
        (instance(host, "passthrough", "{}"), instance(host, "passthrough", "{}"));
    let (shared, consuming) = side_by_side_on_fresh_inputs(
        ROUNDS * 2,
        200,
        || records.clone(),
        |batch| sharing.call(&batch).unwrap(),
        |mut batch| taking.call_consuming(&mut batch).unwrap(),
    );
    let per_record = |d: Duration| d.as_nanos() as f64 / BATCH as f64;
    (per_record(shared), per_record(consuming))
}

fn mb_per_s(bytes: usize, d: Duration) -> f64 {
    bytes as f64 / d.as_secs_f64() / 1e6
}

/// log-parse wasm over native, and both in MB/s.
fn logparse(host: &WasmHost) -> (f64, f64, f64) {
    let lines = log_lines();
    let bytes: usize = lines.iter().map(|r| r.value.len()).sum();
    let mut wasm = instance(host, "log-parse", "{}");
    let config = log_parse::ParseConfig::from_json("{}").unwrap();
    let mut out = Vec::with_capacity(bytes * 3);
    let (w, n) = side_by_side(
        ROUNDS,
        ROUND,
        || wasm.call(&lines).unwrap(),
        || {
            out.clear();
            for line in &lines {
                log_parse::parse_line(&line.value, &config, &mut out).unwrap();
            }
            out.len()
        },
    );
    (n.as_secs_f64() / w.as_secs_f64(), mb_per_s(bytes, w), mb_per_s(bytes, n))
}

/// enrich (geo lookup granted) over log-parse's documents of the fixture.
fn enrich(host: &WasmHost) -> (f64, f64, f64) {
    const CONFIG: &str = r#"{"geoip_table": "geoip"}"#;
    let table = Arc::new(
        LookupTable::load("geoip", &root().join("pipelines/lookups/geoip-sample.csv"), KeyMatch::Ip).unwrap(),
    );
    let config = log_parse::ParseConfig::from_json("{}").unwrap();
    let documents: Vec<Vec<u8>> = log_lines()
        .iter()
        .map(|line| {
            let mut out = Vec::new();
            log_parse::parse_line(&line.value, &config, &mut out).unwrap();
            out
        })
        .collect();
    let records: Vec<Record> = documents
        .iter()
        .enumerate()
        .map(|(i, d)| {
            Record::new(Bytes::from(d.clone()), Origin { source: "b".into(), partition: 0, offset: i as i64 })
        })
        .collect();
    let mut lookups = Lookups::new();
    lookups.insert("geoip".into(), table.clone());
    // Granted the geo table and the host's hash, as the shipped pipelines do.
    let grants = Grants { lookups: Arc::new(lookups), hash: true, ..Grants::default() };
    let module = host.load_file(&guest("enrich"), false).unwrap();
    let mut wasm = TransformInstance::new(&module, &Limits::default(), &grants, CONFIG).unwrap();
    testing::grant_lookup("geoip", move |key| table.get(key).map(|row| row.to_string()));
    let mut native = testing::init::<enrich::Enrich>(CONFIG).unwrap();
    let inputs: Vec<TestRecord> = documents.iter().map(|d| TestRecord::new(d.clone())).collect();
    let (w, n) =
        side_by_side(ROUNDS, ROUND, || wasm.call(&records).unwrap(), || testing::run(&mut native, &inputs));
    let per_s = |d: Duration| documents.len() as f64 / d.as_secs_f64();
    (n.as_secs_f64() / w.as_secs_f64(), per_s(w), per_s(n))
}

/// image-serialize on the fixture images: with `verify`, a full decode and
/// a thumbnail (the shipped pipeline's settings); without, sniff + SHA-256.
fn image_serialize(host: &WasmHost, verify: bool) -> (f64, f64, f64) {
    let images = images();
    let bytes: usize = images.iter().map(|(_, b)| b.len()).sum();
    let records = image_records(&images);
    let module = host.load_file(&guest("image-serialize"), false).unwrap();
    let limits = Limits { max_memory_bytes: 512 << 20, ..Limits::default() };
    let json = if verify { r#"{"verify":true,"thumbnail_px":128}"# } else { "{}" };
    // Granted the host's hash, as the shipped pipeline does.
    let grants = Grants { hash: true, ..Grants::default() };
    let mut wasm = TransformInstance::new(&module, &limits, &grants, json).unwrap();
    let config = image_serialize::SerializeConfig {
        verify,
        thumbnail_px: verify.then_some(128),
        max_pixels: 50_000_000,
        check_claims: true,
    };
    let mut out = Vec::new();
    let (w, n) = side_by_side(
        ROUNDS / 2,
        ROUND,
        || wasm.call(&records).unwrap(),
        || {
            for (name, data) in &images {
                out.clear();
                image_serialize::serialize(data, None, Some(name), None, Some(0), &config, &mut out).unwrap();
            }
        },
    );
    (n.as_secs_f64() / w.as_secs_f64(), mb_per_s(bytes, w), mb_per_s(bytes, n))
}

/// log-parse with the sandbox's limits over the same module without them.
fn sandbox() -> (f64, f64, f64) {
    let lines = log_lines();
    let bytes: usize = lines.iter().map(|r| r.value.len()).sum();
    let mut on = instance(&WasmHost::new(), "log-parse", "{}");
    let mut off = instance(&WasmHost::without_sandbox_for_benchmarks(), "log-parse", "{}");
    // Twice the rounds: the difference sought is a few percent.
    let (on_t, off_t) =
        side_by_side(ROUNDS * 2, ROUND, || on.call(&lines).unwrap(), || off.call(&lines).unwrap());
    (on_t.as_secs_f64() / off_t.as_secs_f64(), mb_per_s(bytes, on_t), mb_per_s(bytes, off_t))
}

fn instantiate(host: &WasmHost) -> f64 {
    let module = host.load_file(&guest("passthrough"), false).unwrap();
    let one = small_records(1);
    let t = alone(ROUNDS, ROUND, || {
        let mut instance =
            TransformInstance::new(&module, &Limits::default(), &Grants::default(), "{}").unwrap();
        instance.call(&one).unwrap()
    });
    t.as_secs_f64() * 1e6
}

/// The log-parse stage itself on 1 and on 2 workers (MB/s of lines): the
/// pipeline runtime with records from memory and a `blackhole` sink, so
/// the stage is what the cores run.
fn stage_one_vs_two_workers(host: &WasmHost) -> (f64, f64) {
    let lines = log_lines();
    let batch_bytes: usize = lines.iter().map(|r| r.value.len()).sum();
    let batches = STAGE_BATCHES;
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let run = |workers: u32| -> Duration {
        let toml = format!(
            "name = \"stage-bench\"\n[source]\ntype = \"file\"\npath = \"/dev/null\"\n\
             [batch]\nmax_records = 1024\nlinger_ms = 50\n\
             [[stage]]\nname = \"parse\"\nmodule = {module:?}\ntimeout_ms = 2000\nparallelism = {workers}\n\
             [sink]\ntype = \"blackhole\"\n",
            module = guest("log-parse").display().to_string()
        );
        let dir = target_dir().join("bench");
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("stage-bench.toml");
        std::fs::write(&path, toml).unwrap();
        let mut configs = sluice::config::load_file(&path).unwrap();
        let config = configs.remove(0);
        let stages = vec![Stage::build(&config.stages[0], &config, host).unwrap()];
        let source = Box::new(MemorySource { batch: lines.clone(), times: batches });
        let pipeline = Pipeline::assemble(config, source, stages, History::default());
        let started = Instant::now();
        let report = runtime.block_on(pipeline.run(CancellationToken::new())).unwrap();
        assert_eq!(report.written as usize, lines.len() * batches);
        started.elapsed()
    };
    let mut one = Vec::new();
    let mut two = Vec::new();
    run(1);
    for _ in 0..RUNS {
        one.push(run(1));
        two.push(run(2));
    }
    let rate = |times: Vec<Duration>| (batch_bytes * batches) as f64 / median(times).as_secs_f64() / 1e6;
    (rate(one), rate(two))
}

/// Sends the same records `times` over, as fast as the pipeline takes them.
struct MemorySource {
    batch: Vec<Record>,
    times: usize,
}

#[async_trait::async_trait]
impl Source for MemorySource {
    async fn run(self: Box<Self>, ctx: SourceContext) -> anyhow::Result<()> {
        for _ in 0..self.times {
            ctx.send(sluice::record::Batch::new(self.batch.clone(), Vec::new())).await?;
        }
        Ok(())
    }
}

/// `sluice run` over a generated log file, as a user runs it.
struct PipelineBench {
    dir: PathBuf,
    input_bytes: u64,
}

impl PipelineBench {
    fn prepare() -> PipelineBench {
        let dir = target_dir().join("bench").join("pipeline");
        std::fs::create_dir_all(&dir).unwrap();
        let lines: Vec<Vec<u8>> = std::fs::read(fixture("logs/apache_combined_sample.log"))
            .unwrap()
            .split(|&b| b == b'\n')
            .filter(|l| !l.is_empty())
            .map(<[u8]>::to_vec)
            .collect();
        let mut text = Vec::new();
        for line in lines.iter().cycle().take(PIPELINE_LINES) {
            text.extend_from_slice(line);
            text.push(b'\n');
        }
        std::fs::write(dir.join("weblogs.log"), &text).unwrap();
        PipelineBench { dir, input_bytes: text.len() as u64 }
    }

    fn write_pipeline(&self, parallelism: Option<usize>) -> PathBuf {
        let module = guest("log-parse");
        let parallelism = parallelism.map(|n| format!("parallelism = {n}\n")).unwrap_or_default();
        let toml = format!(
            "name = \"bench-logparse\"\n\
             [source]\ntype = \"file\"\npath = \"weblogs.log\"\nread = \"lines\"\n\
             [batch]\nmax_records = 1024\nlinger_ms = 50\n\
             [[stage]]\nname = \"parse\"\nmodule = {module:?}\ntimeout_ms = 2000\nmax_memory_mb = 64\n{parallelism}\
             [sink]\ntype = \"file\"\npath = \"out.ndjson\"\n\
             [dead_letter]\ntype = \"file\"\npath = \"dead-letters.ndjson\"\n",
            module = module.display().to_string()
        );
        let path = self.dir.join("pipeline.toml");
        std::fs::write(&path, toml).unwrap();
        path
    }

    /// One whole `sluice run`, start to exit.
    fn run_once(&self, pipeline: &Path) -> Duration {
        for file in ["out.ndjson", "dead-letters.ndjson"] {
            let _ = std::fs::remove_file(self.dir.join(file));
        }
        let started = Instant::now();
        let output = Command::new(env!("CARGO_BIN_EXE_sluice-under-test"))
            .args(["run", "--listen", "127.0.0.1:0"])
            .arg(pipeline)
            .env("SLUICE_LOG", "warn")
            .output()
            .expect("start sluice");
        let elapsed = started.elapsed();
        assert!(output.status.success(), "sluice run failed: {}", String::from_utf8_lossy(&output.stderr));
        let written = std::fs::read(self.dir.join("out.ndjson")).unwrap();
        let documents = written.iter().filter(|&&b| b == b'\n').count();
        assert_eq!(documents, PIPELINE_LINES, "every line becomes one document");
        elapsed
    }

    fn mb_per_s(&self, parallelism: Option<usize>) -> f64 {
        let pipeline = self.write_pipeline(parallelism);
        self.run_once(&pipeline); // compiles the module into the cache, warms the page cache
        let time = median((0..RUNS).map(|_| self.run_once(&pipeline)).collect());
        self.input_bytes as f64 / time.as_secs_f64() / 1e6
    }

    /// MB/s with one worker and with two, runs alternating.
    fn one_vs_two_workers(&self) -> (f64, f64) {
        let mut one = Vec::new();
        let mut two = Vec::new();
        for _ in 0..RUNS {
            one.push(self.run_once(&self.write_pipeline(Some(1))));
            two.push(self.run_once(&self.write_pipeline(Some(2))));
        }
        let rate = |times: Vec<Duration>| self.input_bytes as f64 / median(times).as_secs_f64() / 1e6;
        (rate(one), rate(two))
    }
}
