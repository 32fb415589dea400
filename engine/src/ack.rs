//! End-to-end acknowledgements: how a source learns that its records are
//! durable downstream, so it can commit offsets only then.
//!
//! A source attaches an [`Ack`] to the records it emits. Every part of the
//! pipeline that holds some of those records holds a clone. A holder that
//! is finished with its records (a sink that made them durable, a stage
//! whose transform emitted nothing for them) calls [`Ack::done`]; one that
//! gives up calls [`Ack::fail`]. A clone dropped without `done` — a batch
//! lost in a queue when a pipeline fails, say — counts as a failure, so
//! nothing is reported durable by accident. When the last clone is gone,
//! the source's [`AckReceiver`] resolves with the outcome. Records split
//! between a sink and the dead-letter destination therefore resolve only
//! when both sides are done.

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

#[derive(Debug)]
pub struct Ack {
    inner: Arc<Inner>,
    finished: bool,
}

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
        (Ack { inner: Arc::new(inner), finished: false }, AckReceiver(rx))
    }

    /// This holder's records are durable (or need nothing more).
    pub fn done(mut self) {
        self.finished = true;
    }

    /// Marks the records as not written; the receiver will see `Failed`.
    pub fn fail(&self) {
        self.inner.failed.store(true, Ordering::Release);
    }

    /// Finishes every ack of a batch whose records are durable.
    pub fn all_done(acks: Vec<Ack>) {
        acks.into_iter().for_each(Ack::done);
    }
}

impl Clone for Ack {
    fn clone(&self) -> Self {
        Ack { inner: self.inner.clone(), finished: false }
    }
}

impl Drop for Ack {
    fn drop(&mut self) {
        if !self.finished {
            self.fail();
        }
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

    /// The outcome if it is known already; for sources polling from a
    /// thread of their own.
    pub fn try_status(&mut self) -> Option<AckStatus> {
        use tokio::sync::oneshot::error::TryRecvError;
        match self.0.try_recv() {
            Ok(status) => Some(status),
            Err(TryRecvError::Empty) => None,
            Err(TryRecvError::Closed) => Some(AckStatus::Failed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn resolves_when_the_last_clone_is_finished() {
        let (ack, mut rx) = Ack::new();
        let sink_side = ack.clone();
        ack.done();
        let dead_letter_side = sink_side.clone();
        sink_side.done();
        assert_eq!(rx.try_status(), None);
        dead_letter_side.done();
        assert_eq!(rx.wait().await, AckStatus::Delivered);
    }

    #[tokio::test]
    async fn one_failed_or_dropped_clone_fails_the_whole() {
        let (ack, rx) = Ack::new();
        let other = ack.clone();
        other.fail();
        ack.done();
        drop(other);
        assert_eq!(rx.wait().await, AckStatus::Failed);

        // A batch lost in a queue must not look durable.
        let (ack, rx) = Ack::new();
        let lost = ack.clone();
        ack.done();
        drop(lost);
        assert_eq!(rx.wait().await, AckStatus::Failed);
    }
}
