//! Sources: where records enter a pipeline.
//!
//! A source reads until its input ends or it is told to stop, and sends
//! records in chunks through a [`SourceContext`], which applies
//! backpressure (its queue is bounded) and takes records the source cannot
//! deliver whole to the dead-letter destination. Adding a source is a file
//! here, a line in [`TYPES`] and an arm in [`SourceConfig::parse`] /
//! [`SourceConfig::build`].

pub mod file;

use std::sync::Arc;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::config::{Document, PipelineConfig, Value};
use crate::pipeline::dead_letter::{DeadLetter, DeadLetterBatch, DeadLetterSender};
use crate::pipeline::stats::{PipelineStats, add};
use crate::record::{Batch, Record};
use crate::wasm::FailureKind;

/// Source `type`s a pipeline may use.
pub const TYPES: &[&str] = &["file"];

#[derive(Debug, Clone)]
pub enum SourceConfig {
    File(file::FileSourceConfig),
}

impl SourceConfig {
    pub(crate) fn parse(doc: &mut Document<'_>, kind: &str, value: &Value<'_>, key: &str) -> Option<Self> {
        match kind {
            "file" => doc.section(value, key, &["type"]).map(SourceConfig::File),
            _ => None,
        }
    }

    pub fn build(&self, pipeline: &PipelineConfig) -> anyhow::Result<Box<dyn Source>> {
        match self {
            SourceConfig::File(config) => Ok(Box::new(file::FileSource::new(config, pipeline)?)),
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
    pub(crate) output: mpsc::Sender<Batch>,
    pub(crate) dead_letters: DeadLetterSender,
    pub(crate) stats: Arc<PipelineStats>,
}

/// The pipeline has stopped taking records.
#[derive(Debug, thiserror::Error)]
#[error("the pipeline is shutting down")]
pub struct Closed;

impl SourceContext {
    /// Sends a chunk of records; waits while the pipeline is full.
    pub async fn send(&self, batch: Batch) -> Result<(), Closed> {
        add(&self.stats.read, batch.len());
        self.output.send(batch).await.map_err(|_| Closed)
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
        add(&self.stats.read, 1);
        add(&self.stats.dead_lettered, 1);
        let letter = DeadLetter::new(record, "source", kind, message);
        self.dead_letters.send(DeadLetterBatch { letters: vec![letter], acks }).await.map_err(|_| Closed)
    }
}
