//! A real Prometheus server (Debian's `prometheus`) scraping an engine on
//! loopback, queried through its HTTP API.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::broker::free_port;

pub struct Prometheus {
    child: Child,
    /// `http://127.0.0.1:PORT`.
    pub url: String,
}

impl Prometheus {
    /// Starts Prometheus scraping `target` (`host:port`) every second, with
    /// its data and log in `dir`.
    pub fn scrape(target: &str, dir: &Path) -> Prometheus {
        let config = dir.join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n  - job_name: sluice\n    static_configs:\n      - targets: ['{target}']\n"
            ),
        )
        .unwrap();
        let port = free_port();
        let log = std::fs::File::create(dir.join("prometheus.log")).unwrap();
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.tsdb.path={}", dir.join("tsdb").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("cannot run `prometheus`: install Debian's prometheus package (.ci/run does)");
        let prometheus = Prometheus { child, url: format!("http://127.0.0.1:{port}") };
        let deadline = Instant::now() + Duration::from_secs(60);
        while reqwest::blocking::get(format!("{}/-/ready", prometheus.url)).map(|r| r.status().as_u16()).ok()
            != Some(200)
        {
            assert!(
                Instant::now() < deadline,
                "prometheus did not get ready; see {}",
                dir.join("prometheus.log").display()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        prometheus
    }

    /// An instant query's result vector (`data.result`).
    pub fn query(&self, promql: &str) -> Vec<serde_json::Value> {
        let response: serde_json::Value = reqwest::blocking::Client::new()
            .get(format!("{}/api/v1/query", self.url))
            .query(&[("query", promql)])
            .send()
            .and_then(|r| r.json())
            .expect("prometheus query");
        assert_eq!(response["status"], "success", "{promql}: {response}");
        response["data"]["result"].as_array().cloned().unwrap_or_default()
    }

    /// Waits until `promql` returns one sample equal to `expected`.
    pub fn wait_for_value(&self, promql: &str, expected: f64) -> serde_json::Value {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let result = self.query(promql);
            let value =
                result.first().and_then(|s| s["value"][1].as_str()).and_then(|v| v.parse::<f64>().ok());
            if value == Some(expected) {
                return result[0].clone();
            }
            assert!(Instant::now() < deadline, "{promql} never became {expected}; last result: {result:?}");
            std::thread::sleep(Duration::from_millis(300));
        }
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
