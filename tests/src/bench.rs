//! Timing helpers for the benchmarks: two contenders measured side by side,
//! in alternating short rounds, so a change in the machine's load (another
//! process, CPU frequency) hits both alike and their ratio stays honest.

use std::time::{Duration, Instant};

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
