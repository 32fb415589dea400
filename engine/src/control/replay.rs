//! Replaying kept dead letters through a pipeline's current version.

use std::time::Duration;

use serde::Serialize;

use super::supervisor::{ControlError, Supervisor};
use crate::ack::{Ack, AckStatus};
use crate::record::Batch;
use crate::sinks::SinkConfig;

type Result<T, E = ControlError> = std::result::Result<T, E>;

impl Supervisor {
    /// Sends kept dead letters through the pipeline's current version and
    /// waits until each is written again (or dead-lettered again).
    pub async fn replay(&self, pipeline: &str, ids: &[u64]) -> Result<ReplayOutcome> {
        let managed = self.require(pipeline)?;
        if ids.is_empty() {
            return Err(ControlError::BadRequest("name the dead letters to replay (`ids`)".into()));
        }
        let (controls, sink) = {
            let state = managed.lock();
            (state.running.as_ref().map(|r| r.controls.clone()), state.config.sink.clone())
        };
        if let SinkConfig::Hdfs(_) = sink {
            return Err(ControlError::Conflict(
                "the lake sink names its files by source offsets, so records cannot be replayed into it; \
                 replay from the dead-letter destination with a `lake` or `kafka` source pipeline"
                    .into(),
            ));
        }
        let controls = controls.ok_or_else(|| {
            ControlError::Conflict(format!("pipeline `{pipeline}` is not running; resume it first"))
        })?;
        let mut records = Vec::new();
        for id in ids {
            let letter = managed.dead_letters.get(*id).ok_or_else(|| {
                ControlError::NotFound(format!("no dead letter {id} is kept for `{pipeline}`"))
            })?;
            if letter.replayed {
                return Err(ControlError::Conflict(format!("dead letter {id} was replayed already")));
            }
            records.push(letter.letter.record);
        }
        let dead_lettered_before = crate::pipeline::stats::get(&managed.stats.dead_lettered);
        let (ack, outcome) = Ack::new();
        controls
            .replay(Batch::new(records, vec![ack]))
            .await
            .map_err(|e| ControlError::Conflict(e.to_string()))?;
        match tokio::time::timeout(Duration::from_secs(60), outcome.wait()).await {
            Ok(AckStatus::Delivered) => {
                if let Err(error) = managed.dead_letters.mark_replayed(ids).await {
                    // Replayed all the same; only other engines may list the
                    // letters as pending until they are replayed again.
                    tracing::warn!(pipeline, "cannot share that dead letters were replayed: {error:#}");
                }
                let dead_lettered_again =
                    crate::pipeline::stats::get(&managed.stats.dead_lettered) - dead_lettered_before;
                Ok(ReplayOutcome { replayed: ids.len(), dead_lettered_again })
            }
            Ok(AckStatus::Failed) => Err(ControlError::Internal(anyhow::anyhow!(
                "the replayed records could not be written (the pipeline is stopping or failed)"
            ))),
            Err(_) => Err(ControlError::Internal(anyhow::anyhow!(
                "the replayed records were not written within 60 s; they are still in flight"
            ))),
        }
    }
}

#[derive(Debug, Serialize)]
pub struct ReplayOutcome {
    pub replayed: usize,
    /// Of those, how many failed again (with a new dead letter each).
    pub dead_lettered_again: u64,
}
