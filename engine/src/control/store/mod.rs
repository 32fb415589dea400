//! The control plane's durable state: a keyed changelog (last value wins,
//! a `null` value deletes) plus content-addressed blobs (module bytes).
//!
//! Where it lives is the [`Changelog`]'s business:
//! - [`local::FileChangelog`]: `state/changelog.jsonl` in the engine's data
//!   directory, for a single engine;
//! - [`kafka::TopicChangelog`]: a compacted Kafka topic per cluster (and a
//!   second one for module bytes, in chunks), which every engine of the
//!   cluster reads from the start, as Kafka Connect keeps its configs.
//!
//! Either way the state is an in-memory map fed by the changelog, and a
//! write returns only once this engine's map shows it (read-your-writes).
//! Blobs are cached in `state/blobs/<sha256>.wasm` on every engine.
//!
//! The dead letters the API browses are kept here too: in
//! `state/dead-letters/{pipeline}.ndjson` for a single engine, in a topic
//! the cluster shares otherwise (see [`dead_letters`]).

mod dead_letters;
mod kafka;
mod local;

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use anyhow::Context as _;
use serde::Serialize;
use sha2::{Digest as _, Sha256};
use tokio::sync::watch;

pub use kafka::ClusterTopics;

use crate::pipeline::dead_letter_log::DeadLetterLog;

/// Where changes and blobs are kept.
trait Changelog: Send + Sync {
    /// Records a change durably; returns once `entries` shows it.
    fn append(&self, key: &str, value: serde_json::Value) -> anyhow::Result<()>;

    /// Makes a blob (already in the local cache at `path`) reachable for
    /// every engine sharing this changelog.
    fn share_blob(&self, hash: &str, path: &Path) -> anyhow::Result<()>;

    /// Brings a blob another engine shared into the local cache at `path`.
    fn fetch_blob(&self, hash: &str, path: &Path) -> anyhow::Result<()>;

    /// Forgets a blob nobody uses any more.
    fn drop_blob(&self, hash: &str);
}

/// The current state, shared with the changelog that feeds it.
#[derive(Default)]
pub(crate) struct Entries {
    map: Mutex<BTreeMap<String, serde_json::Value>>,
    /// Bumped on every change, so the supervisor can reconcile.
    version: watch::Sender<u64>,
}

impl Entries {
    fn apply(&self, key: String, value: serde_json::Value) {
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        if value.is_null() {
            map.remove(&key);
        } else {
            map.insert(key, value);
        }
        drop(map);
        self.version.send_modify(|v| *v += 1);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, serde_json::Value>> {
        self.map.lock().unwrap_or_else(|e| e.into_inner())
    }
}

pub struct StateStore {
    dir: PathBuf,
    entries: Arc<Entries>,
    changelog: Box<dyn Changelog>,
    /// Where `member/…` keys go in a cluster (see [`ClusterTopics::members`]).
    members: Option<Box<dyn Changelog>>,
    /// The cluster this state is shared with, if any.
    cluster: Option<String>,
    /// The cluster's dead-letter log.
    dead_letters: Option<Arc<dead_letters::SharedDeadLetters>>,
}

impl StateStore {
    /// A single engine's store in `dir`, compacting its changelog.
    pub fn open(dir: &Path) -> anyhow::Result<StateStore> {
        fs::create_dir_all(dir.join("blobs")).with_context(|| format!("cannot create {}", dir.display()))?;
        let entries = Arc::new(Entries::default());
        let changelog = local::FileChangelog::open(dir, entries.clone())?;
        Ok(StateStore {
            dir: dir.to_path_buf(),
            entries,
            changelog: Box::new(changelog),
            members: None,
            cluster: None,
            dead_letters: None,
        })
    }

    /// The store a cluster shares through Kafka; blobs are cached in `dir`.
    /// Returns once the state written before this engine started is read.
    pub fn open_cluster(dir: &Path, topics: ClusterTopics) -> anyhow::Result<StateStore> {
        fs::create_dir_all(dir.join("blobs")).with_context(|| format!("cannot create {}", dir.display()))?;
        let entries = Arc::new(Entries::default());
        let cluster = topics.cluster.clone();
        kafka::TopicChangelog::create_topics(&topics)?;
        let dead_letters = dead_letters::SharedDeadLetters::open(&topics)?;
        let members = kafka::TopicChangelog::open(topics.clone(), topics.members(), entries.clone())?;
        let changelog = kafka::TopicChangelog::open(topics.clone(), topics.state(), entries.clone())?;
        Ok(StateStore {
            dir: dir.to_path_buf(),
            entries,
            changelog: Box::new(changelog),
            members: Some(Box::new(members)),
            cluster: Some(cluster),
            dead_letters: Some(dead_letters),
        })
    }

    /// The dead letters kept for `pipeline`: shared with the cluster, or on
    /// disk beside the state so they survive a restart (in memory only if
    /// that cannot be opened).
    pub fn dead_letter_log(&self, pipeline: &str) -> Arc<DeadLetterLog> {
        if let Some(shared) = &self.dead_letters {
            return shared.log(pipeline);
        }
        let path = self.dir.join("dead-letters").join(format!("{pipeline}.ndjson"));
        match DeadLetterLog::open(pipeline, &path) {
            Ok(log) => Arc::new(log),
            Err(error) => {
                tracing::warn!(pipeline, "dead letters are kept in memory only: {error:#}");
                Arc::new(DeadLetterLog::in_memory(pipeline))
            }
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The cluster's name when the state is shared.
    pub fn cluster(&self) -> Option<&str> {
        self.cluster.as_deref()
    }

    /// Changes as they are read (from this engine or, in a cluster, any).
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.entries.version.subscribe()
    }

    pub fn get<T: serde::de::DeserializeOwned>(&self, key: &str) -> Option<T> {
        self.entries.lock().get(key).and_then(|v| serde_json::from_value(v.clone()).ok())
    }

    /// Values under `prefix`, in key order.
    pub fn scan<T: serde::de::DeserializeOwned>(&self, prefix: &str) -> Vec<(String, T)> {
        let entries = self.entries.lock();
        entries
            .range(prefix.to_string()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .filter_map(|(k, v)| serde_json::from_value(v.clone()).ok().map(|v| (k.clone(), v)))
            .collect()
    }

    /// Records `value` under `key`, durably, before returning.
    pub fn put(&self, key: &str, value: &impl Serialize) -> anyhow::Result<()> {
        self.changelog_of(key).append(key, serde_json::to_value(value)?)
    }

    pub fn delete(&self, key: &str) -> anyhow::Result<()> {
        self.changelog_of(key).append(key, serde_json::Value::Null)
    }

    fn changelog_of(&self, key: &str) -> &dyn Changelog {
        match &self.members {
            Some(members) if key.starts_with("member/") => members.as_ref(),
            _ => self.changelog.as_ref(),
        }
    }

    /// Stores `bytes` under their SHA-256 (hex), which it returns.
    pub fn put_blob(&self, bytes: &[u8]) -> anyhow::Result<String> {
        let hash = hex::encode(Sha256::digest(bytes));
        let path = self.cached_blob(&hash);
        if !path.exists() {
            let temporary = self.dir.join("blobs").join(format!(".{hash}.tmp"));
            let mut file =
                File::create(&temporary).with_context(|| format!("cannot create {}", temporary.display()))?;
            file.write_all(bytes).and_then(|()| file.sync_all())?;
            fs::rename(&temporary, &path).with_context(|| format!("cannot store {}", path.display()))?;
        }
        self.changelog.share_blob(&hash, &path)?;
        Ok(hash)
    }

    /// The local file holding blob `hash`, fetched from the cluster first
    /// if this engine has not seen it yet.
    pub fn blob_path(&self, hash: &str) -> anyhow::Result<PathBuf> {
        let path = self.cached_blob(hash);
        if !path.exists() {
            self.changelog.fetch_blob(hash, &path)?;
        }
        Ok(path)
    }

    pub fn remove_blob(&self, hash: &str) {
        let _ = fs::remove_file(self.cached_blob(hash));
        self.changelog.drop_blob(hash);
    }

    fn cached_blob(&self, hash: &str) -> PathBuf {
        self.dir.join("blobs").join(format!("{hash}.wasm"))
    }
}

/// Writes `bytes` to `path` via a temporary file and a rename, so a crash
/// leaves the old file or the new one, never half.
fn write_atomically(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let temporary = path.with_extension("tmp");
    let mut file =
        File::create(&temporary).with_context(|| format!("cannot write {}", temporary.display()))?;
    file.write_all(bytes).and_then(|()| file.sync_all())?;
    fs::rename(&temporary, path).with_context(|| format!("cannot replace {}", path.display()))
}
