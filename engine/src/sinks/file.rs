//! The `file` sink: appends records to a file as newline-delimited lines.
//!
//! `codec = "value"` writes each record's value followed by `\n`; it is
//! NDJSON when the values are JSON documents, as transform outputs usually
//! are. A value that contains a newline would corrupt the framing, so such
//! records go to the dead-letter destination instead. `codec = "record"`
//! writes each whole record as a JSON object (key, value, headers,
//! timestamp), for values that are not JSON or not text.
//!
//! Batches are acknowledged once flushed to the operating system, which a
//! crash of sluice cannot lose; the OS writes them to disk in its own time,
//! at exit too, so a power loss can take the last seconds. `fsync = true`
//! puts each batch on disk before it is acknowledged.
//! A batch is laid out in one buffer, which one blocking task writes with
//! one call: `tokio::fs::File` would copy it into a buffer of its own first,
//! and on a fast pipeline those copies were a tenth of the process's time.
//! A torn last line left by a killed process is cut off when the file is
//! opened again; its records were never acknowledged and come again.
//!
//! Fed by a Kafka source, the sink writes each record exactly once, even
//! across crashes: after each batch it records, in `PATH.offsets` (written
//! aside and renamed over), the file's length and the last offset written
//! per partition. On opening, the file is cut back to that length (what
//! came after was never acknowledged) and records at or below those offsets
//! — replayed because their offsets were not committed yet — are skipped.
//! All outputs of one input arrive in one batch, so a transform that emits
//! several records per input is covered too.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context as _;
use serde::{Deserialize, Serialize};

use super::{Sink, SinkContext};
use crate::ack::Ack;
use crate::config::PipelineConfig;
use crate::pipeline::dead_letter::{DeadLetter, DeadLetterBatch};
use crate::pipeline::stats::add;
use crate::record::Batch;
use crate::wasm::FailureKind;

/// `[sink]` (or `[dead_letter]`) with `type = "file"`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSinkConfig {
    /// The file to append to, relative to the pipeline file. Its directory
    /// is created if missing.
    pub path: String,
    #[serde(default)]
    pub codec: Codec,
    /// fsync after every batch: survives power loss, at a cost in throughput.
    #[serde(default)]
    pub fsync: bool,
}

impl FileSinkConfig {
    pub fn new(path: impl Into<String>) -> Self {
        FileSinkConfig { path: path.into(), codec: Codec::default(), fsync: false }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Codec {
    #[default]
    Value,
    Record,
}

pub struct FileSink {
    path: PathBuf,
    config: FileSinkConfig,
    ctx: SinkContext,
    file: Option<Arc<std::fs::File>>,
    /// The lines of the batch being written; kept between batches.
    buf: Vec<u8>,
    /// Kept when writing exactly once (records from Kafka).
    checkpoint: Option<Checkpoint>,
    /// The file's length, as of the last flush.
    length: u64,
}

/// What the file holds: its length and, per source partition, the offset
/// of the last input whose outputs are all in it.
#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
struct Checkpoint {
    length: u64,
    /// Keyed by `topic/partition`.
    offsets: std::collections::BTreeMap<String, i64>,
}

impl FileSink {
    pub fn new(config: &FileSinkConfig, pipeline: &PipelineConfig, ctx: SinkContext) -> anyhow::Result<Self> {
        // Kafka offsets say where a replay starts; dead letters (no further
        // destination) stay at-least-once.
        let exactly_once =
            matches!(pipeline.source, crate::sources::SourceConfig::Kafka(_)) && ctx.dead_letters.is_some();
        Ok(FileSink {
            path: pipeline.resolve(Path::new(&config.path)),
            config: config.clone(),
            ctx,
            file: None,
            buf: Vec::new(),
            checkpoint: exactly_once.then(Checkpoint::default),
            length: 0,
        })
    }

    fn checkpoint_path(&self) -> PathBuf {
        let mut name = self.path.file_name().unwrap_or_default().to_os_string();
        name.push(".offsets");
        self.path.with_file_name(name)
    }

    /// Records what the file holds now, atomically (written aside, renamed
    /// over the last one).
    async fn save_checkpoint(&self) -> anyhow::Result<()> {
        let Some(checkpoint) = &self.checkpoint else { return Ok(()) };
        let path = self.checkpoint_path();
        let aside = path.with_extension("offsets.tmp");
        tokio::fs::write(&aside, serde_json::to_vec(checkpoint)?)
            .await
            .with_context(|| format!("cannot write {}", aside.display()))?;
        tokio::fs::rename(&aside, &path).await.with_context(|| format!("cannot replace {}", path.display()))
    }

    /// Opens the file on first write, so a pipeline that writes nothing
    /// leaves no empty file behind.
    async fn file(&mut self) -> anyhow::Result<Arc<std::fs::File>> {
        if let Some(file) = &self.file {
            return Ok(file.clone());
        }
        if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            tokio::fs::create_dir_all(dir)
                .await
                .with_context(|| format!("cannot create {}", dir.display()))?;
        }
        let path = self.path.clone();
        let saved = match &self.checkpoint {
            Some(_) => read_checkpoint(&self.checkpoint_path())?,
            None => None,
        };
        let length = saved.as_ref().map(|c| c.length);
        let (file, length) = tokio::task::spawn_blocking(move || {
            match length {
                Some(length) => cut_to(&path, length)?,
                None => drop_torn_line(&path)?,
            }
            let file = std::fs::OpenOptions::new().create(true).append(true).open(&path)?;
            let length = file.metadata()?.len();
            std::io::Result::Ok((file, length))
        })
        .await
        .context("opening task failed")?
        .with_context(|| format!("cannot open {}", self.path.display()))?;
        if let (Some(checkpoint), Some(saved)) = (&mut self.checkpoint, saved) {
            *checkpoint = saved;
        }
        self.length = length;
        let file = Arc::new(file);
        self.file = Some(file.clone());
        Ok(file)
    }
}

/// A buffer that grew past this (a batch of huge records) is not kept.
const KEPT_BUFFER_BYTES: usize = 16 << 20;

/// Appends `buf` to `file` in one blocking task; returns the buffer for reuse.
async fn write_out(
    file: Arc<std::fs::File>,
    buf: Vec<u8>,
    fsync: bool,
    path: &Path,
) -> anyhow::Result<Vec<u8>> {
    tokio::task::spawn_blocking(move || {
        (&*file).write_all(&buf)?;
        if fsync {
            file.sync_data()?;
        }
        std::io::Result::Ok(buf)
    })
    .await
    .context("writing task failed")?
    .with_context(|| format!("cannot write {}", path.display()))
}

fn read_checkpoint(path: &Path) -> anyhow::Result<Option<Checkpoint>> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map(Some).with_context(|| {
            format!("{} is not a checkpoint; delete it to write at least once", path.display())
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}

/// Cuts the file back to what the checkpoint covers: anything after was
/// written for records that were never acknowledged, and will come again.
fn cut_to(path: &Path, length: u64) -> std::io::Result<()> {
    let file = match std::fs::OpenOptions::new().write(true).open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    let len = file.metadata()?.len();
    if len > length {
        tracing::info!(file = %path.display(), bytes = len - length, "cutting off what was written after the last checkpoint (it comes again)");
        file.set_len(length)?;
    } else if len < length {
        tracing::warn!(file = %path.display(), expected = length, found = len, "the file is shorter than its checkpoint says (lost on power loss without fsync?)");
    }
    Ok(())
}

/// Cuts off a last line without its `\n`: what a killed process was in the
/// middle of writing. Its records were not acknowledged, so they will be
/// written again whole; keeping the fragment would glue it to the next line.
fn drop_torn_line(path: &Path) -> std::io::Result<()> {
    use std::io::{Read, Seek, SeekFrom};
    let mut file = match std::fs::OpenOptions::new().read(true).write(true).open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    let len = file.metadata()?.len();
    let mut end = len;
    let mut block = vec![0u8; 64 << 10];
    while end > 0 {
        let start = end.saturating_sub(block.len() as u64);
        let chunk = &mut block[..(end - start) as usize];
        file.seek(SeekFrom::Start(start))?;
        file.read_exact(chunk)?;
        if let Some(at) = memchr::memrchr(b'\n', chunk) {
            end = start + at as u64 + 1;
            break;
        }
        end = start;
    }
    if end < len {
        tracing::warn!(file = %path.display(), bytes = len - end, "dropping a torn last line left by a crash");
        file.set_len(end)?;
    }
    Ok(())
}

#[async_trait::async_trait]
impl Sink for FileSink {
    async fn write(&mut self, batch: Batch) -> anyhow::Result<()> {
        let Batch { records, acks } = batch;
        let mut refused = Vec::new();
        let mut written = 0;
        let mut pending_offsets = std::collections::BTreeMap::new();
        let codec = self.config.codec;
        let file = self.file().await?;
        let mut buf = std::mem::take(&mut self.buf);
        buf.clear();
        let mut checkpoint = self.checkpoint.take();
        let mut skipped = 0;
        for record in records {
            if let Some(checkpoint) = &mut checkpoint {
                let key = format!("{}/{}", record.origin.source, record.origin.partition);
                match checkpoint.offsets.get(&key) {
                    // Replayed: every output of this input is in the file.
                    Some(&last) if record.origin.offset <= last => {
                        skipped += 1;
                        continue;
                    }
                    _ => pending_offsets.insert(key, record.origin.offset),
                };
            }
            match codec {
                Codec::Value if memchr::memchr(b'\n', &record.value).is_some() => {
                    refused.push(record);
                    continue;
                }
                Codec::Value => buf.extend_from_slice(&record.value),
                Codec::Record => serde_json::to_writer(&mut buf, &record.to_json())?,
            }
            buf.push(b'\n');
            written += 1;
        }
        let bytes = buf.len() as u64;
        let mut buf = write_out(file, buf, self.config.fsync, &self.path).await?;
        if buf.capacity() > KEPT_BUFFER_BYTES {
            buf = Vec::new();
        }
        self.buf = buf;
        self.length += bytes;
        if let Some(checkpoint) = &mut checkpoint {
            checkpoint.length = self.length;
            checkpoint.offsets.extend(std::mem::take(&mut pending_offsets));
        }
        self.checkpoint = checkpoint;
        self.save_checkpoint().await?;
        add(&self.ctx.stats.written, written);
        add(&self.ctx.stats.sink.duplicates_skipped, skipped);

        if !refused.is_empty() {
            let Some(dead_letters) = &self.ctx.dead_letters else {
                anyhow::bail!("{} records contain a newline and cannot be written as lines", refused.len());
            };
            add(&self.ctx.stats.dead_lettered, refused.len());
            let letters = refused
                .into_iter()
                .map(|record| {
                    let message = "value contains a newline; use codec = \"record\" to write it as JSON";
                    DeadLetter::new(record, "sink", FailureKind::InvalidOutput, message)
                })
                .collect();
            dead_letters
                .send(DeadLetterBatch { letters, acks: acks.clone() })
                .await
                .context("dead-letter queue closed")?;
        }
        // Written and flushed (to the OS: a crash of this process loses
        // nothing; `fsync` guards against power loss too).
        Ack::all_done(acks);
        Ok(())
    }

    /// Nothing is left to do: every batch reached the OS (and the disk,
    /// with `fsync`) before it was acknowledged. Syncing here as well would
    /// make `fsync = false` promise more at exit than during the run, and
    /// cost a short run most of its time.
    async fn close(self: Box<Self>) -> anyhow::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A sink as a Kafka pipeline has it, writing to `path`.
    fn kafka_fed(path: &Path) -> (FileSink, tokio::sync::mpsc::Receiver<DeadLetterBatch>) {
        let text = format!(
            "name = \"p\"\n[source]\ntype = \"kafka\"\ntopics = [\"t\"]\n[sink]\ntype = \"file\"\npath = \"{}\"\n",
            path.display()
        );
        let config = crate::config::parse_str(&path.with_file_name("p.toml"), &text).unwrap().remove(0);
        let crate::sinks::SinkConfig::File(file) = &config.sink else { panic!() };
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        let ctx = SinkContext { pipeline: "p".into(), dead_letters: Some(tx), stats: Default::default() };
        (FileSink::new(file, &config, ctx).unwrap(), rx)
    }

    fn records(offsets: &[(i64, &str)]) -> Batch {
        let records = offsets
            .iter()
            .map(|(offset, value)| {
                crate::record::Record::new(
                    value.to_string(),
                    crate::record::Origin { source: "t".into(), partition: 0, offset: *offset },
                )
            })
            .collect();
        Batch::new(records, Vec::new())
    }

    #[tokio::test]
    async fn replays_after_a_crash_are_written_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.ndjson");
        {
            let (mut sink, _dead) = kafka_fed(&path);
            // Input 1 fans out to two records; both are written.
            sink.write(records(&[(0, "a"), (1, "b1"), (1, "b2")])).await.unwrap();
            sink.write(records(&[(2, "c")])).await.unwrap();
        }
        // A crash after a write the checkpoint does not cover yet.
        std::fs::OpenOptions::new().append(true).open(&path).unwrap().write_all(b"d\npartial").unwrap();
        let (mut sink, _dead) = kafka_fed(&path);
        // The source replays from its last committed offset, 1.
        sink.write(records(&[(1, "b1"), (1, "b2"), (2, "c"), (3, "d")])).await.unwrap();
        Box::new(sink).close().await.unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "a\nb1\nb2\nc\nd\n");
    }

    #[test]
    fn a_torn_last_line_is_cut_off() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.ndjson");
        std::fs::write(&path, "one\ntwo\nthr").unwrap();
        drop_torn_line(&path).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "one\ntwo\n");
        std::fs::write(&path, "x".repeat(200_000)).unwrap();
        drop_torn_line(&path).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "");
        drop_torn_line(&dir.path().join("missing")).unwrap();
    }
}
