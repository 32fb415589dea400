//! The control plane's durable state: a keyed changelog plus
//! content-addressed blobs, in the engine's data directory.
//!
//! Every change is one JSON line `{"key": …, "value": …}` appended to
//! `state/changelog.jsonl` (a `null` value deletes the key); the state is
//! the last value of each key. That is the shape of a compacted Kafka
//! topic, so moving the store there (for several engines to share) changes
//! where lines go, not what they mean. Module bytes live beside it as
//! `state/blobs/<sha256>.wasm`, written before the line that names them.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{BufRead as _, BufReader, Write as _};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use anyhow::Context as _;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

pub struct StateStore {
    dir: PathBuf,
    inner: Mutex<Inner>,
}

struct Inner {
    log: File,
    entries: BTreeMap<String, serde_json::Value>,
}

#[derive(Serialize, Deserialize)]
struct Change {
    key: String,
    value: serde_json::Value,
}

const LOG: &str = "changelog.jsonl";

impl StateStore {
    /// Opens (or creates) the store in `dir`, compacting its changelog.
    pub fn open(dir: &Path) -> anyhow::Result<StateStore> {
        fs::create_dir_all(dir.join("blobs")).with_context(|| format!("cannot create {}", dir.display()))?;
        let path = dir.join(LOG);
        let mut entries = BTreeMap::new();
        if path.exists() {
            let file = File::open(&path).with_context(|| format!("cannot read {}", path.display()))?;
            for (number, line) in BufReader::new(file).lines().enumerate() {
                let line = line.with_context(|| format!("cannot read {}", path.display()))?;
                match serde_json::from_str::<Change>(&line) {
                    Ok(Change { key, value: serde_json::Value::Null }) => {
                        entries.remove(&key);
                    }
                    Ok(Change { key, value }) => {
                        entries.insert(key, value);
                    }
                    // A crash during an append leaves a cut last line: that
                    // change never completed, so it is skipped.
                    Err(e) => tracing::warn!(
                        "{}:{}: skipping an unreadable change: {e}",
                        path.display(),
                        number + 1
                    ),
                }
            }
        }
        compact(&path, &entries)?;
        let log = OpenOptions::new()
            .append(true)
            .open(&path)
            .with_context(|| format!("cannot open {}", path.display()))?;
        Ok(StateStore { dir: dir.to_path_buf(), inner: Mutex::new(Inner { log, entries }) })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn get<T: serde::de::DeserializeOwned>(&self, key: &str) -> Option<T> {
        self.lock().entries.get(key).and_then(|v| serde_json::from_value(v.clone()).ok())
    }

    /// Values under `prefix`, in key order.
    pub fn scan<T: serde::de::DeserializeOwned>(&self, prefix: &str) -> Vec<(String, T)> {
        let inner = self.lock();
        inner
            .entries
            .range(prefix.to_string()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .filter_map(|(k, v)| serde_json::from_value(v.clone()).ok().map(|v| (k.clone(), v)))
            .collect()
    }

    /// Records `value` under `key`, durably, before returning.
    pub fn put(&self, key: &str, value: &impl Serialize) -> anyhow::Result<()> {
        self.append(key, serde_json::to_value(value)?)
    }

    pub fn delete(&self, key: &str) -> anyhow::Result<()> {
        self.append(key, serde_json::Value::Null)
    }

    fn append(&self, key: &str, value: serde_json::Value) -> anyhow::Result<()> {
        let mut line = serde_json::to_vec(&Change { key: key.to_string(), value: value.clone() })?;
        line.push(b'\n');
        let mut inner = self.lock();
        inner
            .log
            .write_all(&line)
            .and_then(|()| inner.log.sync_data())
            .context("cannot write the state changelog")?;
        if value.is_null() {
            inner.entries.remove(key);
        } else {
            inner.entries.insert(key.to_string(), value);
        }
        Ok(())
    }

    /// Stores `bytes` under their SHA-256 (hex), which it returns.
    pub fn put_blob(&self, bytes: &[u8]) -> anyhow::Result<String> {
        let hash = hex::encode(Sha256::digest(bytes));
        let path = self.blob_path(&hash);
        if !path.exists() {
            let temporary = self.dir.join("blobs").join(format!(".{hash}.tmp"));
            let mut file =
                File::create(&temporary).with_context(|| format!("cannot create {}", temporary.display()))?;
            file.write_all(bytes).and_then(|()| file.sync_all())?;
            fs::rename(&temporary, &path).with_context(|| format!("cannot store {}", path.display()))?;
        }
        Ok(hash)
    }

    pub fn blob_path(&self, hash: &str) -> PathBuf {
        self.dir.join("blobs").join(format!("{hash}.wasm"))
    }

    pub fn remove_blob(&self, hash: &str) {
        let _ = fs::remove_file(self.blob_path(hash));
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Rewrites the changelog with one line per live key (via a temporary file
/// and a rename, so a crash leaves the old or the new log, never half).
fn compact(path: &Path, entries: &BTreeMap<String, serde_json::Value>) -> anyhow::Result<()> {
    let temporary = path.with_extension("jsonl.tmp");
    let mut out = Vec::new();
    for (key, value) in entries {
        serde_json::to_writer(&mut out, &Change { key: key.clone(), value: value.clone() })?;
        out.push(b'\n');
    }
    let mut file =
        File::create(&temporary).with_context(|| format!("cannot write {}", temporary.display()))?;
    file.write_all(&out).and_then(|()| file.sync_all())?;
    fs::rename(&temporary, path).with_context(|| format!("cannot replace {}", path.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn survives_reopening_and_a_cut_last_line() {
        let dir = tempfile::tempdir().unwrap();
        let store = StateStore::open(dir.path()).unwrap();
        store.put("module/a/1", &serde_json::json!({"v": 1})).unwrap();
        store.put("module/a/2", &serde_json::json!({"v": 2})).unwrap();
        store.put("pipeline/p", &serde_json::json!({"toml": "x"})).unwrap();
        store.delete("module/a/1").unwrap();
        let hash = store.put_blob(b"\0asm").unwrap();
        drop(store);
        // A crash in the middle of an append.
        let mut log = OpenOptions::new().append(true).open(dir.path().join(LOG)).unwrap();
        log.write_all(br#"{"key":"pipeline/q","val"#).unwrap();

        let store = StateStore::open(dir.path()).unwrap();
        let modules: Vec<(String, serde_json::Value)> = store.scan("module/");
        assert_eq!(modules, vec![("module/a/2".to_string(), serde_json::json!({"v": 2}))]);
        assert_eq!(store.get::<serde_json::Value>("pipeline/p"), Some(serde_json::json!({"toml": "x"})));
        assert_eq!(store.get::<serde_json::Value>("pipeline/q"), None);
        assert_eq!(fs::read(store.blob_path(&hash)).unwrap(), b"\0asm");
        // Compacted: one line per live key.
        assert_eq!(fs::read_to_string(dir.path().join(LOG)).unwrap().lines().count(), 2);
    }
}
