//! The engine as a process, on its embedded defaults (tansu as its broker):
//!
//! - restart to first record: SIGKILL the engine, start it again on the
//!   same data directory, post a record, and time from the start until the
//!   record is in the file sink (goal: under 5 s);
//! - memory: the resident set of `sluice serve` running the demo pipelines,
//!   idle, and while clients ingest as fast as they can (goal: at most
//!   40 MB idle).
//!
//! Numbers, not pass/fail: run with `cargo bench -p sluice-tests --bench engine`.

use std::path::Path;
use std::time::{Duration, Instant};

use sluice_tests::broker::free_port;
use sluice_tests::engine::{Engine, TOKEN};
use sluice_tests::{fixture, guest, root};

const SLUICE: &str = env!("CARGO_BIN_EXE_sluice-under-test");

fn toml_path(path: &Path) -> String {
    toml::Value::String(path.display().to_string()).to_string()
}

fn post(http: &reqwest::blocking::Client, url: &str, topic: &str, body: String) -> u16 {
    http.post(format!("{url}/ingest/{topic}"))
        .bearer_auth(TOKEN)
        .header("content-type", "application/x-ndjson")
        .body(body)
        .send()
        .map_or(0, |r| r.status().as_u16())
}

fn lines(path: &Path) -> usize {
    std::fs::read_to_string(path).map_or(0, |t| t.lines().count())
}

fn restart_to_first_record() {
    let dir = tempfile::tempdir().unwrap();
    let pipeline = dir.path().join("p.toml");
    std::fs::write(
        &pipeline,
        format!(
            "name = \"restarts\"\n[source]\ntype = \"kafka\"\ntopics = [\"in\"]\n[batch]\nlinger_ms = 5\n\
             [[stage]]\nname = \"copy\"\nmodule = {}\n[sink]\ntype = \"file\"\npath = \"out.ndjson\"\n",
            toml_path(&guest("passthrough"))
        ),
    )
    .unwrap();
    let listen = format!("127.0.0.1:{}", free_port());
    let log = dir.path().join("engine.log");
    let data = dir.path().join("data");
    let args = ["--data-dir", data.to_str().unwrap()];
    let http = reqwest::blocking::Client::new();
    let out = dir.path().join("out.ndjson");
    let mut times = Vec::new();
    for round in 0..6 {
        let started = Instant::now();
        let engine = Engine::start_on(SLUICE, &listen, &[&pipeline], &args, &log);
        let url = format!("http://{listen}");
        while post(&http, &url, "in", format!("{{\"round\":{round}}}\n")) != 200 {
            std::thread::sleep(Duration::from_millis(10));
        }
        while lines(&out) <= round {
            assert!(started.elapsed() < Duration::from_secs(60), "no record after 60 s");
            std::thread::sleep(Duration::from_millis(5));
        }
        if round > 0 {
            // The first start creates the broker's store; the others restart.
            times.push(started.elapsed().as_secs_f64());
        }
        assert!(!engine.signal("KILL").success());
    }
    times.sort_by(f64::total_cmp);
    println!(
        "restart (SIGKILL, then start on the same data dir) to first record written: median {:.2} s, max {:.2} s over {} restarts (goal < 5 s)",
        times[times.len() / 2],
        times[times.len() - 1],
        times.len()
    );
}

fn rss_mb(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

fn memory() {
    let dir = tempfile::tempdir().unwrap();
    let pipelines = ["weblogs-file.toml", "apilogs-file.toml", "weblogs-kafka.toml", "images-to-lake.toml"]
        .map(|name| root().join("pipelines").join(name));
    let pipelines: Vec<&Path> = pipelines.iter().map(|p| p.as_path()).collect();
    let data = dir.path().join("data");
    let log = dir.path().join("engine.log");
    // The first start compiles the modules; later ones load the compiled
    // code the first kept in the data directory.
    let engine = Engine::serve(SLUICE, &data, &pipelines, &[], &log);
    std::thread::sleep(Duration::from_secs(10));
    let first_idle = rss_mb(engine.pid());
    assert!(engine.signal("TERM").success());
    let engine = Engine::serve(SLUICE, &data, &pipelines, &[], &log);
    let pid = engine.pid();
    std::thread::sleep(Duration::from_secs(10));
    let idle = rss_mb(pid);

    let text = std::fs::read_to_string(fixture("logs/apache_combined_sample.log")).unwrap();
    let body: String = text.lines().cycle().take(1000).map(|l| format!("{l}\n")).collect();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let clients: Vec<_> = (0..4)
        .map(|_| {
            let (url, body, stop) = (engine.url.clone(), body.clone(), stop.clone());
            std::thread::spawn(move || {
                let http = reqwest::blocking::Client::new();
                let mut sent = 0;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let status = http
                        .post(format!("{url}/ingest/weblogs"))
                        .bearer_auth(TOKEN)
                        .header("content-type", "text/plain")
                        .body(body.clone())
                        .send()
                        .map_or(0, |r| r.status().as_u16());
                    if status == 200 {
                        sent += 1000;
                    }
                }
                sent
            })
        })
        .collect();
    let mut peak: f64 = 0.0;
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(20) {
        peak = peak.max(rss_mb(pid));
        std::thread::sleep(Duration::from_millis(100));
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let sent: usize = clients.into_iter().map(|c| c.join().unwrap()).sum();
    println!(
        "sluice serve with the demo pipelines, idle: {idle:.1} MB resident (goal <= 40 MB; {first_idle:.1} MB on the very first start, which compiles the modules)"
    );
    println!(
        "sluice serve under load: {peak:.1} MB peak resident while 4 clients ingested {sent} lines in 20 s ({:.0} lines/s through parse into a file)",
        sent as f64 / 20.0
    );
    drop(engine);
}

fn main() {
    // `cargo bench` passes harness flags; this bench takes none.
    restart_to_first_record();
    memory();
}
