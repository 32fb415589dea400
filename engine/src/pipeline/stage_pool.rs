//! Running one stage on several worker threads (`parallelism = N`) while
//! its output keeps the order of its input.
//!
//! A coordinator thread takes batches from the stage's input and hands each
//! to a worker, which owns its own instance of the module (instances are
//! single-threaded). Results come back in any order; the coordinator
//! passes them on strictly in the order the batches arrived, so a Kafka
//! partition's records, and a file's lines, leave the stage in the order
//! they entered it, whatever the number of workers. Each batch is handled
//! whole by one worker, so its acks and dead letters are exactly those of
//! the single-threaded stage.
//!
//! Quarantine and module swaps need every worker to agree:
//! - a swap waits until no batch is in flight, then gives every worker an
//!   instance of the new version (the batches in progress finish on the
//!   old one, as with one worker);
//! - when a result comes back with records the quarantined stage held, it
//!   and every later result wait, in order, for a new version; then the
//!   held records run on it and the waiting results follow them out.
//!
//! With several workers, where quarantine trips depends on which worker
//! reached the threshold first. If the engine dies while quarantined, the
//! replay from the last commit can therefore cut elsewhere: a record the old
//! version dead-lettered before the crash may be held after it and written
//! by the fixed version (at least once, like any replay).

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::controls::{PipelineControls, SwapRequest, TapSide};
use super::dead_letter::{DeadLetter, DeadLetterBatch, DeadLetterSender};
use super::handoff::{Handoff, Payload};
use super::runtime::StoppedByStage;
use super::stage::{Stage, StageOutput};
use super::stats::{PipelineStats, add};
use crate::ack::Ack;
use crate::config::OnError;

/// Batches a worker may have queued besides the one it runs, so it never
/// waits for the coordinator between two batches.
const QUEUED_PER_WORKER: usize = 1;

/// Everything a stage's coordinator is connected to.
pub(super) struct StageLinks {
    pub input: mpsc::Receiver<Handoff>,
    /// Modules to swap in, between batches.
    pub swaps: mpsc::Receiver<SwapRequest>,
    pub controls: Arc<PipelineControls>,
    /// This stage's position, for its controls.
    pub index: usize,
    /// Lets the coordinator wait on its input, results and swaps at once.
    pub runtime: tokio::runtime::Handle,
    pub output: mpsc::Sender<Handoff>,
    /// Whether the next step is a wasm stage too, which takes the outputs packed.
    pub pack_outputs: bool,
    pub dead_letters: DeadLetterSender,
    pub stats: Arc<PipelineStats>,
    pub stop: CancellationToken,
}

/// Starts the stage's workers and its coordinator; the returned thread
/// ends when the stage's input closes (or the pipeline stops).
/// Runs `stage.workers` workers (fewer if an instance cannot be created).
pub(super) fn spawn(
    stage: Stage,
    links: StageLinks,
) -> anyhow::Result<std::thread::JoinHandle<anyhow::Result<()>>> {
    let workers = stage.workers;
    let blueprint = stage.blueprint();
    let (results_tx, results) = mpsc::unbounded_channel();
    let pack = links.pack_outputs;
    let mut pool = vec![WorkerHandle::spawn(&blueprint.name, 0, stage, pack, results_tx.clone())?];
    for number in 1..workers {
        match blueprint.fork() {
            Ok(stage) => {
                pool.push(WorkerHandle::spawn(&blueprint.name, number, stage, pack, results_tx.clone())?)
            }
            Err(e) => {
                // The first instance initialised; a later one failing is odd
                // (an `init` that is not deterministic) but not fatal.
                tracing::warn!(stage = %blueprint.name, "running on {number} of {workers} workers: {e}");
                break;
            }
        }
    }
    blueprint.stats.workers.store(pool.len() as u64, Ordering::Relaxed);
    let coordinator = Coordinator {
        links,
        blueprint,
        pool,
        results,
        next_seq: 0,
        next_out: 0,
        finished: BTreeMap::new(),
        waiting: VecDeque::new(),
    };
    let name = coordinator.blueprint.name.clone();
    std::thread::Builder::new()
        .name(format!("stage-{name}"))
        .spawn(move || coordinator.run())
        .context("cannot start a stage thread")
}

/// A batch handed to a worker, numbered in arrival order.
struct Job {
    seq: u64,
    batch: Handoff,
}

enum Message {
    Run(Job),
    /// Take this instance of a new module version before the next job.
    Swap(Box<Stage>),
}

/// What a worker made of one batch.
struct Finished {
    seq: u64,
    worker: usize,
    output: StageOutput<Payload>,
    acks: Vec<Ack>,
    elapsed: Duration,
}

struct WorkerHandle {
    jobs: std::sync::mpsc::Sender<Message>,
    /// Batches given and not yet returned.
    in_flight: usize,
}

impl WorkerHandle {
    fn spawn(
        name: &str,
        number: usize,
        stage: Stage,
        pack_outputs: bool,
        results: mpsc::UnboundedSender<Result<Finished, WorkerPanicked>>,
    ) -> anyhow::Result<WorkerHandle> {
        let (jobs, inbox) = std::sync::mpsc::channel::<Message>();
        std::thread::Builder::new()
            .name(format!("stage-{name}-{number}"))
            // Room for the guest's wasm stack (max_wasm_stack) on top of ours.
            .stack_size(8 << 20)
            .spawn(move || work(number, stage, pack_outputs, inbox, results))
            .context("cannot start a stage worker thread")?;
        Ok(WorkerHandle { jobs, in_flight: 0 })
    }
}

/// A worker: runs the batches it is given until its coordinator is gone.
fn work(
    number: usize,
    mut stage: Stage,
    pack_outputs: bool,
    inbox: std::sync::mpsc::Receiver<Message>,
    results: mpsc::UnboundedSender<Result<Finished, WorkerPanicked>>,
) {
    while let Ok(message) = inbox.recv() {
        match message {
            Message::Swap(new) => stage = *new,
            Message::Run(Job { seq, batch: Handoff { records, acks } }) => {
                let started = Instant::now();
                // A bug in the host must not leave the coordinator waiting
                // for this batch forever: it hears of it and fails the
                // pipeline (the batch's acks are dropped, so not committed).
                let output = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    stage.run(records, pack_outputs)
                }));
                let finished = match output {
                    Ok(output) => {
                        Ok(Finished { seq, worker: number, output, acks, elapsed: started.elapsed() })
                    }
                    Err(_) => Err(WorkerPanicked { worker: number }),
                };
                let panicked = finished.is_err();
                if results.send(finished).is_err() || panicked {
                    return;
                }
            }
        }
    }
}

/// A worker's call panicked (a bug in the host, not the guest: traps and
/// timeouts are results).
#[derive(Debug)]
struct WorkerPanicked {
    worker: usize,
}

/// Results held back until a new module version arrives, in order.
enum Waiting {
    /// Records the quarantined stage did not process.
    Held(Handoff),
    /// A later batch's result, which must not overtake them.
    Finished(Finished),
}

struct Coordinator {
    links: StageLinks,
    /// The version the workers run, without an instance of its own: its
    /// settings, counters, and what new workers are forked from.
    blueprint: Stage,
    pool: Vec<WorkerHandle>,
    results: mpsc::UnboundedReceiver<Result<Finished, WorkerPanicked>>,
    /// Number of the next batch handed out.
    next_seq: u64,
    /// Number of the next result to pass on.
    next_out: u64,
    /// Results that came back before an earlier one.
    finished: BTreeMap<u64, Finished>,
    /// Non-empty while the stage is quarantined (see [`Waiting`]).
    waiting: VecDeque<Waiting>,
}

/// What woke the coordinator; one per wake-up, so size does not matter.
#[allow(clippy::large_enum_variant)]
enum Event {
    Input(Option<Handoff>),
    Finished(Result<Finished, WorkerPanicked>),
    Swap(SwapRequest),
}

impl Coordinator {
    fn in_flight(&self) -> usize {
        self.pool.iter().map(|w| w.in_flight).sum()
    }

    fn run(mut self) -> anyhow::Result<()> {
        let mut input_open = true;
        loop {
            let holding = !self.waiting.is_empty();
            if self.in_flight() == 0 {
                // Every result is back and passed on (or waiting).
                if holding {
                    if !self.wait_for_new_version()? {
                        return Ok(());
                    }
                    continue;
                }
                if !input_open {
                    return Ok(());
                }
            }
            let room = self.pool.iter().any(|w| w.in_flight <= QUEUED_PER_WORKER);
            let event = self.next_event(input_open && room && !holding);
            match event {
                Event::Input(Some(batch)) => {
                    let tap = &self.links.controls.stages[self.links.index].tap;
                    tap.observe(&self.blueprint.name, TapSide::In, &batch.records);
                    let seq = self.take_seq();
                    self.dispatch(Job { seq, batch })?;
                }
                Event::Input(None) => input_open = false,
                Event::Finished(finished) => self.received(finished)?,
                Event::Swap(swap) => {
                    self.drain()?;
                    self.swap(swap)?;
                }
            }
        }
    }

    /// Waits for the next thing to do: a result, a swap, or (when there is
    /// room for it) an input batch.
    fn next_event(&mut self, accept_input: bool) -> Event {
        let links = &mut self.links;
        let results = &mut self.results;
        links.runtime.block_on(async {
            tokio::select! {
                biased;
                Some(finished) = results.recv() => Event::Finished(finished),
                Some(swap) = links.swaps.recv() => Event::Swap(swap),
                batch = links.input.recv(), if accept_input => Event::Input(batch),
            }
        })
    }

    /// Gives `job` to the worker with the fewest batches in flight.
    fn dispatch(&mut self, job: Job) -> anyhow::Result<()> {
        let (number, worker) =
            self.pool.iter_mut().enumerate().min_by_key(|(_, w)| w.in_flight).expect("a stage has a worker");
        worker.in_flight += 1;
        if worker.jobs.send(Message::Run(job)).is_err() {
            anyhow::bail!("stage `{}`: worker {number} stopped", self.blueprint.name);
        }
        Ok(())
    }

    /// Waits for every batch in flight and passes their results on.
    fn drain(&mut self) -> anyhow::Result<()> {
        while self.in_flight() > 0 {
            let Some(finished) = self.links.runtime.block_on(self.results.recv()) else {
                anyhow::bail!("stage `{}`: a worker stopped", self.blueprint.name);
            };
            self.received(finished)?;
        }
        Ok(())
    }

    /// A worker is done with a batch.
    fn received(&mut self, finished: Result<Finished, WorkerPanicked>) -> anyhow::Result<()> {
        let finished = finished.map_err(|WorkerPanicked { worker }| {
            anyhow::anyhow!("stage `{}`: worker {worker} panicked", self.blueprint.name)
        })?;
        self.pool[finished.worker].in_flight -= 1;
        self.blueprint.stats.batch_latency.observe(finished.elapsed);
        self.finished.insert(finished.seq, finished);
        self.pass_on_in_order()
    }

    /// Passes on every result whose turn has come. While the stage is
    /// quarantined, a result's failures still settle at once (they are
    /// final), but its outputs wait behind the held records.
    fn pass_on_in_order(&mut self) -> anyhow::Result<()> {
        while let Some(mut finished) = self.finished.remove(&self.next_out) {
            self.next_out += 1;
            self.settle_failures(std::mem::take(&mut finished.output.failed), &finished.acks)?;
            if self.waiting.is_empty() {
                self.pass_on(finished)?;
            } else {
                self.waiting.push_back(Waiting::Finished(finished));
            }
        }
        Ok(())
    }

    /// Sends records the transform failed on where the stage's `on_error`
    /// says.
    fn settle_failures(&mut self, failed: Vec<DeadLetter>, acks: &[Ack]) -> anyhow::Result<()> {
        if failed.is_empty() {
            return Ok(());
        }
        match self.blueprint.on_error {
            OnError::Dlq => {
                add(&self.links.stats.dead_lettered, failed.len());
                let letters = DeadLetterBatch { letters: failed, acks: acks.to_vec() };
                self.links.dead_letters.blocking_send(letters).context("dead-letter queue closed")?;
            }
            OnError::Drop => add(&self.links.stats.dropped, failed.len()),
            OnError::Stop => {
                // Nothing of this batch may count as done.
                acks.iter().for_each(Ack::fail);
                self.links.stop.cancel();
                let first = &failed[0];
                return Err(StoppedByStage {
                    stage: self.blueprint.name.clone(),
                    origin: first.record.origin.source.to_string(),
                    offset: first.record.origin.offset,
                    kind: first.kind.to_string(),
                    message: first.message.clone(),
                }
                .into());
            }
        }
        Ok(())
    }

    /// Sends one batch's outputs downstream; keeps what the quarantined
    /// stage held.
    fn pass_on(&mut self, Finished { output, acks, .. }: Finished) -> anyhow::Result<()> {
        let StageOutput { records, failed, held } = output;
        debug_assert!(failed.is_empty(), "failures are settled first");
        let tap = &self.links.controls.stages[self.links.index].tap;
        tap.observe(&self.blueprint.name, TapSide::Out, &records);
        if !held.is_empty() {
            self.waiting
                .push_back(Waiting::Held(Handoff { records: Payload::Records(held), acks: acks.clone() }));
        }
        if records.is_empty() {
            // Filtered out (or dead-lettered, which holds its own clones).
            Ack::all_done(acks);
            return Ok(());
        }
        if self.links.output.blocking_send(Handoff { records, acks }).is_err() {
            anyhow::bail!("stage `{}`: the next step stopped", self.blueprint.name);
        }
        Ok(())
    }

    /// Every worker takes `swap`'s module version, then what waited for
    /// it (while quarantined) runs. Call with nothing in flight.
    fn swap(&mut self, SwapRequest { mut stage, done }: SwapRequest) -> anyhow::Result<()> {
        // Counters carry on across versions; a redeploy lifts a quarantine.
        stage.stats = self.blueprint.stats.clone();
        stage.lift_quarantine();
        stage.stats.set_module(&stage.module().name);
        tracing::info!(stage = %stage.name, from = %self.blueprint.module().name, to = %stage.module().name, workers = self.pool.len(), "module swapped");
        self.blueprint = stage.blueprint();
        let mut instances = vec![stage];
        while instances.len() < self.pool.len() {
            match self.blueprint.fork() {
                Ok(fork) => instances.push(fork),
                Err(e) => {
                    // Fewer workers rather than two versions side by side.
                    tracing::warn!(stage = %self.blueprint.name, "running on {} of {} workers: {e}", instances.len(), self.pool.len());
                    break;
                }
            }
        }
        self.pool.truncate(instances.len());
        self.blueprint.stats.workers.store(self.pool.len() as u64, Ordering::Relaxed);
        for (worker, instance) in self.pool.iter().zip(instances) {
            if worker.jobs.send(Message::Swap(Box::new(instance))).is_err() {
                anyhow::bail!("stage `{}`: a worker stopped", self.blueprint.name);
            }
        }
        let _ = done.send(());

        // The held records run again first; the results that waited behind
        // them follow, each under a new number so order is kept.
        for waiting in std::mem::take(&mut self.waiting) {
            match waiting {
                Waiting::Held(batch) => {
                    let seq = self.take_seq();
                    self.dispatch(Job { seq, batch })?;
                }
                Waiting::Finished(mut finished) => {
                    // Its outputs, then the rest of its batch, which the
                    // quarantined stage held.
                    let held = std::mem::take(&mut finished.output.held);
                    let acks = finished.acks.clone();
                    let seq = self.take_seq();
                    self.finished.insert(seq, Finished { seq, ..finished });
                    if !held.is_empty() {
                        let seq = self.take_seq();
                        let batch = Handoff { records: Payload::Records(held), acks };
                        self.dispatch(Job { seq, batch })?;
                    }
                }
            }
        }
        self.pass_on_in_order()
    }

    fn take_seq(&mut self) -> u64 {
        self.next_seq += 1;
        self.next_seq - 1
    }

    /// While quarantined, with nothing in flight: waits for a new module
    /// version, swaps it in and runs what was held on it, in order.
    /// Returns false when the pipeline stops first (what the stage holds is
    /// then never acknowledged, so its offsets are not committed).
    fn wait_for_new_version(&mut self) -> anyhow::Result<bool> {
        let held: usize = self
            .waiting
            .iter()
            .map(|w| match w {
                Waiting::Held(batch) => batch.records.len(),
                Waiting::Finished(f) => f.output.held.len(),
            })
            .sum();
        let stats = self.blueprint.stats.clone();
        stats.held.store(held as u64, Ordering::Relaxed);
        tracing::error!(stage = %self.blueprint.name, module = %self.blueprint.module().name, held, "stage quarantined: waiting for a new module version");
        let links = &mut self.links;
        let swap = links.runtime.block_on(async {
            tokio::select! {
                swap = links.swaps.recv() => swap,
                _ = links.stop.cancelled() => None,
            }
        });
        stats.held.store(0, Ordering::Relaxed);
        let Some(swap) = swap else { return Ok(false) };
        self.swap(swap)?;
        Ok(true)
    }
}
