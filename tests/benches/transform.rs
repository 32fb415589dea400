//! Transform benchmarks, each comparing two things side by side in one run:
//!
//! - `boundary/*`: the passthrough transform in wasm (host → guest → host,
//!   records in and records out) vs the same transform run natively on an
//!   already-packed batch, at batch sizes 1, 64 and 1024. The difference per
//!   record is what crossing the boundary costs.
//! - `log_parse/*`: the log-parse transform in wasm vs the same crate
//!   compiled natively, over the Apache fixture (MB/s).
//! - `sandbox/*`: the same wasm call with the sandbox on (epoch deadline,
//!   memory limiter) and off.
//! - `instantiate/*`: a fresh instance from the pool, `init`, and a first
//!   one-record call.
//!
//! `cargo bench -p sluice-tests --bench transform` (or `make bench`); the
//! closing lines print the ratios.

use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group};
use sluice::record::Record;
use sluice::wasm::{Grants, Limits, TransformInstance, WasmHost};
use sluice_guest::testing::{TestRecord, pack, run_packed};
use sluice_tests::bench::{log_lines, small_records};
use sluice_tests::guest;

fn as_test_records(records: &[Record]) -> Vec<TestRecord> {
    records
        .iter()
        .map(|r| TestRecord {
            key: r.key.as_ref().map(|k| k.to_vec()),
            value: r.value.to_vec(),
            headers: Vec::new(),
            timestamp: r.timestamp,
        })
        .collect()
}

fn instance(host: &WasmHost, name: &str, config: &str) -> TransformInstance {
    let module = host.load_file(&guest(name), false).unwrap();
    TransformInstance::new(&module, &Limits::default(), &Grants::default(), config).unwrap()
}

fn boundary(c: &mut Criterion) {
    let host = WasmHost::new();
    let mut wasm = instance(&host, "passthrough", "{}");
    let mut group = c.benchmark_group("boundary");
    for size in [1usize, 64, 1024] {
        let records = small_records(size);
        group.throughput(Throughput::Elements(size as u64));
        group.bench_with_input(BenchmarkId::new("wasm", size), &records, |b, records| {
            b.iter(|| wasm.call(records).unwrap())
        });
        let packed = pack(&as_test_records(&records));
        let mut native = passthrough::Passthrough;
        group.bench_with_input(BenchmarkId::new("native", size), &packed, |b, packed| {
            b.iter(|| run_packed(&mut native, packed))
        });
    }
    group.finish();
}

fn log_parse(c: &mut Criterion) {
    let host = WasmHost::new();
    let lines = log_lines();
    let bytes: usize = lines.iter().map(|r| r.value.len()).sum();
    let mut wasm = instance(&host, "log-parse", "{}");
    let config = log_parse::ParseConfig::from_json("{}").unwrap();
    let mut group = c.benchmark_group("log_parse");
    group.throughput(Throughput::Bytes(bytes as u64));
    group.bench_function("wasm", |b| b.iter(|| wasm.call(&lines).unwrap()));
    let mut out = Vec::with_capacity(bytes * 3);
    group.bench_function("native", |b| {
        b.iter(|| {
            out.clear();
            for line in &lines {
                log_parse::parse_line(&line.value, &config, &mut out).unwrap();
            }
            out.len()
        })
    });
    group.finish();
}

fn sandbox(c: &mut Criterion) {
    let lines = log_lines();
    let bytes: usize = lines.iter().map(|r| r.value.len()).sum();
    let mut on = instance(&WasmHost::new(), "log-parse", "{}");
    let mut off = instance(&WasmHost::without_sandbox_for_benchmarks(), "log-parse", "{}");
    let mut group = c.benchmark_group("sandbox");
    group.throughput(Throughput::Bytes(bytes as u64));
    group.bench_function("on", |b| b.iter(|| on.call(&lines).unwrap()));
    group.bench_function("off", |b| b.iter(|| off.call(&lines).unwrap()));
    group.finish();
}

fn instantiate(c: &mut Criterion) {
    let host = WasmHost::new();
    let module = host.load_file(&guest("passthrough"), false).unwrap();
    let one = small_records(1);
    let mut group = c.benchmark_group("instantiate");
    group.bench_function("instantiate_init_first_call", |b| {
        b.iter(|| {
            let mut instance =
                TransformInstance::new(&module, &Limits::default(), &Grants::default(), "{}").unwrap();
            instance.call(&one).unwrap()
        })
    });
    group.finish();
}

/// Times `f` over enough iterations for a stable mean, for the ratio table.
fn mean<R>(mut f: impl FnMut() -> R) -> Duration {
    for _ in 0..50 {
        std::hint::black_box(f());
    }
    let mut iterations = 0u32;
    let started = Instant::now();
    while started.elapsed() < Duration::from_millis(1500) {
        std::hint::black_box(f());
        iterations += 1;
    }
    started.elapsed() / iterations
}

/// Prints the comparisons the goals are stated in.
fn ratios() {
    println!("\n== ratios (same run, same machine) ==");
    let host = WasmHost::new();
    let mut wasm = instance(&host, "passthrough", "{}");
    for size in [1usize, 64, 1024] {
        let records = small_records(size);
        let packed = pack(&as_test_records(&records));
        let mut native = passthrough::Passthrough;
        let w = mean(|| wasm.call(&records).unwrap()).as_nanos() as f64 / size as f64;
        let n = mean(|| run_packed(&mut native, &packed)).as_nanos() as f64 / size as f64;
        println!(
            "passthrough batch {size:>4}: wasm {w:8.1} ns/record, native {n:6.1} ns/record, boundary overhead {:8.1} ns/record",
            w - n
        );
    }

    let lines = log_lines();
    let bytes: usize = lines.iter().map(|r| r.value.len()).sum();
    let mb = |d: Duration| bytes as f64 / d.as_secs_f64() / 1e6;
    let mut wasm = instance(&host, "log-parse", "{}");
    let config = log_parse::ParseConfig::from_json("{}").unwrap();
    let mut out = Vec::with_capacity(bytes * 3);
    let w = mb(mean(|| wasm.call(&lines).unwrap()));
    let n = mb(mean(|| {
        out.clear();
        for line in &lines {
            log_parse::parse_line(&line.value, &config, &mut out).unwrap();
        }
        out.len()
    }));
    println!("log-parse: wasm {w:.0} MB/s, native {n:.0} MB/s, wasm/native = {:.2}", w / n);

    let mut off = instance(&WasmHost::without_sandbox_for_benchmarks(), "log-parse", "{}");
    let on_t = mean(|| wasm.call(&lines).unwrap()).as_secs_f64();
    let off_t = mean(|| off.call(&lines).unwrap()).as_secs_f64();
    println!(
        "sandbox: on {:.0} MB/s, off {:.0} MB/s, cost {:+.1}%",
        bytes as f64 / on_t / 1e6,
        bytes as f64 / off_t / 1e6,
        (on_t / off_t - 1.0) * 100.0
    );

    let module = host.load_file(&guest("passthrough"), false).unwrap();
    let one = small_records(1);
    let t = mean(|| {
        let mut instance =
            TransformInstance::new(&module, &Limits::default(), &Grants::default(), "{}").unwrap();
        instance.call(&one).unwrap()
    });
    println!("instantiate + init + first call: {:.1} us", t.as_secs_f64() * 1e6);
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(30).measurement_time(Duration::from_secs(3)).warm_up_time(Duration::from_secs(1));
    targets = boundary, log_parse, sandbox, instantiate
}

fn main() {
    // The engine's allocator settings, as the `sluice` binary sets them at start.
    sluice::memory::tune_allocator();
    benches();
    Criterion::default().configure_from_args().final_summary();
    ratios();
}
