//! What the Kafka source knows per partition: the chunks in flight in
//! offset order, the durable position behind them, and what the broker
//! confirmed as committed; shared by the consumer thread and the rebalance
//! callbacks.

use std::collections::{HashMap, HashSet, VecDeque};

use rdkafka::{Offset, TopicPartitionList};

use crate::ack::{AckReceiver, AckStatus};
use crate::pipeline::partitions::PartitionKey;
use crate::record::Batch;

/// Records read from one partition, waiting for room in the pipeline.
pub(super) struct Chunk {
    pub(super) partition: PartitionKey,
    pub(super) batch: Batch,
    /// The offset after the chunk's last record.
    pub(super) next: i64,
    pub(super) ack: AckReceiver,
}

pub(super) struct InFlight {
    pub(super) next: i64,
    pub(super) ack: AckReceiver,
}

#[derive(Default)]
pub(super) struct PartitionState {
    /// The offset the next message should have; older ones were read
    /// already (a fetch replayed after pause/resume).
    pub(super) expected: Option<i64>,
    pub(super) in_flight: VecDeque<InFlight>,
    /// Everything before this offset is durable.
    pub(super) durable: Option<i64>,
    pub(super) committed: Option<i64>,
    /// A chunk failed: nothing after it may be committed.
    pub(super) failed: bool,
}

/// What the consumer thread and the rebalance callbacks share.
#[derive(Default)]
pub(super) struct Positions {
    pub(super) partitions: HashMap<PartitionKey, PartitionState>,
    pub(super) backlog: VecDeque<Chunk>,
    /// Partitions this process has been given before (for `start_from`).
    pub(super) seen: HashSet<PartitionKey>,
    /// Set when an assignment resumed partitions, so the consumer loop
    /// knows they are no longer paused.
    pub(super) resumed: bool,
}

impl Positions {
    /// Moves durable positions past the chunks whose acks resolved.
    pub(super) fn settle(&mut self) {
        for state in self.partitions.values_mut() {
            while let Some(front) = state.in_flight.front_mut() {
                match front.ack.try_status() {
                    None => break,
                    Some(AckStatus::Delivered) => {
                        if !state.failed {
                            state.durable = Some(front.next);
                        }
                    }
                    Some(AckStatus::Failed) => state.failed = true,
                }
                state.in_flight.pop_front();
            }
        }
    }

    /// Durable positions not committed yet, for the partitions `filter` keeps.
    pub(super) fn to_commit(&self, filter: impl Fn(&PartitionKey) -> bool) -> TopicPartitionList {
        let mut list = TopicPartitionList::new();
        for (key, state) in &self.partitions {
            if let Some(durable) = state.durable
                && state.committed != Some(durable)
                && filter(key)
            {
                // Offsets come from the broker, so they are valid here.
                let _ = list.add_partition_offset(&key.0, key.1, Offset::Offset(durable));
            }
        }
        list
    }

    /// Records what the broker confirmed. Offsets only move forward: a late
    /// confirmation of an older commit does not undo a newer one.
    pub(super) fn mark_committed(&mut self, list: &TopicPartitionList) {
        for element in list.elements() {
            if element.error().is_err() {
                continue;
            }
            if let (Some(state), Offset::Offset(offset)) =
                (self.partitions.get_mut(&(element.topic().into(), element.partition())), element.offset())
            {
                state.committed = state.committed.max(Some(offset));
            }
        }
    }

    pub(super) fn in_flight(&self, filter: impl Fn(&PartitionKey) -> bool) -> usize {
        self.partitions.iter().filter(|(k, _)| filter(k)).map(|(_, s)| s.in_flight.len()).sum()
    }
}
