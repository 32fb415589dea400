//! A cluster's dead-letter log: one Kafka topic, `sluice.{cluster}.dead-letters`,
//! that every engine appends its pipelines' letters to (keyed by pipeline)
//! and reads from the start, so the API of any engine lists and replays
//! the letters of every engine. A letter's id is its offset in the topic
//! plus one: unique across the cluster, and increasing.
//!
//! This is the browsable copy the API serves; the pipelines' dead-letter
//! destinations (`[dead_letter]`) stay where they are configured. The
//! topic deletes what is older than a week; each engine keeps the newest
//! letters of each pipeline in memory, within the same caps as a single
//! engine's log.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use futures_util::FutureExt as _;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};

use super::ClusterTopics;
use crate::kafka::topics::{TopicSpec, ensure_topics};
use crate::pipeline::dead_letter_log::{DeadLetterJournal, DeadLetterLog, Published};

const RETENTION_MS: &str = "604800000"; // a week

pub struct SharedDeadLetters {
    topic: String,
    producer: FutureProducer,
    /// Every pipeline's log, including pipelines this engine does not run
    /// (yet): their letters are read all the same.
    logs: Mutex<HashMap<String, Arc<DeadLetterLog>>>,
    /// Lets the logs publish through this without a reference cycle.
    this: Weak<SharedDeadLetters>,
    stop: Arc<AtomicBool>,
}

impl Drop for SharedDeadLetters {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

impl SharedDeadLetters {
    /// Creates the topic if needed and reads it to its end before
    /// returning. Blocking.
    pub fn open(topics: &ClusterTopics) -> anyhow::Result<Arc<SharedDeadLetters>> {
        let topic = topics.dead_letters();
        ensure_topics(
            &topics.bootstrap,
            &[TopicSpec {
                name: &topic,
                partitions: 1,
                config: &[("cleanup.policy", "delete"), ("retention.ms", RETENTION_MS)],
            }],
        )?;
        let producer: FutureProducer = topics
            .client()
            .set("acks", "all")
            .set("enable.idempotence", "true")
            .set("linger.ms", "5")
            // Letters are cut to 64 KiB past 2 MiB, and kept whole below.
            .set("message.max.bytes", "4194304")
            .create()
            .context("cannot create the dead-letter producer")?;
        let consumer: BaseConsumer = topics
            .reader("dead-letters")
            .set("fetch.wait.max.ms", "100")
            .create()
            .context("cannot create the dead-letter reader")?;
        let (low, end) = consumer
            .fetch_watermarks(&topic, 0, Duration::from_secs(10))
            .with_context(|| format!("cannot read the dead-letter topic `{topic}`"))?;
        let mut list = TopicPartitionList::new();
        list.add_partition_offset(&topic, 0, Offset::Beginning)?;
        consumer.assign(&list).context("cannot read the dead-letter topic")?;
        let stop = Arc::new(AtomicBool::new(false));
        let shared = Arc::new_cyclic(|this| SharedDeadLetters {
            topic: topic.clone(),
            producer,
            logs: Mutex::new(HashMap::new()),
            this: this.clone(),
            stop: stop.clone(),
        });
        let (caught_up_tx, caught_up) = std::sync::mpsc::channel();
        {
            let shared = Arc::downgrade(&shared);
            std::thread::Builder::new()
                .name("sluice-dead-letters".into())
                .spawn(move || read_letters(consumer, shared, stop, end, caught_up_tx))
                .context("cannot start the dead-letter reader")?;
        }
        let deadline = Instant::now() + Duration::from_secs(60);
        if end > low && caught_up.recv_timeout(deadline.saturating_duration_since(Instant::now())).is_err() {
            anyhow::bail!("cannot read the dead-letter topic `{topic}` to its end within 60 s");
        }
        tracing::info!(topic = %topic, letters = end, "cluster dead letters read");
        Ok(shared)
    }

    /// The log of `pipeline`, shared with every engine.
    pub fn log(&self, pipeline: &str) -> Arc<DeadLetterLog> {
        let mut logs = self.logs.lock().unwrap_or_else(|e| e.into_inner());
        logs.entry(pipeline.to_string())
            .or_insert_with(|| {
                let journal: Arc<dyn DeadLetterJournal> = Arc::new(Journal(self.this.clone()));
                Arc::new(DeadLetterLog::shared(pipeline, journal))
            })
            .clone()
    }
}

/// What a log holds to publish: the shared log, weakly.
struct Journal(Weak<SharedDeadLetters>);

impl DeadLetterJournal for Journal {
    fn publish(&self, pipeline: &str, entry: serde_json::Value) -> Published {
        let Some(shared) = self.0.upgrade() else {
            return futures_util::future::ready(Err(anyhow::anyhow!("the engine is stopping"))).boxed();
        };
        let payload = match serde_json::to_vec(&entry) {
            Ok(payload) => payload,
            Err(error) => {
                return futures_util::future::ready(Err(anyhow::anyhow!(
                    "cannot encode a dead letter: {error}"
                )))
                .boxed();
            }
        };
        let record = FutureRecord::<str, [u8]>::to(&shared.topic).key(pipeline).payload(&payload);
        let topic = shared.topic.clone();
        // Queued now, in order; the future only waits for the broker's word.
        let delivery = shared.producer.send_result(record).map_err(|(error, _)| error);
        async move {
            let delivered = match delivery {
                Ok(delivery) => delivery.await.map_err(|_| "the producer was dropped".to_string()),
                Err(error) => {
                    return Err(anyhow::anyhow!("cannot share a dead letter on `{topic}`: {error}"));
                }
            };
            match delivered {
                Ok(Ok(_)) => Ok(()),
                Ok(Err((error, _))) => {
                    Err(anyhow::anyhow!("cannot share a dead letter on `{topic}`: {error}"))
                }
                Err(reason) => Err(anyhow::anyhow!("cannot share a dead letter on `{topic}`: {reason}")),
            }
        }
        .boxed()
    }
}

fn read_letters(
    consumer: BaseConsumer,
    shared: Weak<SharedDeadLetters>,
    stop: Arc<AtomicBool>,
    end: i64,
    caught_up: std::sync::mpsc::Sender<()>,
) {
    while !stop.load(Ordering::Relaxed) {
        let Some(message) = consumer.poll(Duration::from_millis(100)) else { continue };
        let message = match message {
            Ok(message) => message,
            Err(error) => {
                tracing::warn!("reading the cluster's dead letters: {error}");
                continue;
            }
        };
        let Some(shared) = shared.upgrade() else { return };
        let pipeline = message.key().and_then(|k| std::str::from_utf8(k).ok());
        let entry = message.payload().and_then(|p| serde_json::from_slice::<serde_json::Value>(p).ok());
        if let (Some(pipeline), Some(entry)) = (pipeline, entry) {
            shared.log(pipeline).apply(entry, message.offset() as u64 + 1);
        }
        if message.offset() + 1 == end {
            let _ = caught_up.send(());
        }
    }
}
