//! What the API and the dashboard show of a pipeline: its definition,
//! status and counters, read from the live statistics.

use serde::Serialize;
use utoipa::ToSchema;

use super::managed::{Managed, ModuleRef, Origin, Snapshot, Status};
use crate::pipeline::stats::{StageCounters, get};

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct PipelineView {
    pub name: String,
    /// `api`, or the file the pipeline was read from.
    pub origin: String,
    #[schema(value_type = String, example = "running")]
    pub status: Status,
    /// Why it failed or could not start.
    pub error: Option<String>,
    /// After a failure: the restarts so far and when the next is due.
    pub restart: RestartView,
    pub source: String,
    pub sink: String,
    pub records: RecordCounts,
    /// Dead letters kept by the engine and not replayed.
    pub dead_letters_pending: u64,
    /// Records behind the end of the Kafka partitions it owns.
    pub consumer_lag: i64,
    pub stages: Vec<StageView>,
    pub sink_state: SinkState,
    /// The definition as sent or read.
    pub toml: String,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct RestartView {
    /// Failures in a row (0 once it runs healthily again).
    pub attempts: u32,
    /// Restarts since the engine started.
    pub total: u64,
    pub last_error: Option<String>,
    /// Milliseconds until the next attempt, while `restarting`.
    pub next_attempt_in_ms: Option<u64>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct RecordCounts {
    pub read: u64,
    pub written: u64,
    pub dead_lettered: u64,
    pub dropped: u64,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct SinkState {
    pub open_files: u64,
    pub files_committed: u64,
    pub bytes_written: u64,
    /// Documents waiting in the bulk buffer or for a retry.
    pub pending_items: u64,
    pub retries: u64,
    pub commit_p99_seconds: Option<f64>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct StageView {
    pub name: String,
    /// `name@version` for uploaded modules, the file name otherwise.
    pub module: String,
    pub version: Option<u32>,
    pub sha256: String,
    /// Earlier versions, oldest first: what rollback goes back to.
    #[schema(value_type = Vec<Object>)]
    pub previous: Vec<ModuleRef>,
    #[serde(flatten)]
    pub counters: StageCounters,
    /// Batch latency percentiles (bucket bounds).
    pub batch_p50_seconds: Option<f64>,
    pub batch_p99_seconds: Option<f64>,
}

impl PipelineView {
    pub fn of(managed: &Managed) -> PipelineView {
        let snapshot = managed.snapshot();
        let stats = &managed.stats;
        let sink = &stats.sink;
        let stages = snapshot
            .stages
            .iter()
            .map(|stage| {
                let s = &stage.stats;
                let history = snapshot.history.get(&stage.name).cloned().unwrap_or_default();
                StageView {
                    name: stage.name.clone(),
                    module: stage.module.name.clone(),
                    version: history.last().map(|r| r.version),
                    sha256: stage.module.hash.clone(),
                    previous: history[..history.len().saturating_sub(1)].to_vec(),
                    counters: s.counters(),
                    batch_p50_seconds: finite(s.batch_latency.quantile(0.5)),
                    batch_p99_seconds: finite(s.batch_latency.quantile(0.99)),
                }
            })
            .collect::<Vec<_>>();
        // Not running: show the stages as defined, with their pinned versions.
        let stages = if stages.is_empty() { defined_stages(&snapshot) } else { stages };
        PipelineView {
            name: managed.name.clone(),
            origin: match &managed.origin {
                Origin::Api => "api".to_string(),
                Origin::File(path) => path.display().to_string(),
            },
            status: managed.status(),
            error: snapshot.error.clone(),
            restart: {
                let restart = managed.restart_state();
                RestartView {
                    attempts: restart.attempts,
                    total: managed.restarts.total.load(std::sync::atomic::Ordering::Relaxed),
                    last_error: restart.last_error,
                    next_attempt_in_ms: restart
                        .next_attempt
                        .filter(|_| managed.status() == Status::Restarting)
                        .map(|at| {
                            at.duration_since(std::time::SystemTime::now()).unwrap_or_default().as_millis()
                                as u64
                        }),
                }
            },
            source: snapshot.config.source.describe(),
            sink: snapshot.config.sink.describe(&snapshot.config),
            records: RecordCounts {
                read: get(&stats.read),
                written: get(&stats.written),
                dead_lettered: get(&stats.dead_lettered),
                dropped: get(&stats.dropped),
            },
            dead_letters_pending: managed.dead_letters.pending(),
            consumer_lag: stats.total_lag(),
            stages,
            sink_state: SinkState {
                open_files: get(&sink.open_files),
                files_committed: get(&sink.files_committed),
                bytes_written: get(&sink.bytes_written),
                pending_items: get(&sink.pending_items),
                retries: get(&sink.retries),
                commit_p99_seconds: finite(sink.commit_latency.quantile(0.99)),
            },
            toml: snapshot.toml,
        }
    }
}

fn defined_stages(snapshot: &Snapshot) -> Vec<StageView> {
    snapshot
        .config
        .stages
        .iter()
        .map(|stage| {
            let history = snapshot.history.get(&stage.name).cloned().unwrap_or_default();
            let module = history
                .last()
                .map_or_else(|| stage.module.get_ref().clone(), |r| format!("{}@{}", r.name, r.version));
            StageView {
                name: stage.name.clone(),
                module,
                version: history.last().map(|r| r.version),
                sha256: String::new(),
                previous: history[..history.len().saturating_sub(1)].to_vec(),
                counters: StageCounters::default(),
                batch_p50_seconds: None,
                batch_p99_seconds: None,
            }
        })
        .collect()
}

/// JSON has no infinity: an observation above every bucket shows as absent.
fn finite(value: Option<f64>) -> Option<f64> {
    value.filter(|v| v.is_finite())
}
