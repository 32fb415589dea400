//! What the benchmarks share: the inputs they feed transforms, and timing
//! helpers that measure two contenders side by side, in alternating short
//! rounds, so a change in the machine's load (another process, CPU
//! frequency) hits both alike and their ratio stays honest.

use std::time::{Duration, Instant};

use bytes::Bytes;
use sluice::record::{Header, Origin, Record};

use crate::fixture;

/// `n` keyed JSON records of about 64 bytes.
pub fn small_records(n: usize) -> Vec<Record> {
    (0..n)
        .map(|i| {
            let mut record = Record::new(
                Bytes::from(format!("{{\"n\":{i},\"msg\":\"a small record of about 64 bytes...\"}}")),
                Origin { source: "bench".into(), partition: 0, offset: i as i64 },
            );
            record.key = Some(Bytes::from(format!("key-{i}")));
            record
        })
        .collect()
}

/// The lines of the Apache fixture log, one record each.
pub fn log_lines() -> Vec<Record> {
    let text = std::fs::read(fixture("logs/apache_combined_sample.log")).unwrap();
    text.split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .enumerate()
        .map(|(i, line)| {
            Record::new(
                Bytes::copy_from_slice(line),
                Origin { source: "bench".into(), partition: 0, offset: i as i64 },
            )
        })
        .collect()
}

/// The fixture images, by file name.
pub fn images() -> Vec<(String, Vec<u8>)> {
    ["rocket.jpg", "coffee.png", "chelsea.png"]
        .into_iter()
        .map(|name| (name.to_string(), std::fs::read(fixture(&format!("images/{name}"))).unwrap()))
        .collect()
}

/// `images` as records the way REST ingest makes them: a `filename`
/// header and a timestamp.
pub fn image_records(images: &[(String, Vec<u8>)]) -> Vec<Record> {
    images
        .iter()
        .enumerate()
        .map(|(i, (name, data))| {
            let mut r = Record::new(
                Bytes::from(data.clone()),
                Origin { source: "b".into(), partition: 0, offset: i as i64 },
            );
            r.headers.push(Header { name: "filename".into(), value: Bytes::from(name.clone()) });
            r.timestamp = Some(0);
            r
        })
        .collect()
}

/// Median time per call of `a` and of `b`, measured in `rounds` alternating
/// rounds of about `round` each, after one warm-up round of each.
pub fn side_by_side<A, B>(
    rounds: usize,
    round: Duration,
    mut a: impl FnMut() -> A,
    mut b: impl FnMut() -> B,
) -> (Duration, Duration) {
    time_round(round, &mut a);
    time_round(round, &mut b);
    let mut times_a = Vec::with_capacity(rounds);
    let mut times_b = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        times_a.push(time_round(round, &mut a));
        times_b.push(time_round(round, &mut b));
    }
    (median(times_a), median(times_b))
}

/// Median time per call of `a` and of `b`, each called on a fresh input
/// from `prepare` and dropping it, as a pipeline stage gets a new batch
/// every time and drops it after: making the input is not timed, the call
/// and the drops are. `rounds` alternating rounds of `calls` calls each.
pub fn side_by_side_on_fresh_inputs<T, A, B>(
    rounds: usize,
    calls: u32,
    mut prepare: impl FnMut() -> T,
    mut a: impl FnMut(T) -> A,
    mut b: impl FnMut(T) -> B,
) -> (Duration, Duration) {
    let mut round = |f: &mut dyn FnMut(T)| {
        let mut timed = Duration::ZERO;
        for _ in 0..calls {
            let input = std::hint::black_box(prepare());
            let started = Instant::now();
            f(input);
            timed += started.elapsed();
        }
        timed / calls
    };
    let mut a = |input| drop(std::hint::black_box(a(input)));
    let mut b = |input| drop(std::hint::black_box(b(input)));
    let mut times_a = Vec::with_capacity(rounds);
    let mut times_b = Vec::with_capacity(rounds);
    for _ in 0..=rounds {
        times_a.push(round(&mut a));
        times_b.push(round(&mut b));
    }
    // The first round of each warms up.
    (median(times_a.split_off(1)), median(times_b.split_off(1)))
}

/// Median time per call of `f` over `rounds` rounds of about `round` each.
pub fn alone<R>(rounds: usize, round: Duration, mut f: impl FnMut() -> R) -> Duration {
    time_round(round, &mut f);
    median((0..rounds).map(|_| time_round(round, &mut f)).collect())
}

/// Mean time per call over one round: as many calls as fit in `round`
/// (at least one).
fn time_round<R>(round: Duration, f: &mut impl FnMut() -> R) -> Duration {
    let started = Instant::now();
    let mut calls = 0u32;
    while calls == 0 || started.elapsed() < round {
        std::hint::black_box(f());
        calls += 1;
    }
    started.elapsed() / calls
}

pub fn median(mut times: Vec<Duration>) -> Duration {
    times.sort_unstable();
    times.get(times.len() / 2).copied().unwrap_or_default()
}
