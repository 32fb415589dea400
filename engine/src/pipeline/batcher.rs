//! Groups what a source emits into batches for the transform stages.
//!
//! Sources send whatever they have (a chunk of lines, one file); the batcher
//! cuts batches at `max_records` or `max_bytes`, or `linger_ms` after the
//! first record of a batch arrived, so a slow trickle still moves. Records
//! keep their order, and the acks of a chunk go with every batch holding
//! some of its records.

use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;

use super::BatchConfig;
use crate::ack::Ack;
use crate::record::{Batch, Record};

/// Batches what `input` brings into `output`, whose items are made from
/// batches (a pipeline's [`Handoff`](super::handoff::Handoff)).
pub(crate) async fn run<T: From<Batch>>(
    config: BatchConfig,
    mut input: mpsc::Receiver<Batch>,
    output: mpsc::Sender<T>,
) {
    let linger = Duration::from_millis(config.linger_ms);
    let mut pending = Batch::default();
    let mut pending_bytes = 0usize;
    let mut deadline: Option<Instant> = None;
    loop {
        let chunk = tokio::select! {
            chunk = input.recv() => chunk,
            _ = sleep_until(deadline) => {
                if send(&output, &mut pending, &mut pending_bytes).await.is_err() {
                    return;
                }
                deadline = None;
                continue;
            }
        };
        let Some(chunk) = chunk else { break };
        let Batch { records, acks } = chunk;
        // Whether the pending batch already holds clones of this chunk's acks.
        let mut holds_acks = false;
        let mut records = records.into_iter();
        while records.len() > 0 {
            let room = config.max_records - pending.records.len();
            let (count, bytes) = fitting(records.as_slice(), room, pending_bytes, config.max_bytes);
            if pending.records.is_empty() {
                deadline = Some(Instant::now() + linger);
            }
            if !holds_acks {
                pending.acks.extend(acks.iter().cloned());
                holds_acks = true;
            }
            if pending.records.is_empty() && count == records.len() {
                // The chunk (or what is left of it) becomes the batch: its
                // vector is reused and its records are not moved one by one.
                pending.records = records.by_ref().collect();
            } else {
                pending.records.reserve(count);
                pending.records.extend(records.by_ref().take(count));
            }
            pending_bytes += bytes;
            if pending.records.len() >= config.max_records || pending_bytes >= config.max_bytes {
                if send(&output, &mut pending, &mut pending_bytes).await.is_err() {
                    return;
                }
                holds_acks = false;
                deadline = None;
            }
        }
        // The batches holding the chunk's records own clones; a chunk
        // without records is done already.
        Ack::all_done(acks);
    }
    let _ = send(&output, &mut pending, &mut pending_bytes).await;
}

/// How many of `records` the pending batch takes before it is full, and
/// their bytes: up to `room` records, and up to the one that brings the
/// batch to `max_bytes` (a batch's last record may cross it). At least one.
fn fitting(records: &[Record], room: usize, pending_bytes: usize, max_bytes: usize) -> (usize, usize) {
    let room = room.max(1);
    let mut bytes = 0;
    for (count, record) in records.iter().take(room).enumerate() {
        bytes += record.size();
        if pending_bytes + bytes >= max_bytes {
            return (count + 1, bytes);
        }
    }
    (records.len().min(room), bytes)
}

async fn send<T: From<Batch>>(
    output: &mpsc::Sender<T>,
    pending: &mut Batch,
    pending_bytes: &mut usize,
) -> Result<(), ()> {
    *pending_bytes = 0;
    if pending.records.is_empty() {
        Ack::all_done(std::mem::take(&mut pending.acks));
        return Ok(());
    }
    output.send(T::from(std::mem::take(pending))).await.map_err(|_| ())
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ack::AckStatus;
    use crate::record::Origin;

    fn records(n: usize) -> Vec<Record> {
        (0..n)
            .map(|i| {
                Record::new(format!("{i}"), Origin { source: "t".into(), partition: 0, offset: i as i64 })
            })
            .collect()
    }

    #[tokio::test(start_paused = true)]
    async fn cuts_at_max_records_and_lingers_the_rest() {
        let config = BatchConfig { max_records: 4, max_bytes: 1 << 20, linger_ms: 50 };
        let (in_tx, in_rx) = mpsc::channel(8);
        let (out_tx, mut out_rx) = mpsc::channel::<Batch>(8);
        tokio::spawn(run(config, in_rx, out_tx));
        let (ack, done) = Ack::new();
        in_tx.send(Batch::new(records(6), vec![ack])).await.unwrap();
        let first = out_rx.recv().await.unwrap();
        assert_eq!(first.len(), 4);
        // The remaining two leave after linger_ms without more input.
        let second = out_rx.recv().await.unwrap();
        assert_eq!(second.records.iter().map(|r| r.origin.offset).collect::<Vec<_>>(), vec![4, 5]);
        // Both batches hold the chunk's ack: it resolves when both are done.
        Ack::all_done(first.acks);
        Ack::all_done(second.acks);
        assert_eq!(done.wait().await, AckStatus::Delivered);
    }

    #[tokio::test]
    async fn chunks_are_joined_and_split_in_order() {
        let config = BatchConfig { max_records: 4, max_bytes: 1 << 20, linger_ms: 10_000 };
        let (in_tx, in_rx) = mpsc::channel(8);
        let (out_tx, mut out_rx) = mpsc::channel::<Batch>(8);
        let task = tokio::spawn(run(config, in_rx, out_tx));
        // Chunks of 3, 3, 4 and 1: offsets 0..11 leave as 4 + 4 + 3.
        let mut next = 0;
        for len in [3, 3, 4, 1] {
            let chunk = (next..next + len)
                .map(|i| Record::new(format!("{i}"), Origin { source: "t".into(), partition: 0, offset: i }))
                .collect();
            next += len;
            in_tx.send(Batch::new(chunk, vec![])).await.unwrap();
        }
        drop(in_tx);
        task.await.unwrap();
        let batches: Vec<Vec<i64>> = std::iter::from_fn(|| out_rx.try_recv().ok())
            .map(|b| b.records.iter().map(|r| r.origin.offset).collect())
            .collect();
        assert_eq!(batches, [vec![0, 1, 2, 3], vec![4, 5, 6, 7], vec![8, 9, 10]]);
    }

    #[tokio::test]
    async fn cuts_at_max_bytes_and_flushes_on_close() {
        let config = BatchConfig { max_records: 100, max_bytes: 3, linger_ms: 10_000 };
        let (in_tx, in_rx) = mpsc::channel(8);
        let (out_tx, mut out_rx) = mpsc::channel::<Batch>(8);
        let task = tokio::spawn(run(config, in_rx, out_tx));
        in_tx.send(Batch::new(records(4), vec![])).await.unwrap();
        drop(in_tx);
        task.await.unwrap();
        let sizes: Vec<usize> = std::iter::from_fn(|| out_rx.try_recv().ok()).map(|b| b.len()).collect();
        assert_eq!(sizes, vec![3, 1]);
    }
}
