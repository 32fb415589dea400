//! Dead letters: records that could not be processed, with the reason, on
//! their way to the pipeline's dead-letter destination.

use std::time::{Duration, UNIX_EPOCH};

use tokio::sync::mpsc;

use crate::ack::Ack;
use crate::record::{Batch, Record, now_millis};
use crate::wasm::FailureKind;

/// A failed record and why it failed.
#[derive(Debug, Clone)]
pub struct DeadLetter {
    /// The record as it entered the step that failed on it.
    pub record: Record,
    /// The stage that failed, or `source` / `sink`.
    pub stage: String,
    /// The module the stage ran, if it was a transform stage.
    pub module: Option<ModuleRef>,
    pub kind: FailureKind,
    pub message: String,
    pub time_ms: i64,
}

#[derive(Debug, Clone)]
pub struct ModuleRef {
    pub name: String,
    pub hash: String,
}

impl DeadLetter {
    pub fn new(record: Record, stage: &str, kind: FailureKind, message: impl Into<String>) -> Self {
        DeadLetter {
            record,
            stage: stage.to_string(),
            module: None,
            kind,
            message: message.into(),
            time_ms: now_millis(),
        }
    }

    /// The NDJSON envelope written to file dead-letter destinations.
    pub fn envelope(&self, pipeline: &str) -> serde_json::Value {
        let time = UNIX_EPOCH + Duration::from_millis(self.time_ms.max(0) as u64);
        serde_json::json!({
            "pipeline": pipeline,
            "stage": self.stage,
            "module": self.module.as_ref().map(|m| serde_json::json!({ "name": m.name, "hash": m.hash })),
            "error": { "kind": self.kind.name(), "message": self.message },
            "time": humantime::format_rfc3339_millis(time).to_string(),
            "origin": self.record.origin,
            "record": self.record.to_json(),
        })
    }

    /// The envelope as a record for a sink to write; it keeps the failed
    /// record's origin so positions stay traceable.
    pub fn into_envelope_record(self, pipeline: &str) -> Record {
        let value = serde_json::to_vec(&self.envelope(pipeline)).unwrap_or_default();
        let mut record = Record::new(value, self.record.origin.clone());
        record.timestamp = Some(self.time_ms);
        record
    }
}

/// Dead letters travelling together, holding the acks of their records.
#[derive(Debug)]
pub struct DeadLetterBatch {
    pub letters: Vec<DeadLetter>,
    pub acks: Vec<Ack>,
}

impl DeadLetterBatch {
    pub fn into_batch(self, pipeline: &str) -> Batch {
        let records = self.letters.into_iter().map(|l| l.into_envelope_record(pipeline)).collect();
        Batch::new(records, self.acks)
    }
}

/// Where steps send their dead letters; bounded like every queue.
pub type DeadLetterSender = mpsc::Sender<DeadLetterBatch>;
