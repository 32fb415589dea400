//! One live instance of a transform: a store with its limits, the call into
//! the guest, and the classification of everything that can go wrong there.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use wasmtime::component::ResourceTable;
use wasmtime::{Store, Trap};
use wasmtime_wasi::{HostMonotonicClock, HostWallClock, WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

use super::abi::{self, CallOutput, Inputs};
use super::bindings::{Batch, BatchOutput, Transform};
use super::deadline::{Blocked, run_until};
use super::epoch::{EPOCH_TICK, Ticking};
use super::error::{FailureKind, LoadError};
use super::host::Module;
use super::limits::{Limits, MemoryLimiter};
use super::lookup::LookupState;
use super::lowering::{self, RecordsBatch};
use super::packed::{self, FailedPackedCall, PackedBatch, PackedCall};
use super::stdio::CapturedStderr;
use crate::lookup::Lookups;
use crate::record::Record;

/// Per-store state: the guest's (empty) WASI world, its limits and the
/// lookup tables it was granted.
pub struct StoreState {
    wasi: WasiCtx,
    table: ResourceTable,
    limiter: MemoryLimiter,
    stderr: CapturedStderr,
    lookup: LookupState,
    /// Whether the `hash` import answers (the `hash` capability).
    hash: bool,
}

impl StoreState {
    pub(super) fn lookup_state(&mut self) -> &mut LookupState {
        &mut self.lookup
    }

    pub(super) fn hash_granted(&self) -> bool {
        self.hash
    }
}

impl WasiView for StoreState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView { ctx: &mut self.wasi, table: &mut self.table }
    }
}

/// Capabilities a stage can grant its module. Everything else is denied.
#[derive(Debug, Clone, Default)]
pub struct Grants {
    /// The real wall and monotonic clocks (otherwise both read zero).
    pub clock: bool,
    /// Real randomness (otherwise a fixed-seed generator).
    pub random: bool,
    /// The host's native SHA-256 (otherwise the guest hashes in wasm).
    pub hash: bool,
    /// Lookup tables, by name (`lookup:NAME`).
    pub lookups: Arc<Lookups>,
}

/// The grants named by a stage's `capabilities` list (already validated),
/// with the lookup tables loaded for its `lookup:NAME` entries.
pub fn instance_grants(capabilities: &[String], lookups: Lookups) -> Grants {
    Grants {
        clock: capabilities.iter().any(|c| c == "clock"),
        random: capabilities.iter().any(|c| c == "random"),
        hash: capabilities.iter().any(|c| c == "hash"),
        lookups: Arc::new(lookups),
    }
}

/// What [`TransformInstance::call_for_next_stage`] made of a batch.
#[derive(Debug)]
pub enum StageCall {
    Records(CallOutput),
    Packed(PackedCall),
}

/// A failed call: every record of it failed the same way.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallFailure {
    pub kind: FailureKind,
    pub message: String,
}

/// An instantiated, initialised transform. After a failed call it must be
/// dropped: a trapped instance cannot be entered again.
pub struct TransformInstance {
    store: Store<StoreState>,
    bindings: Transform,
    module: Arc<Module>,
    limits: Limits,
    /// Reused across calls so packing a batch does not allocate.
    scratch: Batch,
}

impl TransformInstance {
    /// Instantiates `module` and calls its `init` with `config_json`.
    pub fn new(
        module: &Arc<Module>,
        limits: &Limits,
        grants: &Grants,
        config_json: &str,
    ) -> Result<Self, LoadError> {
        let stderr = CapturedStderr::default();
        let mut wasi = WasiCtxBuilder::new();
        wasi.stderr(stderr.clone());
        if !grants.clock {
            wasi.wall_clock(FrozenClock).monotonic_clock(FrozenClock);
        }
        if !grants.random {
            wasi.secure_random(wasmtime_wasi::Deterministic::new(vec![0x5a; 32]))
                .insecure_random(wasmtime_wasi::Deterministic::new(vec![0xa5; 32]))
                .insecure_random_seed(0);
        }
        let state = StoreState {
            wasi: wasi.build(),
            table: ResourceTable::new(),
            limiter: MemoryLimiter::new(limits.max_memory_bytes),
            stderr,
            lookup: LookupState::new(grants.lookups.clone()),
            hash: grants.hash,
        };
        let mut store = Store::new(&module.engine, state);
        if module.sandboxed {
            store.limiter(|state| &mut state.limiter);
            store.epoch_deadline_trap();
        }
        let init_failed = |store: &mut Store<StoreState>, e| {
            let failure = classify(store, limits, e);
            LoadError::InitFailed(format!("{}: {}", failure.kind, failure.message))
        };
        // Instantiation and `init` share one budget, like a call.
        let (deadline, _ticking) = arm(&mut store, limits, module);
        let started = run_until(deadline, async {
            let bindings = module.pre.instantiate_async(&mut store).await?;
            let init = bindings.call_init(&mut store, config_json).await?;
            Ok::<_, wasmtime::Error>((bindings, init))
        });
        let bindings = match started {
            Ok(Ok((bindings, Ok(())))) => bindings,
            Ok(Ok((_, Err(message)))) => return Err(LoadError::InitRejected(message)),
            Ok(Err(e)) => return Err(init_failed(&mut store, e)),
            Err(blocked) => {
                let failure = blocked_failure(limits, blocked);
                return Err(LoadError::InitFailed(format!("{}: {}", failure.kind, failure.message)));
            }
        };
        Ok(TransformInstance {
            store,
            bindings,
            module: module.clone(),
            limits: limits.clone(),
            scratch: packed::empty_wire(),
        })
    }

    pub fn module(&self) -> &Arc<Module> {
        &self.module
    }

    /// Runs one batch. Per-record results are in the output; an `Err` means
    /// the whole call failed and this instance must be discarded. Outputs
    /// that keep an input's key or value share it with `records`.
    pub fn call(&mut self, records: &[Record]) -> Result<CallOutput, CallFailure> {
        self.run(records)
    }

    /// Like [`call`](Self::call), for a caller done with `records` once
    /// they succeed (a pipeline stage): outputs take over the key and value
    /// they keep instead of sharing them, which leaves the inputs that
    /// succeeded empty. When every input has exactly one output, in order,
    /// and none failed, the inputs become the outputs where they lie and
    /// `records` is left empty. Inputs that failed are left whole for their
    /// dead letters, and so is every input when the call fails as a whole.
    pub fn call_consuming(&mut self, records: &mut Vec<Record>) -> Result<CallOutput, CallFailure> {
        self.run(records)
    }

    /// Runs a batch already in the guest's layout (the previous stage's
    /// output) and leaves the outputs in that layout, for the next stage.
    /// The same checks and limits as [`call`](Self::call); when the call
    /// fails, `batch` comes back with the failure, as it was.
    pub fn call_packed(&mut self, batch: PackedBatch) -> Result<PackedCall, Box<FailedPackedCall>> {
        match self.process(&batch.wire) {
            Ok(output) => packed::unpack_packed(output, batch, self.limits.max_output_bytes),
            Err(failure) => Err(FailedPackedCall::new(failure, batch)),
        }
    }

    /// Like [`call_consuming`](Self::call_consuming), for a stage whose
    /// next step is a wasm stage too: outputs that are their inputs, in
    /// place and in order (a passthrough, a stage that only adds
    /// headers), stay records, which costs nothing but what the guest
    /// changed; other outputs are left packed for the next stage, which
    /// saves building records only for it to pack them again.
    pub fn call_for_next_stage(&mut self, records: &mut Vec<Record>) -> Result<StageCall, CallFailure> {
        let Some(mut batch) = PackedBatch::from_records_into(
            records,
            std::mem::replace(&mut self.scratch, packed::empty_wire()),
        ) else {
            return self.call_consuming(records).map(StageCall::Records);
        };
        let output = match self.process(&batch.wire) {
            Ok(output) => output,
            Err(failure) => {
                self.scratch = std::mem::replace(&mut batch.wire, packed::empty_wire());
                return Err(failure);
            }
        };
        if abi::forwards_in_place(&output, records.len()) {
            self.scratch = batch.wire;
            return abi::unpack(output, records, self.limits.max_output_bytes).map(StageCall::Records);
        }
        match packed::unpack_packed(output, batch, self.limits.max_output_bytes) {
            Ok(call) => {
                // The outputs are in the batch; the inputs that failed were copied.
                records.clear();
                Ok(StageCall::Packed(call))
            }
            Err(failed) => Err(failed.failure),
        }
    }

    fn run<I: Inputs>(&mut self, records: I) -> Result<CallOutput, CallFailure> {
        let mut tables = std::mem::replace(&mut self.scratch, packed::empty_wire());
        let data_len = abi::pack_words(records.records(), &mut tables);
        let batch = RecordsBatch::new(records.records(), &tables, data_len);
        let process = self.bindings.process_func();
        let (deadline, ticking) = arm(&mut self.store, &self.limits, &self.module);
        let store = &mut self.store;
        let result = run_until(deadline, async move {
            let (output,) = lowering::process(process, &*store)?.call_async(store, (batch,)).await?;
            Ok(output)
        });
        drop(ticking);
        self.scratch = tables;
        abi::unpack(self.settle(result)?, records, self.limits.max_output_bytes)
    }

    /// Calls the guest's `process` on `batch` under the instance's limits.
    fn process(&mut self, batch: &Batch) -> Result<BatchOutput, CallFailure> {
        let (deadline, ticking) = arm(&mut self.store, &self.limits, &self.module);
        let result = run_until(deadline, self.bindings.call_process(&mut self.store, batch));
        drop(ticking);
        self.settle(result)
    }

    /// What a call under the instance's limits came to.
    fn settle(
        &mut self,
        result: Result<wasmtime::Result<BatchOutput>, Blocked>,
    ) -> Result<BatchOutput, CallFailure> {
        match result {
            Ok(Ok(output)) => Ok(output),
            Ok(Err(e)) => Err(classify(&mut self.store, &self.limits, e)),
            Err(blocked) => Err(blocked_failure(&self.limits, blocked)),
        }
    }

    /// The linear memory the instance holds (all its memories), as far as
    /// the sandbox tracks it; 0 for an unsandboxed host.
    pub fn memory_bytes(&self) -> usize {
        self.store.data().limiter.held_bytes
    }

    /// Fuel the last call used, when the module is metered.
    pub fn fuel_used(&self) -> Option<u64> {
        let budget = self.limits.max_fuel.unwrap_or(u64::MAX);
        self.module.metered.then(|| budget - self.store.get_fuel().unwrap_or(budget))
    }
}

/// Gives the next call its full time and fuel budget; returns when its
/// time is up, and the guard that keeps the epoch advancing (without it
/// the deadline never comes) until the call is over.
fn arm<'m>(store: &mut Store<StoreState>, limits: &Limits, module: &'m Module) -> (Instant, Ticking<'m>) {
    let deadline = Instant::now() + limits.timeout;
    let ticks = limits.timeout.as_nanos().div_ceil(EPOCH_TICK.as_nanos()) as u64;
    // +1: the current tick may be about to end.
    store.set_epoch_deadline(ticks.max(1) + 1);
    if module.metered {
        // Only fails when the engine does not meter fuel, which `metered` rules out.
        let _ = store.set_fuel(limits.max_fuel.unwrap_or(u64::MAX));
    }
    store.data().limiter.hit.store(false, Ordering::Relaxed);
    (deadline, module.ticker.running())
}

/// A call abandoned at its deadline while it waited in a host call (a
/// sleep, a poll that never became ready).
fn blocked_failure(limits: &Limits, blocked: Blocked) -> CallFailure {
    CallFailure {
        kind: FailureKind::Timeout,
        message: format!(
            "call exceeded timeout_ms = {} while blocked in a host call (sleep or poll); abandoned after {} ms",
            limits.timeout.as_millis(),
            blocked.waited.as_millis()
        ),
    }
}

fn classify(store: &mut Store<StoreState>, limits: &Limits, error: wasmtime::Error) -> CallFailure {
    let stderr = store.data().stderr.take();
    let memory_hit = store.data().limiter.hit.load(Ordering::Relaxed);
    let trap = error.downcast_ref::<Trap>().copied();
    let (kind, message) = match trap {
        Some(Trap::Interrupt) => {
            (FailureKind::Timeout, format!("call exceeded timeout_ms = {}", limits.timeout.as_millis()))
        }
        Some(Trap::StackOverflow) => (FailureKind::StackOverflow, "wasm stack overflow".to_string()),
        Some(Trap::OutOfFuel) => {
            (FailureKind::FuelExhausted, format!("call used up max_fuel = {}", limits.max_fuel.unwrap_or(0)))
        }
        _ if let Some(panic) = panic_message(&stderr) => (FailureKind::Panic, panic),
        _ if memory_hit => (
            FailureKind::OutOfMemory,
            format!(
                "memory would grow past max_memory_mb = {}{}",
                limits.max_memory_bytes >> 20,
                first_line(&stderr).map(|l| format!(" ({l})")).unwrap_or_default()
            ),
        ),
        Some(trap) => (FailureKind::Trap, trap.to_string()),
        // A guest that calls exit (Python's sys.exit, say): its last words
        // on stderr say why better than a backtrace.
        None if let Some(exit) = error.downcast_ref::<wasmtime_wasi::I32Exit>() => (
            FailureKind::Trap,
            format!(
                "the guest exited (status {}){}",
                exit.0,
                last_line(&stderr).map(|l| format!(": {l}")).unwrap_or_default()
            ),
        ),
        None => (FailureKind::Trap, format!("{error:#}")),
    };
    CallFailure { kind, message }
}

/// Extracts a Rust panic's location and message from the guest's stderr.
fn panic_message(stderr: &str) -> Option<String> {
    let start = stderr.find("panicked at ")?;
    let panic = &stderr[start..];
    let end = panic.find("\nnote:").unwrap_or(panic.len());
    Some(panic[..end].trim().replace('\n', " "))
}

fn last_line(text: &str) -> Option<&str> {
    text.lines().map(str::trim).rfind(|l| !l.is_empty())
}

fn first_line(text: &str) -> Option<&str> {
    text.lines().map(str::trim).find(|l| !l.is_empty())
}

/// The clock a guest sees without the `clock` capability: always zero, so a
/// transform cannot make its output depend on when it ran.
struct FrozenClock;

impl HostWallClock for FrozenClock {
    fn resolution(&self) -> Duration {
        Duration::from_secs(1)
    }

    fn now(&self) -> Duration {
        Duration::ZERO
    }
}

impl HostMonotonicClock for FrozenClock {
    fn resolution(&self) -> u64 {
        1_000_000_000
    }

    fn now(&self) -> u64 {
        0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_panic_message_in_guest_stderr() {
        let stderr = "\nthread '<unnamed>' panicked at src/lib.rs:12:9:\nboom on record 3\nnote: run with `RUST_BACKTRACE=1`\n";
        assert_eq!(panic_message(stderr).unwrap(), "panicked at src/lib.rs:12:9: boom on record 3");
        assert_eq!(panic_message("memory allocation of 8 bytes failed"), None);
    }
}
