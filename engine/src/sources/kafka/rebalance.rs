//! The Kafka source's consumer context: librdkafka calls it on a
//! rebalance (revoked partitions wait for their records in flight and
//! commit what is durable; assigned ones start where `start_from` says) and
//! with statistics (consumer lag).

use std::collections::HashSet;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::{ClientContext, Offset, TopicPartitionList};

use super::positions::{PartitionState, Positions};
use super::{StartFrom, describe};
use crate::pipeline::partitions::{PartitionEvent, PartitionEvents, PartitionKey};
use crate::pipeline::stats::GroupMember;
use crate::record::SourceName;

pub(super) struct SourceConsumerContext {
    pub(super) pipeline: Arc<str>,
    pub(super) group: String,
    pub(super) positions: Mutex<Positions>,
    pub(super) start_from: StartFrom,
    pub(super) revoke_timeout: Duration,
    pub(super) events: PartitionEvents,
    pub(super) stats: Arc<crate::pipeline::stats::PipelineStats>,
    pub(super) session_timeout: Duration,
}

impl SourceConsumerContext {
    pub(super) fn positions(&self) -> MutexGuard<'_, Positions> {
        // A panic while holding the lock leaves plain data behind; go on.
        self.positions.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Commits `list` and waits for the broker's answer: a position counts
    /// as committed only once the broker confirmed it, so one whose commit
    /// failed stays due and is sent again at the next interval, even for a
    /// partition that receives nothing new. (Asynchronous commits would
    /// spare the consumer thread a round trip per interval, but their
    /// outcome never reaches this client's callback.)
    pub(super) fn commit(&self, consumer: &BaseConsumer<Self>, list: TopicPartitionList) {
        if list.count() == 0 {
            return;
        }
        match consumer.commit(&list, CommitMode::Sync) {
            Ok(()) => self.positions().mark_committed(&list),
            Err(error) => {
                tracing::warn!(pipeline = %self.pipeline, "offset commit failed (retried at the next interval): {error}")
            }
        }
    }

    fn on_revoke(&self, consumer: &BaseConsumer<Self>, revoked: &TopicPartitionList) {
        let keys: HashSet<PartitionKey> =
            revoked.elements().iter().map(|e| (SourceName::new(e.topic()), e.partition())).collect();
        let is_revoked = |key: &PartitionKey| keys.contains(key);
        // Sinks that hold records back release these partitions' now.
        self.events.send(PartitionEvent::Revoked(keys.iter().cloned().collect()));
        // Chunks not handed to the pipeline are the new owner's to read.
        let abandoned = {
            let mut positions = self.positions();
            let before = positions.backlog.len();
            positions.backlog.retain(|chunk| !is_revoked(&chunk.partition));
            before - positions.backlog.len()
        };
        let deadline = Instant::now() + self.revoke_timeout;
        loop {
            let waiting = {
                let mut positions = self.positions();
                positions.settle();
                positions.in_flight(is_revoked)
            };
            if waiting == 0 || Instant::now() >= deadline {
                if waiting > 0 {
                    tracing::warn!(pipeline = %self.pipeline, chunks = waiting, "rebalance: records in flight did not become durable in time; the new owner will read them again");
                }
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        let list = self.positions().to_commit(is_revoked);
        self.commit(consumer, list);
        let mut positions = self.positions();
        positions.partitions.retain(|key, _| !is_revoked(key));
        self.stats
            .owned
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|(topic, partition)| !keys.contains(&(SourceName::new(topic), *partition)));
        tracing::info!(pipeline = %self.pipeline, partitions = %describe(revoked), abandoned_chunks = abandoned, "partitions revoked");
    }

    /// Publishes this consumer's member id in its group, so another engine
    /// can remove it should this one die (see [`crate::kafka::group`]).
    pub(super) fn record_member_id(&self, consumer: &BaseConsumer<Self>) {
        // SAFETY: rd_kafka_memberid returns a copy (or null) that the caller
        // frees with rd_kafka_mem_free, done below.
        let member = unsafe {
            let raw = rdkafka::bindings::rd_kafka_memberid(consumer.client().native_ptr());
            if raw.is_null() {
                None
            } else {
                let id = std::ffi::CStr::from_ptr(raw).to_string_lossy().into_owned();
                rdkafka::bindings::rd_kafka_mem_free(consumer.client().native_ptr(), raw.cast());
                Some(id)
            }
        };
        if let Some(member) = member.filter(|m| !m.is_empty()) {
            *self.stats.group_member.lock().unwrap_or_else(|e| e.into_inner()) = Some(GroupMember {
                group: self.group.clone(),
                member_id: member,
                session_timeout_ms: self.session_timeout.as_millis() as u64,
            });
        }
    }

    /// Starts tracking newly owned partitions and tells the sink. Returns
    /// those this process had never owned before.
    pub(super) fn took(&self, assigned: &TopicPartitionList, generation: Option<i32>) -> Vec<PartitionKey> {
        self.stats
            .owned
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend(assigned.elements().iter().map(|e| (e.topic().to_string(), e.partition())));
        let mut positions = self.positions();
        let mut first_time = Vec::new();
        let keys: Vec<PartitionKey> =
            assigned.elements().iter().map(|e| (SourceName::new(e.topic()), e.partition())).collect();
        self.events.send(PartitionEvent::Assigned { keys, generation });
        for element in assigned.elements() {
            let key: PartitionKey = (element.topic().into(), element.partition());
            positions.partitions.insert(key, PartitionState::default());
            if positions.seen.insert(key) {
                first_time.push(key);
            }
        }
        positions.resumed = true;
        drop(positions);
        tracing::info!(pipeline = %self.pipeline, partitions = %describe(assigned), "partitions assigned");
        first_time
    }

    fn on_assign(&self, consumer: &BaseConsumer<Self>, assigned: &TopicPartitionList) {
        let first_time = self.took(assigned, group_generation(consumer));
        self.record_member_id(consumer);
        // librdkafka may keep a partition paused from an earlier assignment;
        // the consumer loop pauses again if the pipeline is still full.
        if let Err(error) = consumer.resume(assigned) {
            tracing::warn!(pipeline = %self.pipeline, "cannot resume assigned partitions: {error}");
        }
        let start = match self.start_from {
            StartFrom::Committed => return,
            StartFrom::Earliest => Offset::Beginning,
            StartFrom::Latest => Offset::End,
        };
        if first_time.is_empty() {
            return;
        }
        // Re-assign with explicit offsets for the partitions new to this
        // process; the others resume from the committed offset.
        let mut list = TopicPartitionList::new();
        for element in assigned.elements() {
            let key: PartitionKey = (element.topic().into(), element.partition());
            let offset = if first_time.contains(&key) { start } else { Offset::Invalid };
            let _ = list.add_partition_offset(element.topic(), element.partition(), offset);
        }
        if let Err(error) = consumer.assign(&list) {
            tracing::warn!(pipeline = %self.pipeline, "cannot apply start_from: {error}");
        }
    }
}

impl ClientContext for SourceConsumerContext {
    /// Keeps the lag (high watermark minus committed offset) of the
    /// partitions this consumer owns.
    fn stats(&self, statistics: rdkafka::Statistics) {
        let lag = statistics
            .topics
            .iter()
            .flat_map(|(topic, t)| {
                t.partitions
                    .values()
                    .filter(|p| p.partition >= 0 && p.consumer_lag >= 0)
                    .map(move |p| ((topic.clone(), p.partition), p.consumer_lag))
            })
            .collect();
        *self.stats.consumer_lag.lock().unwrap_or_else(|e| e.into_inner()) = lag;
        let known = statistics
            .topics
            .iter()
            .flat_map(|(topic, t)| t.partitions.keys().filter(|p| **p >= 0).map(move |p| (topic.clone(), *p)))
            .collect();
        *self.stats.known_partitions.lock().unwrap_or_else(|e| e.into_inner()) = known;
    }

    fn error(&self, error: rdkafka::error::KafkaError, reason: &str) {
        tracing::warn!(pipeline = %self.pipeline, "kafka consumer: {error}: {reason}");
    }
}

/// The consumer group's generation this consumer is in (none before it
/// joins), which fences earlier owners of its partitions in the lake.
fn group_generation<C: ConsumerContext>(consumer: &BaseConsumer<C>) -> Option<i32> {
    // SAFETY: rd_kafka_consumer_group_metadata returns a new object (or
    // null), destroyed below; reading its generation does not keep it.
    unsafe {
        let metadata = rdkafka::bindings::rd_kafka_consumer_group_metadata(consumer.client().native_ptr());
        if metadata.is_null() {
            return None;
        }
        let generation = rdkafka::bindings::rd_kafka_consumer_group_metadata_generation_id(metadata);
        rdkafka::bindings::rd_kafka_consumer_group_metadata_destroy(metadata);
        (generation >= 0).then_some(generation)
    }
}

impl ConsumerContext for SourceConsumerContext {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(list) = rebalance {
            self.on_revoke(consumer, list);
        }
    }

    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(list) => self.on_assign(consumer, list),
            Rebalance::Error(error) => tracing::warn!(pipeline = %self.pipeline, "rebalance failed: {error}"),
            Rebalance::Revoke(_) => {}
        }
    }
}
