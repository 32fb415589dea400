//! Giving memory the engine no longer uses back to the system.
//!
//! glibc's allocator keeps freed memory in per-thread arenas; after a burst
//! of allocation (compiling modules, building pipelines) a long-running
//! engine would otherwise keep that memory resident for good.

/// Returns free memory held by the allocator to the system (glibc's
/// `malloc_trim`); a no-op elsewhere.
pub fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only walks the allocator's own free lists.
    unsafe {
        libc::malloc_trim(0);
    }
}
