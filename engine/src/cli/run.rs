//! `sluice run`: run pipelines until their inputs end or a signal arrives.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use tokio_util::sync::CancellationToken;

use crate::api::ingest::{Ingest, IngestConfig};
use crate::api::{ApiState, Server, Starting, Token};
use crate::config;
use crate::control::store::ClusterTopics;
use crate::control::{EngineEnv, StateStore, Supervisor};
use crate::kafka::{self, embedded::EmbeddedCluster};
use crate::metrics::Metrics;
use crate::pipeline::PipelineReport;
use crate::wasm::WasmHost;

#[derive(clap::Args)]
pub struct RunArgs {
    /// Pipeline definition files (TOML). `run` with none serves REST ingest
    /// only (with `--ingest-topic`).
    #[arg(value_name = "PIPELINE.toml")]
    files: Vec<PathBuf>,
    /// Print the end-of-run summary as JSON lines instead of text.
    #[arg(long)]
    json_summary: bool,
    /// Where the HTTP server (REST ingest, health) listens; port 0 picks a
    /// free port (the address is logged).
    #[arg(long, env = "SLUICE_LISTEN", default_value = "127.0.0.1:8080")]
    listen: String,
    /// The engine's Kafka cluster, `host:port[,…]`, used by ingest and by
    /// pipelines that name no `brokers`. `embedded` starts one (tansu if
    /// installed, else an in-memory cluster).
    #[arg(long, env = "SLUICE_BROKERS", default_value = "embedded")]
    brokers: String,
    /// Largest module upload accepted by the API, in bytes.
    #[arg(long, default_value_t = crate::control::modules::DEFAULT_MAX_MODULE_BYTES)]
    max_module_bytes: usize,
    /// The dashboard's built files (default: web-ui/dist when it exists).
    #[arg(long, env = "SLUICE_UI_DIR")]
    ui_dir: Option<PathBuf>,
    /// Where the engine keeps its state: uploaded modules and API
    /// pipelines (state/), the embedded broker's data, the lake.
    #[arg(long, env = "SLUICE_DATA_DIR", default_value = "data")]
    data_dir: PathBuf,
    /// Port of the embedded broker (0: any free port; the address is logged).
    #[arg(long, env = "SLUICE_EMBEDDED_KAFKA_PORT", default_value_t = 0)]
    embedded_kafka_port: u16,
    /// Join the cluster of this name: engines started with the same
    /// `--brokers` and `--cluster` share pipelines, modules and dead letters
    /// through Kafka, and split each pipeline's partitions between them.
    #[arg(long, env = "SLUICE_CLUSTER", value_name = "NAME")]
    cluster: Option<String>,
    /// How other engines and clients reach this engine's API, for the
    /// cluster view (default: `http://` and the address it listens on).
    #[arg(long, env = "SLUICE_ADVERTISE_URL")]
    advertise_url: Option<String>,
    /// Partitions of the topics the embedded cluster creates.
    #[arg(long, default_value_t = 3)]
    topic_partitions: i32,
    /// How long a stopping engine waits for its pipelines to drain before
    /// it exits anyway (what was not made durable is read again next time).
    #[arg(long, env = "SLUICE_SHUTDOWN_TIMEOUT_MS", default_value_t = 60_000)]
    shutdown_timeout_ms: u64,
    #[command(flatten)]
    ingest: IngestArgs,
}

/// REST ingest settings. The topics the pipelines consume from the
/// engine's cluster are open for ingest; `--ingest-topic` opens more.
#[derive(clap::Args)]
struct IngestArgs {
    /// Another topic open for `POST /ingest/{topic}` (repeatable).
    #[arg(long = "ingest-topic", value_name = "TOPIC")]
    topics: Vec<String>,
    #[arg(long, default_value_t = IngestConfig::default().max_body_bytes)]
    ingest_max_body_bytes: usize,
    #[arg(long, default_value_t = IngestConfig::default().max_records)]
    ingest_max_records: usize,
    #[arg(long, default_value_t = IngestConfig::default().max_record_bytes)]
    ingest_max_record_bytes: usize,
    /// Records waiting for broker acknowledgement before ingest answers 429.
    #[arg(long, default_value_t = IngestConfig::default().max_in_flight)]
    ingest_max_in_flight: usize,
    /// Bytes of request bodies in flight, across requests, before ingest
    /// answers 429 (a body without Content-Length counts as the largest
    /// accepted).
    #[arg(long, default_value_t = IngestConfig::default().max_in_flight_bytes)]
    ingest_max_in_flight_bytes: usize,
    /// How long a request waits for the brokers before it fails with 503.
    #[arg(long, default_value_t = IngestConfig::default().delivery_timeout.as_millis() as u64)]
    ingest_delivery_timeout_ms: u64,
}

/// Whether the engine exits when its file pipelines end (`run`) or keeps
/// serving until stopped (`serve`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Run,
    Serve,
}

pub async fn run(args: RunArgs, mode: Mode) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(
        mode == Mode::Serve || !args.files.is_empty() || !args.ingest.topics.is_empty(),
        "nothing to run: name pipeline files, or open topics for ingest with --ingest-topic (or use `sluice serve`)"
    );
    // Everything that can be checked without starting anything is checked
    // first, so a bad start fails before a broker or a pipeline runs.
    let (token, generated) = Token::from_env_or_generate()?;
    let configs = match config::load_files(&args.files) {
        Ok(configs) => configs,
        Err(diagnostics) => {
            eprintln!("{diagnostics}");
            return Ok(ExitCode::from(2));
        }
    };
    for topic in &args.ingest.topics {
        anyhow::ensure!(kafka::valid_topic_name(topic), "--ingest-topic `{topic}` is not a valid topic name");
    }
    if let Some(cluster) = &args.cluster {
        check_cluster_mode(cluster, &args.brokers, &configs)?;
    }
    let _data_dir_lock = crate::identity::lock_data_dir(&args.data_dir)?;
    crate::identity::load_or_create(&args.data_dir)?;
    let starting = Starting::bind(&args.listen).await?;
    tracing::info!("starting: http://{} answers 503 until the engine is ready", starting.local_addr()?);

    let shutdown = CancellationToken::new();
    tokio::spawn(stop_on_signal(shutdown.clone()));
    let started = tokio::select! {
        started = start(&args, mode, configs, token, generated, starting, &shutdown) => started,
        _ = shutdown.cancelled() => anyhow::bail!("stopped while starting"),
    };
    let Engine { supervisor, server, file_pipelines, embedded } = match started {
        Ok(engine) => engine,
        Err(Failed { error, supervisor }) => {
            // Pipelines that did start are stopped (within the shutdown
            // deadline) before the error is reported.
            if let Some(supervisor) = supervisor {
                stop_within(&supervisor, args.shutdown_timeout()).await;
            }
            return Err(error);
        }
    };
    tracing::info!("listening on http://{}", server.local_addr()?);
    let server_stop = CancellationToken::new();
    let server_task = tokio::spawn(server.serve(server_stop.clone()));

    let mut failed = false;
    if mode == Mode::Run && !file_pipelines.is_empty() {
        let waited = tokio::select! {
            results = supervisor.wait_for(&file_pipelines) => Some(results),
            _ = shutdown.cancelled() => None,
        };
        // A signal: every pipeline drains, then reports.
        let results = match waited {
            Some(results) => results,
            // A pipeline stopped while waiting to restart has no result to
            // report: waiting for one is bounded too.
            None if stop_within(&supervisor, args.shutdown_timeout()).await => {
                match tokio::time::timeout(args.shutdown_timeout(), supervisor.wait_for(&file_pipelines))
                    .await
                {
                    Ok(results) => results,
                    Err(_) => {
                        failed = true;
                        eprintln!("error: pipelines stopped without a report (one was failing)");
                        Vec::new()
                    }
                }
            }
            None => {
                failed = true;
                Vec::new()
            }
        };
        for (_, result) in results {
            match result {
                Ok(report) => print_report(&report, args.json_summary),
                Err(error) => {
                    failed = true;
                    eprintln!("error: {error}");
                }
            }
        }
    } else {
        shutdown.cancelled().await;
    }
    failed |= !stop_within(&supervisor, args.shutdown_timeout()).await;
    // Ingest stays open while pipelines drain (its answers wait for Kafka,
    // not for them) and closes with the last one.
    server_stop.cancel();
    match tokio::time::timeout(Duration::from_secs(10), server_task).await {
        Ok(joined) => {
            if let Err(error) = joined.context("HTTP server task panicked")? {
                failed = true;
                eprintln!("error: {error:#}");
            }
        }
        Err(_) => tracing::warn!("requests still open after 10 s; closing them"),
    }
    // Clients of the embedded broker (ingest's producer, held by the
    // supervisor) go before it does, so none reports the brokers gone.
    drop(supervisor);
    drop(embedded);
    Ok(if failed { ExitCode::FAILURE } else { ExitCode::SUCCESS })
}

/// A started engine.
struct Engine {
    supervisor: Arc<Supervisor>,
    server: Server,
    file_pipelines: Vec<String>,
    embedded: Option<EmbeddedCluster>,
}

/// A start that failed, with what was already running.
struct Failed {
    error: anyhow::Error,
    supervisor: Option<Arc<Supervisor>>,
}

impl<E: Into<anyhow::Error>> From<E> for Failed {
    fn from(error: E) -> Self {
        Failed { error: error.into(), supervisor: None }
    }
}

/// Starts the broker (if embedded), ingest, the pipelines and then the
/// API on the port bound already.
async fn start(
    args: &RunArgs,
    mode: Mode,
    configs: Vec<config::PipelineConfig>,
    token: Token,
    generated: bool,
    starting: Starting,
    shutdown: &CancellationToken,
) -> Result<Engine, Failed> {
    // The engine's cluster: what ingest and broker-less pipelines use. A
    // serving engine always has one, for the pipelines deployed later.
    let (source_topics, sink_topics) = engine_topics(&configs);
    let mut ingest_topics = source_topics.clone();
    ingest_topics.extend(args.ingest.topics.iter().cloned());
    ingest_topics.sort();
    ingest_topics.dedup();
    let needs_cluster = mode == Mode::Serve || !ingest_topics.is_empty() || !sink_topics.is_empty();
    let mut embedded = None;
    let bootstrap = match (needs_cluster, args.brokers.as_str()) {
        (false, _) => None,
        (true, "embedded") => {
            let cluster = EmbeddedCluster::start(&args.data_dir, args.embedded_kafka_port).await?;
            let mut topics = ingest_topics.clone();
            topics.extend(sink_topics.iter().cloned());
            cluster.create_topics(&topics, args.topic_partitions).await?;
            tracing::info!("kafka: {}", cluster.describe());
            let bootstrap = cluster.bootstrap().to_string();
            embedded = Some(cluster);
            Some(bootstrap)
        }
        (true, brokers) => Some(brokers.to_string()),
    };
    let ingest = match &bootstrap {
        Some(bootstrap) => Some(Arc::new(Ingest::new(bootstrap, args.ingest.config(ingest_topics))?)),
        None => None,
    };

    let state_dir = args.data_dir.join("state");
    let store = match (&args.cluster, &bootstrap) {
        (Some(cluster), Some(bootstrap)) => {
            let topics = ClusterTopics { cluster: cluster.clone(), bootstrap: bootstrap.clone() };
            tracing::info!(cluster = %cluster, state = %topics.state(), "joining the cluster");
            tokio::task::spawn_blocking(move || StateStore::open_cluster(&state_dir, topics))
                .await
                .context("the state reader's start panicked")??
        }
        _ => StateStore::open(&state_dir)?,
    };
    let store = Arc::new(store);
    let env = EngineEnv {
        bootstrap,
        embedded: embedded.as_ref().map(EmbeddedCluster::topic_maker),
        topic_partitions: args.topic_partitions,
        lake_url: engine_lake_url(&args.data_dir)?,
        ingest: ingest.clone(),
    };
    let host =
        WasmHost::with_compiled_cache(std::path::absolute(args.data_dir.join("state").join("compiled"))?);
    let supervisor = Supervisor::new(host, store, env, shutdown.child_token(), args.max_module_bytes);
    let file_pipelines: Vec<String> = configs.iter().map(|c| c.name.clone()).collect();
    for config in &configs {
        tracing::info!(pipeline = %config.name, sink = %config.sink.describe(config), "pipeline ready");
    }
    let started = async {
        supervisor.start_file_pipelines(configs).await?;
        if args.cluster.is_some() {
            supervisor.follow_shared_state();
        } else if mode == Mode::Serve {
            supervisor.restore().await?;
        }
        if generated {
            eprintln!("API token (set SLUICE_API_TOKEN to choose your own): {}", token.as_str());
        }
        let broker = embedded.as_ref().and_then(EmbeddedCluster::health);
        let state = ApiState {
            token,
            broker: broker.clone(),
            ingest,
            supervisor: supervisor.clone(),
            metrics: Metrics::new(supervisor.clone(), broker),
            ui_dir: ui_dir(args.ui_dir.as_deref()),
            ready: true.into(),
            reads_need_token: false.into(),
        };
        let server = starting.ready(state).await?;
        let address = match &args.advertise_url {
            Some(url) => url.clone(),
            None => format!("http://{}", server.local_addr()?),
        };
        supervisor.announce(address);
        let server = Ok(server);
        // Compiling modules and starting pipelines leaves freed memory in
        // the allocator's per-thread arenas; give it back.
        crate::memory::release_free_memory();
        server
    };
    match started.await {
        Ok(server) => Ok(Engine { supervisor, server, file_pipelines, embedded }),
        Err(error) => Err(Failed { error, supervisor: Some(supervisor) }),
    }
}

/// Cluster mode needs brokers the engines share, and pipelines every
/// engine can run side by side: Kafka sources, whose groups split the work.
fn check_cluster_mode(
    cluster: &str,
    brokers: &str,
    configs: &[config::PipelineConfig],
) -> anyhow::Result<()> {
    anyhow::ensure!(
        kafka::valid_topic_name(&format!("sluice.{cluster}.state")) && !cluster.contains('.'),
        "--cluster `{cluster}`: use letters, digits, `-` and `_`"
    );
    anyhow::ensure!(
        brokers != "embedded",
        "--cluster needs the Kafka cluster the engines share: pass --brokers host:port,… (an embedded broker serves one engine)"
    );
    for config in configs {
        anyhow::ensure!(
            matches!(config.source, crate::sources::SourceConfig::Kafka(_)),
            "{}: pipeline `{}` does not read Kafka; in cluster mode every engine runs every pipeline, so a file or \
             lake source would be read by each of them. Run it on one engine started without --cluster",
            config.file.display(),
            config.name
        );
    }
    Ok(())
}

/// Stops every pipeline, waiting at most `deadline` for them to drain.
/// Returns whether they all did; records of those that did not are read
/// again after the next start (their offsets were not committed).
async fn stop_within(supervisor: &Supervisor, deadline: Duration) -> bool {
    if tokio::time::timeout(deadline, supervisor.stop_all()).await.is_ok() {
        return true;
    }
    eprintln!(
        "error: pipelines did not drain within {} s; what they had not made durable will be read again",
        deadline.as_secs()
    );
    false
}

/// The dashboard's files: `--ui-dir`, else `web-ui/dist` if it was built.
fn ui_dir(chosen: Option<&Path>) -> Option<PathBuf> {
    match chosen {
        Some(dir) => Some(dir.to_path_buf()),
        None => Some(PathBuf::from("web-ui/dist")).filter(|d| d.join("index.html").exists()),
    }
}

impl RunArgs {
    fn shutdown_timeout(&self) -> Duration {
        Duration::from_millis(self.shutdown_timeout_ms)
    }
}

impl IngestArgs {
    fn config(&self, topics: Vec<String>) -> IngestConfig {
        IngestConfig {
            topics,
            max_body_bytes: self.ingest_max_body_bytes,
            max_records: self.ingest_max_records,
            max_record_bytes: self.ingest_max_record_bytes,
            max_in_flight: self.ingest_max_in_flight,
            max_in_flight_bytes: self.ingest_max_in_flight_bytes,
            delivery_timeout: std::time::Duration::from_millis(self.ingest_delivery_timeout_ms),
        }
    }
}

/// Topics on the engine's cluster: those pipelines read (by name) and
/// those they write, for pipelines that name no brokers of their own.
fn engine_topics(configs: &[config::PipelineConfig]) -> (Vec<String>, Vec<String>) {
    let sources = configs.iter().flat_map(|c| c.source.engine_cluster_topics()).collect();
    let sinks = configs
        .iter()
        .flat_map(|c| [&c.sink, &c.dead_letter])
        .filter_map(|sink| sink.engine_cluster_topic().map(str::to_string))
        .collect();
    (sources, sinks)
}

async fn stop_on_signal(shutdown: CancellationToken) {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate => {}
    }
    tracing::info!("stopping: draining in-flight batches");
    shutdown.cancel();
}

fn print_report(report: &PipelineReport, json: bool) {
    if json {
        println!("{}", serde_json::to_string(report).unwrap_or_default());
        return;
    }
    println!(
        "pipeline {}: {} read, {} written, {} dead-lettered, {} dropped",
        report.pipeline, report.read, report.written, report.dead_lettered, report.dropped
    );
    for stage in &report.stages {
        println!(
            "  stage {} ({}): {} in, {} out, {} failed, {} calls ({} failed, {} recycles){}, {} ns/record, {} workers",
            stage.stage,
            stage.module,
            stage.counters.records_in,
            stage.counters.records_out,
            stage.counters.records_failed,
            stage.counters.calls,
            stage.counters.failed_calls,
            stage.counters.recycles,
            if stage.counters.quarantined { ", QUARANTINED" } else { "" },
            stage.counters.nanos_per_record,
            stage.counters.workers
        );
    }
    if let Some(files) = &report.files {
        println!(
            "  files: {} committed, {} bytes, compression {:.2}x, {:.1} ms per commit, {} replayed records skipped",
            files.committed,
            files.bytes,
            files.compression_ratio,
            files.mean_commit_ms,
            files.duplicates_skipped
        );
    }
}

/// The lake `hdfs` sinks without a `url` write to: `lake/` in the data
/// directory, as an absolute `file://` URL.
fn engine_lake_url(data_dir: &std::path::Path) -> anyhow::Result<String> {
    let dir = std::path::absolute(data_dir.join("lake")).context("cannot resolve the data directory")?;
    Ok(format!("file://{}", dir.display()))
}
