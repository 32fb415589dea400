//! Native throughput of parse + JSON output over a log file, through the
//! same `parse_line` the component runs.
//!
//! ```text
//! cargo run --release --example throughput -- [FILE] [FORMAT]
//! ```
//!
//! FILE defaults to the shared Apache fixture, FORMAT to `apache_combined`.

use std::time::{Duration, Instant};

use log_parse::{ParseConfig, parse_line};

fn main() {
    let mut args = std::env::args().skip(1);
    let path = args.next().unwrap_or_else(|| {
        concat!(env!("CARGO_MANIFEST_DIR"), "/../../../../shared/fixtures/logs/apache_combined_sample.log")
            .into()
    });
    let format = args.next().unwrap_or_else(|| "apache_combined".into());
    let config =
        ParseConfig::from_json(&format!(r#"{{"format": "{format}"}}"#)).unwrap_or_else(|e| panic!("{e}"));
    let text = std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let lines: Vec<&[u8]> = text.split(|&b| b == b'\n').filter(|l| !l.is_empty()).collect();
    let input_bytes: usize = lines.iter().map(|l| l.len()).sum();

    // One output buffer, cleared per pass, as the SDK reuses its batch buffer.
    let mut out = Vec::with_capacity(input_bytes * 2);
    let mut passes = 0u64;
    let mut failures = 0u64;
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(2) {
        out.clear();
        for line in &lines {
            failures += u64::from(parse_line(line, &config, &mut out).is_err());
        }
        passes += 1;
    }
    let seconds = start.elapsed().as_secs_f64();
    let mb = (input_bytes as u64 * passes) as f64 / 1e6;
    let records = lines.len() as u64 * passes;
    println!(
        "{path} ({format}): {:.0} MB/s, {:.2} M lines/s, {:.0} ns/line, output/input {:.2}, failures {failures}",
        mb / seconds,
        records as f64 / seconds / 1e6,
        seconds * 1e9 / records as f64,
        out.len() as f64 / input_bytes as f64,
    );
}
