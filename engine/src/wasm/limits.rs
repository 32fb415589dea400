//! Per-stage resource limits, kept in the store so every call is bounded.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// What one instance of a stage may use. Set from the stage's TOML.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Wall-clock budget of one call (one batch).
    pub timeout: Duration,
    /// Cap on the instance's linear memory.
    pub max_memory_bytes: usize,
    /// Fuel (roughly, wasm instructions) per call; `None` disables metering.
    pub max_fuel: Option<u64>,
    /// Cap on the bytes of output produced from one input record, counting
    /// what outputs keep of it (see `abi::unpack`).
    pub max_output_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            timeout: Duration::from_millis(1000),
            max_memory_bytes: 64 << 20,
            max_fuel: None,
            max_output_bytes: 16 << 20,
        }
    }
}

/// Enforces the memory cap and remembers that it was hit, so a trap that
/// follows a refused `memory.grow` is reported as out-of-memory.
pub(crate) struct MemoryLimiter {
    max_memory_bytes: usize,
    pub(crate) hit: Arc<AtomicBool>,
    /// Linear memory the instance holds, all its memories together.
    pub(crate) held_bytes: usize,
}

impl MemoryLimiter {
    pub(crate) fn new(max_memory_bytes: usize) -> Self {
        MemoryLimiter { max_memory_bytes, hit: Arc::new(AtomicBool::new(false)), held_bytes: 0 }
    }
}

impl wasmtime::ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.max_memory_bytes {
            self.hit.store(true, Ordering::Relaxed);
            // Refuse the growth (memory.grow returns -1) instead of trapping
            // here: the guest's allocator then aborts, and the trap that
            // follows is classified with `hit` set.
            return Ok(false);
        }
        // A memory's first allocation comes here too, from 0.
        self.held_bytes += desired.saturating_sub(current);
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        // Tables hold function references; a transform needs few.
        Ok(desired <= 100_000)
    }
}
