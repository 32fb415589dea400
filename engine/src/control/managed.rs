//! One pipeline under supervision: its definition and state, its status,
//! and the bookkeeping of restarts after failures (attempts, backoff, the
//! last error). The [`super::supervisor`] changes pipelines; this is what
//! it changes, and what views and metrics read.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::config::PipelineConfig;
use crate::pipeline::PipelineReport;
use crate::pipeline::controls::{DeadLetterLog, PipelineControls};
use crate::pipeline::stats::{PipelineStats, StageStats};
use crate::wasm::Module;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Starting,
    Running,
    Paused,
    /// Its source ended and everything was written.
    Finished,
    Failed,
    /// It failed and starts again after a backoff.
    Restarting,
}

impl Status {
    pub const ALL: [Status; 6] = [
        Status::Starting,
        Status::Running,
        Status::Paused,
        Status::Finished,
        Status::Failed,
        Status::Restarting,
    ];
}

/// The first wait before restarting a failed pipeline; it doubles with each
/// failure in a row, up to [`RESTART_MAX_BACKOFF`].
const RESTART_FIRST_BACKOFF: Duration = Duration::from_secs(1);
const RESTART_MAX_BACKOFF: Duration = Duration::from_secs(60);
/// A run this long counts as healthy: the next failure starts the backoff over.
const RESTART_HEALTHY_AFTER: Duration = Duration::from_secs(60);

/// Restarts of a failed pipeline.
#[derive(Default)]
pub struct Restarts {
    /// Every restart since the engine started.
    pub total: AtomicU64,
    state: Mutex<RestartState>,
}

#[derive(Default, Clone)]
pub struct RestartState {
    /// Failures in a row.
    pub attempts: u32,
    pub last_error: Option<String>,
    pub next_attempt: Option<SystemTime>,
    pub(super) cancel: Option<CancellationToken>,
}

/// Where a pipeline's definition lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    File(PathBuf),
    Api,
}

/// A stage's module from the registry, as recorded in the deploy history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModuleRef {
    pub name: String,
    pub version: u32,
}

/// One pipeline under supervision.
pub struct Managed {
    pub name: String,
    pub origin: Origin,
    /// Counters and dead letters outlive runs, so they carry on across
    /// pause/resume and redeploys.
    pub stats: Arc<PipelineStats>,
    pub dead_letters: Arc<DeadLetterLog>,
    pub restarts: Restarts,
    /// Recent rates, for charts.
    pub history: super::history::RateHistory,
    pub(super) state: Mutex<ManagedState>,
    pub(super) status: watch::Sender<Status>,
    /// Serialises changes to this pipeline.
    pub(super) op: tokio::sync::Mutex<()>,
}

pub(super) struct ManagedState {
    pub(super) toml: String,
    pub(super) config: PipelineConfig,
    pub(super) error: Option<String>,
    pub(super) history: BTreeMap<String, Vec<ModuleRef>>,
    pub(super) stages: Vec<StageInfo>,
    pub(super) running: Option<Running>,
    pub(super) report: Option<PipelineReport>,
}

#[derive(Clone)]
pub(crate) struct StageInfo {
    pub name: String,
    pub module: Arc<Module>,
    pub stats: Arc<StageStats>,
}

pub(super) struct Running {
    pub(super) cancel: CancellationToken,
    pub(super) controls: Arc<PipelineControls>,
    pub(super) task: tokio::task::JoinHandle<()>,
}

impl Managed {
    pub fn status(&self) -> Status {
        *self.status.borrow()
    }

    pub(super) fn lock(&self) -> std::sync::MutexGuard<'_, ManagedState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Called by the run task when the run ends. `restart` (how long the
    /// run lasted) is set when a failure may be retried; returns the
    /// backoff to restart after.
    pub(super) fn finish(
        &self,
        result: anyhow::Result<PipelineReport>,
        restart: Option<Duration>,
    ) -> Option<Duration> {
        let mut state = self.lock();
        let stopped_on_request = state.running.is_none();
        state.running = None;
        let error = match result {
            Ok(report) => {
                state.report = Some(report);
                None
            }
            Err(error) => {
                tracing::error!(pipeline = %self.name, "pipeline failed: {error:#}");
                state.error = Some(format!("{error:#}"));
                Some(error)
            }
        };
        drop(state);
        match (error, restart) {
            (Some(error), Some(lasted)) if !crate::pipeline::stopped_on_purpose(&error) => {
                if lasted >= RESTART_HEALTHY_AFTER {
                    self.restarts.lock().attempts = 0;
                }
                let backoff = self.failed_again(format!("{error:#}"));
                tracing::warn!(pipeline = %self.name, backoff_ms = backoff.as_millis() as u64, "pipeline restarts after a backoff");
                Some(backoff)
            }
            (Some(_), _) => {
                self.status.send_replace(Status::Failed);
                None
            }
            (None, _) => {
                if !stopped_on_request {
                    self.status.send_replace(Status::Finished);
                }
                None
            }
        }
    }

    /// Records one more failure in a row; returns the backoff before the
    /// next attempt.
    pub(super) fn failed_again(&self, error: String) -> Duration {
        let attempts = {
            let mut restart = self.restarts.lock();
            restart.attempts += 1;
            restart.last_error = Some(error.clone());
            restart.attempts
        };
        self.lock().error = Some(error);
        self.status.send_replace(Status::Restarting);
        RESTART_FIRST_BACKOFF.saturating_mul(1 << (attempts - 1).min(16)).min(RESTART_MAX_BACKOFF)
    }

    pub(super) fn cancel_restart(&self) {
        let mut restart = self.restarts.lock();
        restart.next_attempt = None;
        if let Some(cancel) = restart.cancel.take() {
            cancel.cancel();
        }
    }

    /// Restart attempts, the last error and when the next attempt is due.
    pub fn restart_state(&self) -> RestartState {
        self.restarts.lock().clone()
    }

    /// The running pipeline's controls (tap, swaps), if it runs.
    pub fn snapshot_controls(&self) -> Option<Arc<PipelineControls>> {
        self.lock().running.as_ref().map(|r| r.controls.clone())
    }

    pub(crate) fn snapshot(&self) -> Snapshot {
        let state = self.lock();
        Snapshot {
            toml: state.toml.clone(),
            config: state.config.clone(),
            error: state.error.clone(),
            history: state.history.clone(),
            stages: state.stages.clone(),
        }
    }
}

impl Restarts {
    pub(super) fn lock(&self) -> std::sync::MutexGuard<'_, RestartState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A consistent copy of a pipeline's state for views and metrics.
pub(crate) struct Snapshot {
    pub toml: String,
    pub config: PipelineConfig,
    pub error: Option<String>,
    pub history: BTreeMap<String, Vec<ModuleRef>>,
    pub stages: Vec<StageInfo>,
}
