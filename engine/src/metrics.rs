//! `/metrics`: the engine's counters in the Prometheus text format.
//!
//! Pipelines keep plain atomic counters (cheap on the hot path); a scrape
//! reads them and builds the metric families then, so nothing is
//! registered or unregistered as pipelines come and go. Labels are bounded:
//! pipeline, stage, topic and partition — never anything per record.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use prometheus::proto::{Bucket, Counter, Gauge, Histogram, LabelPair, Metric, MetricFamily, MetricType};
use prometheus::{Encoder as _, Registry, TextEncoder};

use crate::control::{Status, Supervisor};
use crate::pipeline::stats::{LatencyHistogram, get};

pub struct Metrics {
    /// Process metrics (CPU, memory, file descriptors, start time).
    registry: Registry,
    supervisor: Arc<Supervisor>,
    /// The embedded broker, when the engine supervises one.
    broker: Option<Arc<crate::kafka::embedded::BrokerHealth>>,
}

impl Metrics {
    pub fn new(
        supervisor: Arc<Supervisor>,
        broker: Option<Arc<crate::kafka::embedded::BrokerHealth>>,
    ) -> Self {
        let registry = Registry::new();
        #[cfg(target_os = "linux")]
        if let Err(e) =
            registry.register(Box::new(prometheus::process_collector::ProcessCollector::for_self()))
        {
            tracing::warn!("process metrics unavailable: {e}");
        }
        Metrics { registry, supervisor, broker }
    }

    /// The text exposition of every metric.
    pub fn render(&self) -> String {
        let mut families = self.registry.gather();
        families.extend(self.pipeline_families());
        families.retain(|f| !f.get_metric().is_empty());
        families.sort_by(|a, b| a.name().cmp(b.name()));
        let mut out = Vec::new();
        if let Err(e) = TextEncoder::new().encode(&families, &mut out) {
            tracing::error!("cannot encode metrics: {e}");
        }
        String::from_utf8(out).unwrap_or_default()
    }

    fn pipeline_families(&self) -> Vec<MetricFamily> {
        let mut f = Families::default();
        if let Some(broker) = &self.broker {
            let state = broker.state();
            f.gauge(
                "sluice_embedded_broker_up",
                "1 while the embedded broker answers.",
                &[],
                f64::from(u8::from(state.up)),
            );
            f.counter(
                "sluice_embedded_broker_restarts_total",
                "Times the embedded broker was started again after it died or stopped answering.",
                &[],
                state.restarts,
            );
        }
        // Prometheus tells scrape targets apart by `instance`; this says
        // which engine of which cluster an instance is, across restarts
        // and address changes.
        f.gauge(
            "sluice_engine_info",
            "This engine (always 1): its id, its cluster (empty when alone) and its version.",
            &[
                ("engine_id", crate::identity::engine_id()),
                ("cluster", self.supervisor.cluster_name().unwrap_or("")),
                ("version", env!("CARGO_PKG_VERSION")),
            ],
            1.0,
        );
        let modules = self.supervisor.modules.list();
        f.gauge("sluice_modules", "Modules in the registry.", &[], modules.len() as f64);
        f.gauge(
            "sluice_module_versions",
            "Module versions in the registry.",
            &[],
            modules.values().map(Vec::len).sum::<usize>() as f64,
        );
        for managed in self.supervisor.list() {
            let p = managed.name.as_str();
            let stats = &managed.stats;
            let status = managed.status();
            for candidate in Status::ALL {
                let name = serde_json::to_value(candidate).ok().and_then(|v| v.as_str().map(String::from));
                f.gauge(
                    "sluice_pipeline_status",
                    "1 for the pipeline's current status, 0 for the others.",
                    &[("pipeline", p), ("status", name.as_deref().unwrap_or("?"))],
                    f64::from(u8::from(candidate == status)),
                );
            }
            let pl = [("pipeline", p)];
            f.counter(
                "sluice_pipeline_restarts_total",
                "Times the pipeline was started again after it failed.",
                &pl,
                managed.restarts.total.load(std::sync::atomic::Ordering::Relaxed),
            );
            f.gauge(
                "sluice_pipeline_failures_in_a_row",
                "Failures since the pipeline last ran healthily (0 while it does).",
                &pl,
                f64::from(managed.restart_state().attempts),
            );
            f.counter("sluice_records_read_total", "Records the source read.", &pl, get(&stats.read));
            f.counter(
                "sluice_records_written_total",
                "Records the sink made durable.",
                &pl,
                get(&stats.written),
            );
            f.counter(
                "sluice_records_dead_lettered_total",
                "Records sent to the dead-letter destination.",
                &pl,
                get(&stats.dead_lettered),
            );
            f.counter(
                "sluice_records_dropped_total",
                "Records dropped by on_error = \"drop\" stages.",
                &pl,
                get(&stats.dropped),
            );
            f.gauge(
                "sluice_dead_letters_pending",
                "Dead letters the engine keeps that were not replayed (the DLQ depth).",
                &pl,
                managed.dead_letters.pending() as f64,
            );
            let snapshot = managed.snapshot();
            let reads_kafka = matches!(snapshot.config.source, crate::sources::SourceConfig::Kafka(_));
            if reads_kafka {
                f.gauge(
                    "sluice_kafka_partitions_owned",
                    "Kafka partitions this engine reads for the pipeline (in a cluster, its share).",
                    &pl,
                    stats.owned.lock().unwrap_or_else(|e| e.into_inner()).len() as f64,
                );
            }
            for ((topic, partition), lag) in
                stats.consumer_lag.lock().unwrap_or_else(|e| e.into_inner()).iter()
            {
                let partition = partition.to_string();
                f.gauge(
                    "sluice_kafka_consumer_lag",
                    "Records between the committed offset and the end of the partition.",
                    &[("pipeline", p), ("topic", topic), ("partition", &partition)],
                    *lag as f64,
                );
            }

            let sink = &stats.sink;
            f.counter(
                "sluice_sink_bytes_written_total",
                "Bytes of committed files.",
                &pl,
                get(&sink.bytes_written),
            );
            f.counter(
                "sluice_sink_files_committed_total",
                "Files committed.",
                &pl,
                get(&sink.files_committed),
            );
            f.counter(
                "sluice_sink_files_fenced_total",
                "Files discarded unrenamed: the consumer group had moved their partition to another engine.",
                &pl,
                get(&sink.files_fenced),
            );
            f.gauge("sluice_sink_open_files", "Files being written.", &pl, get(&sink.open_files) as f64);
            f.gauge(
                "sluice_sink_pending_items",
                "Documents waiting in the bulk buffer or for a retry.",
                &pl,
                get(&sink.pending_items) as f64,
            );
            f.counter(
                "sluice_sink_retries_total",
                "Requests sent again after a busy or unreachable server.",
                &pl,
                get(&sink.retries),
            );
            f.counter(
                "sluice_sink_duplicates_skipped_total",
                "Redelivered records the sink had written already.",
                &pl,
                get(&sink.duplicates_skipped),
            );
            f.histogram(
                "sluice_sink_commit_duration_seconds",
                "Time to make a batch durable (a file commit, a bulk request with its retries).",
                &pl,
                &sink.commit_latency,
            );

            for stage in &snapshot.stages {
                let s = &stage.stats;
                let labels = [("pipeline", p), ("stage", stage.name.as_str())];
                f.counter(
                    "sluice_stage_records_in_total",
                    "Records into the stage.",
                    &labels,
                    get(&s.records_in),
                );
                f.counter(
                    "sluice_stage_records_out_total",
                    "Records out of the stage.",
                    &labels,
                    get(&s.records_out),
                );
                f.counter(
                    "sluice_stage_records_failed_total",
                    "Records the stage failed on.",
                    &labels,
                    get(&s.records_failed),
                );
                f.counter("sluice_stage_calls_total", "Calls into the module.", &labels, get(&s.calls));
                f.counter(
                    "sluice_stage_failed_calls_total",
                    "Calls that trapped or timed out.",
                    &labels,
                    get(&s.failed_calls),
                );
                f.counter(
                    "sluice_stage_instance_recycles_total",
                    "Instances rebuilt after a failed call.",
                    &labels,
                    get(&s.recycles),
                );
                f.gauge(
                    "sluice_stage_quarantined",
                    "1 while the stage is quarantined.",
                    &labels,
                    f64::from(u8::from(s.quarantined.load(Ordering::Relaxed))),
                );
                f.gauge(
                    "sluice_stage_held_records",
                    "Records a quarantined stage holds until a new module version is deployed.",
                    &labels,
                    get(&s.held) as f64,
                );
                f.gauge(
                    "sluice_stage_workers",
                    "Worker threads running the stage (parallelism), each with its own instance.",
                    &labels,
                    get(&s.workers) as f64,
                );
                f.float_counter(
                    "sluice_stage_wasm_seconds_total",
                    "Time spent inside the module, summed over the stage's workers.",
                    &labels,
                    get(&s.busy_nanos) as f64 / 1e9,
                );
                f.histogram(
                    "sluice_stage_batch_duration_seconds",
                    "Time to run one batch through the stage.",
                    &labels,
                    &s.batch_latency,
                );
                f.gauge(
                    "sluice_stage_module_info",
                    "The module the stage runs (always 1).",
                    &[
                        ("pipeline", p),
                        ("stage", &stage.name),
                        ("module", &stage.module.name),
                        ("sha256", stage.module.short_hash()),
                    ],
                    1.0,
                );
            }
        }
        f.finish()
    }
}

/// Metric families under construction, in first-seen order.
#[derive(Default)]
struct Families(Vec<MetricFamily>);

impl Families {
    fn family(&mut self, name: &str, help: &str, kind: MetricType) -> &mut MetricFamily {
        let index = match self.0.iter().position(|f| f.name() == name) {
            Some(index) => index,
            None => {
                let mut family = MetricFamily::default();
                family.set_name(name.to_string());
                family.set_help(help.to_string());
                family.set_field_type(kind);
                self.0.push(family);
                self.0.len() - 1
            }
        };
        &mut self.0[index]
    }

    fn push(
        &mut self,
        name: &str,
        help: &str,
        kind: MetricType,
        labels: &[(&str, &str)],
        fill: impl FnOnce(&mut Metric),
    ) {
        let mut metric = Metric::default();
        metric.set_label(
            labels
                .iter()
                .map(|(n, v)| {
                    let mut pair = LabelPair::default();
                    pair.set_name(n.to_string());
                    pair.set_value(v.to_string());
                    pair
                })
                .collect(),
        );
        fill(&mut metric);
        self.family(name, help, kind).mut_metric().push(metric);
    }

    fn counter(&mut self, name: &str, help: &str, labels: &[(&str, &str)], value: u64) {
        self.float_counter(name, help, labels, value as f64);
    }

    fn float_counter(&mut self, name: &str, help: &str, labels: &[(&str, &str)], value: f64) {
        self.push(name, help, MetricType::COUNTER, labels, |m| {
            let mut counter = Counter::default();
            counter.set_value(value);
            m.set_counter(counter);
        });
    }

    fn gauge(&mut self, name: &str, help: &str, labels: &[(&str, &str)], value: f64) {
        self.push(name, help, MetricType::GAUGE, labels, |m| {
            let mut gauge = Gauge::default();
            gauge.set_value(value);
            m.set_gauge(gauge);
        });
    }

    fn histogram(&mut self, name: &str, help: &str, labels: &[(&str, &str)], source: &LatencyHistogram) {
        self.push(name, help, MetricType::HISTOGRAM, labels, |m| {
            let mut histogram = Histogram::default();
            histogram.set_sample_count(source.count());
            histogram.set_sample_sum(source.sum_seconds());
            histogram.set_bucket(
                source
                    .cumulative()
                    .into_iter()
                    .map(|(bound, count)| {
                        let mut bucket = Bucket::default();
                        bucket.set_upper_bound(bound);
                        bucket.set_cumulative_count(count);
                        bucket
                    })
                    .collect(),
            );
            m.set_histogram(histogram);
        });
    }

    fn finish(self) -> Vec<MetricFamily> {
        self.0
    }
}
