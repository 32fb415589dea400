//! Counters a running pipeline keeps, read by the run summary (and, later,
//! by the metrics endpoint).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

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
}

/// What sinks that write files report.
#[derive(Debug, Default)]
pub struct SinkStats {
    /// Files being written now.
    pub open_files: AtomicU64,
    pub files_committed: AtomicU64,
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
}

pub(crate) fn add(counter: &AtomicU64, n: usize) {
    counter.fetch_add(n as u64, Ordering::Relaxed);
}

pub(crate) fn get(counter: &AtomicU64) -> u64 {
    counter.load(Ordering::Relaxed)
}
