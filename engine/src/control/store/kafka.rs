//! A cluster's changelog in Kafka, as Kafka Connect keeps its configs in
//! distributed mode: one compacted topic of keyed changes, which every
//! engine reads from the start and keeps reading, so every engine converges
//! on the same state; and one compacted topic of module bytes in chunks
//! (`{sha256}/{index}`), because a module may be larger than a message.
//!
//! A write is produced with `acks=all` and returns once this engine's
//! reader has applied it: the engine that took a change through its API
//! shows it when the API answers, and the others within a read's latency.
//! Blob manifests (`blob/{sha256}`: size and chunk count) are changes like
//! any other, written after the chunks, so an engine that sees a manifest
//! can always fetch the chunks.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use super::{Changelog, Entries, write_atomically};
use crate::kafka::topics::{TopicSpec, ensure_topics};

/// Module bytes go out in chunks of this size (Kafka's default message
/// limit is about 1 MiB).
const CHUNK: usize = 256 << 10;
/// How long a write waits to see itself read back.
const ECHO_TIMEOUT: Duration = Duration::from_secs(15);

/// Where a cluster keeps its state.
#[derive(Debug, Clone)]
pub struct ClusterTopics {
    pub cluster: String,
    /// The cluster's Kafka bootstrap servers.
    pub bootstrap: String,
}

impl ClusterTopics {
    pub fn state(&self) -> String {
        format!("sluice.{}.state", self.cluster)
    }

    pub fn modules(&self) -> String {
        format!("sluice.{}.modules", self.cluster)
    }

    pub fn dead_letters(&self) -> String {
        format!("sluice.{}.dead-letters", self.cluster)
    }

    /// Engines' member records: rewritten every few seconds, so kept in a
    /// topic of their own with time retention, not in the state (a broker
    /// that does not compact would make the state grow without end).
    pub fn members(&self) -> String {
        format!("sluice.{}.members", self.cluster)
    }

    pub(super) fn client(&self) -> ClientConfig {
        let mut config = ClientConfig::new();
        config.set("bootstrap.servers", &self.bootstrap);
        config
    }

    /// A client for reading one of the cluster's topics from where this
    /// engine assigns itself (`purpose` names its group; nothing is
    /// committed). Nothing writes these topics in transactions, so reading
    /// uncommitted is the same and asks less of the brokers: tansu 0.6 over
    /// PostgreSQL 15 cannot answer a read-committed ListOffsets (its query
    /// needs PostgreSQL 16).
    pub(super) fn reader(&self, purpose: &str) -> ClientConfig {
        let mut config = self.client();
        config
            .set("isolation.level", "read_uncommitted")
            .set("group.id", format!("sluice-{purpose}-{}", crate::identity::engine_id()))
            .set("enable.auto.commit", "false")
            .set("enable.partition.eof", "false");
        config
    }
}

/// A blob's manifest, kept in the state topic.
#[derive(Debug, Serialize, Deserialize)]
struct Manifest {
    size: u64,
    chunks: u32,
}

pub(super) struct TopicChangelog {
    topics: ClusterTopics,
    /// The topic this changelog writes and reads.
    topic: String,
    producer: FutureProducer,
    entries: Arc<Entries>,
    /// The next offset the reader will apply, and a way to wait for it.
    applied: Arc<(Mutex<i64>, Condvar)>,
    stop: Arc<AtomicBool>,
}

impl Drop for TopicChangelog {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

impl TopicChangelog {
    /// Creates the cluster's changelog topics if they are missing.
    pub(super) fn create_topics(topics: &ClusterTopics) -> anyhow::Result<()> {
        let compacted: &[(&str, &str)] = &[("cleanup.policy", "compact")];
        let recent: &[(&str, &str)] = &[("cleanup.policy", "delete"), ("retention.ms", "600000")];
        ensure_topics(
            &topics.bootstrap,
            &[
                TopicSpec { name: &topics.state(), partitions: 1, config: compacted },
                TopicSpec { name: &topics.modules(), partitions: 1, config: compacted },
                TopicSpec { name: &topics.members(), partitions: 1, config: recent },
            ],
        )
    }

    /// A changelog on `topic`, read from its start into `entries`.
    pub(super) fn open(
        topics: ClusterTopics,
        topic: String,
        entries: Arc<Entries>,
    ) -> anyhow::Result<TopicChangelog> {
        let producer: FutureProducer = topics
            .client()
            .set("acks", "all")
            .set("enable.idempotence", "true")
            .set("linger.ms", "0")
            .create()
            .context("cannot create the state producer")?;
        let consumer: BaseConsumer = topics
            .reader("state")
            .set("fetch.wait.max.ms", "50")
            .create()
            .context("cannot create the state reader")?;
        let state = topic.clone();
        let (_, end) = consumer
            .fetch_watermarks(&state, 0, Duration::from_secs(10))
            .with_context(|| format!("cannot read the state topic `{state}`"))?;
        let mut list = TopicPartitionList::new();
        list.add_partition_offset(&state, 0, Offset::Beginning)?;
        consumer.assign(&list).context("cannot read the state topic")?;
        let applied = Arc::new((Mutex::new(0i64), Condvar::new()));
        let stop = Arc::new(AtomicBool::new(false));
        {
            let (entries, applied, stop) = (entries.clone(), applied.clone(), stop.clone());
            std::thread::Builder::new()
                .name("sluice-state".into())
                .spawn(move || read_changes(consumer, entries, applied, stop))
                .context("cannot start the state reader")?;
        }
        let changelog = TopicChangelog { topics, topic, producer, entries, applied, stop };
        // The state written before this engine started, before anything runs.
        changelog
            .wait_applied(end, Duration::from_secs(60))
            .with_context(|| format!("cannot read the state topic `{state}` to its end"))?;
        tracing::info!(topic = %state, changes = end, "cluster state read");
        Ok(changelog)
    }

    /// Waits until the reader has applied everything before `offset`.
    fn wait_applied(&self, offset: i64, timeout: Duration) -> anyhow::Result<()> {
        let (next, changed) = &*self.applied;
        let deadline = Instant::now() + timeout;
        let mut applied = next.lock().unwrap_or_else(|e| e.into_inner());
        while *applied < offset {
            let left = deadline.saturating_duration_since(Instant::now());
            anyhow::ensure!(!left.is_zero(), "read up to offset {} of {offset}", *applied);
            applied = changed.wait_timeout(applied, left).unwrap_or_else(|e| e.into_inner()).0;
        }
        Ok(())
    }

    /// Produces one keyed message and returns its offset.
    fn produce(&self, topic: &str, key: &str, payload: Option<&[u8]>) -> anyhow::Result<i64> {
        let mut record: FutureRecord<'_, str, [u8]> = FutureRecord::to(topic).key(key);
        if let Some(payload) = payload {
            record = record.payload(payload);
        }
        let delivered = futures_executor::block_on(self.producer.send(record, Duration::from_secs(30)));
        match delivered {
            Ok(delivery) => Ok(delivery.offset),
            Err((error, _)) => Err(anyhow::anyhow!("cannot write `{key}` to `{topic}`: {error}")),
        }
    }

    fn manifest(&self, hash: &str) -> Option<Manifest> {
        let value = self.entries.lock().get(&format!("blob/{hash}")).cloned()?;
        serde_json::from_value(value).ok()
    }
}

impl Changelog for TopicChangelog {
    fn append(&self, key: &str, value: serde_json::Value) -> anyhow::Result<()> {
        let payload = (!value.is_null()).then(|| serde_json::to_vec(&value)).transpose()?;
        let offset = self.produce(&self.topic, key, payload.as_deref())?;
        self.wait_applied(offset + 1, ECHO_TIMEOUT)
            .with_context(|| format!("the change to `{key}` was written but not read back"))
    }

    fn share_blob(&self, hash: &str, path: &Path) -> anyhow::Result<()> {
        if self.manifest(hash).is_some() {
            return Ok(());
        }
        let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
        let chunks = bytes.chunks(CHUNK).collect::<Vec<_>>();
        for (index, chunk) in chunks.iter().enumerate() {
            self.produce(&self.topics.modules(), &format!("{hash}/{index:05}"), Some(chunk))?;
        }
        let manifest = Manifest { size: bytes.len() as u64, chunks: chunks.len() as u32 };
        self.append(&format!("blob/{hash}"), serde_json::to_value(manifest)?)
    }

    fn fetch_blob(&self, hash: &str, path: &Path) -> anyhow::Result<()> {
        let manifest =
            self.manifest(hash).with_context(|| format!("no module with SHA-256 {hash} in the cluster"))?;
        let modules = self.topics.modules();
        let consumer: BaseConsumer =
            self.topics.reader("blobs").create().context("cannot create a module reader")?;
        let (_, end) = consumer.fetch_watermarks(&modules, 0, Duration::from_secs(10))?;
        let mut list = TopicPartitionList::new();
        list.add_partition_offset(&modules, 0, Offset::Beginning)?;
        consumer.assign(&list)?;
        let mut chunks: Vec<Option<Vec<u8>>> = vec![None; manifest.chunks as usize];
        let prefix = format!("{hash}/");
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut position = 0;
        while position < end && chunks.iter().any(Option::is_none) {
            anyhow::ensure!(Instant::now() < deadline, "reading module {hash} timed out");
            let Some(message) = consumer.poll(Duration::from_millis(500)) else { continue };
            let message = message.context("cannot read the module topic")?;
            position = message.offset() + 1;
            let Some(index) = message
                .key()
                .and_then(|k| std::str::from_utf8(k).ok())
                .and_then(|k| k.strip_prefix(&prefix))
                .and_then(|i| i.parse::<usize>().ok())
            else {
                continue;
            };
            if let (Some(slot), Some(payload)) = (chunks.get_mut(index), message.payload()) {
                *slot = Some(payload.to_vec());
            }
        }
        let bytes: Vec<u8> = chunks
            .into_iter()
            .enumerate()
            .map(|(i, c)| c.with_context(|| format!("module {hash}: chunk {i} is missing")))
            .collect::<anyhow::Result<Vec<_>>>()?
            .concat();
        anyhow::ensure!(
            hex::encode(Sha256::digest(&bytes)) == hash && bytes.len() as u64 == manifest.size,
            "module {hash}: the bytes read back do not match their SHA-256"
        );
        write_atomically(path, &bytes)
    }

    fn drop_blob(&self, hash: &str) {
        let Some(manifest) = self.manifest(hash) else { return };
        for index in 0..manifest.chunks {
            let _ = self.produce(&self.topics.modules(), &format!("{hash}/{index:05}"), None);
        }
        let _ = self.append(&format!("blob/{hash}"), serde_json::Value::Null);
    }
}

/// Applies every change of the state topic, in order, until stopped.
fn read_changes(
    consumer: BaseConsumer,
    entries: Arc<Entries>,
    applied: Arc<(Mutex<i64>, Condvar)>,
    stop: Arc<AtomicBool>,
) {
    while !stop.load(Ordering::Relaxed) {
        let Some(message) = consumer.poll(Duration::from_millis(100)) else { continue };
        let message = match message {
            Ok(message) => message,
            Err(error) => {
                tracing::warn!("reading the cluster state: {error}");
                continue;
            }
        };
        if let Some(key) = message.key().and_then(|k| std::str::from_utf8(k).ok()) {
            let value = match message.payload() {
                None => Some(serde_json::Value::Null),
                Some(bytes) => serde_json::from_slice(bytes)
                    .inspect_err(|e| tracing::warn!(key, "an unreadable change in the cluster state: {e}"))
                    .ok(),
            };
            if let Some(value) = value {
                entries.apply(key.to_string(), value);
            }
        }
        let (next, changed) = &*applied;
        *next.lock().unwrap_or_else(|e| e.into_inner()) = message.offset() + 1;
        changed.notify_all();
    }
}
