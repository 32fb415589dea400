//! How the engine asks glibc's allocator to behave, and giving memory the
//! engine no longer uses back to the system.
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

/// Blocks up to this size come from the allocator's arenas, where freed
/// memory is reused; larger ones are mapped and unmapped each time.
const MMAP_THRESHOLD: libc::c_int = 4 << 20;
/// Free memory at the top of an arena beyond this goes back to the system.
const TRIM_THRESHOLD: libc::c_int = 16 << 20;

/// Fixes glibc's thresholds for mapping and trimming; call before anything
/// allocates much.
///
/// A stage's output batch (half a megabyte for 1,024 parsed log lines) is
/// allocated on the stage's thread and freed on the sink's. Left to itself,
/// glibc maps blocks over 128 KiB and raises that threshold only after one
/// is freed, and trims an arena whose free top exceeds twice it: depending
/// on what the process happened to allocate first, every batch's output was
/// mapped, faulted in page by page and unmapped again (twice the page
/// faults of the whole run). Fixed thresholds make that independent of
/// history; `release_free_memory` still hands free memory back after a
/// burst.
pub fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets the allocator's parameters; it is called
    // before the engine starts its threads.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD);
        libc::mallopt(libc::M_TRIM_THRESHOLD, TRIM_THRESHOLD);
    }
}
