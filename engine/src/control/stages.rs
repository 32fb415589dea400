//! Changing the module a stage runs: deploying another version into a
//! (running) pipeline and rolling it back.

use super::managed::{Managed, ModuleRef};
use super::modules::ModuleVersion;
use super::supervisor::{ControlError, Supervisor, build_stage};
use super::view::{PipelineView, StageView};
use crate::config::StageConfig;

type Result<T, E = ControlError> = std::result::Result<T, E>;

impl Supervisor {
    /// Runs `version` of `module` in `stage`: built and initialised first,
    /// then swapped in between two batches. `module` defaults to the
    /// stage's current registry module, `version` to its latest.
    pub async fn deploy_stage(
        &self,
        pipeline: &str,
        stage: &str,
        module: Option<&str>,
        version: Option<u32>,
    ) -> Result<StageView> {
        let managed = self.require(pipeline)?;
        let _op = managed.op.lock().await;
        let (stage_config, current) = self.stage_config(&managed, stage)?;
        let module = match (module, &current) {
            (Some(module), _) => module.to_string(),
            (None, Some(current)) => current.name.clone(),
            (None, None) => {
                return Err(ControlError::BadRequest(format!(
                    "stage `{stage}` runs a module from a file; name the uploaded module to deploy"
                )));
            }
        };
        let target = self.modules.version(&module, version)?;
        self.swap(&managed, &stage_config, &target).await?;
        managed
            .lock()
            .history
            .entry(stage.to_string())
            .or_default()
            .push(ModuleRef { name: target.name.clone(), version: target.version });
        self.persist(&managed).map_err(ControlError::Internal)?;
        self.stage_view(&managed, stage)
    }

    /// Goes back to the version the stage ran before its last deploy.
    pub async fn rollback_stage(&self, pipeline: &str, stage: &str) -> Result<StageView> {
        let managed = self.require(pipeline)?;
        let _op = managed.op.lock().await;
        let (stage_config, _) = self.stage_config(&managed, stage)?;
        let previous = {
            let state = managed.lock();
            let history = state.history.get(stage).map(Vec::as_slice).unwrap_or_default();
            match history {
                [.., previous, _] => previous.clone(),
                _ => {
                    return Err(ControlError::Conflict(format!(
                        "stage `{stage}` has no earlier module version to roll back to"
                    )));
                }
            }
        };
        let target = self.modules.version(&previous.name, Some(previous.version))?;
        self.swap(&managed, &stage_config, &target).await?;
        if let Some(history) = managed.lock().history.get_mut(stage) {
            history.pop();
        }
        self.persist(&managed).map_err(ControlError::Internal)?;
        self.stage_view(&managed, stage)
    }

    pub(super) fn stage_config(
        &self,
        managed: &Managed,
        stage: &str,
    ) -> Result<(StageConfig, Option<ModuleRef>)> {
        let state = managed.lock();
        let config = state.config.stages.iter().find(|s| s.name == stage).cloned().ok_or_else(|| {
            ControlError::NotFound(format!("pipeline `{}` has no stage `{stage}`", managed.name))
        })?;
        let current = state.history.get(stage).and_then(|h| h.last().cloned());
        Ok((config, current))
    }

    pub(super) async fn swap(
        &self,
        managed: &Managed,
        stage_config: &StageConfig,
        target: &ModuleVersion,
    ) -> Result<()> {
        let pipeline_config = managed.lock().config.clone();
        let module = self.load_blocking(target.clone(), stage_config.max_fuel.is_some()).await?;
        let stage = build_stage(stage_config, &pipeline_config, module.clone()).await?;
        let controls = managed.lock().running.as_ref().map(|r| r.controls.clone());
        if let Some(controls) = controls {
            let control = controls.stage(&stage_config.name).ok_or_else(|| {
                ControlError::Internal(anyhow::anyhow!("stage `{}` has no controls", stage_config.name))
            })?;
            // A stopped worker means the pipeline is ending; the new version
            // takes effect at its next start, like for a paused pipeline.
            let _ = control.swap(stage).await;
        }
        let mut state = managed.lock();
        if let Some(info) = state.stages.iter_mut().find(|s| s.name == stage_config.name) {
            info.module = module;
        }
        Ok(())
    }

    fn stage_view(&self, managed: &Managed, stage: &str) -> Result<StageView> {
        PipelineView::of(managed)
            .stages
            .into_iter()
            .find(|s| s.name == stage)
            .ok_or_else(|| ControlError::NotFound(format!("no stage `{stage}`")))
    }
}
