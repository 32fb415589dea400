//! Wiring a pipeline together and running it to the end.
//!
//! Every step is a task (stages are threads: wasm calls are CPU-bound and
//! synchronous) joined by bounded queues, so a slow sink slows the source
//! instead of filling memory. A stage runs its batches on `parallelism`
//! worker threads and passes results on in input order (see
//! [`super::stage_pool`]), which keeps records in order. Shutdown flows
//! downstream: the source stops, its queue closes, every step drains what
//! it holds and closes its own output, and the sink makes the last batch
//! durable before the run ends.

use std::sync::Arc;

use anyhow::Context as _;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::controls::{PipelineControls, SwapRequest};
use super::dead_letter::DeadLetterBatch;
use super::handoff::Handoff;
use super::partitions::{PartitionEventReceiver, PartitionEvents};
use super::stage::Stage;
use super::stage_pool::StageLinks;
use super::stats::{PipelineStats, StageStats, get};
use crate::config::PipelineConfig;
use crate::record::Batch;
use crate::sinks::{DeadLetterShape, Sink, SinkContext};
use crate::sources::{Source, SourceContext};
use crate::wasm::WasmHost;

/// Batches in flight between two steps.
const QUEUE: usize = 4;

/// A pipeline, built and ready to run.
pub struct Pipeline {
    pub name: Arc<str>,
    config: PipelineConfig,
    source: Box<dyn Source>,
    stages: Vec<Stage>,
    pub stats: Arc<PipelineStats>,
    /// What the control plane reaches while it runs.
    pub controls: Arc<PipelineControls>,
    swaps: Vec<mpsc::Receiver<SwapRequest>>,
}

/// Counters and dead letters of earlier runs of the same pipeline, for a
/// new run to carry on with.
#[derive(Default)]
pub struct History {
    pub stats: Option<Arc<PipelineStats>>,
    pub dead_letters: Option<Arc<super::controls::DeadLetterLog>>,
}

/// How a run went, for the summary `sluice run` prints.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PipelineReport {
    pub pipeline: String,
    pub read: u64,
    pub written: u64,
    pub dead_lettered: u64,
    pub dropped: u64,
    pub stages: Vec<StageReport>,
    /// For sinks that write files (the lake).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub files: Option<FilesReport>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct FilesReport {
    pub committed: u64,
    pub bytes: u64,
    /// Encoded size before compression over size written.
    pub compression_ratio: f64,
    pub mean_commit_ms: f64,
    pub duplicates_skipped: u64,
}

impl FilesReport {
    fn from_stats(stats: &super::stats::SinkStats) -> Option<FilesReport> {
        let committed = get(&stats.files_committed);
        let skipped = get(&stats.duplicates_skipped);
        if committed == 0 && skipped == 0 {
            return None;
        }
        let bytes = get(&stats.bytes_written);
        Some(FilesReport {
            committed,
            bytes,
            compression_ratio: get(&stats.bytes_uncompressed) as f64 / bytes.max(1) as f64,
            mean_commit_ms: get(&stats.commit_nanos) as f64 / 1e6 / committed.max(1) as f64,
            duplicates_skipped: skipped,
        })
    }
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct StageReport {
    pub stage: String,
    pub module: String,
    #[serde(flatten)]
    pub counters: super::stats::StageCounters,
}

impl Pipeline {
    /// Builds the source and loads every stage's module (calling `init`), so
    /// configuration problems surface before any record moves.
    pub fn build(config: PipelineConfig, host: &WasmHost) -> anyhow::Result<Pipeline> {
        let name = &config.name;
        let source = config.source.build(&config).with_context(|| format!("pipeline `{name}`: source"))?;
        let stages = config
            .stages
            .iter()
            .map(|stage| Stage::build(stage, &config, host))
            .collect::<Result<Vec<_>, _>>()
            .with_context(|| format!("pipeline `{name}`"))?;
        Ok(Self::assemble(config, source, stages, History::default()))
    }

    /// A pipeline from parts already built (the control plane builds
    /// stages from its module registry), continuing `history`.
    pub fn assemble(
        config: PipelineConfig,
        source: Box<dyn Source>,
        stages: Vec<Stage>,
        history: History,
    ) -> Pipeline {
        let dead_letters = history
            .dead_letters
            .unwrap_or_else(|| Arc::new(super::controls::DeadLetterLog::in_memory(&config.name)));
        let (controls, swaps) = PipelineControls::new(stages.iter().map(|s| s.name.clone()), dead_letters);
        Pipeline {
            name: config.name.as_str().into(),
            config,
            source,
            stages,
            stats: history.stats.unwrap_or_default(),
            controls: Arc::new(controls),
            swaps,
        }
    }

    /// Runs until the source ends or `shutdown` is cancelled, then drains.
    pub async fn run(self, shutdown: CancellationToken) -> anyhow::Result<PipelineReport> {
        let Pipeline { name, config, source, stages, stats, controls, swaps } = self;
        let modules: Vec<(String, Arc<StageStats>)> =
            stages.iter().map(|s| (s.name.clone(), s.stats.clone())).collect();
        // A stage with `on_error = "stop"` cancels this to stop the source.
        let stop = shutdown.child_token();

        let (dead_tx, dead_rx) = mpsc::channel::<DeadLetterBatch>(QUEUE);
        let dead_sink = config
            .dead_letter
            .build(
                &config,
                SinkContext {
                    pipeline: name.clone(),
                    dead_letters: None,
                    stats: Arc::new(PipelineStats::default()),
                },
            )
            .context("dead-letter destination")?;
        let sink = config
            .sink
            .build(
                &config,
                SinkContext {
                    pipeline: name.clone(),
                    dead_letters: Some(dead_tx.clone()),
                    stats: stats.clone(),
                },
            )
            .context("sink")?;

        let partitions = PartitionEvents::default();
        let partition_events = partitions.subscribe();
        let (source_tx, source_rx) = mpsc::channel::<Batch>(QUEUE);
        controls.set_replay(&source_tx);
        let (batch_tx, mut next_rx) = mpsc::channel::<Handoff>(QUEUE);
        let source_ctx = SourceContext {
            pipeline: name.clone(),
            shutdown: stop.clone(),
            output: Some(source_tx),
            dead_letters: Some(dead_tx.clone()),
            stats: stats.clone(),
            partitions,
        };
        let source_task = tokio::spawn(source.run(source_ctx));
        let batcher_task = tokio::spawn(super::batcher::run(config.batch.clone(), source_rx, batch_tx));

        let mut stage_threads = Vec::new();
        let stage_count = stages.len();
        for (index, (stage, swaps)) in stages.into_iter().zip(swaps).enumerate() {
            let (tx, rx) = mpsc::channel::<Handoff>(QUEUE);
            let input = std::mem::replace(&mut next_rx, rx);
            let links = StageLinks {
                input,
                swaps,
                controls: controls.clone(),
                index,
                runtime: tokio::runtime::Handle::current(),
                output: tx,
                pack_outputs: index + 1 < stage_count,
                dead_letters: dead_tx.clone(),
                stats: stats.clone(),
                stop: stop.clone(),
            };
            stage_threads.push(super::stage_pool::spawn(stage, links)?);
        }
        drop(dead_tx);

        // A sink that fails stops the source too: nothing upstream would
        // notice until its next batch, which may never come.
        let sink_task = tokio::spawn(stop_on_error(stop.clone(), run_sink(sink, next_rx, partition_events)));
        let shape = config.dead_letter.dead_letter_shape();
        let dead_task = tokio::spawn(stop_on_error(
            stop.clone(),
            run_dead_letters(dead_sink, dead_rx, name.clone(), shape, controls.clone()),
        ));

        let mut errors = Vec::new();
        match source_task.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => errors.push(e.context("source")),
            Err(e) => errors.push(anyhow::anyhow!("source task panicked: {e}")),
        }
        let _ = batcher_task.await;
        for thread in stage_threads {
            match tokio::task::spawn_blocking(move || thread.join()).await {
                Ok(Ok(Ok(()))) => {}
                Ok(Ok(Err(e))) => errors.push(e),
                _ => errors.push(anyhow::anyhow!("a stage thread panicked")),
            }
        }
        // A failing sink makes the steps before it fail too ("the next step
        // stopped"); its own error is the cause, so it goes first.
        for (step, task) in [("sink", sink_task), ("dead-letter destination", dead_task)] {
            match task.await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => errors.insert(0, e.context(step)),
                Err(e) => errors.insert(0, anyhow::anyhow!("{step} task panicked: {e}")),
            }
        }

        let report = PipelineReport {
            pipeline: name.to_string(),
            read: get(&stats.read),
            written: get(&stats.written),
            dead_lettered: get(&stats.dead_lettered),
            dropped: get(&stats.dropped),
            files: FilesReport::from_stats(&stats.sink),
            stages: modules
                .into_iter()
                .map(|(stage, s)| StageReport { stage, module: s.module_name(), counters: s.counters() })
                .collect(),
        };
        match errors.into_iter().next() {
            None => Ok(report),
            Some(error) => Err(error.context(format!("pipeline `{name}` failed"))),
        }
    }
}

/// A stage with `on_error = "stop"` stopped the pipeline: what its author
/// asked for, not a failure to retry.
#[derive(Debug, thiserror::Error)]
#[error(
    "stage `{stage}` stopped the pipeline (on_error = \"stop\"): record {origin}:{offset} failed with {kind}: {message}"
)]
pub struct StoppedByStage {
    pub stage: String,
    pub origin: String,
    pub offset: i64,
    pub kind: String,
    pub message: String,
}

/// Whether a pipeline's error is a stage stopping it on purpose.
pub fn stopped_on_purpose(error: &anyhow::Error) -> bool {
    error.chain().any(|e| e.is::<StoppedByStage>())
}

/// Runs `step`; if it fails, cancels `stop` so the rest of the pipeline
/// winds down.
async fn stop_on_error(
    stop: CancellationToken,
    step: impl std::future::Future<Output = anyhow::Result<()>>,
) -> anyhow::Result<()> {
    let result = step.await;
    if result.is_err() {
        stop.cancel();
    }
    result
}

async fn run_sink(
    mut sink: Box<dyn Sink>,
    mut input: mpsc::Receiver<Handoff>,
    mut partitions: PartitionEventReceiver,
) -> anyhow::Result<()> {
    let mut ticker = sink.tick_interval().map(tokio::time::interval);
    let mut events_open = true;
    loop {
        tokio::select! {
            // Ownership changes first: a revocation waits on this sink.
            biased;
            event = partitions.recv(), if events_open => match event {
                Some(event) => sink.partitions_changed(event).await?,
                None => events_open = false,
            },
            batch = input.recv() => match batch {
                Some(batch) => sink.write(batch.into_batch()).await?,
                None => break,
            },
            _ = async { ticker.as_mut().expect("guarded").tick().await }, if ticker.is_some() => sink.tick().await?,
        }
    }
    sink.close().await
}

async fn run_dead_letters(
    mut sink: Box<dyn Sink>,
    mut input: mpsc::Receiver<DeadLetterBatch>,
    pipeline: Arc<str>,
    shape: DeadLetterShape,
    controls: Arc<PipelineControls>,
) -> anyhow::Result<()> {
    while let Some(letters) = input.recv().await {
        // Kept (in a cluster: on the shared topic) before the destination
        // write acknowledges the records.
        controls
            .dead_letters
            .push_all(&letters.letters)
            .await
            .context("the dead letters could not be kept for browsing")?;
        for letter in &letters.letters {
            tracing::debug!(pipeline = %pipeline, stage = %letter.stage, kind = %letter.kind, source = %letter.record.origin.source, offset = letter.record.origin.offset, "dead letter: {}", letter.message);
        }
        sink.write(letters.into_batch(&pipeline, shape)).await?;
    }
    sink.close().await
}
