//! The `file` source: lines of files, or whole files as records.
//!
//! `read = "lines"` turns every line of every matched file into a record
//! (log files). `read = "files"` turns every matched file into one record
//! whose key and `filename` header are the file's name (how images enter).
//! With `follow = true` it keeps going: appended lines and new files are
//! picked up as they appear, until the pipeline is stopped.

use std::path::{Path, PathBuf};
use std::time::{Duration, UNIX_EPOCH};

use anyhow::Context as _;
use bytes::{BufMut, Bytes, BytesMut};
use serde::{Deserialize, Serialize};
use tokio::io::AsyncReadExt;

use super::{Closed, Source, SourceContext};
use crate::ack::Ack;
use crate::config::PipelineConfig;
use crate::record::{Batch, Header, Origin, Record, SourceName, now_millis};
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
                let origin =
                    Origin { source: SourceName::new(&path.to_string_lossy()), partition: 0, offset: index };
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

/// Bytes read from a file at a time. Lines become slices of these blocks,
/// so reading a line costs neither an allocation nor a copy.
const BLOCK: usize = 256 << 10;

/// Reads lines of one file, never holding more than `max` bytes of a line.
struct LineReader {
    path: PathBuf,
    source: SourceName,
    file: tokio::fs::File,
    max: usize,
    /// Read and not yet handed out: the start of the next line.
    buf: BytesMut,
    /// How much of `buf` is known to hold no `\n`.
    scanned: usize,
    /// A line longer than `max` being skipped.
    overlong: Option<Overlong>,
    line_number: i64,
    /// [`BLOCK`], smaller in tests.
    block: usize,
}

/// The part of an over-long line that is kept, and what is known of the rest.
struct Overlong {
    /// Its first `max` bytes, for the dead letter.
    start: Bytes,
    /// Its length so far.
    len: usize,
    /// The last byte skipped, which may be the `\r` of a `\r\n`.
    last: Option<u8>,
}

impl LineReader {
    async fn open(path: &Path, max: usize) -> anyhow::Result<Self> {
        let file =
            tokio::fs::File::open(path).await.with_context(|| format!("cannot open {}", path.display()))?;
        Ok(LineReader {
            path: path.to_path_buf(),
            source: SourceName::new(&path.to_string_lossy()),
            file,
            max,
            buf: BytesMut::new(),
            scanned: 0,
            overlong: None,
            line_number: 0,
            block: BLOCK,
        })
    }

    /// Sends every complete line available now. At the end of the file, a
    /// last line without `\n` counts as complete unless following (the
    /// writer may be in the middle of it). Returns whether anything was read.
    async fn drain(&mut self, ctx: &SourceContext, follow: bool) -> anyhow::Result<bool> {
        let mut chunk = Vec::with_capacity(CHUNK);
        let mut progressed = false;
        // When the lines were read, to the millisecond: one clock reading
        // per chunk, not per line.
        let mut now = now_millis();
        while let Some((value, full_len)) = self.next_line(follow).await? {
            progressed = true;
            self.line_number += 1;
            let origin = Origin { source: self.source, partition: 0, offset: self.line_number };
            let mut record = Record::new(value, origin);
            record.timestamp = Some(now);
            if full_len > self.max {
                let message = format!("line is {full_len} bytes, over max_record_bytes = {}", self.max);
                ctx.dead_letter(record, FailureKind::TooLarge, message, Vec::new()).await?;
            } else {
                chunk.push(record);
            }
            if chunk.len() >= CHUNK {
                send(ctx, std::mem::replace(&mut chunk, Vec::with_capacity(CHUNK))).await?;
                now = now_millis();
            }
        }
        send(ctx, chunk).await?;
        Ok(progressed)
    }

    /// The next line without its terminator (`\n` or `\r\n`), cut at `max`
    /// bytes, with its full length; `None` when no complete line is
    /// available now.
    async fn next_line(&mut self, follow: bool) -> anyhow::Result<Option<(Bytes, usize)>> {
        loop {
            if let Some(at) = memchr::memchr(b'\n', &self.buf[self.scanned..]) {
                let end = self.scanned + at;
                let mut line = self.buf.split_to(end + 1).freeze();
                line.truncate(end);
                self.scanned = 0;
                return Ok(Some(self.finish_line(line)));
            }
            self.scanned = self.buf.len();
            if self.buf.len() > self.max {
                // All of `buf` belongs to a line too long to keep: keep its
                // first `max` bytes (for the dead letter) and count the rest.
                let last = self.buf.last().copied();
                let skipped = match &mut self.overlong {
                    Some(overlong) => overlong,
                    None => self.overlong.insert(Overlong {
                        start: self.buf.split_to(self.max).freeze(),
                        len: self.max,
                        last: None,
                    }),
                };
                skipped.len += self.buf.len();
                skipped.last = last;
                self.buf.clear();
                self.scanned = 0;
            }
            self.buf.reserve(self.block);
            let read = self
                .file
                .read_buf(&mut (&mut self.buf).limit(self.block))
                .await
                .with_context(|| format!("cannot read {}", self.path.display()))?;
            if read == 0 {
                if follow || (self.buf.is_empty() && self.overlong.is_none()) {
                    return Ok(None);
                }
                let line = self.buf.split().freeze();
                self.scanned = 0;
                return Ok(Some(self.finish_line(line)));
            }
        }
    }

    /// Strips a `\r` before the `\n`; puts an over-long line's kept start
    /// back together with its length.
    fn finish_line(&mut self, mut line: Bytes) -> (Bytes, usize) {
        match self.overlong.take() {
            Some(Overlong { start, len, last }) => {
                // The `\r` may have been the last byte skipped.
                let end = line.last().copied().or(last);
                (start, len + line.len() - usize::from(end == Some(b'\r')))
            }
            None => {
                let cr = usize::from(line.last() == Some(&b'\r'));
                let len = line.len() - cr;
                // Over `max`: dead-lettered with its first `max` bytes, as a
                // line longer than a block is.
                line.truncate(len.min(self.max));
                (line, len)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every line `next_line` returns from `text`, read `block` bytes at a
    /// time, with lines over `max` bytes cut.
    async fn lines(text: &[u8], block: usize, max: usize, follow: bool) -> Vec<(String, usize)> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("in.log");
        std::fs::write(&path, text).unwrap();
        let mut reader = LineReader::open(&path, max).await.unwrap();
        reader.block = block;
        let mut out = Vec::new();
        while let Some((line, len)) = reader.next_line(follow).await.unwrap() {
            out.push((String::from_utf8(line.to_vec()).unwrap(), len));
        }
        out
    }

    #[tokio::test]
    async fn lines_are_split_across_blocks_with_crlf_overlong_and_a_last_partial_line() {
        let text = b"a\nbb\r\n0123456789abcdef\n\nccc\r\n0123456789\r\nlast";
        let expected: Vec<(String, usize)> = [
            ("a", 1),
            ("bb", 2),
            ("01234567", 16), // cut at max = 8, full length kept
            ("", 0),
            ("ccc", 3),
            ("01234567", 10), // the \r is not part of its length
            ("last", 4),
        ]
        .iter()
        .map(|(l, n)| (l.to_string(), *n))
        .collect();
        for block in [1, 2, 3, 5, 7, 64, BLOCK] {
            assert_eq!(lines(text, block, 8, false).await, expected, "block {block}");
        }
    }

    #[tokio::test]
    async fn following_leaves_a_partial_last_line_for_later() {
        let got = lines(b"one\ntwo\nthr", 4, 100, true).await;
        assert_eq!(got, [("one".to_string(), 3), ("two".to_string(), 3)]);
    }
}
