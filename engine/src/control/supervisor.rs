//! The supervisor: the pipelines this engine runs — from files named on the
//! command line and from the API — and every change to them (deploy, pause,
//! resume, delete, module swaps and rollbacks, dead-letter replay).
//!
//! Changes to one pipeline are serialised; a change that fails leaves the
//! pipeline as it was. Pipelines created through the API are recorded in
//! the state store and come back, paused or running, after a restart.
//!
//! A Kafka-sourced pipeline that fails (a sink that cannot write, a broker
//! gone for longer than the clients retry) is restarted with exponential
//! backoff, from its committed offsets; its status is `restarting` with
//! the attempts and the last error meanwhile. Pipelines reading files are
//! not restarted (they would read their input again from the start), and
//! neither is one a stage stopped on purpose (`on_error = "stop"`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime};

use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::managed::{Managed, ManagedState, ModuleRef, Origin, Restarts, Running, StageInfo, Status};
use super::modules::{ModuleError, ModuleRegistry, ModuleVersion, validate_name};
use super::store::StateStore;
use super::view::PipelineView;
use crate::api::ingest::Ingest;
use crate::config::{Diagnostics, PipelineConfig, StageConfig};
use crate::pipeline::controls::DeadLetterLog;
use crate::pipeline::stage::{Stage, config_diagnostics};
use crate::pipeline::stats::{PipelineStats, StageStats};
use crate::pipeline::{History, Pipeline, PipelineReport};
use crate::wasm::{LoadError, Module, WasmHost};

/// Where the engine's pipelines find its own Kafka cluster and lake.
#[derive(Default)]
pub struct EngineEnv {
    pub bootstrap: Option<String>,
    /// The engine's own cluster, if it started one: it creates the topics
    /// of pipelines deployed later there.
    pub embedded: Option<crate::kafka::embedded::TopicMaker>,
    pub topic_partitions: i32,
    pub lake_url: String,
    /// New pipelines' source topics are opened for REST ingest.
    pub ingest: Option<Arc<Ingest>>,
}

impl EngineEnv {
    fn apply(&self, config: &mut PipelineConfig) {
        if let Some(bootstrap) = &self.bootstrap {
            config.source.use_engine_cluster(bootstrap, self.embedded.is_some());
            config.sink.use_engine_cluster(bootstrap);
            config.dead_letter.use_engine_cluster(bootstrap);
        }
        config.source.use_engine_lake(&self.lake_url);
        config.sink.use_engine_lake(&self.lake_url);
    }
}

/// What went wrong with a control-plane request; the API maps each to a status.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    BadRequest(String),
    #[error("the pipeline definition has errors")]
    Invalid(Diagnostics),
    #[error("{0}")]
    Conflict(String),
    /// The definition is valid but cannot run (a module's `init` refused
    /// its config, a lookup table is missing, …).
    #[error("{0:#}")]
    Unusable(anyhow::Error),
    #[error(transparent)]
    Module(#[from] ModuleError),
    #[error("{0:#}")]
    Internal(anyhow::Error),
}

type Result<T, E = ControlError> = std::result::Result<T, E>;

/// What the store keeps of an API pipeline.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct StoredPipeline {
    pub(super) toml: String,
    pub(super) paused: bool,
    /// Per stage, the registry versions deployed, oldest first; the last
    /// is running. Stages with file modules are absent.
    #[serde(default)]
    pub(super) history: BTreeMap<String, Vec<ModuleRef>>,
}

pub struct Supervisor {
    host: WasmHost,
    pub(super) store: Arc<StateStore>,
    pub modules: ModuleRegistry,
    pub(super) env: EngineEnv,
    pub(super) pipelines: RwLock<BTreeMap<String, Arc<Managed>>>,
    /// Serialises creating and deleting pipelines.
    pub(super) membership: tokio::sync::Mutex<()>,
    pub(super) shutdown: CancellationToken,
    /// Where this engine's API listens, for the cluster view.
    pub(super) address: Mutex<String>,
    pub(super) started_at_ms: i64,
    /// What the consumer-group watch remembers between rounds.
    pub(super) group_watch: super::cluster::GroupWatch,
}

impl Supervisor {
    pub fn new(
        host: WasmHost,
        store: Arc<StateStore>,
        env: EngineEnv,
        shutdown: CancellationToken,
        max_module_bytes: usize,
    ) -> Arc<Self> {
        let mut modules = ModuleRegistry::new(store.clone(), host.clone());
        modules.max_bytes = max_module_bytes;
        let supervisor = Arc::new(Supervisor {
            host,
            store,
            modules,
            env,
            pipelines: RwLock::new(BTreeMap::new()),
            membership: tokio::sync::Mutex::new(()),
            shutdown,
            address: Mutex::new(String::new()),
            started_at_ms: crate::record::now_millis(),
            group_watch: Default::default(),
        });
        super::history::spawn_sampler(Arc::downgrade(&supervisor));
        supervisor
    }

    /// Starts pipelines read from files (`sluice run`/`serve` arguments).
    pub async fn start_file_pipelines(self: &Arc<Self>, configs: Vec<PipelineConfig>) -> anyhow::Result<()> {
        let _membership = self.membership.lock().await;
        for config in configs {
            let toml = std::fs::read_to_string(&config.file).unwrap_or_default();
            let origin = Origin::File(config.file.clone());
            let managed =
                self.insert(config.name.clone(), origin, toml, config, BTreeMap::new(), &Carry::default());
            self.start(&managed).await.map_err(|e| anyhow::anyhow!("{e}"))?;
        }
        Ok(())
    }

    /// Brings back the pipelines created through the API before a restart.
    pub async fn restore(self: &Arc<Self>) -> anyhow::Result<()> {
        let _membership = self.membership.lock().await;
        for (key, stored) in self.store.scan::<StoredPipeline>("pipeline/") {
            let name = key.trim_start_matches("pipeline/").to_string();
            if self.get(&name).is_some() {
                tracing::warn!(pipeline = %name, "a pipeline file defines this name too; the stored definition is not restored");
                continue;
            }
            let config = match self.parse(&name, &stored.toml) {
                Ok(config) => config,
                Err(e) => {
                    tracing::error!(pipeline = %name, "stored definition no longer valid: {e}");
                    continue;
                }
            };
            let managed = self.insert(
                name.clone(),
                Origin::Api,
                stored.toml,
                config,
                stored.history,
                &Carry::default(),
            );
            if stored.paused {
                managed.status.send_replace(Status::Paused);
            } else if let Err(e) = self.start(&managed).await {
                tracing::error!(pipeline = %name, "cannot start: {e}");
            }
        }
        Ok(())
    }

    pub fn get(&self, name: &str) -> Option<Arc<Managed>> {
        self.read().get(name).cloned()
    }

    pub fn list(&self) -> Vec<Arc<Managed>> {
        self.read().values().cloned().collect()
    }

    pub(super) fn read(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<String, Arc<Managed>>> {
        self.pipelines.read().unwrap_or_else(|e| e.into_inner())
    }

    pub(super) fn require(&self, name: &str) -> Result<Arc<Managed>> {
        self.get(name).ok_or_else(|| ControlError::NotFound(format!("no pipeline named `{name}`")))
    }

    /// The dead letters kept for `pipeline` (see [`StateStore::dead_letter_log`]).
    pub(super) fn dead_letter_log(&self, pipeline: &str) -> Arc<DeadLetterLog> {
        self.store.dead_letter_log(pipeline)
    }

    /// Where an API pipeline's relative paths (lookup files, …) resolve.
    pub(super) fn api_file(&self, name: &str) -> PathBuf {
        self.store.dir().join("pipelines").join(format!("{name}.toml"))
    }

    pub(super) fn insert(
        &self,
        name: String,
        origin: Origin,
        toml: String,
        config: PipelineConfig,
        history: BTreeMap<String, Vec<ModuleRef>>,
        carry: &Carry,
    ) -> Arc<Managed> {
        let managed = Arc::new(Managed {
            name: name.clone(),
            origin,
            stats: carry.stats.clone().unwrap_or_default(),
            dead_letters: carry.dead_letters.clone().unwrap_or_else(|| self.dead_letter_log(&name)),
            restarts: Restarts::default(),
            history: Default::default(),
            state: Mutex::new(ManagedState {
                toml,
                config,
                error: None,
                history,
                stages: Vec::new(),
                running: None,
                report: None,
            }),
            status: watch::Sender::new(Status::Starting),
            op: tokio::sync::Mutex::new(()),
        });
        // The first sample is the baseline the next one's rates count from:
        // take it now, so traffic right after the start shows in the history.
        managed.history.sample(
            &managed.stats,
            std::time::Instant::now(),
            crate::record::now_millis() as f64 / 1e3,
        );
        self.pipelines.write().unwrap_or_else(|e| e.into_inner()).insert(name, managed.clone());
        managed
    }

    /// Creates or replaces an API pipeline from its TOML. A replaced
    /// pipeline drains and stops before the new definition starts; its
    /// consumer group carries on where it stopped.
    pub async fn apply(self: &Arc<Self>, name: &str, toml: &str) -> Result<(PipelineView, bool)> {
        validate_name("pipeline", name).map_err(ControlError::BadRequest)?;
        let config = self.parse(name, toml)?;
        let _membership = self.membership.lock().await;
        let existing = self.get(name);
        if let Some(existing) = &existing
            && let Origin::File(path) = &existing.origin
        {
            return Err(ControlError::Conflict(format!(
                "pipeline `{name}` is defined in {}; change it there",
                path.display()
            )));
        }
        // Build before stopping the old one: a definition that cannot run
        // leaves the running pipeline alone.
        // Counters and dead letters carry on across a replacement.
        let carry = Carry {
            stats: Some(existing.as_ref().map_or_else(Default::default, |e| e.stats.clone())),
            dead_letters: Some(
                existing.as_ref().map_or_else(|| self.dead_letter_log(name), |e| e.dead_letters.clone()),
            ),
            stages: BTreeMap::new(),
        };
        let mut history = BTreeMap::new();
        let (pipeline, stages) = self.build(config.clone(), &mut history, carry.clone()).await?;
        self.open_topics(&config).await;
        let created = existing.is_none();
        let managed = match existing {
            Some(existing) => {
                let _op = existing.op.lock().await;
                self.stop(&existing, None).await;
                {
                    let mut state = existing.lock();
                    state.toml = toml.to_string();
                    state.config = config;
                    state.history = history;
                    state.error = None;
                }
                self.launch(&existing, pipeline, stages);
                existing.clone()
            }
            None => {
                let managed =
                    self.insert(name.to_string(), Origin::Api, toml.to_string(), config, history, &carry);
                self.launch(&managed, pipeline, stages);
                managed
            }
        };
        self.persist(&managed).map_err(ControlError::Internal)?;
        Ok((self.view(&managed), created))
    }

    /// Stops a pipeline (draining what it holds) and remembers it paused.
    pub async fn pause(&self, name: &str) -> Result<PipelineView> {
        let managed = self.require(name)?;
        let _op = managed.op.lock().await;
        self.stop(&managed, Some(Status::Paused)).await;
        self.persist(&managed).map_err(ControlError::Internal)?;
        Ok(self.view(&managed))
    }

    pub async fn resume(self: &Arc<Self>, name: &str) -> Result<PipelineView> {
        let managed = self.require(name)?;
        let _op = managed.op.lock().await;
        if matches!(*managed.status.borrow(), Status::Running | Status::Starting) {
            return Ok(self.view(&managed));
        }
        self.start(&managed).await?;
        self.persist(&managed).map_err(ControlError::Internal)?;
        Ok(self.view(&managed))
    }

    pub async fn delete(&self, name: &str) -> Result<()> {
        let _membership = self.membership.lock().await;
        let managed = self.require(name)?;
        if let Origin::File(path) = &managed.origin {
            return Err(ControlError::Conflict(format!(
                "pipeline `{name}` is defined in {}; stop the engine and remove it from the command line",
                path.display()
            )));
        }
        let _op = managed.op.lock().await;
        self.stop(&managed, Some(Status::Paused)).await;
        self.store.delete(&format!("pipeline/{name}")).map_err(ControlError::Internal)?;
        // A pipeline created later under this name starts with none.
        let _ = std::fs::remove_file(self.store.dir().join("dead-letters").join(format!("{name}.ndjson")));
        self.pipelines.write().unwrap_or_else(|e| e.into_inner()).remove(name);
        Ok(())
    }

    /// Pipelines whose stages run `module` (any version).
    pub fn users_of(&self, module: &str) -> Vec<String> {
        self.list()
            .into_iter()
            .filter(|m| {
                let state = m.lock();
                state.history.values().any(|h| h.last().is_some_and(|r| r.name == module))
            })
            .map(|m| m.name.clone())
            .collect()
    }

    /// Builds every part of a pipeline (compiling modules and calling
    /// `init` on a blocking thread), resolving registry modules through
    /// `history` and recording the versions picked.
    pub(super) async fn build(
        &self,
        config: PipelineConfig,
        history: &mut BTreeMap<String, Vec<ModuleRef>>,
        carry: Carry,
    ) -> Result<(Pipeline, Vec<StageInfo>)> {
        // The definition is kept as written; the engine's cluster and lake
        // are filled in for each run.
        let mut config = config;
        self.env.apply(&mut config);
        let source = config.source.build(&config).map_err(|e| ControlError::Unusable(e.context("source")))?;
        let mut stages = Vec::new();
        let mut infos = Vec::new();
        for stage_config in &config.stages {
            let metered = stage_config.max_fuel.is_some();
            let reference = stage_config.module.get_ref();
            let pinned = history.get(&stage_config.name).and_then(|h| h.last()).cloned();
            let registry = match pinned {
                Some(pinned) => Some(self.modules.version(&pinned.name, Some(pinned.version))?),
                None => match ModuleRegistry::parse_reference(reference) {
                    Some((name, version)) if !self.modules.versions(name).is_empty() => {
                        Some(self.modules.version(name, version)?)
                    }
                    _ => None,
                },
            };
            let module = match &registry {
                Some(version) => {
                    history.entry(stage_config.name.clone()).or_insert_with(|| {
                        vec![ModuleRef { name: version.name.clone(), version: version.version }]
                    });
                    self.load_blocking(version.clone(), metered).await?
                }
                None => {
                    let host = self.host.clone();
                    let path = config.resolve(Path::new(reference));
                    tokio::task::spawn_blocking(move || host.load_file(&path, metered))
                        .await
                        .map_err(|e| ControlError::Internal(e.into()))?
                        .map_err(|e| {
                            ControlError::Unusable(anyhow::anyhow!("stage `{}`: {e}", stage_config.name))
                        })?
                }
            };
            let mut stage = build_stage(stage_config, &config, module.clone()).await?;
            if let Some(stats) = carry.stages.get(&stage_config.name) {
                stats.set_module(&module.name);
                stage.stats = stats.clone();
            }
            infos.push(StageInfo { name: stage.name.clone(), module, stats: stage.stats.clone() });
            stages.push(stage);
        }
        let history = History { stats: carry.stats, dead_letters: carry.dead_letters };
        Ok((Pipeline::assemble(config, source, stages, history), infos))
    }

    pub(super) async fn load_blocking(&self, version: ModuleVersion, metered: bool) -> Result<Arc<Module>> {
        let registry_host = self.host.clone();
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || ModuleRegistry::new(store, registry_host).load(&version, metered))
            .await
            .map_err(|e| ControlError::Internal(e.into()))?
            .map_err(ControlError::from)
    }

    /// Builds and launches a stopped pipeline from its current definition.
    pub(super) async fn start(self: &Arc<Self>, managed: &Arc<Managed>) -> Result<()> {
        managed.cancel_restart();
        managed.status.send_replace(Status::Starting);
        let (config, mut history, carry) = {
            let state = managed.lock();
            let carry = Carry {
                stats: Some(managed.stats.clone()),
                dead_letters: Some(managed.dead_letters.clone()),
                stages: state.stages.iter().map(|s| (s.name.clone(), s.stats.clone())).collect(),
            };
            (state.config.clone(), state.history.clone(), carry)
        };
        self.open_topics(&config).await;
        match self.build(config, &mut history, carry).await {
            Ok((pipeline, stages)) => {
                managed.lock().history = history;
                self.launch(managed, pipeline, stages);
                Ok(())
            }
            Err(error) => {
                managed.lock().error = Some(error.to_string());
                managed.status.send_replace(Status::Failed);
                Err(error)
            }
        }
    }

    pub(super) fn launch(
        self: &Arc<Self>,
        managed: &Arc<Managed>,
        mut pipeline: Pipeline,
        stages: Vec<StageInfo>,
    ) {
        // Building compiled modules and ran `init`: return what that freed.
        crate::memory::release_free_memory();
        // Counters carry on from earlier runs.
        pipeline.stats = managed.stats.clone();
        // Only a source that resumes from committed offsets can run again
        // without reading what was delivered.
        let restartable = matches!(managed.lock().config.source, crate::sources::SourceConfig::Kafka(_));
        let cancel = self.shutdown.child_token();
        let controls = pipeline.controls.clone();
        // Held while spawning: a run that ends at once must find itself
        // recorded as running, or it would look stopped on request.
        let mut state = managed.lock();
        state.stages = stages;
        state.error = None;
        managed.status.send_replace(Status::Running);
        let task = {
            let managed = managed.clone();
            let cancel = cancel.clone();
            let supervisor = self.clone();
            tokio::spawn(async move {
                let started = Instant::now();
                let result = pipeline.run(cancel).await;
                let restart = restartable && !supervisor.shutdown.is_cancelled();
                if let Some(backoff) = managed.finish(result, restart.then(|| started.elapsed())) {
                    supervisor.restart_later(managed, backoff);
                }
            })
        };
        state.running = Some(Running { cancel, controls, task });
        drop(state);
        tracing::info!(pipeline = %managed.name, "pipeline running");
    }

    /// Starts a failed pipeline again after `backoff`, unless something
    /// else (a pause, a redeploy, shutdown) happens to it first.
    fn restart_later(self: &Arc<Self>, managed: Arc<Managed>, backoff: Duration) {
        let cancel = self.shutdown.child_token();
        {
            let mut restart = managed.restarts.lock();
            restart.next_attempt = Some(SystemTime::now() + backoff);
            restart.cancel = Some(cancel.clone());
        }
        let supervisor = self.clone();
        tokio::spawn(async move {
            tokio::select! {
                _ = tokio::time::sleep(backoff) => {}
                _ = cancel.cancelled() => return,
            }
            let _op = managed.op.lock().await;
            if managed.status() != Status::Restarting || cancel.is_cancelled() {
                return;
            }
            managed.restarts.total.fetch_add(1, Ordering::Relaxed);
            tracing::info!(pipeline = %managed.name, attempt = managed.restarts.lock().attempts, "restarting the pipeline");
            if let Err(error) = supervisor.start(&managed).await {
                // It could not even be built (a module, a lookup table, a
                // broker): keep trying, further apart.
                let backoff = managed.failed_again(error.to_string());
                supervisor.restart_later(managed.clone(), backoff);
            }
        });
    }

    /// Cancels a running pipeline and waits until it has drained.
    pub(super) async fn stop(&self, managed: &Managed, then: Option<Status>) {
        managed.cancel_restart();
        let running = managed.lock().running.take();
        if let Some(Running { cancel, task, .. }) = running {
            cancel.cancel();
            let _ = task.await;
        }
        if let Some(status) = then {
            managed.status.send_replace(status);
        }
    }

    /// Makes sure the topics a pipeline uses on the engine's cluster exist
    /// and that REST ingest accepts its source topics.
    pub(super) async fn open_topics(&self, config: &PipelineConfig) {
        let sources = config.source.engine_cluster_topics();
        if let Some(embedded) = &self.env.embedded {
            let mut topics = sources.clone();
            topics.extend(
                [&config.sink, &config.dead_letter]
                    .iter()
                    .filter_map(|s| s.engine_cluster_topic().map(String::from)),
            );
            if let Err(e) = embedded.create(&topics, self.env.topic_partitions).await {
                tracing::debug!(pipeline = %config.name, "creating topics: {e:#}");
            }
        }
        if let Some(ingest) = &self.env.ingest {
            ingest.open_topics(&sources);
        }
    }

    pub(super) fn persist(&self, managed: &Managed) -> anyhow::Result<()> {
        if managed.origin != Origin::Api {
            return Ok(());
        }
        let stored = {
            let state = managed.lock();
            StoredPipeline {
                toml: state.toml.clone(),
                paused: *managed.status.borrow() == Status::Paused,
                history: state.history.clone(),
            }
        };
        self.store.put(&format!("pipeline/{}", managed.name), &stored)
    }

    /// Waits until each named pipeline has finished or failed, and returns
    /// their reports (for `sluice run`).
    pub async fn wait_for(&self, names: &[String]) -> Vec<(String, Result<PipelineReport, String>)> {
        let mut results = Vec::new();
        for name in names {
            let Some(managed) = self.get(name) else { continue };
            let mut status = managed.status.subscribe();
            let _ = status.wait_for(|s| matches!(s, Status::Finished | Status::Failed)).await;
            let state = managed.lock();
            let result = match (&state.report, &state.error) {
                (_, Some(error)) => Err(error.clone()),
                (Some(report), None) => Ok(report.clone()),
                (None, None) => Err("the pipeline stopped without a report".to_string()),
            };
            results.push((name.clone(), result));
        }
        results
    }

    /// Stops every pipeline (their drains run concurrently); a drained
    /// pipeline counts as finished.
    pub async fn stop_all(&self) {
        self.shutdown.cancel();
        let stopping: Vec<_> = self
            .list()
            .into_iter()
            .filter_map(|m| {
                let task = m.lock().running.take().map(|r| r.task);
                task.map(|task| (m, task))
            })
            .collect();
        for (managed, task) in stopping {
            let _ = task.await;
            if managed.status() != Status::Failed {
                managed.status.send_replace(Status::Finished);
            }
        }
    }

    pub fn view(&self, managed: &Managed) -> PipelineView {
        PipelineView::of(managed)
    }
}

/// Counters and logs a new run continues from.
#[derive(Default, Clone)]
pub(super) struct Carry {
    pub(super) stats: Option<Arc<PipelineStats>>,
    pub(super) dead_letters: Option<Arc<DeadLetterLog>>,
    pub(super) stages: BTreeMap<String, Arc<StageStats>>,
}

/// Builds a stage around an already compiled module, on a blocking thread
/// (`init` runs guest code). A config the module's declaration does not
/// take is reported at its keys, like any other config error.
pub(super) async fn build_stage(
    config: &StageConfig,
    pipeline: &PipelineConfig,
    module: Arc<Module>,
) -> Result<Stage, ControlError> {
    let config = config.clone();
    let pipeline = pipeline.clone();
    tokio::task::spawn_blocking(move || {
        let lookups = crate::lookup::load_granted(config.capabilities.get_ref(), &pipeline.lookups, |p| {
            pipeline.resolve(p)
        })
        .map_err(|e| {
            ControlError::Unusable(anyhow::anyhow!(
                "stage `{}`: a granted lookup table cannot be loaded: {e}",
                config.name
            ))
        })?;
        Stage::from_module(&config, module, lookups).map_err(|error| match &error.source {
            LoadError::ConfigMismatch { problems } => {
                // The TOML's text is not at hand; a missing key is reported at 1:1.
                ControlError::Invalid(Diagnostics(config_diagnostics(
                    &pipeline,
                    &config,
                    &error.module,
                    problems,
                    (1, 1),
                )))
            }
            // StageError already shows its cause; a chain would print it twice.
            _ => ControlError::Unusable(anyhow::anyhow!("{error}")),
        })
    })
    .await
    .map_err(|e| ControlError::Internal(e.into()))?
}
