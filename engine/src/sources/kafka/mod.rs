//! The `kafka` source: a consumer-group member that commits offsets only
//! for records the sink (or the dead-letter destination) made durable.
//!
//! How it works:
//! - The consumer runs on a thread of its own (librdkafka's API blocks, and
//!   rebalance callbacks must be able to wait). It polls a burst of
//!   messages, cuts it into one chunk per partition, each with its own
//!   [`Ack`], and hands the chunks to the pipeline in order.
//! - Every partition keeps its chunks in flight in offset order. When the
//!   oldest resolves as delivered, the partition's durable position moves
//!   past it; a failed chunk freezes the position for good (the pipeline is
//!   stopping anyway). Durable positions are committed every
//!   `commit_interval_ms`, on revocation and at shutdown — never by
//!   librdkafka's auto-commit.
//! - When the pipeline is full the consumer pauses its partitions and keeps
//!   polling (to stay in the group) until the backlog is sent, then
//!   resumes.
//! - On revocation it waits up to `revoke_timeout_ms` for the revoked
//!   partitions' records in flight, commits what is durable and forgets the
//!   rest: the new owner re-reads from the committed offset, so a record is
//!   never lost, and duplicated only inside that window (at-least-once).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use bytes::Bytes;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{BorrowedMessage, Headers, Message};
use rdkafka::{Offset, TopicPartitionList};
use serde::{Deserialize, Serialize};

use super::{Source, SourceContext, TrySendError};
use crate::ack::Ack;
use crate::config::{Document, PipelineConfig, Value, join};
use crate::kafka::{Connection, Security};
use crate::pipeline::partitions::PartitionKey;
use crate::record::{Batch, Header, Origin, Record, SourceName};

mod positions;
mod rebalance;

use positions::{Chunk, InFlight, Positions};
use rebalance::SourceConsumerContext;

/// `[source]` with `type = "kafka"`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaSourceConfig {
    /// Bootstrap brokers, `host:port[,host:port…]`; unset: the engine's
    /// cluster (`sluice run --brokers`).
    pub brokers: Option<String>,
    /// Topic names; a name starting with `^` is a regular expression
    /// (`"^weblogs-.*"`) matched against the cluster's topics.
    pub topics: Vec<String>,
    /// The consumer group; default `sluice-<pipeline name>`. Engines with
    /// the same group split the partitions between them.
    pub group_id: Option<String>,
    /// Where to start the first time this process is given a partition:
    /// `committed` (the group's offset; the earliest if there is none),
    /// `earliest` or `latest` (ignoring the committed offset).
    #[serde(default)]
    pub start_from: StartFrom,
    /// How often durable positions are committed.
    #[serde(default = "default_commit_interval_ms")]
    pub commit_interval_ms: u64,
    /// How long a rebalance waits for the records in flight of revoked
    /// partitions to become durable before leaving them to the new owner.
    #[serde(default = "default_revoke_timeout_ms")]
    pub revoke_timeout_ms: u64,
    pub security: Option<Security>,
    /// Any librdkafka consumer property, e.g. `"fetch.min.bytes"`.
    #[serde(default)]
    pub options: BTreeMap<String, String>,
    /// How the partitions are shared out; default `exclusive` on the
    /// engine's embedded broker (only that engine reads from it), `group`
    /// everywhere else.
    pub ownership: Option<Ownership>,
}

/// Who reads which partitions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Ownership {
    /// The consumer group protocol splits the partitions between the
    /// engines in the group, and moves them when one comes or goes.
    Group,
    /// This engine reads every partition itself and commits its offsets
    /// under `group_id`, without joining the group: a restarted engine
    /// resumes at once instead of waiting for its old membership to expire.
    /// Only for a cluster where no other engine reads this group.
    Exclusive,
}

/// librdkafka properties `[source.options]` may not set: the source's
/// delivery guarantee depends on them, or they have a key of their own.
const RESERVED_OPTIONS: &[(&str, &str)] = &[
    (
        "enable.auto.commit",
        "offsets are committed only once records are durable; auto-commit would commit them before",
    ),
    (
        "enable.auto.offset.store",
        "offsets are committed only once records are durable; auto-commit would commit them before",
    ),
    ("group.id", "use `group_id`"),
    ("auto.offset.reset", "use `start_from`"),
    ("enable.partition.eof", "the source reads until it is stopped"),
];

impl KafkaSourceConfig {
    /// Checks what serde cannot, recording problems at their keys.
    pub(crate) fn check(&self, doc: &mut Document<'_>, value: &Value<'_>, key: &str) -> bool {
        let before = doc.diagnostics.len();
        let options = value.get_ref().get("options");
        for (option, why) in RESERVED_OPTIONS {
            if self.options.contains_key(*option) {
                let span =
                    options.and_then(|o| o.get_ref().get(*option).map(|v| v.span())).unwrap_or(value.span());
                doc.error(span, &join(&join(key, "options"), option), format!("may not be set here: {why}"));
            }
        }
        doc.diagnostics.len() == before
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StartFrom {
    #[default]
    Committed,
    Earliest,
    Latest,
}

fn default_commit_interval_ms() -> u64 {
    1000
}

fn default_revoke_timeout_ms() -> u64 {
    10_000
}

/// Chunks waiting for room in the pipeline before the partitions pause,
/// and the backlog at which they resume. The gap keeps a pipeline that is
/// just a little slower than its input from pausing and resuming on every
/// chunk (each resume restarts fetching from scratch).
const PAUSE_AT: usize = 8;
const RESUME_AT: usize = 1;
/// How long a stopping source waits for its records in flight.
const SHUTDOWN_DRAIN: Duration = Duration::from_secs(120);
/// With exclusive ownership, how often new topics and partitions are looked for.
const DISCOVER_EVERY: Duration = Duration::from_secs(10);

/// Which topics a source reads: names, and `^`-prefixed regular expressions.
struct TopicFilter {
    names: HashSet<String>,
    patterns: Vec<regex::Regex>,
}

impl TopicFilter {
    fn new(topics: &[String]) -> anyhow::Result<TopicFilter> {
        let mut filter = TopicFilter { names: HashSet::new(), patterns: Vec::new() };
        for topic in topics {
            if topic.starts_with('^') {
                let pattern = regex::Regex::new(topic).with_context(|| format!("topic pattern `{topic}`"))?;
                filter.patterns.push(pattern);
            } else {
                filter.names.insert(topic.clone());
            }
        }
        Ok(filter)
    }

    fn matches(&self, topic: &str) -> bool {
        self.names.contains(topic) || self.patterns.iter().any(|p| p.is_match(topic))
    }
}

pub struct KafkaSource {
    config: KafkaSourceConfig,
    group_id: String,
    client: rdkafka::ClientConfig,
    chunk_records: usize,
}

impl KafkaSource {
    pub fn new(config: &KafkaSourceConfig, pipeline: &PipelineConfig) -> anyhow::Result<Self> {
        let group_id = config.group_id.clone().unwrap_or_else(|| format!("sluice-{}", pipeline.name));
        let connection = Connection {
            brokers: config.brokers.clone(),
            security: config.security.clone(),
            options: config.options.clone(),
        };
        let client = connection.client_config(
            // The engine's id tells the group's members apart.
            &format!("sluice-{}@{}", pipeline.name, crate::identity::engine_id()),
            &[
                ("group.id", group_id.as_str()),
                ("enable.auto.commit", "false"),
                ("enable.auto.offset.store", "false"),
                // Used only when the group has no offset yet.
                (
                    "auto.offset.reset",
                    if config.start_from == StartFrom::Latest { "latest" } else { "earliest" },
                ),
                ("enable.partition.eof", "false"),
                // Consumer lag per partition for /metrics, from librdkafka's statistics.
                ("statistics.interval.ms", "5000"),
            ],
        )?;

        anyhow::ensure!(!config.topics.is_empty(), "`topics` is empty");
        Ok(KafkaSource {
            config: config.clone(),
            group_id,
            client,
            chunk_records: pipeline.batch.max_records.max(1),
        })
    }
}

#[async_trait::async_trait]
impl Source for KafkaSource {
    async fn run(self: Box<Self>, ctx: SourceContext) -> anyhow::Result<()> {
        tokio::task::spawn_blocking(move || self.consume(ctx))
            .await
            .context("the consumer thread panicked")?
    }
}

impl KafkaSource {
    /// The group session's length: `session.timeout.ms` from the options,
    /// or librdkafka's default.
    fn session_timeout(&self) -> Duration {
        let ms = self.config.options.get("session.timeout.ms").and_then(|v| v.parse().ok());
        Duration::from_millis(ms.unwrap_or(45_000))
    }

    fn consume(self, mut ctx: SourceContext) -> anyhow::Result<()> {
        let context = SourceConsumerContext {
            pipeline: ctx.pipeline.clone(),
            group: self.group_id.clone(),
            positions: Mutex::new(Positions::default()),
            start_from: self.config.start_from,
            revoke_timeout: Duration::from_millis(self.config.revoke_timeout_ms),
            events: ctx.partitions.clone(),
            stats: ctx.stats.clone(),
            session_timeout: self.session_timeout(),
        };
        let consumer: BaseConsumer<SourceConsumerContext> =
            self.client.create_with_context(context).context("cannot create the Kafka consumer")?;
        let topics: Vec<&str> = self.config.topics.iter().map(String::as_str).collect();
        let exclusive = match self.config.ownership.unwrap_or(Ownership::Group) {
            Ownership::Group => {
                consumer
                    .subscribe(&topics)
                    .with_context(|| format!("cannot subscribe to {}", topics.join(", ")))?;
                None
            }
            Ownership::Exclusive => Some(TopicFilter::new(&self.config.topics)?),
        };
        tracing::info!(pipeline = %ctx.pipeline, group = %self.group_id, topics = %topics.join(","), exclusive = exclusive.is_some(), "consuming");

        let commit_interval = Duration::from_millis(self.config.commit_interval_ms);
        let mut last_commit = Instant::now();
        let mut last_member_check = Instant::now();
        let mut last_discovery: Option<Instant> = None;
        let mut names: HashMap<String, SourceName> = HashMap::new();
        let mut paused = false;
        while !ctx.shutdown.is_cancelled() {
            if exclusive.is_none()
                && ctx.stats.rejoin_requested.swap(false, std::sync::atomic::Ordering::Relaxed)
            {
                tracing::warn!(pipeline = %ctx.pipeline, group = %self.group_id, "rejoining the consumer group so that partitions left without an owner are assigned");
                consumer.unsubscribe();
                consumer
                    .subscribe(&topics)
                    .with_context(|| format!("cannot subscribe to {}", topics.join(", ")))?;
            }
            if let Some(filter) = &exclusive
                && last_discovery.is_none_or(|at| at.elapsed() >= DISCOVER_EVERY)
            {
                if let Err(error) = self.assign_new_partitions(&consumer, filter) {
                    tracing::warn!(pipeline = %ctx.pipeline, "cannot assign partitions (trying again): {error:#}");
                }
                last_discovery = Some(Instant::now());
            }
            let (backlog, closed) = self.hand_over(&consumer, &ctx);
            if closed {
                break;
            }
            if last_member_check.elapsed() >= Duration::from_secs(1) {
                // Joined but given nothing is membership too.
                if exclusive.is_none() {
                    consumer.context().record_member_id(&consumer);
                }
                last_member_check = Instant::now();
            }
            if last_commit.elapsed() >= commit_interval {
                let list = consumer.context().positions().to_commit(|_| true);
                consumer.context().commit(&consumer, list);
                last_commit = Instant::now();
            }
            // Backpressure: a full pipeline pauses fetching; polling goes on
            // so the group still sees this member alive.
            if std::mem::take(&mut consumer.context().positions().resumed) {
                paused = false;
            }
            if backlog >= PAUSE_AT && !paused {
                if let Ok(assignment) = consumer.assignment() {
                    let _ = consumer.pause(&assignment);
                }
                paused = true;
            } else if backlog <= RESUME_AT && paused {
                if let Ok(assignment) = consumer.assignment() {
                    let _ = consumer.resume(&assignment);
                }
                paused = false;
            }
            // With records waiting, wake as soon as the pipeline has room
            // (polling meanwhile would only wait on paused partitions).
            let timeout = if backlog > 0 {
                ctx.wait_for_room(Duration::from_millis(10));
                Duration::ZERO
            } else {
                Duration::from_millis(100)
            };
            self.poll_burst(&consumer, timeout, &mut names);
        }
        self.drain(consumer, &mut ctx);
        Ok(())
    }

    /// Exclusive ownership: assigns every partition of the source's topics
    /// not owned yet, at its committed offset (or where `start_from` says).
    fn assign_new_partitions(
        &self,
        consumer: &BaseConsumer<SourceConsumerContext>,
        filter: &TopicFilter,
    ) -> anyhow::Result<()> {
        let metadata =
            consumer.fetch_metadata(None, Duration::from_secs(10)).context("cannot list topics")?;
        let owned: HashSet<PartitionKey> =
            consumer.context().positions().partitions.keys().cloned().collect();
        let mut new = TopicPartitionList::new();
        for topic in metadata.topics().iter().filter(|t| filter.matches(t.name())) {
            for partition in topic.partitions() {
                if !owned.contains(&(SourceName::new(topic.name()), partition.id())) {
                    new.add_partition(topic.name(), partition.id());
                }
            }
        }
        if new.count() == 0 {
            return Ok(());
        }
        let committed = consumer
            .committed_offsets(new, Duration::from_secs(10))
            .context("cannot read committed offsets")?;
        let mut list = TopicPartitionList::new();
        for element in committed.elements() {
            let offset = match (self.config.start_from, element.offset()) {
                (StartFrom::Committed, Offset::Offset(offset)) => Offset::Offset(offset),
                (StartFrom::Latest, _) => Offset::End,
                _ => Offset::Beginning,
            };
            // Offsets come from the broker, so they are valid here.
            let _ = list.add_partition_offset(element.topic(), element.partition(), offset);
        }
        consumer.incremental_assign(&list).context("cannot assign partitions")?;
        consumer.context().took(&list, None);
        Ok(())
    }

    /// Sends the backlog's chunks while the pipeline has room. Returns the
    /// chunks left and whether the pipeline stopped taking records.
    fn hand_over(
        &self,
        consumer: &BaseConsumer<SourceConsumerContext>,
        ctx: &SourceContext,
    ) -> (usize, bool) {
        let mut positions = consumer.context().positions();
        positions.settle();
        while let Some(chunk) = positions.backlog.pop_front() {
            let Chunk { partition, batch, next, ack } = chunk;
            match ctx.try_send(batch) {
                Ok(()) => {
                    if let Some(state) = positions.partitions.get_mut(&partition) {
                        state.in_flight.push_back(InFlight { next, ack });
                    }
                }
                Err(TrySendError::Full(batch)) => {
                    positions.backlog.push_front(Chunk { partition, batch, next, ack });
                    break;
                }
                Err(TrySendError::Closed) => return (positions.backlog.len(), true),
            }
        }
        (positions.backlog.len(), false)
    }

    /// Polls up to one batch worth of messages and queues them as one
    /// chunk per partition.
    fn poll_burst(
        &self,
        consumer: &BaseConsumer<SourceConsumerContext>,
        timeout: Duration,
        names: &mut HashMap<String, SourceName>,
    ) {
        let mut by_partition: Vec<(PartitionKey, Vec<Record>)> = Vec::new();
        let mut count = 0;
        let mut wait = timeout;
        while count < self.chunk_records {
            // The lock is not held here: polling runs the rebalance callbacks.
            let message = match consumer.poll(wait) {
                None => break,
                Some(Ok(message)) => message,
                Some(Err(error)) => {
                    tracing::warn!(group = %self.group_id, "kafka fetch: {error}");
                    break;
                }
            };
            wait = Duration::ZERO;
            // One interning lock per topic, not per message.
            let topic = match names.get(message.topic()) {
                Some(&name) => name,
                None => {
                    let name = SourceName::new(message.topic());
                    names.insert(message.topic().to_string(), name);
                    name
                }
            };
            let key = (topic, message.partition());
            let record = to_record(&message, key.0);
            match by_partition.iter_mut().find(|(k, _)| *k == key) {
                Some((_, records)) => records.push(record),
                None => by_partition.push((key, vec![record])),
            }
            count += 1;
        }
        if by_partition.is_empty() {
            return;
        }
        let mut positions = consumer.context().positions();
        for (key, mut records) in by_partition {
            // A partition revoked while this burst was read is not ours.
            let Some(state) = positions.partitions.get_mut(&key) else { continue };
            if let Some(expected) = state.expected {
                records.retain(|r| r.origin.offset >= expected);
            }
            let Some(last) = records.last() else { continue };
            let next = last.origin.offset + 1;
            state.expected = Some(next);
            let (ack, receiver) = Ack::new();
            positions.backlog.push_back(Chunk {
                partition: key,
                batch: Batch::new(records, vec![ack]),
                next,
                ack: receiver,
            });
        }
    }

    /// Stops reading, lets the pipeline drain what it was given, commits
    /// what became durable and leaves the group.
    fn drain(self, consumer: BaseConsumer<SourceConsumerContext>, ctx: &mut SourceContext) {
        if let Ok(assignment) = consumer.assignment() {
            let _ = consumer.pause(&assignment);
        }
        consumer.context().positions().backlog.clear();
        ctx.close();
        let deadline = Instant::now() + SHUTDOWN_DRAIN;
        loop {
            let waiting = {
                let mut positions = consumer.context().positions();
                positions.settle();
                positions.in_flight(|_| true)
            };
            if waiting == 0 {
                break;
            }
            if Instant::now() >= deadline {
                tracing::warn!(pipeline = %ctx.pipeline, chunks = waiting, "records still in flight at shutdown; they will be read again");
                break;
            }
            // Keep the membership alive while the pipeline drains; paused
            // partitions deliver nothing.
            let _ = consumer.poll(Duration::from_millis(20));
        }
        let list = consumer.context().positions().to_commit(|_| true);
        consumer.context().commit(&consumer, list);
        tracing::info!(pipeline = %ctx.pipeline, "consumer stopped; offsets committed");
        ctx.stats.owned.lock().unwrap_or_else(|e| e.into_inner()).clear();
        *ctx.stats.group_member.lock().unwrap_or_else(|e| e.into_inner()) = None;
        // Dropping the consumer leaves the group (revoking what is left).
    }
}

fn to_record(message: &BorrowedMessage<'_>, topic: SourceName) -> Record {
    let headers = message
        .headers()
        .map(|headers| {
            headers
                .iter()
                .map(|h| Header {
                    name: h.key.to_string(),
                    value: h.value.map(Bytes::copy_from_slice).unwrap_or_default(),
                })
                .collect()
        })
        .unwrap_or_default();
    Record {
        key: message.key().map(Bytes::copy_from_slice),
        value: message.payload().map(Bytes::copy_from_slice).unwrap_or_default(),
        headers,
        timestamp: message.timestamp().to_millis(),
        origin: Origin { source: topic, partition: message.partition(), offset: message.offset() },
    }
}

fn describe(list: &TopicPartitionList) -> String {
    list.elements().iter().map(|e| format!("{}/{}", e.topic(), e.partition())).collect::<Vec<_>>().join(",")
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::config::parse_str;

    #[test]
    fn a_misspelled_key_is_reported_with_its_position_and_a_suggestion() {
        let text = "name = \"k\"\n[source]\ntype = \"kafka\"\ntopic = [\"in\"]\n[sink]\ntype = \"file\"\npath = \"o\"\n";
        let errors = parse_str(Path::new("k.toml"), text).unwrap_err().to_string();
        assert!(
            errors.contains("k.toml:4:1: key `source.topic`: unknown key; did you mean `topics`?"),
            "{errors}"
        );
    }

    #[test]
    fn options_cannot_turn_auto_commit_back_on() {
        let text = "name = \"k\"\n[source]\ntype = \"kafka\"\ntopics = [\"in\"]\n[source.options]\n\"fetch.min.bytes\" = \"1\"\n\"enable.auto.commit\" = \"true\"\n[sink]\ntype = \"file\"\npath = \"o\"\n";
        let errors = parse_str(Path::new("k.toml"), text).unwrap_err().to_string();
        assert!(
            errors.contains("k.toml:7:24: key `source.options.enable.auto.commit`: may not be set here"),
            "{errors}"
        );
    }

    #[test]
    fn start_from_accepts_only_known_positions() {
        let text = "name = \"k\"\n[source]\ntype = \"kafka\"\ntopics = [\"in\"]\nstart_from = \"beginning\"\n[sink]\ntype = \"file\"\npath = \"o\"\n";
        let errors = parse_str(Path::new("k.toml"), text).unwrap_err().to_string();
        assert!(errors.contains("k.toml:5:14: key `source.start_from`"), "{errors}");
        assert!(errors.contains("committed"), "{errors}");
    }
}
