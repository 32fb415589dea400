//! Compiled components kept on disk, so an engine that starts again maps
//! its modules' machine code instead of compiling it.
//!
//! One file per module and engine configuration, named after the
//! component's SHA-256 and the engine's compatibility hash. A hit is
//! `mmap`ed as it is (`Component::deserialize_file`): no decompression and
//! no copy, which made a start ~4 ms faster per module than wasmtime's own
//! cache (zstd-compressed entries, read and copied into fresh memory).
//! Files are written whole under a temporary name and renamed into place,
//! so a mapped file is never changed underneath its reader; the newest
//! [`KEEP`] are kept.

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

use wasmtime::Engine;
use wasmtime::component::Component;

/// How many compiled modules are kept; the least recently used go first.
const KEEP: usize = 64;

/// A directory of compiled components that belongs to this engine alone:
/// what is in it is run as native code.
pub(crate) struct CompiledCache {
    dir: PathBuf,
}

impl CompiledCache {
    pub(crate) fn new(dir: PathBuf) -> Self {
        // Engines before this cache kept wasmtime's there; it is not read any more.
        let _ = std::fs::remove_dir_all(dir.join("modules"));
        CompiledCache { dir }
    }

    /// The component whose bytes hash to `sha256`: mapped from the
    /// directory when compiled there before, else compiled and kept.
    pub(crate) fn load(&self, engine: &Engine, sha256: &str, bytes: &[u8]) -> wasmtime::Result<Component> {
        let path = self.dir.join(format!("{sha256}-{:016x}.cwasm", compatibility(engine)));
        if path.is_file() {
            // SAFETY: the directory is the engine's own and its files are
            // only ever written by `keep` below, whole, from `serialize`,
            // and renamed into place, so the mapped file is a complete
            // artifact of this configuration that nothing modifies while
            // it is mapped. wasmtime still checks its header, version and
            // settings, and an artifact it refuses is compiled again.
            match unsafe { Component::deserialize_file(engine, &path) } {
                Ok(component) => {
                    touch(&path);
                    return Ok(component);
                }
                Err(error) => tracing::warn!(path = %path.display(), "compiling again: {error:#}"),
            }
        }
        let component = Component::new(engine, bytes)?;
        if let Err(error) = self.keep(&path, &component) {
            tracing::warn!(dir = %self.dir.display(), "compiled module not kept: {error:#}");
        }
        Ok(component)
    }

    fn keep(&self, path: &Path, component: &Component) -> anyhow::Result<()> {
        std::fs::create_dir_all(&self.dir)?;
        let artifact = component.serialize()?;
        // Unique per write: two stages may compile the same module at once,
        // and neither may rename a file the other is still writing.
        static WRITES: AtomicU64 = AtomicU64::new(0);
        let partial = path.with_extension(format!(
            "partial-{}-{}",
            std::process::id(),
            WRITES.fetch_add(1, Ordering::Relaxed)
        ));
        let written = std::fs::write(&partial, artifact).and_then(|()| std::fs::rename(&partial, path));
        if written.is_err() {
            let _ = std::fs::remove_file(&partial);
        }
        written?;
        self.prune();
        Ok(())
    }

    /// Deletes all but the [`KEEP`] most recently used files.
    fn prune(&self) {
        let Ok(entries) = std::fs::read_dir(&self.dir) else { return };
        let mut files: Vec<(SystemTime, PathBuf)> = entries
            .flatten()
            .filter(|entry| entry.path().extension().is_some_and(|ext| ext == "cwasm"))
            .filter_map(|entry| Some((entry.metadata().ok()?.modified().ok()?, entry.path())))
            .collect();
        if files.len() <= KEEP {
            return;
        }
        files.sort_by_key(|(modified, _)| std::cmp::Reverse(*modified));
        for (_, path) in files.drain(KEEP..) {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// Marks a file used now, for [`CompiledCache::prune`].
fn touch(path: &Path) {
    if let Ok(file) = std::fs::File::options().write(true).open(path) {
        let _ = file.set_modified(SystemTime::now());
    }
}

/// The engine configuration's compatibility hash, as a number that is the
/// same in every run of the same build.
fn compatibility(engine: &Engine) -> u64 {
    // `DefaultHasher::new()` has fixed keys; a different Rust release may
    // hash differently, which only costs one compilation.
    let mut hasher = std::hash::DefaultHasher::new();
    engine.precompile_compatibility_hash().hash(&mut hasher);
    hasher.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The smallest valid component, `(component)` in binary.
    const EMPTY: &[u8] = b"\0asm\x0d\x00\x01\x00";

    /// An engine and a cache in a fresh directory (kept alive by the guard).
    fn setup() -> (tempfile::TempDir, Engine, CompiledCache) {
        let dir = tempfile::tempdir().unwrap();
        let mut config = wasmtime::Config::new();
        config.wasm_component_model(true);
        let engine = Engine::new(&config).unwrap();
        let cache = CompiledCache::new(dir.path().to_path_buf());
        (dir, engine, cache)
    }

    fn file_names(dir: &Path) -> Vec<String> {
        std::fs::read_dir(dir)
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect()
    }

    #[test]
    fn a_module_compiled_once_is_mapped_the_next_time() {
        let (dir, engine, cache) = setup();
        cache.load(&engine, "abc", EMPTY).unwrap();
        let names = file_names(dir.path());
        assert_eq!(names.len(), 1, "{names:?}");
        // Loaded from the file, not from the (now invalid) bytes.
        cache.load(&engine, "abc", b"not wasm").unwrap();
    }

    #[test]
    fn a_damaged_file_is_compiled_again() {
        let (dir, engine, cache) = setup();
        cache.load(&engine, "abc", EMPTY).unwrap();
        let file = dir.path().join(&file_names(dir.path())[0]);
        std::fs::write(&file, b"\x7fELF but not an artifact").unwrap();
        cache.load(&engine, "abc", EMPTY).unwrap();
        // ... and written back whole.
        cache.load(&engine, "abc", b"not wasm").unwrap();
    }

    #[test]
    fn stages_compiling_the_same_module_at_once_leave_one_whole_file() {
        let (dir, engine, cache) = setup();
        std::thread::scope(|scope| {
            for _ in 0..4 {
                scope.spawn(|| cache.load(&engine, "abc", EMPTY).unwrap());
            }
        });
        let names = file_names(dir.path());
        assert_eq!(names.len(), 1, "{names:?}");
        assert!(names[0].ends_with(".cwasm"), "{names:?}");
        cache.load(&engine, "abc", b"not wasm").unwrap();
    }

    #[test]
    fn only_the_most_recently_used_are_kept() {
        let (dir, engine, cache) = setup();
        for i in 0..KEEP + 3 {
            cache.load(&engine, &format!("{i:04}"), EMPTY).unwrap();
        }
        assert_eq!(file_names(dir.path()).len(), KEEP);
    }
}
