//! The `opensearch` sink: JSON documents into OpenSearch (or Elasticsearch)
//! through `_bulk`.
//!
//! - Documents are buffered and sent when `max_docs` or `max_bytes` is
//!   reached, or `flush_interval_ms` after the oldest arrived (on a timer,
//!   so a quiet stream is flushed too), and at shutdown.
//! - Each goes to the index its template names (default daily,
//!   `weblogs-{yyyy.MM.dd}`, from the document's `@timestamp`).
//! - Idempotent: a document's `_id` is its origin, topic-partition-offset
//!   (plus `-n` for the n-th output of one input record), so a record
//!   redelivered after a crash overwrites its first copy.
//! - Per item: 2xx is done; 429 and 5xx are sent again, alone, with
//!   exponential backoff and jitter; anything else (a mapping error, say)
//!   goes to the dead-letter destination with OpenSearch's reason. An
//!   unreachable host, or a whole request refused with 429/5xx, is retried
//!   the same way, moving to the next host. Up to `max_in_flight` requests
//!   are out at once; when all are retrying the sink takes no new batches,
//!   so the pipeline fills and the source pauses: nothing is dropped, and
//!   it resumes by itself.
//! - A batch's acks (and so its Kafka offsets) are released only when every
//!   one of its documents is indexed or dead-lettered.

mod bulk;
mod client;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use serde::{Deserialize, Serialize};
use tokio::task::JoinSet;

use self::bulk::{BulkItem, ItemOutcome};
use self::client::{Cluster, Reply};
use super::{Sink, SinkContext};
use crate::ack::Ack;
use crate::config::{Document, PipelineConfig, Value, join};
use crate::pipeline::dead_letter::{DeadLetter, DeadLetterBatch};
use crate::pipeline::stats::add;
use crate::record::{Batch, Record, SourceName};
use crate::template::Template;
use crate::wasm::FailureKind;

/// `[sink]` with `type = "opensearch"`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OpenSearchSinkConfig {
    /// `http(s)://host:port` of one or more nodes; requests move to the
    /// next when one cannot be reached.
    pub hosts: Vec<String>,
    /// The index template: `{topic}`, `{partition}` and date patterns
    /// (`yyyy`, `MM`, `dd`, `HH`) from the document's time.
    #[serde(default = "default_index")]
    pub index: String,
    /// The document field holding its time (RFC 3339); the record's
    /// timestamp when absent.
    #[serde(default = "default_timestamp_field")]
    pub timestamp_field: String,
    /// Derive `_id` from the record's origin, so redelivery overwrites
    /// instead of duplicating. Off: OpenSearch assigns ids.
    #[serde(default = "default_true")]
    pub idempotent: bool,
    #[serde(default = "default_max_docs")]
    pub max_docs: usize,
    #[serde(default = "default_max_bytes")]
    pub max_bytes: usize,
    #[serde(default = "default_flush_interval_ms")]
    pub flush_interval_ms: u64,
    #[serde(default = "default_request_timeout_ms")]
    pub request_timeout_ms: u64,
    /// `_bulk` requests sent at once: the next one is built and sent while
    /// the cluster indexes the last. Each is retried on its own.
    #[serde(default = "default_max_in_flight")]
    pub max_in_flight: usize,
    /// First wait before a retry; doubles up to `retry_max_ms`.
    #[serde(default = "default_retry_initial_ms")]
    pub retry_initial_ms: u64,
    #[serde(default = "default_retry_max_ms")]
    pub retry_max_ms: u64,
    /// Names of the environment variables holding basic-auth credentials.
    pub username_env: Option<String>,
    pub password_env: Option<String>,
    #[serde(default)]
    pub tls: TlsConfig,
    /// An index template to install before the first write.
    pub template: Option<IndexTemplateConfig>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// A PEM CA certificate to trust (relative to the pipeline file).
    pub ca_file: Option<String>,
    /// Accept any certificate. For tests only.
    #[serde(default)]
    pub skip_verify: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IndexTemplateConfig {
    pub name: String,
    /// A JSON file with the template body (`index_patterns`, `template`
    /// with settings and mappings), relative to the pipeline file.
    pub file: String,
}

fn default_index() -> String {
    "weblogs-{yyyy.MM.dd}".into()
}
fn default_timestamp_field() -> String {
    "@timestamp".into()
}
fn default_true() -> bool {
    true
}
fn default_max_docs() -> usize {
    1000
}
fn default_max_bytes() -> usize {
    5 << 20
}
fn default_flush_interval_ms() -> u64 {
    1000
}
fn default_max_in_flight() -> usize {
    2
}
fn default_request_timeout_ms() -> u64 {
    30_000
}
fn default_retry_initial_ms() -> u64 {
    100
}
fn default_retry_max_ms() -> u64 {
    30_000
}

impl OpenSearchSinkConfig {
    /// Checks what serde cannot, recording problems at their keys.
    pub(crate) fn check(&self, doc: &mut Document<'_>, value: &Value<'_>, key: &str) -> bool {
        let before = doc.diagnostics.len();
        let span_of = |field: &str| value.get_ref().get(field).map_or(value.span(), |v| v.span());
        if self.hosts.is_empty() {
            doc.error(
                span_of("hosts"),
                &join(key, "hosts"),
                "name at least one host, e.g. \"http://localhost:9200\"",
            );
        }
        for host in &self.hosts {
            let ok = opensearch::http::Url::parse(host).is_ok_and(|u| matches!(u.scheme(), "http" | "https"));
            if !ok {
                doc.error(span_of("hosts"), &join(key, "hosts"), format!("`{host}` is not an http(s) URL"));
            }
        }
        if let Err(e) = Template::parse(&self.index) {
            doc.error(span_of("index"), &join(key, "index"), e);
        }
        for (field, number) in [
            ("max_docs", self.max_docs as u64),
            ("max_bytes", self.max_bytes as u64),
            ("flush_interval_ms", self.flush_interval_ms),
            ("retry_initial_ms", self.retry_initial_ms),
            ("max_in_flight", self.max_in_flight as u64),
        ] {
            if number == 0 {
                doc.error(span_of(field), &join(key, field), "must be at least 1");
            }
        }
        if let Some(template) = &self.template {
            let path = doc.path().parent().unwrap_or(Path::new(".")).join(&template.file);
            let parsed = std::fs::read(&path)
                .map_err(|e| format!("cannot read {}: {e}", path.display()))
                .and_then(|b| {
                    serde_json::from_slice::<serde_json::Value>(&b)
                        .map_err(|e| format!("{} is not JSON: {e}", path.display()))
                });
            if let Err(e) = parsed {
                doc.error(span_of("template"), &join(key, "template.file"), e);
            }
        }
        doc.diagnostics.len() == before
    }

    pub fn describe(&self) -> String {
        format!("opensearch {} index {}", self.hosts.join(","), self.index)
    }
}

/// A document waiting to be sent, with the record it came from (for the
/// dead-letter destination).
struct Pending {
    item: BulkItem,
    record: Record,
}

pub struct OpenSearchSink {
    config: OpenSearchSinkConfig,
    delivery: Arc<Delivery>,
    /// Requests sent and not yet finished (each until every document is
    /// indexed or dead-lettered).
    in_flight: JoinSet<anyhow::Result<()>>,
    index: Template,
    base: PathBuf,
    pending: Vec<Pending>,
    pending_bytes: usize,
    /// Acks of the batches whose documents are pending.
    acks: Vec<Ack>,
    oldest: Option<Instant>,
    template_installed: bool,
    ctx: SinkContext,
}

impl OpenSearchSink {
    pub fn new(
        config: &OpenSearchSinkConfig,
        pipeline: &PipelineConfig,
        ctx: SinkContext,
    ) -> anyhow::Result<Self> {
        let base = pipeline.file.parent().unwrap_or(Path::new(".")).to_path_buf();
        let delivery = Delivery {
            cluster: Cluster::connect(config, &base)?,
            retry_initial_ms: config.retry_initial_ms,
            retry_max_ms: config.retry_max_ms,
            ctx: ctx.clone(),
        };
        Ok(OpenSearchSink {
            delivery: Arc::new(delivery),
            in_flight: JoinSet::new(),
            index: Template::parse(&config.index).map_err(anyhow::Error::msg)?,
            template_installed: config.template.is_none(),
            config: config.clone(),
            base,
            pending: Vec::new(),
            pending_bytes: 0,
            acks: Vec::new(),
            oldest: None,
            ctx,
        })
    }

    /// The document for `record`, or why it cannot be one.
    fn item(&self, record: &Record, output: usize) -> Result<BulkItem, (String, String)> {
        let document: serde_json::Value = serde_json::from_slice(&record.value)
            .map_err(|e| ("invalid-json".to_string(), format!("the value is not a JSON document: {e}")))?;
        let Some(object) = document.as_object() else {
            return Err(("invalid-json".into(), "the value is JSON but not an object".into()));
        };
        let time_ms = object
            .get(&self.config.timestamp_field)
            .and_then(|t| t.as_str())
            .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
            .map(|t| t.timestamp_millis())
            .or(record.timestamp)
            .unwrap_or_else(crate::record::now_millis);
        let origin = &record.origin;
        let index = self.index.render(&origin.source, origin.partition, time_ms);
        let id = self.config.idempotent.then(|| match output {
            0 => format!("{}-{}-{}", origin.source, origin.partition, origin.offset),
            n => format!("{}-{}-{}-{n}", origin.source, origin.partition, origin.offset),
        });
        // The bulk format is line-based: a pretty-printed document is
        // written again on one line.
        let compact;
        let bytes: &[u8] = if memchr::memchr(b'\n', &record.value).is_some() {
            compact = serde_json::to_vec(&document).expect("a parsed document serializes");
            &compact
        } else {
            &record.value
        };
        Ok(BulkItem::index(&index, id.as_deref(), bytes))
    }

    async fn install_template(&mut self) -> anyhow::Result<()> {
        let Some(template) = self.config.template.clone() else { return Ok(()) };
        let path = self.base.join(&template.file);
        let body = std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?;
        let mut attempt = 0;
        loop {
            let cluster = &self.delivery.cluster;
            match cluster.put(&format!("/_index_template/{}", template.name), body.clone().into()).await {
                Reply::Answered { status: 200..=299, .. } => break,
                Reply::Answered { status, body } if !bulk::retryable(status) => anyhow::bail!(
                    "{} refused index template `{}` ({status}): {}",
                    cluster.host(),
                    template.name,
                    String::from_utf8_lossy(&body)
                ),
                Reply::Answered { status, .. } => {
                    tracing::warn!(pipeline = %self.ctx.pipeline, host = %cluster.host(), status, "index template: will retry");
                }
                Reply::Unreachable(error) => {
                    let host = cluster.host().to_string();
                    tracing::warn!(pipeline = %self.ctx.pipeline, host = %host, "index template: {error}; will retry");
                    cluster.fail_over(&host);
                }
            }
            tokio::time::sleep(self.delivery.backoff(attempt)).await;
            attempt += 1;
        }
        tracing::info!(pipeline = %self.ctx.pipeline, template = %template.name, "index template installed");
        self.template_installed = true;
        Ok(())
    }

    /// Sends everything pending as one `_bulk` request, in the background;
    /// waits first while `max_in_flight` requests are out.
    async fn flush(&mut self) -> anyhow::Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        if !self.template_installed {
            self.install_template().await?;
        }
        while self.in_flight.len() >= self.config.max_in_flight {
            self.join_next().await?;
        }
        let todo = std::mem::take(&mut self.pending);
        let acks = std::mem::take(&mut self.acks);
        self.pending_bytes = 0;
        self.oldest = None;
        self.in_flight.spawn(self.delivery.clone().deliver(todo, acks));
        Ok(())
    }

    /// Waits for one request in flight to finish; its failure is the sink's.
    async fn join_next(&mut self) -> anyhow::Result<()> {
        match self.in_flight.join_next().await {
            Some(finished) => finished.context("a _bulk request task panicked")?,
            None => Ok(()),
        }
    }

    /// Collects the requests that finished meanwhile, surfacing a failure.
    fn reap(&mut self) -> anyhow::Result<()> {
        while let Some(finished) = self.in_flight.try_join_next() {
            finished.context("a _bulk request task panicked")??;
        }
        Ok(())
    }

    /// Hands `letters` to the dead-letter destination; they hold `acks` too.
    async fn dead_letter(&self, letters: Vec<DeadLetter>, acks: &[Ack]) -> anyhow::Result<()> {
        self.delivery.dead_letter(letters, acks).await
    }
}

/// What a request in flight needs: the cluster, the retry policy and the
/// pipeline's counters and dead-letter queue.
struct Delivery {
    cluster: Cluster,
    retry_initial_ms: u64,
    retry_max_ms: u64,
    ctx: SinkContext,
}

impl Delivery {
    fn backoff(&self, attempt: u32) -> Duration {
        let base = self.retry_initial_ms.saturating_mul(1 << attempt.min(20)).min(self.retry_max_ms);
        // Full jitter in the upper half: spread the retries of many
        // engines without ever retrying at once.
        let jitter = getrandom::u32().unwrap_or(0) as u64 % (base / 2 + 1);
        Duration::from_millis(base / 2 + jitter)
    }

    /// Sends `todo` until each document is indexed or dead-lettered,
    /// however long that takes, then releases `acks`.
    async fn deliver(self: Arc<Self>, mut todo: Vec<Pending>, acks: Vec<Ack>) -> anyhow::Result<()> {
        let started = Instant::now();
        let documents = todo.len();
        let mut rejected = Vec::new();
        let mut indexed = 0;
        let mut attempt = 0u32;
        loop {
            let body = bulk::body(todo.iter().map(|p| &p.item));
            let host = self.cluster.host().to_string();
            let problem = match self.cluster.bulk(body).await {
                Reply::Answered { status: 200, body } => match bulk::outcomes(&body, todo.len()) {
                    Ok(outcomes) => {
                        let mut retry = Vec::new();
                        let mut last = None;
                        for (pending, outcome) in todo.into_iter().zip(outcomes) {
                            match outcome {
                                ItemOutcome::Indexed => indexed += 1,
                                ItemOutcome::Retry(reason) => {
                                    last = Some(reason);
                                    retry.push(pending);
                                }
                                ItemOutcome::Rejected { kind, reason } => rejected.push(DeadLetter::new(
                                    pending.record,
                                    "sink",
                                    FailureKind::Rejected(kind),
                                    reason,
                                )),
                            }
                        }
                        todo = retry;
                        match last {
                            None => break,
                            Some(reason) => format!("{} documents to retry, e.g. {reason}", todo.len()),
                        }
                    }
                    Err(e) => e,
                },
                Reply::Answered { status, body } if bulk::retryable(status) => {
                    format!(
                        "_bulk answered {status}: {}",
                        String::from_utf8_lossy(&body[..body.len().min(300)])
                    )
                }
                Reply::Answered { status, body } => {
                    // Not about one document: credentials, permissions, a
                    // proxy in the way. Stop loudly; nothing is acknowledged.
                    acks.iter().for_each(Ack::fail);
                    anyhow::bail!(
                        "{host} refused the _bulk request ({status}): {}",
                        String::from_utf8_lossy(&body[..body.len().min(500)])
                    );
                }
                Reply::Unreachable(error) => {
                    self.cluster.fail_over(&host);
                    format!("{host} unreachable: {error}")
                }
            };
            add(&self.ctx.stats.sink.retries, 1);
            let wait = self.backoff(attempt);
            tracing::warn!(pipeline = %self.ctx.pipeline, attempt = attempt + 1, wait_ms = wait.as_millis() as u64, "opensearch: {problem}");
            tokio::time::sleep(wait).await;
            attempt += 1;
        }
        let sink = &self.ctx.stats.sink;
        add(&self.ctx.stats.written, indexed);
        sink.pending_items.fetch_sub(documents as u64, std::sync::atomic::Ordering::Relaxed);
        sink.commit_latency.observe(started.elapsed());
        if !rejected.is_empty() {
            self.dead_letter(rejected, &acks).await?;
        }
        Ack::all_done(acks);
        Ok(())
    }

    /// Hands `letters` to the dead-letter destination; they hold `acks` too.
    async fn dead_letter(&self, letters: Vec<DeadLetter>, acks: &[Ack]) -> anyhow::Result<()> {
        let dead_letters = self
            .ctx
            .dead_letters
            .as_ref()
            .context("the opensearch sink cannot be a dead-letter destination")?;
        add(&self.ctx.stats.dead_lettered, letters.len());
        dead_letters
            .send(DeadLetterBatch { letters, acks: acks.to_vec() })
            .await
            .context("dead-letter queue closed")
    }
}

#[async_trait::async_trait]
impl Sink for OpenSearchSink {
    async fn write(&mut self, batch: Batch) -> anyhow::Result<()> {
        self.reap()?;
        let Batch { records, acks } = batch;
        let mut refused = Vec::new();
        let mut previous: Option<(SourceName, i32, i64)> = None;
        let mut output = 0;
        for record in records {
            // The n-th output of one input record gets the id suffix -n.
            let origin = (record.origin.source, record.origin.partition, record.origin.offset);
            output = if previous.as_ref() == Some(&origin) { output + 1 } else { 0 };
            previous = Some(origin);
            match self.item(&record, output) {
                Ok(item) => {
                    self.pending_bytes += item.lines.len();
                    self.pending.push(Pending { item, record });
                    add(&self.ctx.stats.sink.pending_items, 1);
                }
                Err((kind, message)) => {
                    refused.push(DeadLetter::new(record, "sink", FailureKind::Rejected(kind), message));
                }
            }
        }
        if !refused.is_empty() {
            self.dead_letter(refused, &acks).await?;
        }
        self.acks.extend(acks);
        self.oldest.get_or_insert_with(Instant::now);
        if self.pending.len() >= self.config.max_docs || self.pending_bytes >= self.config.max_bytes {
            self.flush().await?;
        }
        Ok(())
    }

    fn tick_interval(&self) -> Option<Duration> {
        let interval = Duration::from_millis(self.config.flush_interval_ms);
        Some((interval / 4).clamp(Duration::from_millis(20), Duration::from_secs(1)))
    }

    async fn tick(&mut self) -> anyhow::Result<()> {
        self.reap()?;
        let due =
            self.oldest.is_some_and(|t| t.elapsed() >= Duration::from_millis(self.config.flush_interval_ms));
        if due { self.flush().await } else { Ok(()) }
    }

    async fn close(mut self: Box<Self>) -> anyhow::Result<()> {
        self.flush().await?;
        while !self.in_flight.is_empty() {
            self.join_next().await?;
        }
        Ok(())
    }
}
