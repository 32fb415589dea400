//! A single engine's changelog: `state/changelog.jsonl`, one JSON line
//! `{"key": …, "value": …}` per change, fsynced before a write returns,
//! compacted (one line per live key) each time it is opened. A line cut
//! short by a crash is a change that never completed, and is skipped.

use std::fs::{File, OpenOptions};
use std::io::{BufRead as _, BufReader, Write as _};
use std::path::Path;
use std::sync::{Arc, Mutex};

use anyhow::Context as _;
use serde::{Deserialize, Serialize};

use super::{Changelog, Entries, write_atomically};

const LOG: &str = "changelog.jsonl";

#[derive(Serialize, Deserialize)]
struct Change {
    key: String,
    value: serde_json::Value,
}

pub(super) struct FileChangelog {
    log: Mutex<File>,
    entries: Arc<Entries>,
}

impl FileChangelog {
    pub(super) fn open(dir: &Path, entries: Arc<Entries>) -> anyhow::Result<FileChangelog> {
        let path = dir.join(LOG);
        if path.exists() {
            let file = File::open(&path).with_context(|| format!("cannot read {}", path.display()))?;
            for (number, line) in BufReader::new(file).lines().enumerate() {
                let line = line.with_context(|| format!("cannot read {}", path.display()))?;
                match serde_json::from_str::<Change>(&line) {
                    Ok(Change { key, value }) => entries.apply(key, value),
                    Err(e) => tracing::warn!(
                        "{}:{}: skipping an unreadable change: {e}",
                        path.display(),
                        number + 1
                    ),
                }
            }
        }
        let mut compacted = Vec::new();
        for (key, value) in entries.lock().iter() {
            serde_json::to_writer(&mut compacted, &Change { key: key.clone(), value: value.clone() })?;
            compacted.push(b'\n');
        }
        write_atomically(&path, &compacted)?;
        let log = OpenOptions::new()
            .append(true)
            .open(&path)
            .with_context(|| format!("cannot open {}", path.display()))?;
        Ok(FileChangelog { log: Mutex::new(log), entries })
    }
}

impl Changelog for FileChangelog {
    fn append(&self, key: &str, value: serde_json::Value) -> anyhow::Result<()> {
        let mut line = serde_json::to_vec(&Change { key: key.to_string(), value: value.clone() })?;
        line.push(b'\n');
        let mut log = self.log.lock().unwrap_or_else(|e| e.into_inner());
        log.write_all(&line).and_then(|()| log.sync_data()).context("cannot write the state changelog")?;
        self.entries.apply(key.to_string(), value);
        Ok(())
    }

    fn share_blob(&self, _hash: &str, _path: &Path) -> anyhow::Result<()> {
        Ok(())
    }

    fn fetch_blob(&self, hash: &str, path: &Path) -> anyhow::Result<()> {
        anyhow::bail!("blob {hash} is missing from {}", path.display())
    }

    fn drop_blob(&self, _hash: &str) {}
}

#[cfg(test)]
mod tests {
    use super::super::StateStore;
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
        assert_eq!(std::fs::read(store.blob_path(&hash).unwrap()).unwrap(), b"\0asm");
        // Compacted: one line per live key.
        assert_eq!(std::fs::read_to_string(dir.path().join(LOG)).unwrap().lines().count(), 2);
    }
}
