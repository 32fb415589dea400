//! One file of the lake being written: hidden until committed, holding the
//! acks of the records in it until then.

use std::time::{Duration, Instant};

use super::fence::Fence;
use super::layout::{committed_name, temporary_name};
use crate::ack::Ack;
use crate::avro::container::ContainerWriter;
use crate::pipeline::stats::{PipelineStats, add};
use crate::storage::{FileWrite, Storage, join};

/// Bytes a block adds around its records: two varints and the sync marker.
const BLOCK_FRAMING: u64 = 2 * 10 + 16;

/// How every file of a sink is written.
pub struct FileFormat {
    pub schema_json: String,
    pub codec: apache_avro::Codec,
    /// Records are compressed in blocks of about this many bytes.
    pub block_bytes: usize,
}

pub struct OpenFile {
    pub directory: String,
    temporary: String,
    topic: String,
    partition: i32,
    first: i64,
    /// The last record's position: its input offset, and which output of
    /// that input it is (a transform may emit several per input).
    pub last: i64,
    pub last_output: u32,
    writer: Box<dyn FileWrite>,
    container: ContainerWriter,
    opened: Instant,
    acks: Vec<Ack>,
}

impl OpenFile {
    pub async fn create(
        storage: &dyn Storage,
        directory: String,
        (topic, partition): (&str, i32),
        first: i64,
        writer_id: &str,
        format: &FileFormat,
    ) -> anyhow::Result<OpenFile> {
        let temporary = join(&directory, &temporary_name(topic, partition, first, writer_id));
        let writer = storage.create(&temporary).await?;
        Ok(OpenFile {
            directory,
            temporary,
            topic: topic.to_string(),
            partition,
            first,
            last: first - 1,
            last_output: 0,
            writer,
            container: ContainerWriter::new(&format.schema_json, format.codec, format.block_bytes),
            opened: Instant::now(),
            acks: Vec::new(),
        })
    }

    pub async fn append(&mut self, datum: &[u8], (offset, output): (i64, u32)) -> anyhow::Result<()> {
        self.container.append(datum)?;
        self.last = offset;
        self.last_output = output;
        self.flush_framed().await
    }

    /// Hands finished blocks to storage, so a file is never buffered whole.
    async fn flush_framed(&mut self) -> anyhow::Result<()> {
        let framed = self.container.take_output();
        if !framed.is_empty() {
            self.writer.write(framed).await?;
        }
        Ok(())
    }

    pub fn records(&self) -> u64 {
        self.container.records()
    }

    /// Whether the record at `(offset, output)` is already in this file
    /// (a redelivery while the first copy waits here).
    pub fn holds(&self, (offset, output): (i64, u32)) -> bool {
        self.records() > 0 && (offset < self.last || (offset == self.last && output <= self.last_output))
    }

    pub fn age(&self) -> Duration {
        self.opened.elapsed()
    }

    /// Whether adding a datum of `len` bytes could take the file past
    /// `max_bytes` (counted before compression, so it is an upper bound).
    /// An empty file takes any record.
    pub fn would_exceed(&self, len: u64, max_bytes: u64) -> bool {
        self.records() > 0 && self.container.estimated_size() + len + BLOCK_FRAMING > max_bytes
    }

    /// Keeps the acks of a batch with records in this file.
    pub fn hold(&mut self, acks: &[Ack]) {
        self.acks.extend(acks.iter().cloned());
    }

    /// Closes the file durably, renames it to its committed name if
    /// `fence` still stands, and only then releases the acks it holds.
    /// Returns whether the file was committed; a fenced file is deleted, its
    /// acks left to fail.
    pub async fn commit(
        mut self,
        storage: &dyn Storage,
        fence: Option<&Fence>,
        stats: &PipelineStats,
    ) -> anyhow::Result<bool> {
        let started = Instant::now();
        self.container.end_block()?;
        self.flush_framed().await?;
        let OpenFile { directory, temporary, topic, partition, first, last, writer, container, acks, .. } =
            self;
        writer.finish().await?;
        let committed = join(&directory, &committed_name(&topic, partition, first, last));
        let fenced = || async {
            tracing::warn!(file = %storage.url(&temporary), records = container.records(), "not committed: the partition has another owner now (it reads these records again)");
            add(&stats.sink.files_fenced, 1);
            stats.sink.open_files.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
            storage.delete(&temporary).await.map(|()| false)
        };
        if let Some(fence) = fence
            && !fence.stands(storage).await?
        {
            return fenced().await;
        }
        if let Err(error) = storage.rename(&temporary, &committed).await {
            // The new owner deletes older owners' files: gone is fenced.
            return match fence {
                Some(fence) if !fence.stands(storage).await? => fenced().await,
                _ => Err(error),
            };
        }
        Ack::all_done(acks);

        let sink = &stats.sink;
        add(&stats.written, container.records() as usize);
        sink.open_files.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
        add(&sink.files_committed, 1);
        add(&sink.bytes_written, container.framed_bytes() as usize);
        add(&sink.bytes_uncompressed, container.datum_bytes() as usize);
        add(&sink.commit_nanos, started.elapsed().as_nanos() as usize);
        sink.commit_latency.observe(started.elapsed());
        tracing::debug!(file = %storage.url(&committed), records = container.records(), bytes = container.framed_bytes(), "lake file committed");
        Ok(true)
    }
}
