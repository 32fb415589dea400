//! Counters a running pipeline keeps, read by the run summary, the API
//! and the metrics endpoint.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

#[derive(Debug, Default)]
pub struct PipelineStats {
    /// Records the source emitted.
    pub read: AtomicU64,
    /// Records the sink made durable.
    pub written: AtomicU64,
    /// Records sent to the dead-letter destination.
    pub dead_lettered: AtomicU64,
    /// Records dropped by an `on_error = "drop"` stage.
    pub dropped: AtomicU64,
    pub sink: SinkStats,
    /// Records behind the end of each owned Kafka partition, by topic and
    /// partition (refreshed every few seconds; empty for other sources).
    pub consumer_lag: Mutex<std::collections::BTreeMap<(String, i32), i64>>,
    /// The Kafka partitions this engine reads now.
    pub owned: Mutex<std::collections::BTreeSet<(String, i32)>>,
    /// Every partition of the source's topics, as its client last saw them.
    pub known_partitions: Mutex<std::collections::BTreeSet<(String, i32)>>,
    /// This engine's membership in the source's consumer group, once joined.
    pub group_member: Mutex<Option<GroupMember>>,
    /// Set in cluster mode when partitions of a gone engine stayed without
    /// an owner: the source leaves and rejoins its group, which makes the
    /// coordinator assign every partition again.
    pub rejoin_requested: AtomicBool,
}

/// A consumer's place in its group, published in cluster mode so that the
/// other engines can remove it from the group should this engine die.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct GroupMember {
    pub group: String,
    pub member_id: String,
    /// After this long without heartbeats the group coordinator drops the
    /// member on its own.
    pub session_timeout_ms: u64,
}

impl PipelineStats {
    /// The partitions owned now, each with its lag when known.
    pub fn owned_partitions(&self) -> Vec<(String, i32, Option<i64>)> {
        let lag = self.consumer_lag.lock().unwrap_or_else(|e| e.into_inner()).clone();
        self.owned
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|(topic, partition)| {
                (topic.clone(), *partition, lag.get(&(topic.clone(), *partition)).copied())
            })
            .collect()
    }

    pub fn total_lag(&self) -> i64 {
        self.consumer_lag.lock().unwrap_or_else(|e| e.into_inner()).values().sum()
    }
}

/// What sinks that write files report.
#[derive(Debug, Default)]
pub struct SinkStats {
    /// Files being written now.
    pub open_files: AtomicU64,
    pub files_committed: AtomicU64,
    /// Files thrown away because another owner took their partition.
    pub files_fenced: AtomicU64,
    /// Bytes of committed files.
    pub bytes_written: AtomicU64,
    /// The same records' encoded size before compression.
    pub bytes_uncompressed: AtomicU64,
    /// Time spent committing files (close, sync, rename).
    pub commit_nanos: AtomicU64,
    /// Redelivered records the sink had already written.
    pub duplicates_skipped: AtomicU64,
    /// Requests sent again (a busy or unreachable server).
    pub retries: AtomicU64,
    /// Documents waiting in the bulk buffer or for a retry.
    pub pending_items: AtomicU64,
    /// Time from a batch reaching the sink to its records being durable
    /// (file commits, bulk requests).
    pub commit_latency: LatencyHistogram,
}

#[derive(Debug, Default)]
pub struct StageStats {
    pub records_in: AtomicU64,
    pub records_out: AtomicU64,
    pub records_failed: AtomicU64,
    pub calls: AtomicU64,
    pub failed_calls: AtomicU64,
    /// Instances discarded after a failed call and rebuilt.
    pub recycles: AtomicU64,
    /// Nanoseconds spent inside the transform.
    pub busy_nanos: AtomicU64,
    pub quarantined: AtomicBool,
    /// Records a quarantined stage holds until a new version is deployed.
    pub held: AtomicU64,
    /// Worker threads running the stage (`parallelism`).
    pub workers: AtomicU64,
    /// Time to process one batch (all calls, retries and recycles).
    pub batch_latency: LatencyHistogram,
    /// The module running now (it changes when a new version is swapped in).
    module: Mutex<String>,
}

/// A stage's counters read at one moment, as reports and the API show them.
#[derive(Debug, Clone, Default, serde::Serialize, utoipa::ToSchema)]
pub struct StageCounters {
    pub records_in: u64,
    pub records_out: u64,
    pub records_failed: u64,
    pub calls: u64,
    pub failed_calls: u64,
    pub recycles: u64,
    pub quarantined: bool,
    /// Records a quarantined stage holds until a new version is deployed.
    pub held: u64,
    /// Worker threads running the stage, each with its own instance.
    pub workers: u64,
    /// Time inside the transform per input record (summed over workers).
    pub nanos_per_record: u64,
}

impl StageStats {
    pub fn counters(&self) -> StageCounters {
        let records_in = get(&self.records_in);
        StageCounters {
            records_in,
            records_out: get(&self.records_out),
            records_failed: get(&self.records_failed),
            calls: get(&self.calls),
            failed_calls: get(&self.failed_calls),
            recycles: get(&self.recycles),
            quarantined: self.quarantined.load(Ordering::Relaxed),
            held: get(&self.held),
            workers: get(&self.workers),
            nanos_per_record: get(&self.busy_nanos).checked_div(records_in).unwrap_or(0),
        }
    }

    pub fn module_name(&self) -> String {
        self.module.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn set_module(&self, name: &str) {
        *self.module.lock().unwrap_or_else(|e| e.into_inner()) = name.to_string();
    }
}

/// Upper bounds of the latency buckets, in seconds: 50 µs to 10 s.
pub const LATENCY_BUCKETS: [f64; 16] = [
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
];

/// A latency histogram with fixed buckets, lock-free to record into; the
/// metrics endpoint exports it as a Prometheus histogram, the API as
/// percentiles.
#[derive(Debug, Default)]
pub struct LatencyHistogram {
    /// Per bucket (not cumulative); the last counts values above every bound.
    buckets: [AtomicU64; LATENCY_BUCKETS.len() + 1],
    sum_nanos: AtomicU64,
}

impl LatencyHistogram {
    pub fn observe(&self, elapsed: Duration) {
        let seconds = elapsed.as_secs_f64();
        let bucket =
            LATENCY_BUCKETS.iter().position(|&bound| seconds <= bound).unwrap_or(LATENCY_BUCKETS.len());
        self.buckets[bucket].fetch_add(1, Ordering::Relaxed);
        self.sum_nanos.fetch_add(elapsed.as_nanos() as u64, Ordering::Relaxed);
    }

    /// Cumulative counts per bound (Prometheus `le` buckets), without `+Inf`.
    pub fn cumulative(&self) -> Vec<(f64, u64)> {
        let mut total = 0;
        LATENCY_BUCKETS
            .iter()
            .zip(&self.buckets)
            .map(|(&bound, count)| {
                total += get(count);
                (bound, total)
            })
            .collect()
    }

    pub fn count(&self) -> u64 {
        self.buckets.iter().map(get).sum()
    }

    pub fn sum_seconds(&self) -> f64 {
        get(&self.sum_nanos) as f64 / 1e9
    }

    /// The bucket bound below which `q` (0–1) of the observations fall;
    /// `None` without observations.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        let count = self.count();
        if count == 0 {
            return None;
        }
        let rank = (q * count as f64).ceil().max(1.0) as u64;
        let found = self.cumulative().into_iter().find(|&(_, total)| total >= rank).map(|(bound, _)| bound);
        Some(found.unwrap_or(f64::INFINITY))
    }
}
pub(crate) fn add(counter: &AtomicU64, n: usize) {
    counter.fetch_add(n as u64, Ordering::Relaxed);
}

pub(crate) fn get(counter: &AtomicU64) -> u64 {
    counter.load(Ordering::Relaxed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_and_quantiles() {
        let histogram = LatencyHistogram::default();
        assert_eq!(histogram.quantile(0.5), None);
        for _ in 0..98 {
            histogram.observe(Duration::from_micros(80));
        }
        histogram.observe(Duration::from_millis(3));
        histogram.observe(Duration::from_secs(30));
        assert_eq!(histogram.count(), 100);
        assert_eq!(histogram.quantile(0.5), Some(0.0001));
        assert_eq!(histogram.quantile(0.99), Some(0.005));
        assert_eq!(histogram.quantile(1.0), Some(f64::INFINITY));
        let cumulative = histogram.cumulative();
        assert_eq!(cumulative[0], (0.00005, 0));
        assert_eq!(cumulative.last(), Some(&(10.0, 99)));
        assert!((histogram.sum_seconds() - (98.0 * 80e-6 + 0.003 + 30.0)).abs() < 1e-9);
    }
}
