//! Handles on a running pipeline that the control plane uses: swapping a
//! stage's module between batches, replaying records into the stage chain,
//! tapping records as they pass a stage, and the recent dead letters.
//!
//! None of them keeps the pipeline alive: the replay entry is a weak sender,
//! so a pipeline whose source ended still drains and stops.

use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;

use serde::Serialize;
use tokio::sync::{broadcast, mpsc, oneshot};

pub use super::dead_letter_log::{DEAD_LETTERS_KEPT, DeadLetterLog, LoggedDeadLetter};
use super::handoff::Payload;
use super::stage::Stage;
use crate::record::Batch;

/// Everything the control plane can reach in one run of a pipeline.
pub struct PipelineControls {
    pub stages: Vec<StageControl>,
    /// Where replayed records enter (the batcher's input), set when the run starts.
    replay: OnceLock<mpsc::WeakSender<Batch>>,
    pub dead_letters: Arc<DeadLetterLog>,
}

impl PipelineControls {
    pub(crate) fn new(
        stage_names: impl IntoIterator<Item = String>,
        dead_letters: Arc<DeadLetterLog>,
    ) -> (Self, Vec<mpsc::Receiver<SwapRequest>>) {
        let (stages, receivers) = stage_names
            .into_iter()
            .map(|name| {
                let (tx, rx) = mpsc::channel(1);
                (StageControl { name, swap: tx, tap: Tap::default() }, rx)
            })
            .unzip();
        (PipelineControls { stages, replay: OnceLock::new(), dead_letters }, receivers)
    }

    pub fn stage(&self, name: &str) -> Option<&StageControl> {
        self.stages.iter().find(|s| s.name == name)
    }

    pub(crate) fn set_replay(&self, sender: &mpsc::Sender<Batch>) {
        let _ = self.replay.set(sender.downgrade());
    }

    /// Sends records into the pipeline as if its source had read them.
    /// Fails when the pipeline is not running.
    pub async fn replay(&self, batch: Batch) -> Result<(), NotRunning> {
        let sender = self.replay.get().and_then(mpsc::WeakSender::upgrade).ok_or(NotRunning)?;
        sender.send(batch).await.map_err(|_| NotRunning)
    }
}

#[derive(Debug, thiserror::Error)]
#[error("the pipeline is not running")]
pub struct NotRunning;

/// One stage's handles.
pub struct StageControl {
    pub name: String,
    swap: mpsc::Sender<SwapRequest>,
    pub tap: Tap,
}

/// A stage built from another module, to take the running one's place.
pub struct SwapRequest {
    pub stage: Stage,
    pub done: oneshot::Sender<()>,
}

impl StageControl {
    /// Hands `stage` to the worker, which swaps it in before its next batch,
    /// and waits until it has. The batch in progress finishes on the old
    /// module, so every record is processed exactly once.
    pub async fn swap(&self, stage: Stage) -> Result<(), NotRunning> {
        let (done, swapped) = oneshot::channel();
        self.swap.send(SwapRequest { stage, done }).await.map_err(|_| NotRunning)?;
        swapped.await.map_err(|_| NotRunning)
    }
}

/// Which side of a stage a tapped record was seen on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum TapSide {
    In,
    Out,
}

/// A record seen passing a stage, as the live tap shows it.
#[derive(Debug, Clone, Serialize)]
pub struct TappedRecord {
    pub stage: String,
    pub side: TapSide,
    /// The record as JSON (value as text when it is UTF-8, else base64),
    /// cut to [`TAP_MAX_VALUE_BYTES`].
    pub record: serde_json::Value,
    pub truncated: bool,
}

/// Bytes of a record's value a tap shows.
pub const TAP_MAX_VALUE_BYTES: usize = 4096;
/// Records per second a tap passes on, per stage and side; the rest are skipped.
pub const TAP_RECORDS_PER_SECOND: u32 = 20;

/// A sampling point: costs one atomic load per batch while nobody listens.
pub struct Tap {
    sender: broadcast::Sender<Arc<TappedRecord>>,
    budget: Mutex<[RateWindow; 2]>,
}

#[derive(Clone, Copy)]
struct RateWindow {
    started: Option<Instant>,
    sent: u32,
}

impl Default for Tap {
    fn default() -> Self {
        let (sender, _) = broadcast::channel(256);
        let window = RateWindow { started: None, sent: 0 };
        Tap { sender, budget: Mutex::new([window; 2]) }
    }
}

impl Tap {
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<TappedRecord>> {
        self.sender.subscribe()
    }

    pub(crate) fn observe(&self, stage: &str, side: TapSide, records: &Payload) {
        if self.sender.receiver_count() == 0 || records.is_empty() {
            return;
        }
        let allowed = {
            let mut budget = self.budget.lock().unwrap_or_else(|e| e.into_inner());
            let window = &mut budget[side as usize];
            let now = Instant::now();
            if window.started.is_none_or(|s| now.duration_since(s).as_secs() >= 1) {
                *window = RateWindow { started: Some(now), sent: 0 };
            }
            let allowed = (TAP_RECORDS_PER_SECOND - window.sent).min(records.len() as u32);
            window.sent += allowed;
            allowed as usize
        };
        // Spread the sample over the batch rather than taking its head.
        let step = (records.len() / allowed.max(1)).max(1);
        for index in (0..records.len()).step_by(step).take(allowed) {
            let mut shown = records.record(index);
            let truncated = shown.value.len() > TAP_MAX_VALUE_BYTES;
            shown.value = shown.value.slice(..shown.value.len().min(TAP_MAX_VALUE_BYTES));
            let tapped = TappedRecord { stage: stage.to_string(), side, record: shown.to_json(), truncated };
            let _ = self.sender.send(Arc::new(tapped));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{Origin, Record};

    #[test]
    fn tap_samples_at_most_the_rate_and_only_when_watched() {
        let tap = Tap::default();
        let records: Vec<Record> = (0..100)
            .map(|i| Record::new("x", Origin { source: "t".into(), partition: 0, offset: i }))
            .collect();
        let packed = Payload::Packed(crate::wasm::PackedBatch::from_records(&records[..3]).unwrap());
        let records = Payload::Records(records);
        tap.observe("parse", TapSide::In, &records); // nobody listens: nothing kept
        let mut rx = tap.subscribe();
        tap.observe("parse", TapSide::In, &records);
        tap.observe("parse", TapSide::In, &records);
        let mut seen = 0;
        while rx.try_recv().is_ok() {
            seen += 1;
        }
        assert_eq!(seen, TAP_RECORDS_PER_SECOND as usize);
        tap.observe("parse", TapSide::Out, &packed);
        let tapped = rx.try_recv().unwrap();
        assert_eq!(tapped.side, TapSide::Out);
        assert_eq!(tapped.record["value"], "x", "a packed batch's records are tapped too");
    }
}
