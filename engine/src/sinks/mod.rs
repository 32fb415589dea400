//! Sinks: where records leave a pipeline (`file`, `hdfs`, `kafka`,
//! `opensearch`, and `blackhole`, which discards them).
//!
//! A sink writes batches and releases their acks only once the records are
//! durable, which is what lets a source commit its position safely. Records
//! a sink refuses one by one go to the dead-letter destination through its
//! [`SinkContext`]. Adding a sink is a file here, a line in [`TYPES`] and an
//! arm in [`SinkConfig::parse`] / [`SinkConfig::build`].

pub mod blackhole;
pub mod file;
pub mod hdfs;
pub mod kafka;
pub mod opensearch;

use std::sync::Arc;
use std::time::Duration;

use crate::config::{Document, PipelineConfig, Value};
use crate::pipeline::dead_letter::DeadLetterSender;
use crate::pipeline::partitions::PartitionEvent;
use crate::pipeline::stats::PipelineStats;
use crate::record::Batch;

/// Sink `type`s a pipeline may use.
pub const TYPES: &[&str] = &["file", "hdfs", "kafka", "opensearch", "blackhole"];

#[derive(Debug, Clone)]
#[allow(clippy::large_enum_variant)] // Built once per pipeline; size does not matter.
pub enum SinkConfig {
    File(file::FileSinkConfig),
    Hdfs(hdfs::HdfsSinkConfig),
    Kafka(kafka::KafkaSinkConfig),
    OpenSearch(opensearch::OpenSearchSinkConfig),
    Blackhole(blackhole::BlackholeSinkConfig),
}

impl SinkConfig {
    pub(crate) fn parse(doc: &mut Document<'_>, kind: &str, value: &Value<'_>, key: &str) -> Option<Self> {
        match kind {
            "file" => doc.section(value, key, &["type"]).map(SinkConfig::File),
            "kafka" => doc.section(value, key, &["type"]).map(SinkConfig::Kafka),
            "hdfs" => doc
                .section::<hdfs::HdfsSinkConfig>(value, key, &["type"])
                .filter(|config| config.check(doc, value, key))
                .map(SinkConfig::Hdfs),
            "opensearch" => doc
                .section::<opensearch::OpenSearchSinkConfig>(value, key, &["type"])
                .filter(|config| config.check(doc, value, key))
                .map(SinkConfig::OpenSearch),
            "blackhole" => doc.section(value, key, &["type"]).map(SinkConfig::Blackhole),
            _ => None,
        }
    }

    /// Where dead letters go when a pipeline does not say: an NDJSON file
    /// named after the pipeline, beside the pipeline file.
    pub fn default_dead_letter(pipeline: &str) -> Self {
        SinkConfig::File(file::FileSinkConfig::new(format!("{pipeline}.dead-letter.ndjson")))
    }

    pub fn build(&self, pipeline: &PipelineConfig, ctx: SinkContext) -> anyhow::Result<Box<dyn Sink>> {
        match self {
            SinkConfig::File(config) => Ok(Box::new(file::FileSink::new(config, pipeline, ctx)?)),
            SinkConfig::Kafka(config) => Ok(Box::new(kafka::KafkaSink::new(config, ctx)?)),
            SinkConfig::Hdfs(config) => Ok(Box::new(hdfs::HdfsSink::new(config, pipeline, ctx)?)),
            SinkConfig::OpenSearch(config) => {
                Ok(Box::new(opensearch::OpenSearchSink::new(config, pipeline, ctx)?))
            }
            SinkConfig::Blackhole(_) => Ok(Box::new(blackhole::BlackholeSink::new(ctx))),
        }
    }

    /// A short description for logs and summaries.
    pub fn describe(&self, pipeline: &PipelineConfig) -> String {
        match self {
            SinkConfig::File(config) => {
                format!("file {}", pipeline.resolve(config.path.as_ref()).display())
            }
            SinkConfig::Kafka(config) => {
                format!("kafka topic {} at {}", config.topic, config.brokers.as_deref().unwrap_or("?"))
            }
            SinkConfig::Hdfs(config) => config.describe(),
            SinkConfig::OpenSearch(config) => config.describe(),
            SinkConfig::Blackhole(_) => "blackhole (records discarded)".to_string(),
        }
    }

    /// Points a Kafka sink that names no brokers at the engine's cluster.
    pub fn use_engine_cluster(&mut self, brokers: &str) {
        if let SinkConfig::Kafka(config) = self
            && config.brokers.is_none()
        {
            config.brokers = Some(brokers.to_string());
        }
    }

    /// Points a lake sink that names no `url` at the engine's own lake.
    pub fn use_engine_lake(&mut self, url: &str) {
        if let SinkConfig::Hdfs(config) = self
            && config.url.is_none()
        {
            config.url = Some(url.to_string());
        }
    }

    /// The topic this sink writes on the engine's cluster, if it does.
    pub fn engine_cluster_topic(&self) -> Option<&str> {
        match self {
            SinkConfig::Kafka(config) if config.brokers.is_none() => Some(&config.topic),
            _ => None,
        }
    }

    /// How dead letters are shaped for this destination: Kafka topics get
    /// the original record with the error in headers (so the record can be
    /// replayed as is); files get a JSON envelope per line.
    pub fn dead_letter_shape(&self) -> DeadLetterShape {
        match self {
            SinkConfig::Kafka(_) => DeadLetterShape::OriginalWithHeaders,
            SinkConfig::File(_)
            | SinkConfig::Hdfs(_)
            | SinkConfig::OpenSearch(_)
            | SinkConfig::Blackhole(_) => DeadLetterShape::Envelope,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeadLetterShape {
    Envelope,
    OriginalWithHeaders,
}

/// What a sink gets from the pipeline it runs in.
#[derive(Clone)]
pub struct SinkContext {
    pub pipeline: Arc<str>,
    /// `None` for the dead-letter sink itself.
    pub dead_letters: Option<DeadLetterSender>,
    pub(crate) stats: Arc<PipelineStats>,
}

#[async_trait::async_trait]
pub trait Sink: Send {
    /// Writes a batch. The sink drops (or fails) the batch's acks once its
    /// records are durable; an error stops the pipeline.
    async fn write(&mut self, batch: Batch) -> anyhow::Result<()>;

    /// How often [`Sink::tick`] should run, for sinks that act on time
    /// (rotation, interval flushes) even when no records arrive.
    fn tick_interval(&self) -> Option<Duration> {
        None
    }

    async fn tick(&mut self) -> anyhow::Result<()> {
        Ok(())
    }

    /// The source gained or lost partitions. Sinks that hold records back
    /// must make a revoked partition's records durable now (the source is
    /// waiting for their acks) and not hold its later ones.
    async fn partitions_changed(&mut self, _event: PartitionEvent) -> anyhow::Result<()> {
        Ok(())
    }

    /// Makes everything durable and releases the rest of the acks; called
    /// once, after the last batch.
    async fn close(self: Box<Self>) -> anyhow::Result<()>;
}
