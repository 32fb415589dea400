//! Dead letters: records that could not be processed, with the reason, on
//! their way to the pipeline's dead-letter destination.

use std::time::{Duration, UNIX_EPOCH};

use tokio::sync::mpsc;

use crate::ack::Ack;
use crate::record::{Batch, Header, Record, now_millis};
use crate::sinks::DeadLetterShape;
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

    /// The failed record as it was (key, value, headers, timestamp) with
    /// the error in `sluice.*` headers, for Kafka dead-letter topics: a
    /// consumer can read the reason and replay the record unchanged.
    pub fn into_record_with_error_headers(self, pipeline: &str) -> Record {
        let time = UNIX_EPOCH + Duration::from_millis(self.time_ms.max(0) as u64);
        let origin = self.record.origin.clone();
        let mut record = self.record;
        let mut add = |name: &str, value: String| {
            record.headers.push(Header { name: name.to_string(), value: value.into() });
        };
        add("sluice.pipeline", pipeline.to_string());
        add("sluice.stage", self.stage);
        if let Some(module) = self.module {
            add("sluice.module", module.name);
            add("sluice.module.hash", module.hash);
        }
        add("sluice.error.kind", self.kind.name().to_string());
        add("sluice.error.message", self.message);
        add("sluice.source.topic", origin.source.to_string());
        add("sluice.source.partition", origin.partition.to_string());
        add("sluice.source.offset", origin.offset.to_string());
        add("sluice.time", humantime::format_rfc3339_millis(time).to_string());
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
    pub fn into_batch(self, pipeline: &str, shape: DeadLetterShape) -> Batch {
        let records = self
            .letters
            .into_iter()
            .map(|letter| match shape {
                DeadLetterShape::Envelope => letter.into_envelope_record(pipeline),
                DeadLetterShape::OriginalWithHeaders => letter.into_record_with_error_headers(pipeline),
            })
            .collect();
        Batch::new(records, self.acks)
    }
}

/// Where steps send their dead letters; bounded like every queue.
pub type DeadLetterSender = mpsc::Sender<DeadLetterBatch>;
