//! Sources: where records enter a pipeline.
//!
//! A source reads until its input ends or it is told to stop, and sends
//! records in chunks through a [`SourceContext`], which applies
//! backpressure (its queue is bounded) and takes records the source cannot
//! deliver whole to the dead-letter destination. Adding a source is a file
//! here, a line in [`TYPES`] and an arm in [`SourceConfig::parse`] /
//! [`SourceConfig::build`].

pub mod file;
pub mod kafka;
pub mod lake;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::config::{Document, PipelineConfig, Value};
use crate::pipeline::dead_letter::{DeadLetter, DeadLetterBatch, DeadLetterSender};
use crate::pipeline::partitions::PartitionEvents;
use crate::pipeline::stats::{PipelineStats, add};
use crate::record::{Batch, Record};
use crate::wasm::FailureKind;

/// Source `type`s a pipeline may use.
pub const TYPES: &[&str] = &["file", "kafka", "lake"];

#[derive(Debug, Clone)]
#[allow(clippy::large_enum_variant)] // Built once per pipeline; size does not matter.
pub enum SourceConfig {
    File(file::FileSourceConfig),
    Kafka(kafka::KafkaSourceConfig),
    Lake(lake::LakeSourceConfig),
}

impl SourceConfig {
    pub(crate) fn parse(doc: &mut Document<'_>, kind: &str, value: &Value<'_>, key: &str) -> Option<Self> {
        match kind {
            "file" => doc.section(value, key, &["type"]).map(SourceConfig::File),
            "kafka" => doc
                .section::<kafka::KafkaSourceConfig>(value, key, &["type"])
                .filter(|config| config.check(doc, value, key))
                .map(SourceConfig::Kafka),
            "lake" => doc.section(value, key, &["type"]).map(SourceConfig::Lake),
            _ => None,
        }
    }

    pub fn build(&self, pipeline: &PipelineConfig) -> anyhow::Result<Box<dyn Source>> {
        match self {
            SourceConfig::File(config) => Ok(Box::new(file::FileSource::new(config, pipeline)?)),
            SourceConfig::Kafka(config) => Ok(Box::new(kafka::KafkaSource::new(config, pipeline)?)),
            SourceConfig::Lake(config) => Ok(Box::new(lake::LakeSource::new(config, pipeline)?)),
        }
    }

    /// One line saying what the source reads, for the API and logs.
    pub fn describe(&self) -> String {
        match self {
            SourceConfig::File(config) => format!("file {}", config.path),
            SourceConfig::Kafka(config) => format!(
                "kafka topics {} at {}",
                config.topics.join(", "),
                config.brokers.as_deref().unwrap_or("the engine's cluster")
            ),
            SourceConfig::Lake(config) => {
                format!("lake {}/{}", config.url.as_deref().unwrap_or("(engine lake)"), config.path)
            }
        }
    }

    /// Points a lake source that names no `url` at the engine's own lake.
    pub fn use_engine_lake(&mut self, url: &str) {
        if let SourceConfig::Lake(config) = self
            && config.url.is_none()
        {
            config.url = Some(url.to_string());
        }
    }

    /// Points a Kafka source that names no brokers at the engine's cluster.
    /// `embedded`: that cluster is the engine's own broker, which only this
    /// engine reads: it owns every partition unless the file says otherwise.
    pub fn use_engine_cluster(&mut self, brokers: &str, embedded: bool) {
        if let SourceConfig::Kafka(config) = self
            && config.brokers.is_none()
        {
            config.brokers = Some(brokers.to_string());
            if embedded {
                config.ownership.get_or_insert(kafka::Ownership::Exclusive);
            }
        }
    }

    /// The topics (by name, not pattern) this source reads from the
    /// engine's cluster: those REST ingest opens and the embedded broker
    /// creates.
    pub fn engine_cluster_topics(&self) -> Vec<String> {
        match self {
            SourceConfig::Kafka(config) if config.brokers.is_none() => {
                config.topics.iter().filter(|t| !t.starts_with('^')).cloned().collect()
            }
            _ => Vec::new(),
        }
    }
}

#[async_trait::async_trait]
pub trait Source: Send {
    /// Reads and sends records until the input ends (for finite inputs) or
    /// `ctx.shutdown` is cancelled. Returning ends the pipeline's input;
    /// what was sent is still drained through the stages and the sink.
    async fn run(self: Box<Self>, ctx: SourceContext) -> anyhow::Result<()>;
}

/// The source's side of the pipeline.
pub struct SourceContext {
    pub pipeline: Arc<str>,
    pub shutdown: CancellationToken,
    /// `None` once the source closed its side ([`SourceContext::close`]).
    pub(crate) output: Option<mpsc::Sender<Batch>>,
    pub(crate) dead_letters: Option<DeadLetterSender>,
    pub(crate) stats: Arc<PipelineStats>,
    /// Where a source that has partitions says which it owns.
    pub partitions: PartitionEvents,
}

/// Why [`SourceContext::try_send`] did not send.
pub enum TrySendError {
    /// The pipeline is full; here is the chunk back.
    Full(Batch),
    Closed,
}

/// The pipeline has stopped taking records.
#[derive(Debug, thiserror::Error)]
#[error("the pipeline is shutting down")]
pub struct Closed;

impl SourceContext {
    /// Sends a chunk of records; waits while the pipeline is full.
    pub async fn send(&self, batch: Batch) -> Result<(), Closed> {
        let output = self.output.as_ref().ok_or(Closed)?;
        add(&self.stats.read, batch.len());
        output.send(batch).await.map_err(|_| Closed)
    }

    /// Sends a chunk if the pipeline has room now; hands it back if not.
    /// For sources that must keep serving their input while they wait
    /// (a Kafka consumer has to keep polling to stay in its group).
    pub fn try_send(&self, batch: Batch) -> Result<(), TrySendError> {
        let output = self.output.as_ref().ok_or(TrySendError::Closed)?;
        let len = batch.len();
        match output.try_send(batch) {
            Ok(()) => {
                add(&self.stats.read, len);
                Ok(())
            }
            Err(mpsc::error::TrySendError::Full(batch)) => Err(TrySendError::Full(batch)),
            Err(mpsc::error::TrySendError::Closed(_)) => Err(TrySendError::Closed),
        }
    }

    /// Waits, at most `max`, until the pipeline can take another batch. A
    /// source thread holding records calls this instead of sleeping, so it
    /// hands the next batch over as soon as there is room.
    pub fn wait_for_room(&self, max: Duration) {
        let Some(output) = &self.output else { return };
        match tokio::runtime::Handle::try_current() {
            // The permit is dropped at once: the room stays for `try_send`.
            Ok(runtime) => drop(runtime.block_on(tokio::time::timeout(max, output.reserve()))),
            Err(_) => std::thread::sleep(max),
        }
    }

    /// Ends the source's input without returning from [`Source::run`]: the
    /// pipeline drains what it was sent while the source waits for the
    /// acks (to commit its position after the drain).
    pub fn close(&mut self) {
        self.output = None;
        self.dead_letters = None;
    }

    /// Sends a record the source could not read whole (too large, say)
    /// straight to the dead-letter destination.
    pub async fn dead_letter(
        &self,
        record: Record,
        kind: FailureKind,
        message: String,
        acks: Vec<crate::ack::Ack>,
    ) -> Result<(), Closed> {
        let dead_letters = self.dead_letters.as_ref().ok_or(Closed)?;
        add(&self.stats.read, 1);
        add(&self.stats.dead_lettered, 1);
        let letter = DeadLetter::new(record, "source", kind, message);
        dead_letters.send(DeadLetterBatch { letters: vec![letter], acks }).await.map_err(|_| Closed)
    }
}
