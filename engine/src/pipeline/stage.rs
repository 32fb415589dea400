//! A transform stage: runs batches through a wasm module, isolates the
//! records that make it fail, recycles broken instances and quarantines a
//! module that crashes on most of what it is given (see [`super::quarantine`]).

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::dead_letter::{DeadLetter, ModuleRef};
use super::handoff::Payload;
use super::quarantine::FailureWindow;
use super::stats::{StageStats, add};
use crate::config::{Diagnostic, OnError, PipelineConfig, StageConfig};
use crate::record::Record;
use crate::wasm::config_spec::ConfigProblem;
use crate::wasm::instance_grants;
use crate::wasm::{
    CallFailure, CallOutput, FailedPackedCall, FailureKind, Limits, LoadError, Module, PackedBatch,
    PackedCall, StageCall, TransformInstance, WasmHost,
};

/// A stage that could not be set up.
#[derive(Debug, thiserror::Error)]
#[error("stage `{stage}` (module {module}): {source}")]
pub struct StageError {
    pub stage: String,
    pub module: String,
    #[source]
    pub source: LoadError,
}

pub struct Stage {
    pub name: String,
    pub on_error: OnError,
    /// Worker threads (`parallelism`), each running its own instance.
    pub workers: usize,
    module: Arc<Module>,
    limits: Limits,
    grants: crate::wasm::Grants,
    config_json: String,
    /// Shared by the stage's workers: quarantine judges the module on all
    /// the records it was given, whichever worker ran them.
    failures: Arc<Mutex<FailureWindow>>,
    /// Kept across batches; `None` after a failed call until the next one.
    instance: Option<TransformInstance>,
    pub stats: Arc<StageStats>,
}

/// What a stage made of one batch.
#[derive(Debug, Default)]
pub struct StageOutput<R = Vec<Record>> {
    pub records: R,
    pub failed: Vec<DeadLetter>,
    /// Records not processed because the stage is quarantined, in order:
    /// they wait for a new module version.
    pub held: Vec<Record>,
}

impl Stage {
    /// Loads the module and initialises a first instance, so a bad module or
    /// a config its `init` rejects fails here, before any record moves.
    pub fn build(config: &StageConfig, base: &PipelineConfig, host: &WasmHost) -> Result<Stage, StageError> {
        let path = base.resolve(config.module.get_ref().as_ref());
        let lookups =
            crate::lookup::load_granted(config.capabilities.get_ref(), &base.lookups, |p| base.resolve(p))
                .map_err(|e| StageError {
                    stage: config.name.clone(),
                    module: path.display().to_string(),
                    source: LoadError::Capability(format!("a granted lookup table cannot be loaded: {e}")),
                })?;
        Self::build_at(config, &path, lookups, host)
    }

    /// Like [`Stage::build`], with the module path already resolved.
    pub fn build_at(
        config: &StageConfig,
        path: &std::path::Path,
        lookups: crate::lookup::Lookups,
        host: &WasmHost,
    ) -> Result<Stage, StageError> {
        let error =
            |source| StageError { stage: config.name.clone(), module: path.display().to_string(), source };
        let module = host.load_file(path, config.max_fuel.is_some()).map_err(error)?;
        Self::from_module(config, module, lookups)
    }

    /// A stage running `module` (already compiled), with a first instance.
    pub fn from_module(
        config: &StageConfig,
        module: Arc<Module>,
        lookups: crate::lookup::Lookups,
    ) -> Result<Stage, StageError> {
        let error = |source| StageError { stage: config.name.clone(), module: module.name.clone(), source };
        let limits = Limits {
            timeout: Duration::from_millis(config.timeout_ms),
            max_memory_bytes: (config.max_memory_mb as usize) << 20,
            max_fuel: config.max_fuel,
            max_output_bytes: config.max_output_bytes as usize,
        };
        if let Some(spec) = &module.config_spec {
            let mut problems = spec.check(config.config.get_ref());
            if !problems.is_empty() {
                for problem in &mut problems {
                    problem.position =
                        problem.key.as_ref().and_then(|k| config.config_positions.get(k)).copied();
                }
                return Err(error(LoadError::ConfigMismatch { problems }));
            }
        }
        let grants = instance_grants(config.capabilities.get_ref(), lookups);
        let config_json = match &module.config_spec {
            Some(spec) => table_to_json(&spec.with_defaults(config.config.get_ref())),
            None => table_to_json(config.config.get_ref()),
        };
        let instance = TransformInstance::new(&module, &limits, &grants, &config_json).map_err(error)?;
        let stats = Arc::new(StageStats::default());
        stats.set_module(&module.name);
        Ok(Stage {
            name: config.name.clone(),
            on_error: config.on_error,
            workers: config.workers(),
            module,
            limits,
            grants,
            config_json,
            failures: Arc::new(Mutex::new(FailureWindow::new(config.quarantine.clone()))),
            instance: Some(instance),
            stats,
        })
    }

    /// Another worker for this stage: the same module and settings, its
    /// own instance (initialised here), counters and quarantine shared.
    pub fn fork(&self) -> Result<Stage, StageError> {
        let instance =
            TransformInstance::new(&self.module, &self.limits, &self.grants, &self.config_json).map_err(
                |source| StageError { stage: self.name.clone(), module: self.module.name.clone(), source },
            )?;
        Ok(Stage { instance: Some(instance), ..self.blueprint() })
    }

    /// This stage's settings, counters and quarantine without an instance:
    /// what [`Stage::fork`] makes workers from.
    pub fn blueprint(&self) -> Stage {
        Stage {
            name: self.name.clone(),
            on_error: self.on_error,
            workers: self.workers,
            module: self.module.clone(),
            limits: self.limits.clone(),
            grants: self.grants.clone(),
            config_json: self.config_json.clone(),
            failures: self.failures.clone(),
            instance: None,
            stats: self.stats.clone(),
        }
    }

    pub fn module(&self) -> &Arc<Module> {
        &self.module
    }

    fn failures(&self) -> MutexGuard<'_, FailureWindow> {
        self.failures.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn is_quarantined(&self) -> bool {
        self.stats.quarantined.load(Ordering::Relaxed)
    }

    /// Runs `records` through the transform.
    ///
    /// When the call as a whole fails (a trap, a timeout…), the batch is
    /// retried one record at a time on fresh instances, so only the records
    /// that cause the failure are dead-lettered and the rest go on. The
    /// failed call produced no output, so nothing is emitted twice. Records
    /// left when the stage gets quarantined are returned as `held`.
    pub fn process(&mut self, records: Vec<Record>) -> StageOutput {
        let StageOutput { records, failed, held } = self.run(Payload::Records(records), false);
        StageOutput { records: records.into_records(), failed, held }
    }

    /// Like [`process`](Self::process), for records built or packed; with
    /// `pack_outputs` (the next step is a wasm stage too) the outputs are
    /// left packed for it.
    pub fn run(&mut self, input: Payload, pack_outputs: bool) -> StageOutput<Payload> {
        let mut output = StageOutput::default();
        if input.is_empty() {
            return output;
        }
        if self.is_quarantined() {
            output.held = input.into_records();
            return output;
        }
        let total = input.len();
        output.records = match input {
            Payload::Records(records) => self.run_records(records, pack_outputs, &mut output),
            Payload::Packed(batch) => self.run_packed(batch, pack_outputs, &mut output),
        };
        // Held records count in when they run, after a new version is deployed.
        add(&self.stats.records_in, total - output.held.len());
        add(&self.stats.records_out, output.records.len());
        add(&self.stats.records_failed, output.failed.len());
        output
    }

    /// Runs built records; returns the outputs (packed, when `pack_outputs`
    /// and the guest wrote new values), and puts failures and held records
    /// in `output`.
    fn run_records(
        &mut self,
        mut records: Vec<Record>,
        pack_outputs: bool,
        output: &mut StageOutput<Payload>,
    ) -> Payload {
        let total = records.len();
        let result = match pack_outputs {
            true => self.call_for_next_stage(&mut records),
            false => self.call(&mut records).map(StageCall::Records),
        };
        match result {
            Ok(StageCall::Records(call)) => {
                self.failures().passed(total);
                Payload::Records(self.collect(call, &records, output))
            }
            Ok(StageCall::Packed(call)) => {
                self.failures().passed(total);
                self.collect_packed(call, true, output)
            }
            Err(failure) if total == 1 => {
                self.crashed(&records[0], &failure, output);
                Payload::default()
            }
            Err(_) => Payload::Records(self.one_by_one(records, output)),
        }
    }

    /// Runs a batch the stage before left packed.
    fn run_packed(
        &mut self,
        batch: PackedBatch,
        pack_outputs: bool,
        output: &mut StageOutput<Payload>,
    ) -> Payload {
        let total = batch.len();
        match self.call_packed(batch) {
            Ok(call) => {
                self.failures().passed(total);
                self.collect_packed(call, pack_outputs, output)
            }
            Err(failed) => {
                let FailedPackedCall { failure, inputs } = *failed;
                let records = inputs.into_records();
                if records.len() == 1 {
                    self.crashed(&records[0], &failure, output);
                    return Payload::default();
                }
                Payload::Records(self.one_by_one(records, output))
            }
        }
    }

    /// Dead-letters a packed call's failed inputs and returns its outputs,
    /// packed or built.
    fn collect_packed(
        &self,
        call: PackedCall,
        pack_outputs: bool,
        output: &mut StageOutput<Payload>,
    ) -> Payload {
        for (record, kind, message) in call.failures {
            output.failed.push(self.dead_letter(record, kind, message));
        }
        match pack_outputs {
            true => Payload::Packed(call.batch),
            false => Payload::Records(call.batch.into_records()),
        }
    }

    /// After a call failed as a whole: each record on its own, until the
    /// stage is quarantined (the rest is held).
    fn one_by_one(&mut self, records: Vec<Record>, output: &mut StageOutput<Payload>) -> Vec<Record> {
        let mut outputs = Vec::new();
        let mut rest = records.into_iter();
        while let Some(record) = rest.next() {
            let mut one = vec![record];
            match self.call(&mut one) {
                Ok(call) => {
                    self.failures().passed(1);
                    outputs.extend(self.collect(call, &one, output));
                }
                Err(failure) => self.crashed(&one[0], &failure, output),
            }
            if self.is_quarantined() {
                output.held = rest.collect();
                break;
            }
        }
        outputs
    }

    /// A record made the module crash: it is dead-lettered, and counts
    /// towards quarantine.
    fn crashed(&mut self, record: &Record, failure: &CallFailure, output: &mut StageOutput<Payload>) {
        self.fail(record, failure, output);
        let crashed = self.failures().crashed();
        if crashed {
            self.stats.quarantined.store(true, Ordering::Relaxed);
            tracing::error!(
                stage = %self.name,
                module = %self.module.name,
                failure_ratio = self.failures().ratio(),
                "stage quarantined: the module crashed on most recent records; the stage holds what it \
                 has not processed and reads nothing more until a fixed version is deployed"
            );
        }
    }

    /// Forgets the failures of an earlier version (this stage replaces it).
    pub fn lift_quarantine(&mut self) {
        self.failures().reset();
        self.stats.quarantined.store(false, Ordering::Relaxed);
    }

    /// Calls the instance (a new one after a failed call), which takes over
    /// the key and value of the records that succeed.
    fn call(&mut self, records: &mut Vec<Record>) -> Result<CallOutput, CallFailure> {
        self.with_instance(|instance| instance.call_consuming(records))
    }

    /// Like [`call`](Self::call), leaving outputs packed when that saves work.
    fn call_for_next_stage(&mut self, records: &mut Vec<Record>) -> Result<StageCall, CallFailure> {
        self.with_instance(|instance| instance.call_for_next_stage(records))
    }

    /// Makes `call` on the instance, counted (see [`called`](Self::called)).
    fn with_instance<T>(
        &mut self,
        call: impl FnOnce(&mut TransformInstance) -> Result<T, CallFailure>,
    ) -> Result<T, CallFailure> {
        let mut instance = self.take_instance()?;
        let started = Instant::now();
        let result = call(&mut instance);
        self.called(instance, started, result.as_ref().err());
        result
    }

    /// Calls the instance on a packed batch, which comes back when the call fails.
    fn call_packed(&mut self, batch: PackedBatch) -> Result<PackedCall, Box<FailedPackedCall>> {
        let mut instance = match self.take_instance() {
            Ok(instance) => instance,
            Err(failure) => return Err(FailedPackedCall::new(failure, batch)),
        };
        let started = Instant::now();
        let result = instance.call_packed(batch);
        self.called(instance, started, result.as_ref().err().map(|failed| &failed.failure));
        result
    }

    /// The instance kept from the last call, or a new one after a failed call.
    fn take_instance(&mut self) -> Result<TransformInstance, CallFailure> {
        if let Some(instance) = self.instance.take() {
            return Ok(instance);
        }
        add(&self.stats.recycles, 1);
        TransformInstance::new(&self.module, &self.limits, &self.grants, &self.config_json).map_err(|e| {
            CallFailure { kind: FailureKind::Trap, message: format!("cannot recreate the instance: {e}") }
        })
    }

    /// Counts a call that started at `started`, and keeps its instance for
    /// the next one unless it failed.
    fn called(&mut self, instance: TransformInstance, started: Instant, failure: Option<&CallFailure>) {
        add(&self.stats.busy_nanos, started.elapsed().as_nanos() as usize);
        add(&self.stats.calls, 1);
        match failure {
            None => self.instance = Some(instance),
            Some(failure) => {
                // A trapped instance cannot be entered again; drop it.
                add(&self.stats.failed_calls, 1);
                tracing::warn!(stage = %self.name, kind = %failure.kind, "transform call failed: {}", failure.message);
            }
        }
    }

    /// Dead-letters a call's failed inputs (which it left whole) and returns its outputs.
    fn collect(&self, call: CallOutput, inputs: &[Record], output: &mut StageOutput<Payload>) -> Vec<Record> {
        for (index, kind, message) in call.failures {
            output.failed.push(self.dead_letter(inputs[index].clone(), kind, message));
        }
        call.records
    }

    fn fail(&self, record: &Record, failure: &CallFailure, output: &mut StageOutput<Payload>) {
        output.failed.push(self.dead_letter(record.clone(), failure.kind.clone(), failure.message.clone()));
    }

    fn dead_letter(&self, record: Record, kind: FailureKind, message: String) -> DeadLetter {
        let mut letter = DeadLetter::new(record, &self.name, kind, message);
        letter.module = Some(ModuleRef { name: self.module.name.clone(), hash: self.module.hash.clone() });
        letter
    }
}

/// The stage's `config` table as the JSON its `init` receives.
/// A stage config that does not fit its module's declaration, as config
/// errors: one per problem, at its key, or at `missing_at` (line, column)
/// for a key the stage leaves out.
pub fn config_diagnostics(
    pipeline: &PipelineConfig,
    stage: &StageConfig,
    module: &str,
    problems: &[ConfigProblem],
    missing_at: (usize, usize),
) -> Vec<Diagnostic> {
    let index = pipeline.stages.iter().position(|s| s.name == stage.name).unwrap_or(0);
    problems
        .iter()
        .map(|problem| {
            let ((line, column), field) = match (&problem.key, problem.position) {
                (Some(key), Some(at)) => ((at.line, at.column), format!("config.{key}")),
                _ => (missing_at, "config".to_string()),
            };
            Diagnostic {
                file: pipeline.file.clone(),
                line,
                column,
                key: Some(crate::config::join(&pipeline.key, &format!("stage[{index}].{field}"))),
                message: format!("module `{module}` does not take this config: {}", problem.message),
            }
        })
        .collect()
}

pub fn table_to_json(table: &toml::Table) -> String {
    serde_json::to_string(table).unwrap_or_else(|_| "{}".to_string())
}
