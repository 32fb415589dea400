//! A short history of every pipeline's rates, kept by the engine so a
//! chart opened now shows the recent past instead of filling from empty.
//!
//! Every [`SAMPLE_EVERY`] the counters of each pipeline are read and turned
//! into per-second rates; [`KEPT`] worth of samples are kept (15 minutes).

use std::collections::VecDeque;
use std::sync::{Mutex, Weak};
use std::time::{Duration, Instant};

use serde::Serialize;
use utoipa::ToSchema;

use super::Supervisor;
use crate::pipeline::stats::{PipelineStats, get};

pub const SAMPLE_EVERY: Duration = Duration::from_secs(5);
pub const KEPT: Duration = Duration::from_secs(15 * 60);

/// Rates over one sampling interval.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, ToSchema)]
pub struct RateSample {
    /// The end of the interval, in seconds since the Unix epoch.
    pub time: f64,
    pub read_per_second: f64,
    pub written_per_second: f64,
    pub dead_lettered_per_second: f64,
    pub dropped_per_second: f64,
}

/// The samples of one pipeline.
#[derive(Default)]
pub struct RateHistory {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    samples: VecDeque<RateSample>,
    last: Option<(Instant, [u64; 4])>,
}

impl RateHistory {
    /// Reads `stats` now and records the rates since the last reading.
    pub fn sample(&self, stats: &PipelineStats, now: Instant, time: f64) {
        let counters =
            [get(&stats.read), get(&stats.written), get(&stats.dead_lettered), get(&stats.dropped)];
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((then, before)) = inner.last {
            let seconds = now.duration_since(then).as_secs_f64().max(1e-3);
            // Counters only grow; a reset (none today) would read as zero.
            let rate = |i: usize| counters[i].saturating_sub(before[i]) as f64 / seconds;
            inner.samples.push_back(RateSample {
                time,
                read_per_second: rate(0),
                written_per_second: rate(1),
                dead_lettered_per_second: rate(2),
                dropped_per_second: rate(3),
            });
            let kept = (KEPT.as_secs() / SAMPLE_EVERY.as_secs()) as usize;
            while inner.samples.len() > kept {
                inner.samples.pop_front();
            }
        }
        inner.last = Some((now, counters));
    }

    pub fn samples(&self) -> Vec<RateSample> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner()).samples.iter().copied().collect()
    }
}

/// Sums the samples of several pipelines taken at the same ticks.
pub fn total(histories: &[Vec<RateSample>]) -> Vec<RateSample> {
    let mut total: Vec<RateSample> = Vec::new();
    for samples in histories {
        // Pipelines created later have fewer samples: align on the newest.
        let longest = total.len().max(samples.len());
        let mut aligned = vec![RateSample::default(); longest - total.len()];
        aligned.append(&mut total);
        total = aligned;
        let offset = longest - samples.len();
        for (slot, sample) in total[offset..].iter_mut().zip(samples) {
            slot.time = slot.time.max(sample.time);
            slot.read_per_second += sample.read_per_second;
            slot.written_per_second += sample.written_per_second;
            slot.dead_lettered_per_second += sample.dead_lettered_per_second;
            slot.dropped_per_second += sample.dropped_per_second;
        }
    }
    total.retain(|s| s.time > 0.0);
    total
}

/// Samples every pipeline of `supervisor` until it is gone.
pub(super) fn spawn_sampler(supervisor: Weak<Supervisor>) {
    let Ok(runtime) = tokio::runtime::Handle::try_current() else { return };
    runtime.spawn(async move {
        let mut ticker = tokio::time::interval(SAMPLE_EVERY);
        loop {
            ticker.tick().await;
            let Some(supervisor) = supervisor.upgrade() else { return };
            let now = Instant::now();
            let time = crate::record::now_millis() as f64 / 1000.0;
            for managed in supervisor.list() {
                managed.history.sample(&managed.stats, now, time);
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::stats::add;

    #[test]
    fn rates_are_per_second_between_samples() {
        let history = RateHistory::default();
        let stats = PipelineStats::default();
        let start = Instant::now();
        history.sample(&stats, start, 100.0);
        add(&stats.read, 50);
        add(&stats.written, 40);
        history.sample(&stats, start + Duration::from_secs(5), 105.0);
        let samples = history.samples();
        assert_eq!(samples.len(), 1, "the first reading only sets the baseline");
        assert_eq!(
            (samples[0].time, samples[0].read_per_second, samples[0].written_per_second),
            (105.0, 10.0, 8.0)
        );
    }

    #[test]
    fn keeps_fifteen_minutes() {
        let history = RateHistory::default();
        let stats = PipelineStats::default();
        let start = Instant::now();
        for i in 0..400u64 {
            history.sample(&stats, start + SAMPLE_EVERY * i as u32, i as f64);
        }
        assert_eq!(history.samples().len(), 180);
    }

    #[test]
    fn totals_align_on_the_newest_samples() {
        let sample = |time: f64, read: f64| RateSample { time, read_per_second: read, ..Default::default() };
        let old = vec![sample(1.0, 1.0), sample(2.0, 1.0), sample(3.0, 1.0)];
        let new = vec![sample(3.0, 5.0)];
        let total = total(&[old, new]);
        assert_eq!(total.iter().map(|s| s.read_per_second).collect::<Vec<_>>(), [1.0, 1.0, 6.0]);
    }
}
