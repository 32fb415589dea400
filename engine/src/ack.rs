//! End-to-end acknowledgements: how a source learns that its records are
//! durable downstream, so it can commit offsets only then.
//!
//! A source attaches an [`Ack`] to the records it emits. Every part of the
//! pipeline that holds some of those records holds a clone; a sink drops its
//! clone once the records are durable, or calls [`Ack::fail`] when it gave up
//! on them. When the last clone is gone, the source's [`AckReceiver`] resolves
//! with the outcome. Records split between a sink and the dead-letter
//! destination therefore resolve only when both sides are done.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::sync::oneshot;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AckStatus {
    /// Every record was written to a sink or a dead-letter destination.
    Delivered,
    /// Some record could not be written; the source must not commit past it.
    Failed,
}

#[derive(Debug, Clone)]
pub struct Ack(Arc<Inner>);

#[derive(Debug)]
struct Inner {
    failed: AtomicBool,
    notify: std::sync::Mutex<Option<oneshot::Sender<AckStatus>>>,
}

pub struct AckReceiver(oneshot::Receiver<AckStatus>);

impl Ack {
    pub fn new() -> (Ack, AckReceiver) {
        let (tx, rx) = oneshot::channel();
        let inner = Inner { failed: AtomicBool::new(false), notify: std::sync::Mutex::new(Some(tx)) };
        (Ack(Arc::new(inner)), AckReceiver(rx))
    }

    /// Marks the records as not written; the receiver will see `Failed`.
    pub fn fail(&self) {
        self.0.failed.store(true, Ordering::Release);
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        let status =
            if self.failed.load(Ordering::Acquire) { AckStatus::Failed } else { AckStatus::Delivered };
        if let Some(tx) = self.notify.get_mut().ok().and_then(Option::take) {
            // The source may have stopped waiting; nothing to tell then.
            let _ = tx.send(status);
        }
    }
}

impl AckReceiver {
    pub async fn wait(self) -> AckStatus {
        // A dropped sender without a status cannot happen (Drop always
        // sends); treat it as a failure to stay on the safe side.
        self.0.await.unwrap_or(AckStatus::Failed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn resolves_when_the_last_clone_is_dropped() {
        let (ack, rx) = Ack::new();
        let sink_side = ack.clone();
        drop(ack);
        let dead_letter_side = sink_side.clone();
        drop(sink_side);
        dead_letter_side.fail();
        drop(dead_letter_side);
        assert_eq!(rx.wait().await, AckStatus::Failed);

        let (ack, rx) = Ack::new();
        drop(ack);
        assert_eq!(rx.wait().await, AckStatus::Delivered);
    }
}
