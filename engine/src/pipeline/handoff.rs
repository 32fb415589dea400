//! What passes from one step of a pipeline to the next.
//!
//! Sources, the batcher and sinks deal in [`Record`]s. Between two wasm
//! stages, a batch stays packed as the first stage's guest returned it
//! ([`PackedBatch`]), and the next stage lowers it into its guest as it
//! is: building a `Record` per output only for the next stage to pack it
//! again can cost more than a light transform's own work. The exception
//! is a batch whose outputs are its inputs, in place and in order (a
//! passthrough): its records are kept, which costs nothing (see
//! `TransformInstance::call_for_next_stage`). The last stage builds
//! records for the sink.

use crate::ack::Ack;
use crate::record::{Batch, Record};
use crate::wasm::PackedBatch;

/// A batch's records, built or packed.
#[derive(Debug)]
pub enum Payload {
    Records(Vec<Record>),
    Packed(PackedBatch),
}

impl Default for Payload {
    fn default() -> Self {
        Payload::Records(Vec::new())
    }
}

impl Payload {
    pub fn len(&self) -> usize {
        match self {
            Payload::Records(records) => records.len(),
            Payload::Packed(packed) => packed.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The records, built if they were packed.
    pub fn into_records(self) -> Vec<Record> {
        match self {
            Payload::Records(records) => records,
            Payload::Packed(packed) => packed.into_records(),
        }
    }

    /// A copy of record `index` (a tap's sample).
    pub fn record(&self, index: usize) -> Record {
        match self {
            Payload::Records(records) => records[index].clone(),
            Payload::Packed(packed) => packed.record(index),
        }
    }
}

/// A batch on its way to the next step, with the acknowledgements that
/// tell its source when its records are safely written.
#[derive(Debug)]
pub struct Handoff {
    pub records: Payload,
    pub acks: Vec<Ack>,
}

impl Handoff {
    /// The batch as records: what a sink writes.
    pub fn into_batch(self) -> Batch {
        Batch::new(self.records.into_records(), self.acks)
    }
}

impl From<Batch> for Handoff {
    fn from(Batch { records, acks }: Batch) -> Self {
        Handoff { records: Payload::Records(records), acks }
    }
}
