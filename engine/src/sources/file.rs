//! The `file` source: lines of files, or whole files as records.
//!
//! `read = "lines"` turns every line of every matched file into a record
//! (log files). `read = "files"` turns every matched file into one record
//! whose key and `filename` header are the file's name (how images enter).
//! With `follow = true` it keeps going: appended lines and new files are
//! picked up as they appear, until the pipeline is stopped.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use anyhow::Context as _;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, BufReader};

use super::{Closed, Source, SourceContext};
use crate::ack::Ack;
use crate::config::PipelineConfig;
use crate::record::{Batch, Header, Origin, Record, now_millis};
use crate::wasm::FailureKind;

/// `[source]` with `type = "file"`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSourceConfig {
    /// A file, a directory (every regular file in it) or a glob pattern such
    /// as `logs/*.log`; relative to the pipeline file.
    pub path: String,
    /// `lines`: one record per line (without its `\n` or `\r\n`).
    /// `files`: one record per file.
    #[serde(default)]
    pub read: ReadMode,
    /// Keep reading appended lines and new files instead of stopping at the end.
    #[serde(default)]
    pub follow: bool,
    /// Longer lines and larger files go to the dead-letter destination
    /// (with their first `max_record_bytes` bytes) instead of the stages.
    #[serde(default = "default_max_record_bytes")]
    pub max_record_bytes: usize,
}

fn default_max_record_bytes() -> usize {
    16 << 20
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ReadMode {
    #[default]
    Lines,
    Files,
}

/// Lines or files sent per chunk: enough to amortise the queue, small
/// enough that a slow input still moves.
const CHUNK: usize = 256;
const POLL: Duration = Duration::from_millis(200);

pub struct FileSource {
    pattern: PathBuf,
    config: FileSourceConfig,
}

impl FileSource {
    pub fn new(config: &FileSourceConfig, pipeline: &PipelineConfig) -> anyhow::Result<Self> {
        Ok(FileSource { pattern: pipeline.resolve(Path::new(&config.path)), config: config.clone() })
    }

    /// The files the configured path names now, in a stable order.
    fn matching_files(&self) -> anyhow::Result<Vec<PathBuf>> {
        let text = self.pattern.to_string_lossy();
        let mut files = if text.contains(['*', '?', '[']) {
            glob::glob(&text)
                .with_context(|| format!("invalid glob pattern {text}"))?
                .filter_map(Result::ok)
                .filter(|p| p.is_file())
                .collect()
        } else if self.pattern.is_dir() {
            std::fs::read_dir(&self.pattern)
                .with_context(|| format!("cannot list {}", self.pattern.display()))?
                .filter_map(|entry| entry.ok().map(|e| e.path()))
                .filter(|p| p.is_file())
                .collect()
        } else if self.pattern.is_file() || self.config.follow {
            vec![self.pattern.clone()]
        } else {
            anyhow::bail!("{} does not exist", self.pattern.display());
        };
        files.sort();
        Ok(files)
    }
}

#[async_trait::async_trait]
impl Source for FileSource {
    async fn run(self: Box<Self>, ctx: SourceContext) -> anyhow::Result<()> {
        let result = match self.config.read {
            ReadMode::Lines => self.read_lines(&ctx).await,
            ReadMode::Files => self.read_files(&ctx).await,
        };
        match result {
            Err(e) if e.is::<Closed>() => Ok(()),
            other => other,
        }
    }
}

impl FileSource {
    async fn read_lines(&self, ctx: &SourceContext) -> anyhow::Result<()> {
        let mut readers: Vec<LineReader> = Vec::new();
        loop {
            for path in self.matching_files()? {
                if !readers.iter().any(|r| r.path == path) && path.exists() {
                    readers.push(LineReader::open(&path, self.config.max_record_bytes).await?);
                }
            }
            let mut progressed = false;
            for reader in &mut readers {
                progressed |= reader.drain(ctx, self.config.follow).await?;
            }
            if !self.config.follow {
                return Ok(());
            }
            if !progressed {
                tokio::select! {
                    _ = ctx.shutdown.cancelled() => return Ok(()),
                    _ = tokio::time::sleep(POLL) => {}
                }
            }
            if ctx.shutdown.is_cancelled() {
                return Ok(());
            }
        }
    }

    async fn read_files(&self, ctx: &SourceContext) -> anyhow::Result<()> {
        let mut seen = std::collections::HashSet::new();
        let mut index = 0i64;
        loop {
            let mut chunk = Vec::new();
            for path in self.matching_files()? {
                if ctx.shutdown.is_cancelled() {
                    return Ok(());
                }
                if !seen.insert(path.clone()) {
                    continue;
                }
                index += 1;
                let origin = Origin { source: path.to_string_lossy().into(), partition: 0, offset: index };
                if let Some(record) = self.read_file(&path, origin, ctx).await? {
                    chunk.push(record);
                }
                if chunk.len() >= CHUNK {
                    send(ctx, std::mem::take(&mut chunk)).await?;
                }
            }
            send(ctx, chunk).await?;
            if !self.config.follow {
                return Ok(());
            }
            tokio::select! {
                _ = ctx.shutdown.cancelled() => return Ok(()),
                _ = tokio::time::sleep(POLL) => {}
            }
        }
    }

    /// One file as a record, or `None` when it went to the dead-letter
    /// destination for being too large.
    async fn read_file(
        &self,
        path: &Path,
        origin: Origin,
        ctx: &SourceContext,
    ) -> anyhow::Result<Option<Record>> {
        let metadata =
            tokio::fs::metadata(path).await.with_context(|| format!("cannot stat {}", path.display()))?;
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let mut record = Record::new(Bytes::new(), origin);
        record.key = Some(Bytes::from(name.clone()));
        record.headers.push(Header { name: "filename".into(), value: Bytes::from(name) });
        record.timestamp = metadata
            .modified()
            .ok()
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map(|d| d.as_millis() as i64);
        let limit = self.config.max_record_bytes;
        if metadata.len() > limit as u64 {
            let message = format!("file is {} bytes, over max_record_bytes = {limit}", metadata.len());
            ctx.dead_letter(record, FailureKind::TooLarge, message, Vec::new()).await?;
            return Ok(None);
        }
        record.value =
            tokio::fs::read(path).await.with_context(|| format!("cannot read {}", path.display()))?.into();
        Ok(Some(record))
    }
}

async fn send(ctx: &SourceContext, records: Vec<Record>) -> Result<(), Closed> {
    if records.is_empty() {
        return Ok(());
    }
    // File sources have no offsets to commit, so the ack is not awaited;
    // it still travels with the records for the sinks' sake.
    let (ack, _done) = Ack::new();
    ctx.send(Batch::new(records, vec![ack])).await
}

/// Reads lines of one file, never holding more than `max` bytes of a line.
struct LineReader {
    path: PathBuf,
    source: Arc<str>,
    reader: BufReader<tokio::fs::File>,
    max: usize,
    line: Vec<u8>,
    /// Full length of the line being read, including bytes not kept.
    line_len: usize,
    line_number: i64,
}

impl LineReader {
    async fn open(path: &Path, max: usize) -> anyhow::Result<Self> {
        let file =
            tokio::fs::File::open(path).await.with_context(|| format!("cannot open {}", path.display()))?;
        Ok(LineReader {
            path: path.to_path_buf(),
            source: path.to_string_lossy().into(),
            reader: BufReader::with_capacity(256 << 10, file),
            max,
            line: Vec::new(),
            line_len: 0,
            line_number: 0,
        })
    }

    /// Sends every complete line available now. At the end of the file, a
    /// last line without `\n` counts as complete unless following (the
    /// writer may be in the middle of it). Returns whether anything was read.
    async fn drain(&mut self, ctx: &SourceContext, follow: bool) -> anyhow::Result<bool> {
        let mut chunk = Vec::with_capacity(CHUNK);
        let mut progressed = false;
        loop {
            let complete = self.fill_line().await?;
            if !complete && (follow || self.line_len == 0) {
                break;
            }
            progressed = true;
            self.line_number += 1;
            let origin = Origin { source: self.source.clone(), partition: 0, offset: self.line_number };
            let mut record = Record::new(std::mem::take(&mut self.line), origin);
            record.timestamp = Some(now_millis());
            let full_len = std::mem::take(&mut self.line_len);
            if full_len > self.max {
                let message = format!("line is {full_len} bytes, over max_record_bytes = {}", self.max);
                ctx.dead_letter(record, FailureKind::TooLarge, message, Vec::new()).await?;
            } else {
                chunk.push(record);
            }
            if chunk.len() >= CHUNK {
                send(ctx, std::mem::replace(&mut chunk, Vec::with_capacity(CHUNK))).await?;
            }
            if !complete {
                break;
            }
        }
        send(ctx, chunk).await?;
        Ok(progressed)
    }

    /// Reads into `self.line` up to the next `\n`; true if one was found.
    async fn fill_line(&mut self) -> anyhow::Result<bool> {
        loop {
            let available = self
                .reader
                .fill_buf()
                .await
                .with_context(|| format!("cannot read {}", self.path.display()))?;
            if available.is_empty() {
                return Ok(false);
            }
            let (part, found) = match memchr::memchr(b'\n', available) {
                Some(end) => (&available[..end], true),
                None => (available, false),
            };
            let keep = part.len().min(self.max.saturating_sub(self.line.len()));
            self.line.extend_from_slice(&part[..keep]);
            self.line_len += part.len();
            let consumed = part.len() + usize::from(found);
            self.reader.consume(consumed);
            if found {
                if self.line.last() == Some(&b'\r') {
                    self.line.pop();
                    self.line_len -= 1;
                }
                return Ok(true);
            }
        }
    }
}
