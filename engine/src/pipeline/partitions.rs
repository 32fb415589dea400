//! Partition ownership, as a source tells it to the sink.
//!
//! A sink that holds records back (the lake sink keeps a file open until it
//! rotates) must let go of a partition's records when the consumer group
//! takes the partition away, or the source's revocation would wait for acks
//! that never come; and when a partition is (re)assigned, the sink has to
//! look again at what other owners committed meanwhile.

use tokio::sync::broadcast;

use crate::record::SourceName;

/// A topic (or other source name) and partition.
pub type PartitionKey = (SourceName, i32);

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PartitionEvent {
    /// `generation` is the consumer group's generation of this assignment
    /// (none without a group), for sinks that fence older owners.
    Assigned { keys: Vec<PartitionKey>, generation: Option<i32> },
    /// Sent before the source waits for the partitions' records in flight.
    Revoked(Vec<PartitionKey>),
    /// Events were missed (the sink fell behind): assume any partition may
    /// have been revoked and reassigned.
    Lost,
}

/// Sends partition events to every subscriber; sending never blocks.
#[derive(Debug, Clone)]
pub struct PartitionEvents(broadcast::Sender<PartitionEvent>);

impl Default for PartitionEvents {
    fn default() -> Self {
        PartitionEvents(broadcast::channel(256).0)
    }
}

impl PartitionEvents {
    pub fn send(&self, event: PartitionEvent) {
        // No subscriber (a sink that does not care) is fine.
        let _ = self.0.send(event);
    }

    pub fn subscribe(&self) -> PartitionEventReceiver {
        PartitionEventReceiver(self.0.subscribe())
    }
}

pub struct PartitionEventReceiver(broadcast::Receiver<PartitionEvent>);

impl PartitionEventReceiver {
    /// The next event; `None` once every sender is gone.
    pub async fn recv(&mut self) -> Option<PartitionEvent> {
        match self.0.recv().await {
            Ok(event) => Some(event),
            Err(broadcast::error::RecvError::Lagged(_)) => Some(PartitionEvent::Lost),
            Err(broadcast::error::RecvError::Closed) => None,
        }
    }
}
