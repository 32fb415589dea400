//! The lake's hot paths, side by side in one run:
//!
//! - image-serialize in wasm vs the same crate compiled natively, over the
//!   fixture images (MB/s of image in);
//! - appending image records to an Avro container: sluice's writer (datums
//!   appended as they are) vs `apache_avro::Writer` fed values (what a
//!   writer that decodes and re-encodes does) vs a plain copy of the bytes;
//! - the codecs on image records and on JSON log documents: throughput and
//!   compression ratio;
//! - JSON-to-Avro encoding of log documents (records/s).
//!
//! Run with `cargo bench -p sluice-tests --bench lake` (or `make bench`).

use std::time::{Duration, Instant};

use apache_avro::{Codec, DeflateSettings, Schema, ZstandardSettings};
use sluice::avro::container::ContainerWriter;
use sluice::avro::datum::DatumChecker;
use sluice::avro::from_json::JsonEncoder;
use sluice::wasm::{Grants, Limits, TransformInstance, WasmHost};
use sluice_tests::bench::{image_records, images};
use sluice_tests::{fixture, guest, root};

/// Times `f` over enough iterations for a stable mean.
fn mean<R>(mut f: impl FnMut() -> R) -> Duration {
    for _ in 0..3 {
        std::hint::black_box(f());
    }
    let mut iterations = 0u32;
    let started = Instant::now();
    while started.elapsed() < Duration::from_millis(2000) || iterations < 5 {
        std::hint::black_box(f());
        iterations += 1;
    }
    started.elapsed() / iterations
}

fn serialize_config() -> image_serialize::SerializeConfig {
    image_serialize::SerializeConfig {
        verify: true,
        thumbnail_px: Some(128),
        max_pixels: 50_000_000,
        check_claims: true,
    }
}

fn image_datums() -> Vec<Vec<u8>> {
    images()
        .iter()
        .map(|(name, bytes)| {
            let mut out = Vec::new();
            image_serialize::serialize(bytes, None, Some(name), None, Some(0), &serialize_config(), &mut out)
                .unwrap();
            out
        })
        .collect()
}

fn log_documents() -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(fixture("logs/api_server_sample.ndjson")).unwrap();
    text.lines().filter(|l| !l.is_empty()).map(|l| serde_json::from_str(l).unwrap()).collect()
}

const LOG_SCHEMA: &str = r#"{"type":"record","name":"ApiLog","fields":[
    {"name":"ip","type":"string"},{"name":"datetime","type":"string"},{"name":"method","type":"string"},
    {"name":"url","type":"string"},{"name":"responseCode","type":"int"},{"name":"responseTime","type":"double"},
    {"name":"sessionID","type":["null","string"],"default":null}]}"#;

fn codecs() -> Vec<(&'static str, Codec)> {
    vec![
        ("null", Codec::Null),
        ("snappy", Codec::Snappy),
        ("deflate", Codec::Deflate(DeflateSettings::default())),
        ("zstd-3", Codec::Zstandard(ZstandardSettings::new(3))),
    ]
}

fn container(schema: &str, codec: Codec, datums: &[Vec<u8>], repeat: usize) -> usize {
    let mut writer = ContainerWriter::new(schema, codec, 64 << 10);
    let mut size = 0;
    for _ in 0..repeat {
        for datum in datums {
            writer.append(datum).unwrap();
            size += writer.take_output().len();
        }
    }
    writer.end_block().unwrap();
    size + writer.take_output().len()
}

fn main() {
    // The engine's allocator settings, as the `sluice` binary sets them at start.
    sluice::memory::tune_allocator();
    let host = WasmHost::new();

    // image-serialize: wasm vs native.
    let images = images();
    let image_bytes: usize = images.iter().map(|(_, b)| b.len()).sum();
    let records = image_records(&images);
    let module = host.load_file(&guest("image-serialize"), false).unwrap();
    let limits = Limits { max_memory_bytes: 512 << 20, ..Limits::default() };
    let config = serialize_config();
    let mut out = Vec::new();
    let mb = |d: Duration, bytes: usize| bytes as f64 / d.as_secs_f64() / 1e6;
    println!("== lake benchmarks (same run, same machine) ==");
    for (label, verify) in [("verify + thumbnail", true), ("sniff + hash only", false)] {
        let config = image_serialize::SerializeConfig {
            verify,
            thumbnail_px: verify.then_some(128),
            ..config.clone()
        };
        let json = if verify { r#"{"verify":true,"thumbnail_px":128}"# } else { "{}" };
        // Granted the host's hash, as the shipped pipeline does.
        let grants = Grants { hash: true, ..Grants::default() };
        let mut wasm = TransformInstance::new(&module, &limits, &grants, json).unwrap();
        let w = mb(mean(|| wasm.call(&records).unwrap()), image_bytes);
        let n = mb(
            mean(|| {
                for (name, bytes) in &images {
                    out.clear();
                    image_serialize::serialize(bytes, None, Some(name), None, Some(0), &config, &mut out)
                        .unwrap();
                }
            }),
            image_bytes,
        );
        println!(
            "image-serialize ({label}): wasm {w:.1} MB/s, native {n:.1} MB/s, wasm/native = {:.2}",
            w / n
        );
    }

    // Appending image records: passthrough vs decode + re-encode vs memcpy.
    let schema_json = std::fs::read_to_string(root().join("pipelines/schemas/image.avsc")).unwrap();
    let schema = Schema::parse_str(&schema_json).unwrap();
    let datums = image_datums();
    let repeat = 20;
    let total: usize = datums.iter().map(Vec::len).sum::<usize>() * repeat;
    let checker = DatumChecker::new(schema.clone()).unwrap();
    let ours = mean(|| {
        for datum in &datums {
            checker.check(datum).unwrap();
        }
        container(&schema.canonical_form(), Codec::Null, &datums, repeat)
    });
    let values: Vec<apache_avro::types::Value> =
        datums.iter().map(|d| apache_avro::from_avro_datum(&schema, &mut &d[..], None).unwrap()).collect();
    let theirs = mean(|| {
        let mut writer = apache_avro::Writer::with_codec(&schema, Vec::new(), Codec::Null);
        for _ in 0..repeat {
            for datum in &datums {
                let value = apache_avro::from_avro_datum(&schema, &mut &datum[..], None).unwrap();
                writer.append_value_ref(&value).unwrap();
            }
        }
        writer.into_inner().unwrap().len()
    });
    let values_only = mean(|| {
        let mut writer = apache_avro::Writer::with_codec(&schema, Vec::new(), Codec::Null);
        for _ in 0..repeat {
            for value in &values {
                writer.append_value_ref(value).unwrap();
            }
        }
        writer.into_inner().unwrap().len()
    });
    let copy = mean(|| {
        let mut out = Vec::new();
        for _ in 0..repeat {
            for datum in &datums {
                out.extend_from_slice(datum);
            }
        }
        out.len()
    });
    println!(
        "append image records ({:.1} MB, codec null): sluice check+append {:.0} MB/s; apache_avro decode+append {:.0} MB/s ({:.1}x slower); \
         apache_avro append of ready values {:.0} MB/s; plain copy {:.0} MB/s (sluice/copy = {:.2})",
        total as f64 / 1e6,
        mb(ours, total),
        mb(ours, total) / mb(theirs, total),
        mb(theirs, total),
        mb(values_only, total),
        mb(copy, total),
        mb(ours, total) / mb(copy, total)
    );

    // Codecs on images and on log documents.
    let docs = log_documents();
    let log_schema = Schema::parse_str(LOG_SCHEMA).unwrap();
    let encoder = JsonEncoder::new(log_schema.clone(), true).unwrap();
    let log_datums: Vec<Vec<u8>> = docs.iter().map(|d| encoder.encode(d).unwrap()).collect();
    let encode = mean(|| docs.iter().map(|d| encoder.encode(d).unwrap().len()).sum::<usize>());
    println!(
        "JSON to Avro (api_server_sample, {} documents): {:.0} k records/s",
        docs.len(),
        docs.len() as f64 / encode.as_secs_f64() / 1e3
    );
    for (what, schema, datums, repeat) in [
        ("images", schema.canonical_form(), &datums, 20usize),
        ("api logs", log_schema.canonical_form(), &log_datums, 200),
    ] {
        let raw: usize = datums.iter().map(Vec::len).sum::<usize>() * repeat;
        for (name, codec) in codecs() {
            let mut size = 0;
            let t = mean(|| size = container(&schema, codec, datums, repeat));
            println!(
                "codec {name:<8} {what:<9}: {:7.0} MB/s in, ratio {:.2}",
                mb(t, raw),
                raw as f64 / size as f64
            );
        }
    }
}
