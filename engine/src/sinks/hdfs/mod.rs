//! The `hdfs` sink: the lake. Records become Avro object container files on
//! HDFS (`hdfs://`) or a local filesystem (`file://`), one open file per
//! topic-partition, committed by rename.
//!
//! Exactly once, with nothing but file names as state:
//! - a file is written hidden, then closed (durable) and renamed to
//!   `{topic}+{partition}+{first}+{last}.avro`; only then are its records'
//!   acks released, so the Kafka source commits offsets after the rename;
//! - the first time a partition is seen (at start, and again after it was
//!   revoked and reassigned), its committed names are listed: records at or
//!   below the last committed offset are already in the lake and are
//!   skipped, and hidden files a crash left behind are deleted;
//! - when partitions move between engines, earlier owners are fenced out
//!   (see [`fence`]): the new owner deletes their hidden files at once, and
//!   an owner that lost its partition without knowing it yet discards its
//!   file instead of renaming it. Without a consumer group there is one
//!   owner, and other writers' hidden files are only deleted once stale.
//!
//! A crash between rename and offset commit therefore replays records the
//! lake already has, and they are skipped; a crash before the rename loses
//! only a hidden file whose records were never acknowledged.
//!
//! A transform may emit several records for one input; they all carry the
//! input's offset. They always land in the same file, so "committed up to
//! offset N" stays true of every output of N, and a file never ends
//! between two outputs of one input.
//!
//! Files rotate at `max_records`, before `max_bytes` would be passed, when
//! `max_age_ms` has passed since the file was opened (checked on a timer,
//! so it fires without traffic), when a record belongs in another directory,
//! on partition revocation and at shutdown. The outputs of one input stay
//! together even when that takes a file a little past `max_records` or
//! `max_bytes`, or when they would date into different directories (they
//! follow the first).

mod encode;
pub mod fence;
pub mod layout;
mod open_file;

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use serde::{Deserialize, Serialize};

pub use self::encode::InputFormat;
use self::encode::RecordEncoder;
use self::fence::Fence;
use self::layout::LakeFile;
use self::open_file::{FileFormat, OpenFile};
use super::{Sink, SinkContext};
use crate::ack::Ack;
use crate::avro::codec::{CodecName, codec};
use crate::config::{Document, PipelineConfig, Value, join};
use crate::pipeline::dead_letter::{DeadLetter, DeadLetterBatch};
use crate::pipeline::partitions::{PartitionEvent, PartitionKey};
use crate::pipeline::stats::add;
use crate::record::Batch;
use crate::storage::{HdfsOptions, Storage};
use crate::template::Template;
use crate::wasm::FailureKind;

/// `[sink]` with `type = "hdfs"`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HdfsSinkConfig {
    /// `hdfs://namenode:port/dir`, `file:///dir`, or a directory relative to
    /// the pipeline file. Left out, `sluice run` uses the engine's own lake
    /// (`lake/` in its data directory).
    pub url: Option<String>,
    /// The Avro schema every record is written with: inline JSON, or the
    /// path of an `.avsc` file relative to the pipeline file.
    pub schema: String,
    #[serde(default)]
    pub input: InputFormat,
    /// JSON documents may carry fields the schema lacks (dropped) instead
    /// of being dead-lettered.
    #[serde(default)]
    pub ignore_unknown_fields: bool,
    /// The directory template; see [`crate::template`].
    #[serde(default = "default_path")]
    pub path: String,
    /// The record field (a timestamp) that dates a record for the path;
    /// the record's own timestamp when left out.
    pub timestamp_field: Option<String>,
    #[serde(default)]
    pub codec: CodecName,
    /// deflate: 0, 1, 6 or 9; zstd: 1 to 22 (default 3).
    pub codec_level: Option<i64>,
    /// Records are compressed in blocks of about this many bytes.
    #[serde(default = "default_block_bytes")]
    pub block_bytes: u64,
    #[serde(default = "default_max_records")]
    pub max_records: u64,
    /// A file is closed before it would grow past this (one record larger
    /// than this gets a file of its own).
    #[serde(default = "default_max_bytes")]
    pub max_bytes: u64,
    /// A file is closed this long after it was opened, traffic or not.
    #[serde(default = "default_max_age_ms")]
    pub max_age_ms: u64,
    /// The HDFS user to write as (default: `HADOOP_USER_NAME`, then the
    /// login name).
    pub hdfs_user: Option<String>,
}

fn default_path() -> String {
    "topics/{topic}/date={yyyy-MM-dd}".into()
}
fn default_block_bytes() -> u64 {
    64 << 10
}
fn default_max_records() -> u64 {
    100_000
}
fn default_max_bytes() -> u64 {
    128 << 20
}
fn default_max_age_ms() -> u64 {
    60_000
}

impl HdfsSinkConfig {
    /// Checks what serde cannot, recording problems at their keys.
    pub(crate) fn check(&self, doc: &mut Document<'_>, value: &Value<'_>, key: &str) -> bool {
        let before = doc.diagnostics.len();
        let span_of = |field: &str| value.get_ref().get(field).map_or(value.span(), |v| v.span());
        let base = doc.path().parent().unwrap_or(Path::new(".")).to_path_buf();
        if let Err(e) = crate::avro::load_schema(&self.schema, &base) {
            doc.error(span_of("schema"), &join(key, "schema"), format!("{e:#}"));
        }
        if let Err(e) = Template::parse(&self.path) {
            doc.error(span_of("path"), &join(key, "path"), e);
        }
        if let Err(e) = codec(self.codec, self.codec_level) {
            doc.error(span_of("codec_level"), &join(key, "codec_level"), e);
        }
        for (field, number) in [
            ("max_records", self.max_records),
            ("max_bytes", self.max_bytes),
            ("max_age_ms", self.max_age_ms),
            ("block_bytes", self.block_bytes),
        ] {
            if number == 0 {
                doc.error(span_of(field), &join(key, field), "must be at least 1");
            }
        }
        if let Some(url) = &self.url
            && !(url.starts_with("hdfs://") || url.starts_with("file:///") || !url.contains("://"))
        {
            doc.error(
                span_of("url"),
                &join(key, "url"),
                "expected hdfs://host:port/dir, file:///dir or a relative directory",
            );
        }
        doc.diagnostics.len() == before
    }

    pub fn describe(&self) -> String {
        format!("lake {} ({:?})", self.url.as_deref().unwrap_or("(engine default)"), self.codec)
            .to_lowercase()
    }
}

/// Where a record sits in its partition: the offset of the input it came
/// from, and which output of that input it is.
type Position = (i64, u32);

/// Hidden files of other writers are deleted once untouched this long
/// (or twice `max_age_ms`, if that is longer): a live writer renames its
/// file well before.
const STALE_TEMPORARY: Duration = Duration::from_secs(600);

/// What the sink knows about one topic-partition.
struct PartitionState {
    /// The last offset in a committed file (`None`: nothing committed).
    committed: Option<i64>,
    open: Option<OpenFile>,
    /// This sink's claim on the partition, when its group has generations.
    fence: Option<Fence>,
    /// Other writers' hidden files seen at recovery: look again then.
    sweep_at: Option<std::time::Instant>,
}

pub struct HdfsSink {
    storage: Arc<dyn Storage>,
    layout: Template,
    encoder: RecordEncoder,
    format: FileFormat,
    config: HdfsSinkConfig,
    partitions: HashMap<PartitionKey, PartitionState>,
    /// Taken away by the group: their records are committed after every
    /// batch (not held in open files) until they are assigned again.
    revoked: HashSet<PartitionKey>,
    /// The group generation each partition was last assigned in.
    generations: HashMap<PartitionKey, i32>,
    /// Names this sink's hidden files, apart from other writers'.
    writer_id: String,
    ctx: SinkContext,
}

impl HdfsSink {
    pub fn new(config: &HdfsSinkConfig, pipeline: &PipelineConfig, ctx: SinkContext) -> anyhow::Result<Self> {
        let base = pipeline.file.parent().unwrap_or(Path::new(".")).to_path_buf();
        let schema = crate::avro::load_schema(&config.schema, &base)?;
        let url =
            config.url.as_deref().context("the lake sink has no `url` and no engine default was set")?;
        let storage = crate::storage::open(url, &base, &HdfsOptions { user: config.hdfs_user.clone() })?;
        Ok(HdfsSink {
            storage,
            layout: Template::parse(&config.path).map_err(anyhow::Error::msg)?,
            format: FileFormat {
                schema_json: schema.canonical_form(),
                codec: codec(config.codec, config.codec_level).map_err(anyhow::Error::msg)?,
                block_bytes: config.block_bytes as usize,
            },
            encoder: RecordEncoder::new(
                schema,
                config.input,
                config.timestamp_field.clone(),
                config.ignore_unknown_fields,
            )?,
            config: config.clone(),
            partitions: HashMap::new(),
            revoked: HashSet::new(),
            generations: HashMap::new(),
            writer_id: writer_id(&ctx.pipeline),
            ctx,
        })
    }

    /// Claims a partition (when its group has generations), deletes the
    /// hidden files left unfinished (see [`Self::sweep`]), then reads its
    /// committed file names: where its data ends. In that order: an earlier
    /// owner's file is either renamed before the sweep, and listed, or
    /// deleted by it (see [`fence`]).
    async fn recover(&self, key: &PartitionKey) -> anyhow::Result<PartitionState> {
        let (topic, partition) = key;
        let root = self.layout.topic_root(topic);
        let fence = match self.generations.get(key) {
            Some(&generation) => {
                Some(Fence::raise(&*self.storage, &root, *partition, generation, &self.writer_id).await?)
            }
            None => None,
        };
        let mut sweep_at = None;
        match &fence {
            Some(fence) if !fence.stands(&*self.storage).await? => {
                let holder = fence.holder(&*self.storage).await;
                tracing::warn!(pipeline = %self.ctx.pipeline, topic = %topic, partition, generation = fence.generation(), holder = %holder, "assigned in a generation already superseded: its files will be discarded");
            }
            _ => sweep_at = self.sweep(key, fence.is_some()).await?,
        }
        let mut committed = None;
        for file in self.storage.list(&root).await? {
            if let Some(LakeFile::Committed { topic: t, partition: p, last, .. }) =
                LakeFile::parse(file.name())
                && *t == **topic
                && p == *partition
            {
                committed = committed.max(Some(last));
            }
        }
        tracing::info!(pipeline = %self.ctx.pipeline, topic = %topic, partition, last_committed = ?committed, generation = ?fence.as_ref().map(Fence::generation), "lake partition recovered");
        Ok(PartitionState { committed, open: None, fence, sweep_at })
    }

    /// Deletes a partition's hidden files that nobody will commit: this
    /// sink's own (left by a failed commit), and other writers', at once
    /// when this sink's fence stands (they are fenced) or else once stale
    /// (left by a crashed engine). A fresh hidden file of another writer,
    /// unfenced, may belong to a live engine that owned the partition until
    /// the last rebalance and is about to rename it; it is left, and the
    /// returned time says when to look again.
    async fn sweep(
        &self,
        (topic, partition): &PartitionKey,
        fenced_others: bool,
    ) -> anyhow::Result<Option<std::time::Instant>> {
        let stale_after = STALE_TEMPORARY.max(2 * Duration::from_millis(self.config.max_age_ms));
        let now = std::time::SystemTime::now();
        let mut recheck: Option<Duration> = None;
        for file in self.storage.list(&self.layout.topic_root(topic)).await? {
            let Some(LakeFile::Temporary { topic: t, partition: p, writer }) = LakeFile::parse(file.name())
            else {
                continue;
            };
            if t != **topic || p != *partition {
                continue;
            }
            let mine = writer.as_deref() == Some(self.writer_id.as_str());
            let idle = file.modified.and_then(|m| now.duration_since(m).ok()).unwrap_or(stale_after);
            if mine || fenced_others || idle >= stale_after {
                tracing::info!(pipeline = %self.ctx.pipeline, file = %self.storage.url(&file.path), writer = ?writer, "deleting a hidden file left unfinished");
                self.storage.delete(&file.path).await?;
            } else {
                let left = stale_after - idle;
                recheck = Some(recheck.map_or(left, |r| r.min(left)));
                tracing::info!(pipeline = %self.ctx.pipeline, file = %self.storage.url(&file.path), writer = ?writer, "leaving another writer's hidden file until it is stale");
            }
        }
        Ok(recheck.map(|left| std::time::Instant::now() + left + Duration::from_secs(1)))
    }

    async fn commit(&self, state: &mut PartitionState) -> anyhow::Result<()> {
        if let Some(file) = state.open.take() {
            let last = file.last;
            if file.commit(&*self.storage, state.fence.as_ref(), &self.ctx.stats).await? {
                state.committed = Some(last);
            }
        }
        Ok(())
    }

    async fn commit_where(
        &mut self,
        mut due: impl FnMut(&PartitionKey, &PartitionState) -> bool,
    ) -> anyhow::Result<()> {
        let keys: Vec<PartitionKey> =
            self.partitions.iter().filter(|(k, s)| s.open.is_some() && due(k, s)).map(|(k, _)| *k).collect();
        for key in keys {
            let mut state = self.partitions.remove(&key).expect("listed above");
            let result = self.commit(&mut state).await;
            self.partitions.insert(key, state);
            result?;
        }
        Ok(())
    }

    /// Appends one record to its partition's file, rotating as needed.
    /// Returns whether the record is now held by an open file.
    async fn append(
        &mut self,
        key: PartitionKey,
        position: Position,
        datum: &[u8],
        time_ms: i64,
    ) -> anyhow::Result<bool> {
        let mut state = match self.partitions.remove(&key) {
            Some(state) => state,
            None => self.recover(&key).await?,
        };
        let result = self.append_to(&key, &mut state, position, datum, time_ms).await;
        self.partitions.insert(key, state);
        result
    }

    async fn append_to(
        &self,
        (topic, partition): &PartitionKey,
        state: &mut PartitionState,
        position: Position,
        datum: &[u8],
        time_ms: i64,
    ) -> anyhow::Result<bool> {
        let (offset, _) = position;
        if state.committed.is_some_and(|last| offset <= last) {
            // Committed files hold every output of the inputs they cover.
            add(&self.ctx.stats.sink.duplicates_skipped, 1);
            return Ok(false);
        }
        if state.open.as_ref().is_some_and(|open| open.holds(position)) {
            // Redelivered while its first copy waits in the open file.
            add(&self.ctx.stats.sink.duplicates_skipped, 1);
            return Ok(true);
        }
        // Another output of the input the file ends with goes in with it.
        let sibling = state.open.as_ref().is_some_and(|open| open.last == offset);
        let directory = self.layout.render(topic, *partition, time_ms);
        if !sibling
            && let Some(open) = &state.open
            && (open.directory != directory
                || open.records() >= self.config.max_records
                || open.would_exceed(datum.len() as u64, self.config.max_bytes))
        {
            self.commit(state).await?;
        }
        if state.open.is_none() {
            let file = OpenFile::create(
                &*self.storage,
                directory,
                (topic, *partition),
                offset,
                &self.writer_id,
                &self.format,
            )
            .await?;
            add(&self.ctx.stats.sink.open_files, 1);
            state.open = Some(file);
        }
        let open = state.open.as_mut().expect("opened above");
        open.append(datum, position).await?;
        Ok(true)
    }

    async fn dead_letter(&self, refused: Vec<DeadLetter>, acks: &[Ack]) -> anyhow::Result<()> {
        if refused.is_empty() {
            return Ok(());
        }
        let dead_letters =
            self.ctx.dead_letters.as_ref().context("the lake sink cannot be a dead-letter destination")?;
        add(&self.ctx.stats.dead_lettered, refused.len());
        dead_letters
            .send(DeadLetterBatch { letters: refused, acks: acks.to_vec() })
            .await
            .context("dead-letter queue closed")
    }
}

#[async_trait::async_trait]
impl Sink for HdfsSink {
    async fn write(&mut self, batch: Batch) -> anyhow::Result<()> {
        let Batch { records, acks } = batch;
        let mut refused = Vec::new();
        let mut holding: Vec<PartitionKey> = Vec::new();
        // A transform's outputs of one input arrive together, in one batch;
        // each gets its place among them.
        let mut previous: Option<(PartitionKey, i64)> = None;
        let mut output = 0u32;
        for record in records {
            let key: PartitionKey = (record.origin.source, record.origin.partition);
            let offset = record.origin.offset;
            output = match &previous {
                Some((k, o)) if *k == key && *o == offset => output + 1,
                _ => 0,
            };
            previous = Some((key, offset));
            let encoded = match self.encoder.encode(&record) {
                Ok(encoded) => encoded,
                Err(refusal) => {
                    refused.push(DeadLetter::new(
                        record,
                        "sink",
                        FailureKind::Rejected(refusal.kind.into()),
                        refusal.message,
                    ));
                    continue;
                }
            };
            if self.append(key, (offset, output), &encoded.datum, encoded.time_ms).await?
                && !holding.contains(&key)
            {
                holding.push(key);
            }
        }
        self.dead_letter(refused, &acks).await?;
        // Each file holding some of this batch's records keeps the batch's
        // acks until it is committed (a batch's acks are not per record).
        for key in &holding {
            if let Some(open) = self.partitions.get_mut(key).and_then(|s| s.open.as_mut()) {
                open.hold(&acks);
            }
        }
        Ack::all_done(acks);
        // Between batches no input has outputs still to come: full files
        // can close.
        let max_records = self.config.max_records;
        self.commit_where(|_, state| state.open.as_ref().is_some_and(|f| f.records() >= max_records)).await?;
        if self.revoked.is_empty() {
            return Ok(());
        }
        let revoked = std::mem::take(&mut self.revoked);
        let result = self.commit_where(|key, _| revoked.contains(key)).await;
        self.revoked = revoked;
        result
    }

    fn tick_interval(&self) -> Option<Duration> {
        let age = Duration::from_millis(self.config.max_age_ms);
        Some((age / 10).clamp(Duration::from_millis(20), Duration::from_secs(1)))
    }

    async fn tick(&mut self) -> anyhow::Result<()> {
        let max_age = Duration::from_millis(self.config.max_age_ms);
        self.commit_where(|_, state| state.open.as_ref().is_some_and(|f| f.age() >= max_age)).await?;
        let now = std::time::Instant::now();
        let due: Vec<PartitionKey> = self
            .partitions
            .iter()
            .filter(|(_, s)| s.sweep_at.is_some_and(|at| at <= now))
            .map(|(k, _)| *k)
            .collect();
        for key in due {
            let sweep_at = self.sweep(&key, false).await?;
            if let Some(state) = self.partitions.get_mut(&key) {
                state.sweep_at = sweep_at;
            }
        }
        Ok(())
    }

    async fn partitions_changed(&mut self, event: PartitionEvent) -> anyhow::Result<()> {
        match event {
            PartitionEvent::Revoked(keys) => {
                self.revoked.extend(keys.iter().cloned());
                self.commit_where(|key, _| keys.contains(key)).await
            }
            PartitionEvent::Assigned { keys, generation } => {
                // Another owner may have committed files meanwhile, or a
                // crash left hidden ones: read the names again now.
                self.commit_where(|key, _| keys.contains(key)).await?;
                self.revoked.retain(|key| !keys.contains(key));
                for key in &keys {
                    match generation {
                        Some(generation) => self.generations.insert(*key, generation),
                        None => self.generations.remove(key),
                    };
                }
                for key in keys {
                    let state = self.recover(&key).await?;
                    self.partitions.insert(key, state);
                }
                Ok(())
            }
            PartitionEvent::Lost => {
                self.commit_where(|_, _| true).await?;
                self.partitions.clear();
                self.revoked.clear();
                Ok(())
            }
        }
    }

    async fn close(mut self: Box<Self>) -> anyhow::Result<()> {
        self.commit_where(|_, _| true).await
    }
}

/// Names this sink's hidden files: the same for the same engine and
/// pipeline across restarts, different for every other.
fn writer_id(pipeline: &str) -> String {
    use sha2::Digest as _;
    let digest = sha2::Sha256::digest(format!("{}/{pipeline}", crate::identity::engine_id()));
    hex::encode(&digest[..6])
}

#[cfg(test)]
mod tests;
