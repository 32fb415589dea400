//! Cluster mode: every engine runs what the shared state says.
//!
//! A change made through any engine's API is applied there and recorded in
//! the cluster's state topic; every engine reads that topic and, whenever
//! it changes, makes its own pipelines match it: starts the pipelines it
//! does not run yet, replaces those whose definition changed, swaps stage
//! modules to the versions recorded, pauses, resumes and removes. On the
//! engine that made the change there is then nothing left to do. Pipelines
//! from files named on the command line are this engine's own and are left
//! alone.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use super::managed::{Managed, Origin, Status};
use super::supervisor::{Carry, ControlError, StoredPipeline, Supervisor};

impl Supervisor {
    /// Follows the shared state until the engine stops: reconciles now and
    /// after every change read from the cluster.
    pub fn follow_shared_state(self: &Arc<Self>) {
        let mut changes = self.store.subscribe();
        let supervisor = Arc::downgrade(self);
        tokio::spawn(async move {
            loop {
                let Some(this) = supervisor.upgrade() else { return };
                if this.shutdown.is_cancelled() {
                    return;
                }
                this.reconcile().await;
                drop(this);
                if changes.changed().await.is_err() {
                    return;
                }
                // A burst of changes (an upload's chunks and manifest, a
                // deploy's history) is taken in one pass.
                tokio::time::sleep(Duration::from_millis(20)).await;
                changes.borrow_and_update();
            }
        });
    }

    /// Makes this engine's API pipelines match the shared state.
    pub(super) async fn reconcile(self: &Arc<Self>) {
        let _membership = self.membership.lock().await;
        let desired: BTreeMap<String, StoredPipeline> = self
            .store
            .scan::<StoredPipeline>("pipeline/")
            .into_iter()
            .map(|(key, stored)| (key.trim_start_matches("pipeline/").to_string(), stored))
            .collect();
        for managed in self.list() {
            if managed.origin == Origin::Api && !desired.contains_key(&managed.name) {
                tracing::info!(pipeline = %managed.name, "removed in the cluster: stopping it here");
                let _op = managed.op.lock().await;
                self.stop(&managed, Some(Status::Paused)).await;
                self.pipelines.write().unwrap_or_else(|e| e.into_inner()).remove(&managed.name);
            }
        }
        for (name, stored) in desired {
            let result = match self.get(&name) {
                None => self.adopt(&name, stored).await,
                Some(managed) if managed.origin == Origin::Api => self.converge(&managed, stored).await,
                Some(_) => {
                    tracing::warn!(pipeline = %name, "defined in a file here and in the cluster: the file wins on this engine");
                    Ok(())
                }
            };
            if let Err(error) = result {
                tracing::error!(pipeline = %name, "cannot follow the cluster's definition: {error}");
            }
        }
    }

    /// Starts a pipeline another engine created.
    async fn adopt(self: &Arc<Self>, name: &str, stored: StoredPipeline) -> Result<(), ControlError> {
        let config = self.parse(name, &stored.toml)?;
        tracing::info!(pipeline = %name, "created in the cluster: starting it here");
        let carry = Carry { dead_letters: Some(self.dead_letter_log(name)), ..Carry::default() };
        let managed = self.insert(name.to_string(), Origin::Api, stored.toml, config, stored.history, &carry);
        if stored.paused {
            managed.status.send_replace(Status::Paused);
            return Ok(());
        }
        self.start(&managed).await
    }

    /// Brings a pipeline this engine runs to the shared definition.
    async fn converge(
        self: &Arc<Self>,
        managed: &Arc<Managed>,
        stored: StoredPipeline,
    ) -> Result<(), ControlError> {
        let _op = managed.op.lock().await;
        let (toml, history) = {
            let state = managed.lock();
            (state.toml.clone(), state.history.clone())
        };
        if toml != stored.toml {
            return self.redefine(managed, stored).await;
        }
        if history != stored.history {
            for (stage, versions) in &stored.history {
                let (Some(target), current) = (versions.last(), history.get(stage).and_then(|h| h.last()))
                else {
                    continue;
                };
                if current == Some(target) {
                    continue;
                }
                tracing::info!(pipeline = %managed.name, stage, module = %target.name, version = target.version, "deployed in the cluster: swapping it in here");
                let (stage_config, _) = self.stage_config(managed, stage)?;
                let version = self.modules.version(&target.name, Some(target.version))?;
                self.swap(managed, &stage_config, &version).await?;
            }
            managed.lock().history = stored.history;
        }
        let paused = managed.status() == Status::Paused;
        if stored.paused && !paused {
            tracing::info!(pipeline = %managed.name, "paused in the cluster: pausing it here");
            self.stop(managed, Some(Status::Paused)).await;
        } else if !stored.paused && paused {
            tracing::info!(pipeline = %managed.name, "resumed in the cluster: resuming it here");
            self.start(managed).await?;
        }
        Ok(())
    }

    /// Replaces a pipeline's definition with the one another engine applied,
    /// with the module versions it recorded.
    async fn redefine(
        self: &Arc<Self>,
        managed: &Arc<Managed>,
        stored: StoredPipeline,
    ) -> Result<(), ControlError> {
        tracing::info!(pipeline = %managed.name, "redefined in the cluster: replacing it here");
        let config = self.parse(&managed.name, &stored.toml)?;
        let mut history = stored.history.clone();
        let carry = Carry {
            stats: Some(managed.stats.clone()),
            dead_letters: Some(managed.dead_letters.clone()),
            stages: BTreeMap::new(),
        };
        let built =
            if stored.paused { None } else { Some(self.build(config.clone(), &mut history, carry).await?) };
        self.stop(managed, None).await;
        {
            let mut state = managed.lock();
            state.toml = stored.toml;
            state.config = config;
            state.history = history;
            state.error = None;
        }
        match built {
            Some((pipeline, stages)) => self.launch(managed, pipeline, stages),
            None => {
                managed.status.send_replace(Status::Paused);
            }
        }
        Ok(())
    }
}
