//! A real Prometheus scrapes the engine's /metrics on loopback and holds
//! the pipeline's counters with the right values.

use sluice_tests::engine::Engine;
use sluice_tests::prometheus::Prometheus;
use sluice_tests::{fixture, guest};

use super::{SLUICE, toml_path, write_pipeline};

#[test]
fn prometheus_scrapes_pipeline_counters_with_the_right_values() {
    let dir = tempfile::tempdir().unwrap();
    let mut logs = std::fs::read_to_string(fixture("logs/apache_combined_sample.log")).unwrap();
    logs.push_str(
        "not a log line\n\u{1}\u{2}binary\n127.0.0.1 - - [17/May/2015:10:05:03 +0000] \"GET /cut\n",
    );
    std::fs::write(dir.path().join("access.log"), logs).unwrap();
    let pipeline = write_pipeline(
        dir.path(),
        &format!(
            "name = \"weblogs\"\n[source]\ntype = \"file\"\npath = \"access.log\"\n[batch]\nmax_records = 100\n\
             [[stage]]\nname = \"parse\"\nmodule = {}\n[sink]\ntype = \"file\"\npath = \"out.ndjson\"\n",
            toml_path(&guest("log_parse"))
        ),
    );
    let engine = Engine::serve(SLUICE, &dir.path().join("data"), &[&pipeline], &[], &dir.path().join("log"));
    let target = engine.url.trim_start_matches("http://").to_string();
    let prometheus = Prometheus::scrape(&target, dir.path());

    prometheus.wait_for_value(r#"sluice_records_written_total{pipeline="weblogs"}"#, 500.0);
    prometheus.wait_for_value(r#"sluice_records_read_total{pipeline="weblogs"}"#, 503.0);
    prometheus.wait_for_value(r#"sluice_records_dead_lettered_total{pipeline="weblogs"}"#, 3.0);
    prometheus.wait_for_value(r#"sluice_stage_records_in_total{pipeline="weblogs",stage="parse"}"#, 503.0);
    prometheus.wait_for_value(r#"sluice_stage_records_failed_total{pipeline="weblogs",stage="parse"}"#, 3.0);
    prometheus.wait_for_value(r#"sluice_pipeline_status{pipeline="weblogs",status="finished"}"#, 1.0);
    prometheus.wait_for_value(r#"sluice_dead_letters_pending{pipeline="weblogs"}"#, 3.0);
    // Six batches of at most 100 records went through the stage.
    prometheus.wait_for_value(
        r#"sluice_stage_batch_duration_seconds_count{pipeline="weblogs",stage="parse"}"#,
        6.0,
    );
    let p99 = prometheus.query(
        r#"histogram_quantile(0.99, sluice_stage_batch_duration_seconds_bucket{pipeline="weblogs",stage="parse"})"#,
    );
    let p99: f64 = p99[0]["value"][1].as_str().unwrap().parse().unwrap();
    assert!(p99 > 0.0 && p99 <= 10.0, "p99 {p99}");
    let info = prometheus.wait_for_value(r#"sluice_stage_module_info{pipeline="weblogs"}"#, 1.0);
    assert_eq!(info["metric"]["module"], "log_parse.wasm");
    assert!(!prometheus.query("process_resident_memory_bytes").is_empty(), "process metrics");

    // Prometheus parsed every line of the exposition.
    let targets: serde_json::Value =
        reqwest::blocking::get(format!("{}/api/v1/targets", prometheus.url)).unwrap().json().unwrap();
    let active = &targets["data"]["activeTargets"][0];
    assert_eq!(active["health"], "up", "{active}");
    assert_eq!(active["lastError"], "", "{active}");
}

/// The Grafana dashboard in deploy/ asks Prometheus only what it can
/// answer: every panel's query parses, and every sluice metric it names is
/// one the engine exports.
#[test]
fn grafana_dashboard_queries_are_valid_and_name_exported_metrics() {
    let dashboard: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(sluice_tests::root().join("deploy/grafana/sluice-dashboard.json")).unwrap(),
    )
    .unwrap();
    let expressions: Vec<String> = dashboard["panels"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|panel| panel["targets"].as_array().cloned().unwrap_or_default())
        .map(|target| target["expr"].as_str().unwrap().to_string())
        .collect();
    assert!(expressions.len() >= 20, "{} queries", expressions.len());

    let dir = tempfile::tempdir().unwrap();
    let pipeline = write_pipeline(
        dir.path(),
        &format!(
            "name = \"weblogs\"\n[source]\ntype = \"file\"\npath = {}\n[[stage]]\nname = \"parse\"\nmodule = {}\n[sink]\ntype = \"file\"\npath = \"out.ndjson\"\n",
            toml_path(&fixture("logs/apache_combined_sample.log")),
            toml_path(&guest("log_parse"))
        ),
    );
    // A Kafka pipeline too, for the consumer-lag panels.
    let kafka = dir.path().join("kafka.toml");
    std::fs::write(
        &kafka,
        format!(
            "name = \"events\"\n[source]\ntype = \"kafka\"\ntopics = [\"events\"]\n[[stage]]\nname = \"copy\"\nmodule = {}\n[sink]\ntype = \"file\"\npath = \"events.ndjson\"\n",
            toml_path(&guest("passthrough"))
        ),
    )
    .unwrap();
    let engine =
        Engine::serve(SLUICE, &dir.path().join("data"), &[&pipeline, &kafka], &[], &dir.path().join("log"));
    // librdkafka reports lag every few seconds for partitions with a
    // committed offset: consume something first.
    let ingested = reqwest::blocking::Client::new()
        .post(format!("{}/ingest/events", engine.url))
        .bearer_auth(sluice_tests::engine::TOKEN)
        .header("content-type", "application/x-ndjson")
        .body("{\"id\":1}\n{\"id\":2}\n{\"id\":3}\n")
        .send()
        .unwrap();
    assert_eq!(ingested.status().as_u16(), 200);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let exported = loop {
        let text = reqwest::blocking::get(format!("{}/metrics", engine.url)).unwrap().text().unwrap();
        if text.contains("sluice_kafka_consumer_lag{") || std::time::Instant::now() > deadline {
            break text;
        }
        std::thread::sleep(std::time::Duration::from_millis(500));
    };
    let prometheus = Prometheus::scrape(engine.url.trim_start_matches("http://"), dir.path());

    let metric_name = regex::Regex::new(r"\b(sluice_[a-z_]+?)(_bucket|_count|_sum)?\b").unwrap();
    for expression in &expressions {
        let promql =
            expression.replace("$__rate_interval", "1m").replace("$pipeline", ".*").replace("$job", ".*");
        prometheus.query(&promql); // asserts status "success"
        for name in metric_name.captures_iter(expression) {
            let name = &name[1];
            assert!(
                exported.contains(&format!("# TYPE {name} ")),
                "{name} (in `{expression}`) is not exported"
            );
        }
    }
}
