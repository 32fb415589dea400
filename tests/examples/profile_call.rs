//! Runs one transform call in a loop, for a profiler to look at:
//! `perf record cargo run --release -p sluice-tests --example profile_call -- GUEST [BATCH] [SECONDS] [LINES-FILE]`.
//!
//! `LINES-FILE` may be `images`: the fixture images, as REST ingest makes
//! them records. `PROFILE_CONFIG` is the stage's config as JSON (default
//! `{}`); the host's hash is granted, as the shipped pipelines do.
//!
//! `PROFILE_CONSUMING=1` hands each call a new batch to take over, as a
//! pipeline's stage does. `PROFILE_PACKED=1` calls the batch packed, as a
//! stage between two wasm stages gets it. `PROFILE_CHAIN=records|stages`
//! runs two instances in a row (the second of `PROFILE_SECOND`, default the
//! same guest), with records between them or as a pipeline's stages hand
//! batches on. `PROFILE_UNSANDBOXED=1` runs without the epoch deadline and
//! memory cap, to compare per function where the sandbox's checks cost.

use bytes::Bytes;
use sluice::record::{Origin, Record};
use sluice::wasm::{Grants, Limits, PackedBatch, StageCall, TransformInstance, WasmHost};

fn main() {
    let mut args = std::env::args().skip(1);
    let guest = args.next().unwrap_or_else(|| "passthrough".into());
    let size: usize = args.next().and_then(|s| s.parse().ok()).unwrap_or(1024);
    let seconds: u64 = args.next().and_then(|s| s.parse().ok()).unwrap_or(5);
    let lines_file = args.next();
    let config = std::env::var("PROFILE_CONFIG").unwrap_or_else(|_| "{}".into());
    let grants = Grants { hash: true, ..Grants::default() };
    let images = lines_file.as_deref() == Some("images");
    let records: Vec<Record> = if images {
        sluice_tests::bench::image_records(&sluice_tests::bench::images())
    } else {
        text_records(size, lines_file.as_deref())
    };
    let size = records.len();
    // `PROFILE_UNSANDBOXED=1`: without the epoch deadline and memory cap,
    // to see where the sandbox's checks cost.
    let host = match std::env::var("PROFILE_UNSANDBOXED") {
        Ok(_) => WasmHost::without_sandbox_for_benchmarks(),
        Err(_) => WasmHost::new(),
    };
    let module = host.load_file(&sluice_tests::guest(&guest), false).unwrap();
    // Decoding images needs more than the default memory cap.
    let limits =
        if images { Limits { max_memory_bytes: 512 << 20, ..Limits::default() } } else { Limits::default() };
    if std::env::var("PROFILE_INSTANTIATE").is_ok() {
        let started = std::time::Instant::now();
        let mut count = 0u32;
        while started.elapsed().as_secs() < seconds {
            let mut instance = TransformInstance::new(&module, &limits, &grants, &config).unwrap();
            std::hint::black_box(instance.call(&records[..1]).unwrap());
            count += 1;
        }
        println!(
            "instantiate + init + first call: {:.1} us",
            started.elapsed().as_secs_f64() * 1e6 / count as f64
        );
        return;
    }
    if let Ok(chain) = std::env::var("PROFILE_CHAIN") {
        // Two instances in a row, from new records to records, with records
        // between them (`records`) or as a pipeline runs them (`stages`:
        // the first leaves its outputs packed when that saves work).
        let mut first = TransformInstance::new(&module, &limits, &grants, &config).unwrap();
        // `PROFILE_SECOND`: another guest for the second stage.
        let second_module = match std::env::var("PROFILE_SECOND") {
            Ok(name) => host.load_file(&sluice_tests::guest(&name), false).unwrap(),
            Err(_) => module.clone(),
        };
        let mut second = TransformInstance::new(&second_module, &limits, &grants, "{}").unwrap();
        let started = std::time::Instant::now();
        let mut calls = 0u64;
        while started.elapsed().as_secs() < seconds {
            let mut batch = records.clone();
            let out = match chain.as_str() {
                "records" => {
                    let mut between = first.call_consuming(&mut batch).unwrap().records;
                    second.call_consuming(&mut between).unwrap().records
                }
                _ => match first.call_for_next_stage(&mut batch).unwrap() {
                    StageCall::Records(mut between) => {
                        second.call_consuming(&mut between.records).unwrap().records
                    }
                    StageCall::Packed(between) => {
                        second.call_packed(between.batch).unwrap().batch.into_records()
                    }
                },
            };
            drop(std::hint::black_box(out));
            calls += 1;
        }
        let per_record = started.elapsed().as_nanos() as f64 / (calls as f64 * size as f64);
        println!("{chain}: {calls} calls, {per_record:.1} ns/record");
        return;
    }
    let mut instance = TransformInstance::new(&module, &limits, &grants, &config).unwrap();
    let packed =
        std::env::var("PROFILE_PACKED").is_ok().then(|| PackedBatch::from_records(&records).unwrap());
    // As a pipeline's stage calls it: each call takes over a new batch.
    let consuming = std::env::var("PROFILE_CONSUMING").is_ok();
    let started = std::time::Instant::now();
    let mut calls = 0u64;
    while started.elapsed().as_secs() < seconds {
        match &packed {
            Some(packed) => drop(std::hint::black_box(instance.call_packed(packed.clone()).unwrap())),
            None if consuming => {
                let mut batch = records.clone();
                drop(std::hint::black_box(instance.call_consuming(&mut batch).unwrap()))
            }
            None => drop(std::hint::black_box(instance.call(&records).unwrap())),
        }
        calls += 1;
    }
    let elapsed = started.elapsed();
    let per_record = elapsed.as_nanos() as f64 / (calls as f64 * size as f64);
    let bytes: usize = records.iter().map(|r| r.value.len()).sum::<usize>() * calls as usize;
    println!(
        "{calls} calls, {per_record:.1} ns/record, {:.0} MB/s",
        bytes as f64 / elapsed.as_secs_f64() / 1e6
    );
}

/// `size` records: the lines of `lines_file`, round and round, or small
/// JSON documents; keyed.
fn text_records(size: usize, lines_file: Option<&str>) -> Vec<Record> {
    let lines: Option<Vec<Vec<u8>>> = lines_file.map(|path| {
        std::fs::read(path)
            .unwrap()
            .split(|&b| b == b'\n')
            .filter(|l| !l.is_empty())
            .map(<[u8]>::to_vec)
            .collect()
    });
    (0..size)
        .map(|i| {
            let value = match &lines {
                Some(lines) => Bytes::from(lines[i % lines.len()].clone()),
                None => Bytes::from(format!("{{\"n\":{i},\"msg\":\"a small record of about 64 bytes...\"}}")),
            };
            let mut r = Record::new(value, Origin { source: "p".into(), partition: 0, offset: i as i64 });
            r.key = Some(Bytes::from(format!("key-{i}")));
            r
        })
        .collect()
}
