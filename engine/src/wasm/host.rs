//! The wasmtime engine and the compiled-module cache.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use sha2::{Digest, Sha256};
use wasmtime::component::types::ComponentItem;
use wasmtime::component::{Component, Linker};
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

use super::bindings::TransformPre;
use super::compiled_cache::CompiledCache;
use super::config_spec::ConfigSpec;
use super::epoch::EpochTicker;
use super::error::LoadError;
use super::instance::StoreState;

/// Exports the `transform` world requires, with their WIT signatures for
/// error messages.
const REQUIRED_EXPORTS: &[(&str, &str)] = &[
    ("init", "init: func(config: string) -> result<_, string>"),
    ("process", "process: func(input: batch) -> batch-output"),
];

/// Loads transform components and shares compiled code between stages.
///
/// Cheap to clone. One host serves every pipeline of the process: modules
/// are compiled once per content hash, however many stages use them.
#[derive(Clone)]
pub struct WasmHost {
    inner: Arc<HostInner>,
}

struct HostInner {
    /// Engines are created on first use: most deployments never meter fuel,
    /// and fuel metering slows every instruction of the modules compiled for it.
    plain: OnceLock<Runtime>,
    metered: OnceLock<Runtime>,
    cache: Mutex<HashMap<(String, bool), Arc<Module>>>,
    stop_ticker: Arc<AtomicBool>,
    /// Off only in benchmarks that measure what the sandbox costs.
    sandboxed: bool,
    /// Where compiled code is kept across restarts, if anywhere.
    compiled_cache: Option<CompiledCache>,
}

struct Runtime {
    engine: Engine,
    linker: Linker<StoreState>,
    ticker: Arc<EpochTicker>,
}

/// A validated, compiled transform, ready to instantiate.
#[derive(Clone)]
pub struct Module {
    /// Where it came from, for messages: a file name or a module name.
    pub name: String,
    /// SHA-256 of the component bytes, hex-encoded.
    pub hash: String,
    pub(crate) engine: Engine,
    pub(crate) ticker: Arc<EpochTicker>,
    pub(crate) pre: TransformPre<StoreState>,
    pub(crate) metered: bool,
    pub(crate) sandboxed: bool,
    /// The config keys it declares it takes (none declared: any config).
    pub config_spec: Option<Arc<ConfigSpec>>,
}

impl std::fmt::Debug for Module {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Module").field("name", &self.name).field("hash", &self.hash).finish()
    }
}

impl Module {
    /// The first 12 hex digits of the hash, enough to tell versions apart.
    pub fn short_hash(&self) -> &str {
        &self.hash[..12]
    }
}

impl Default for WasmHost {
    fn default() -> Self {
        Self::new()
    }
}

impl WasmHost {
    pub fn new() -> Self {
        Self::with_sandbox(true)
    }

    /// A host whose instances run without time budget or memory cap.
    /// Exists only so benchmarks can measure what the sandbox costs; never
    /// run untrusted modules on it.
    #[doc(hidden)]
    pub fn without_sandbox_for_benchmarks() -> Self {
        Self::with_sandbox(false)
    }

    fn with_sandbox(sandboxed: bool) -> Self {
        WasmHost {
            inner: Arc::new(HostInner {
                plain: OnceLock::new(),
                metered: OnceLock::new(),
                cache: Mutex::new(HashMap::new()),
                stop_ticker: Arc::new(AtomicBool::new(false)),
                sandboxed,
                compiled_cache: None,
            }),
        }
    }

    /// A host that keeps compiled code in `dir`, so an
    /// engine restarted with the same modules loads them instead of
    /// compiling them again: a faster start, and no compiler in memory.
    /// The directory must be the engine's own: what is in it is run as
    /// native code.
    pub fn with_compiled_cache(dir: std::path::PathBuf) -> Self {
        let mut host = Self::new();
        if let Some(inner) = Arc::get_mut(&mut host.inner) {
            inner.compiled_cache = Some(CompiledCache::new(dir));
        }
        host
    }

    fn runtime(&self, metered: bool) -> Result<&Runtime, LoadError> {
        let cell = if metered { &self.inner.metered } else { &self.inner.plain };
        if let Some(runtime) = cell.get() {
            return Ok(runtime);
        }
        let runtime = Runtime::new(metered, self.inner.sandboxed, self.inner.stop_ticker.clone())
            .map_err(LoadError::Invalid)?;
        // Another thread may have won the race; its runtime is as good.
        Ok(cell.get_or_init(|| runtime))
    }

    /// Reads, validates and compiles the component at `path`.
    pub fn load_file(&self, path: &Path, metered: bool) -> Result<Arc<Module>, LoadError> {
        let bytes =
            std::fs::read(path).map_err(|source| LoadError::Read { path: path.to_path_buf(), source })?;
        let name =
            path.file_name().map_or_else(|| path.display().to_string(), |n| n.to_string_lossy().into_owned());
        self.load(&name, &bytes, metered)
    }

    /// Validates and compiles a component; cached by content hash.
    pub fn load(&self, name: &str, bytes: &[u8], metered: bool) -> Result<Arc<Module>, LoadError> {
        check_header(bytes)?;
        let hash = hex::encode(Sha256::digest(bytes));
        let key = (hash.clone(), metered);
        if let Some(module) = self.lock_cache().get(&key) {
            // Same code, maybe under another name (a file and an upload).
            return Ok(Arc::new(Module { name: name.to_string(), ..Module::clone(module) }));
        }

        let config_spec = ConfigSpec::find(bytes).map_err(LoadError::BadDeclaration)?.map(Arc::new);
        let runtime = self.runtime(metered)?;
        let component = match &self.inner.compiled_cache {
            Some(cache) => cache.load(&runtime.engine, &hash, bytes),
            None => Component::new(&runtime.engine, bytes),
        }
        .map_err(|e| LoadError::Invalid(e.into()))?;
        check_exports(&runtime.engine, &component)?;
        let instance_pre = runtime
            .linker
            .instantiate_pre(&component)
            .map_err(|e| LoadError::WrongWorld(format!("{e:#}")))?;
        let pre = TransformPre::new(instance_pre).map_err(|e| LoadError::WrongWorld(format!("{e:#}")))?;
        let module = Arc::new(Module {
            name: name.to_string(),
            hash,
            engine: runtime.engine.clone(),
            ticker: runtime.ticker.clone(),
            pre,
            metered,
            sandboxed: self.inner.sandboxed,
            config_spec,
        });
        self.lock_cache().insert(key, module.clone());
        Ok(module)
    }

    fn lock_cache(&self) -> std::sync::MutexGuard<'_, HashMap<(String, bool), Arc<Module>>> {
        self.inner.cache.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Drop for HostInner {
    fn drop(&mut self) {
        self.stop_ticker.store(true, Ordering::Relaxed);
        for runtime in [self.plain.get(), self.metered.get()].into_iter().flatten() {
            runtime.ticker.wake();
        }
    }
}

impl Runtime {
    fn new(metered: bool, sandboxed: bool, stop_ticker: Arc<AtomicBool>) -> anyhow::Result<Runtime> {
        let mut config = Config::new();
        config.wasm_component_model(true);
        config.epoch_interruption(sandboxed);
        config.consume_fuel(metered);
        // Deep recursion in a guest must trap, not exhaust the host thread's
        // stack; stage threads are spawned with room above this.
        config.max_wasm_stack(1 << 20);
        config.allocation_strategy(InstanceAllocationStrategy::Pooling(pooling_config()));
        // `SLUICE_WASM_PROFILER=perfmap` lets `perf` name the functions of
        // guest code (written to /tmp/perf-PID.map); `jitdump` also keeps
        // their machine code, for `perf record -k mono` + `perf inject --jit`
        // and then `perf annotate`.
        match std::env::var("SLUICE_WASM_PROFILER").as_deref() {
            Ok("perfmap") => {
                config.profiler(wasmtime::ProfilingStrategy::PerfMap);
            }
            Ok("jitdump") => {
                config.profiler(wasmtime::ProfilingStrategy::JitDump);
            }
            _ => {}
        }
        let engine = Engine::new(&config)?;
        let mut linker = Linker::new(&engine);
        // Guests built for wasm32-wasip2 import WASI even when they use none
        // of it. Everything is linked; what a guest may actually reach is
        // decided per instance by its WasiCtx (no files, no sockets, a frozen
        // clock unless granted).
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
        // The `lookup` import; what it can reach is the instance's grants.
        super::bindings::sluice::transform::lookup::add_to_linker::<
            StoreState,
            wasmtime::component::HasSelf<StoreState>,
        >(&mut linker, |state| state)?;
        // The `hash` import; it answers only stages granted `hash`.
        super::hash::add_to_linker(&mut linker)?;
        let ticker = EpochTicker::start(engine.clone(), stop_ticker);
        Ok(Runtime { engine, linker, ticker })
    }
}

/// The pooling allocator keeps instance slots and memories ready, which is
/// what makes recycling an instance after a trap cheap.
fn pooling_config() -> PoolingAllocationConfig {
    let slots = std::env::var("SLUICE_WASM_INSTANCE_SLOTS").ok().and_then(|v| v.parse().ok()).unwrap_or(256);
    let mut pool = PoolingAllocationConfig::new();
    pool.total_component_instances(slots);
    pool.total_core_instances(slots * 4);
    pool.total_memories(slots);
    pool.total_tables(slots * 4);
    // A call runs on a fiber stack taken from the pool, and a store keeps at
    // most one: one per slot suffices. The default, 1,000, cost ~1,000
    // `mprotect` calls (one guard page each) at every start.
    pool.total_stacks(slots);
    pool.max_memory_size(4 << 30);
    // Recycling an instance (after a trap) used to fault in every page its
    // memory touched again: ~35 us per instance, mostly in the kernel. Where
    // the kernel can report which pages are resident (PAGEMAP_SCAN, Linux
    // 6.7+), wasmtime resets just those in place and keeps them mapped:
    // ~14 us. Without it, keeping pages resident means a memset of the whole
    // region, which is slower than the default, so it stays off.
    if kernel_has_pagemap_scan() {
        pool.pagemap_scan(wasmtime::Enabled::Yes);
        pool.linear_memory_keep_resident(4 << 20);
        pool.table_keep_resident(64 << 10);
    }
    pool
}

/// Whether the running kernel is Linux 6.7 or later.
fn kernel_has_pagemap_scan() -> bool {
    let Ok(release) = std::fs::read_to_string("/proc/sys/kernel/osrelease") else { return false };
    let mut parts = release.trim().split(|c: char| !c.is_ascii_digit()).filter_map(|p| p.parse::<u32>().ok());
    matches!((parts.next(), parts.next()), (Some(major), Some(minor)) if (major, minor) >= (6, 7))
}

fn check_header(bytes: &[u8]) -> Result<(), LoadError> {
    if bytes.len() < 8 || &bytes[..4] != b"\0asm" {
        return Err(LoadError::NotWasm);
    }
    // Bytes 4..8: version 1 for core modules; components use a different
    // version and layer (0x0d 0x00 0x01 0x00).
    if bytes[4..8] == [1, 0, 0, 0] {
        return Err(LoadError::CoreModule);
    }
    Ok(())
}

fn check_exports(engine: &Engine, component: &Component) -> Result<(), LoadError> {
    let ty = component.component_type();
    let exports: HashMap<&str, ComponentItem> =
        ty.exports(engine).map(|(name, export)| (name, export.ty)).collect();
    let missing: Vec<&str> = REQUIRED_EXPORTS
        .iter()
        .filter(|(name, _)| !matches!(exports.get(name), Some(ComponentItem::ComponentFunc(_))))
        .map(|(_, signature)| *signature)
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    let mut found: Vec<&str> = exports.keys().copied().collect();
    found.sort_unstable();
    Err(LoadError::WrongWorld(format!(
        "missing export{} `{}`; the component exports [{}]",
        if missing.len() > 1 { "s" } else { "" },
        missing.join("`, `"),
        found.join(", ")
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_files_that_are_not_components() {
        let host = WasmHost::new();
        assert!(matches!(host.load("x", b"hello world", false), Err(LoadError::NotWasm)));
        let core = b"\0asm\x01\0\0\0";
        assert!(matches!(host.load("x", core, false), Err(LoadError::CoreModule)));
        let truncated = b"\0asm\x0d\0\x01\0\x07";
        assert!(matches!(host.load("x", truncated, false), Err(LoadError::Invalid(_))));
    }
}
