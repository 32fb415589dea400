//! The `kafka` sink: produces records to a topic with `acks=all` and
//! idempotence, and releases a batch's acks only when the broker has
//! acknowledged every record of it.
//!
//! Keys, headers and timestamps are kept; the partition follows the key
//! (librdkafka's default partitioner) unless the record has none. A record
//! the broker refuses for good (after librdkafka's own retries, bounded by
//! `message.timeout.ms`) fails the batch: its acks are marked failed, so the
//! source commits nothing past it, and the pipeline stops with the reason.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::Context as _;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header as KafkaHeader, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use serde::{Deserialize, Serialize};

use super::{Sink, SinkContext};
use crate::kafka::{Connection, Security};
use crate::pipeline::stats::add;
use crate::record::Batch;

/// `[sink]` (or `[dead_letter]`) with `type = "kafka"`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaSinkConfig {
    /// Bootstrap brokers, `host:port[,host:port…]`; unset: the engine's
    /// cluster (`sluice run --brokers`).
    pub brokers: Option<String>,
    pub topic: String,
    pub security: Option<Security>,
    /// Any librdkafka producer property, e.g. `"linger.ms" = "5"` or
    /// `"compression.type" = "zstd"`. `acks` and `enable.idempotence` may be
    /// relaxed here, at the cost of the delivery guarantee.
    #[serde(default)]
    pub options: BTreeMap<String, String>,
}

pub struct KafkaSink {
    producer: FutureProducer,
    topic: String,
    ctx: SinkContext,
}

impl KafkaSink {
    pub fn new(config: &KafkaSinkConfig, ctx: SinkContext) -> anyhow::Result<Self> {
        let connection = Connection {
            brokers: config.brokers.clone(),
            security: config.security.clone(),
            options: config.options.clone(),
        };
        let producer: FutureProducer = connection
            .client_config(
                &format!("sluice-{}", ctx.pipeline),
                &[("acks", "all"), ("enable.idempotence", "true")],
            )?
            .create()
            .context("cannot create a Kafka producer")?;
        Ok(KafkaSink { producer, topic: config.topic.clone(), ctx })
    }
}

#[async_trait::async_trait]
impl Sink for KafkaSink {
    async fn write(&mut self, batch: Batch) -> anyhow::Result<()> {
        let Batch { records, acks } = batch;
        let mut deliveries = Vec::with_capacity(records.len());
        for record in &records {
            let mut headers = OwnedHeaders::new_with_capacity(record.headers.len());
            for header in &record.headers {
                headers =
                    headers.insert(KafkaHeader { key: &header.name, value: Some(header.value.as_ref()) });
            }
            let mut message = FutureRecord::to(&self.topic).payload(record.value.as_ref()).headers(headers);
            if let Some(key) = &record.key {
                message = message.key(key.as_ref());
            }
            if let Some(timestamp) = record.timestamp {
                message = message.timestamp(timestamp);
            }
            // Enqueue without waiting for the broker, so a batch is one
            // round of produce requests; wait only while the local queue is
            // full.
            loop {
                match self.producer.send_result(message) {
                    Ok(delivery) => {
                        deliveries.push(delivery);
                        break;
                    }
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), returned)) => {
                        message = returned;
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                    Err((error, _)) => {
                        acks.iter().for_each(crate::ack::Ack::fail);
                        return Err(error).context(format!("cannot produce to topic `{}`", self.topic));
                    }
                }
            }
        }
        for (index, delivery) in deliveries.into_iter().enumerate() {
            let outcome = delivery.await;
            let failure = match outcome {
                Ok(Ok(_)) => continue,
                Ok(Err((error, _))) => error.to_string(),
                Err(_) => "the producer was dropped before delivery".to_string(),
            };
            acks.iter().for_each(crate::ack::Ack::fail);
            let origin = &records[index].origin;
            anyhow::bail!(
                "topic `{}` did not acknowledge record {}:{}:{}: {failure}",
                self.topic,
                origin.source,
                origin.partition,
                origin.offset
            );
        }
        add(&self.ctx.stats.written, records.len());
        // Every record is acknowledged by the brokers.
        crate::ack::Ack::all_done(acks);
        Ok(())
    }

    async fn close(self: Box<Self>) -> anyhow::Result<()> {
        let producer = self.producer.clone();
        tokio::task::spawn_blocking(move || producer.flush(Duration::from_secs(30)))
            .await
            .context("flush task failed")?
            .context("cannot flush the Kafka producer")
    }
}
