//! The `kafka` sink: produces records to a topic with `acks=all` and
//! idempotence, and releases a batch's acks only when the broker has
//! acknowledged every record of it.
//!
//! Batches are pipelined: a batch's records are enqueued and the sink goes
//! on with the next while the brokers confirm (up to 32 batches at
//! once); each batch's acks are finished when all its records are
//! confirmed.
//!
//! Keys, headers and timestamps are kept; the partition follows the key
//! (librdkafka's default partitioner) unless the record has none. A record
//! the brokers refuse for what it is (too large for the topic, invalid)
//! goes to the dead-letter destination with their reason: sending it again
//! cannot help. Any other failure, after librdkafka's own retries (bounded
//! by `message.timeout.ms`), fails the batch: its acks are marked failed,
//! so the source commits nothing past it, and the pipeline stops with the
//! reason (and is restarted with backoff by the engine).

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use anyhow::Context as _;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header as KafkaHeader, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use serde::{Deserialize, Serialize};

use super::{Sink, SinkContext};
use crate::kafka::{Connection, Security};
use crate::pipeline::dead_letter::{DeadLetter, DeadLetterBatch};
use crate::pipeline::stats::add;
use crate::record::{Batch, Record};
use crate::wasm::FailureKind;

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
    /// Produced batches whose confirmations are still to come, oldest first.
    unconfirmed: VecDeque<Confirmation>,
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
        Ok(KafkaSink { producer, topic: config.topic.clone(), ctx, unconfirmed: VecDeque::new() })
    }
}

/// A batch whose records are enqueued, waiting for the brokers.
type Confirmation = tokio::task::JoinHandle<Result<(), String>>;

/// One record's way to the brokers.
enum Delivery {
    Sent(rdkafka::producer::DeliveryFuture),
    /// librdkafka refused it before sending (e.g. larger than `message.max.bytes`).
    Refused(KafkaError),
}

/// Waits for the brokers to confirm a batch, then releases its acks. A
/// record refused for what it is becomes a dead letter; any other failure
/// fails the batch.
async fn confirm(
    topic: String,
    ctx: SinkContext,
    records: Vec<Record>,
    deliveries: Vec<Delivery>,
    acks: Vec<crate::ack::Ack>,
) -> Result<(), String> {
    let mut refused = Vec::new();
    let mut written = 0;
    for (record, delivery) in records.into_iter().zip(deliveries) {
        let error = match delivery {
            Delivery::Sent(future) => match future.await {
                Ok(Ok(_)) => {
                    written += 1;
                    continue;
                }
                Ok(Err((error, _))) => error,
                Err(_) => KafkaError::Canceled,
            },
            Delivery::Refused(error) => error,
        };
        if let Some(kind) = error.rdkafka_error_code().and_then(refused_for_good) {
            let message = format!("topic `{topic}` refused the record: {error}");
            refused.push(DeadLetter::new(record, "sink", FailureKind::Rejected(kind.into()), message));
            continue;
        }
        acks.iter().for_each(crate::ack::Ack::fail);
        let origin = &record.origin;
        return Err(format!(
            "topic `{topic}` did not acknowledge record {}:{}:{}: {error}",
            origin.source, origin.partition, origin.offset
        ));
    }
    add(&ctx.stats.written, written);
    if !refused.is_empty() {
        let Some(dead_letters) = &ctx.dead_letters else {
            // This sink is itself the dead-letter destination: nowhere further to go.
            acks.iter().for_each(crate::ack::Ack::fail);
            return Err(format!(
                "topic `{topic}` refused {} dead letters: {}",
                refused.len(),
                refused[0].message
            ));
        };
        add(&ctx.stats.dead_lettered, refused.len());
        let letters = DeadLetterBatch { letters: refused, acks: acks.clone() };
        dead_letters.send(letters).await.map_err(|_| "the dead-letter queue closed".to_string())?;
    }
    // Every record is acknowledged by the brokers or dead-lettered.
    crate::ack::Ack::all_done(acks);
    Ok(())
}

/// The dead-letter kind for a record the brokers refuse for what it is.
/// A missing topic or missing rights are not the record's fault: those
/// fail the pipeline, which is restarted until they are fixed.
fn refused_for_good(code: RDKafkaErrorCode) -> Option<&'static str> {
    match crate::kafka::Refusal::of(code)? {
        crate::kafka::Refusal::TooLarge => Some("too-large"),
        crate::kafka::Refusal::Invalid => Some("invalid-record"),
        crate::kafka::Refusal::UnknownTopic | crate::kafka::Refusal::NotAuthorized => None,
    }
}

#[async_trait::async_trait]
impl Sink for KafkaSink {
    async fn write(&mut self, batch: Batch) -> anyhow::Result<()> {
        self.check_confirmed().await?;
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
            // Enqueue without waiting for the broker; wait only while the
            // local queue is full.
            loop {
                match self.producer.send_result(message) {
                    Ok(delivery) => {
                        deliveries.push(Delivery::Sent(delivery));
                        break;
                    }
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), returned)) => {
                        message = returned;
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                    Err((error, _)) => {
                        deliveries.push(Delivery::Refused(error));
                        break;
                    }
                }
            }
        }
        // The brokers' confirmations are awaited off the write path, so the
        // next batches are produced while these are in flight; at most
        // MAX_UNCONFIRMED batches are, which is the sink's backpressure.
        while self.unconfirmed.len() >= MAX_UNCONFIRMED {
            let oldest = self.unconfirmed.pop_front().expect("non-empty");
            settle(oldest, &self.topic).await?;
        }
        let topic = self.topic.clone();
        let ctx = self.ctx.clone();
        self.unconfirmed.push_back(tokio::spawn(confirm(topic, ctx, records, deliveries, acks)));
        Ok(())
    }

    async fn close(mut self: Box<Self>) -> anyhow::Result<()> {
        while let Some(confirmation) = self.unconfirmed.pop_front() {
            settle(confirmation, &self.topic).await?;
        }
        let producer = self.producer.clone();
        tokio::task::spawn_blocking(move || producer.flush(Duration::from_secs(30)))
            .await
            .context("flush task failed")?
            .context("cannot flush the Kafka producer")
    }
}

/// Batches awaiting broker confirmation at once.
const MAX_UNCONFIRMED: usize = 32;

impl KafkaSink {
    /// Fails the pipeline as soon as an earlier batch was refused.
    async fn check_confirmed(&mut self) -> anyhow::Result<()> {
        while self.unconfirmed.front().is_some_and(|c| c.is_finished()) {
            let finished = self.unconfirmed.pop_front().expect("checked");
            settle(finished, &self.topic).await?;
        }
        Ok(())
    }
}

async fn settle(confirmation: Confirmation, topic: &str) -> anyhow::Result<()> {
    confirmation
        .await
        .with_context(|| format!("the confirmation task for topic `{topic}` panicked"))?
        .map_err(anyhow::Error::msg)
}
