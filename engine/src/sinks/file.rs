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
//! crash of sluice cannot lose (`fsync = true` also survives power loss).
//! A torn last line left by a killed process is cut off when the file is
//! opened again; its records were never acknowledged and come again.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncWriteExt, BufWriter};

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
    writer: Option<BufWriter<tokio::fs::File>>,
    line: Vec<u8>,
}

impl FileSink {
    pub fn new(config: &FileSinkConfig, pipeline: &PipelineConfig, ctx: SinkContext) -> anyhow::Result<Self> {
        Ok(FileSink {
            path: pipeline.resolve(Path::new(&config.path)),
            config: config.clone(),
            ctx,
            writer: None,
            line: Vec::new(),
        })
    }

    /// Opens the file on first write, so a pipeline that writes nothing
    /// leaves no empty file behind.
    async fn writer(&mut self) -> anyhow::Result<&mut BufWriter<tokio::fs::File>> {
        if self.writer.is_none() {
            if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
                tokio::fs::create_dir_all(dir)
                    .await
                    .with_context(|| format!("cannot create {}", dir.display()))?;
            }
            let path = self.path.clone();
            tokio::task::spawn_blocking(move || drop_torn_line(&path))
                .await
                .context("recovery task failed")?
                .with_context(|| format!("cannot recover {}", self.path.display()))?;
            let file = tokio::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.path)
                .await
                .with_context(|| format!("cannot open {}", self.path.display()))?;
            self.writer = Some(BufWriter::with_capacity(1 << 20, file));
        }
        Ok(self.writer.as_mut().expect("opened above"))
    }
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
        let codec = self.config.codec;
        let fsync = self.config.fsync;
        let mut line = std::mem::take(&mut self.line);
        let writer = self.writer().await?;
        for record in records {
            line.clear();
            match codec {
                Codec::Value if memchr::memchr(b'\n', &record.value).is_some() => {
                    refused.push(record);
                    continue;
                }
                Codec::Value => line.extend_from_slice(&record.value),
                Codec::Record => serde_json::to_writer(&mut line, &record.to_json())?,
            }
            line.push(b'\n');
            writer.write_all(&line).await?;
            written += 1;
        }
        writer.flush().await?;
        if fsync {
            writer.get_ref().sync_data().await?;
        }
        self.line = line;
        add(&self.ctx.stats.written, written);

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

    async fn close(mut self: Box<Self>) -> anyhow::Result<()> {
        if let Some(writer) = self.writer.as_mut() {
            writer.flush().await?;
            writer
                .get_ref()
                .sync_all()
                .await
                .with_context(|| format!("cannot sync {}", self.path.display()))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
