//! OpenSearch for the search tests: `osmem-server`, an in-memory emulator
//! of the OpenSearch HTTP API (PyPI, installed by `.ci/run`). It is not
//! OpenSearch: no real OpenSearch can be installed on our machines. It
//! answers `_bulk`, index templates, `_count` and `_search` as OpenSearch
//! does, but never 429 or 5xx (the scripted server in the retry tests
//! does that).

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

pub struct Emulator {
    child: Child,
    /// `http://127.0.0.1:PORT`
    pub url: String,
}

impl Emulator {
    pub fn start() -> Emulator {
        let binary = Command::new("python3")
            .args(["-c", "import osmem_server; print(osmem_server.resolve_binary())"])
            .output()
            .expect("python3");
        assert!(
            binary.status.success(),
            "osmem-server is not installed (pip install osmem-server==0.1.6): {}",
            String::from_utf8_lossy(&binary.stderr)
        );
        let binary = String::from_utf8(binary.stdout).expect("utf-8").trim().to_string();
        let mut child = Command::new(binary)
            .args(["-addr", "127.0.0.1:0", "-no-ja", "-parent-pid", &std::process::id().to_string()])
            // It exits when its stdin closes: when this process is gone.
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start osmem-server");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("piped")).read_line(&mut line).expect("its ready line");
        let ready: serde_json::Value = serde_json::from_str(&line).expect("a JSON ready line");
        let url = ready["url"].as_str().expect("url").to_string();
        Emulator { child, url }
    }

    /// `GET {path}` as JSON.
    pub fn get(&self, path: &str) -> serde_json::Value {
        reqwest::blocking::get(format!("{}{path}", self.url)).unwrap().json().unwrap()
    }

    /// Documents in indices matching `pattern`.
    pub fn count(&self, pattern: &str) -> u64 {
        self.get(&format!("/{pattern}/_count"))["count"].as_u64().unwrap_or(0)
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What a scripted `_bulk` endpoint saw: each request's document ids.
pub type BulkRequests = std::sync::Arc<std::sync::Mutex<Vec<Vec<String>>>>;

/// A local `POST /_bulk` endpoint that answers as `answer(n, ids)` says —
/// `n` counts requests from 1 — for the statuses OpenSearch documents and
/// the emulator never sends (429, 503). Returns its URL and the requests.
pub fn scripted_bulk(
    answer: impl Fn(usize, &[String]) -> (u16, String) + Send + Sync + 'static,
) -> (String, BulkRequests) {
    use axum::body::Bytes;
    use axum::http::StatusCode;
    let requests = BulkRequests::default();
    let seen = requests.clone();
    let answer = std::sync::Arc::new(answer);
    let handler = move |body: Bytes| {
        let (seen, answer) = (seen.clone(), answer.clone());
        async move {
            let ids: Vec<String> = String::from_utf8_lossy(&body)
                .lines()
                .step_by(2)
                .map(|action| {
                    let action: serde_json::Value = serde_json::from_str(action).expect("an action line");
                    action["index"]["_id"].as_str().expect("an _id").to_string()
                })
                .collect();
            let n = {
                let mut seen = seen.lock().unwrap();
                seen.push(ids.clone());
                seen.len()
            };
            let (status, body) = answer(n, &ids);
            (StatusCode::from_u16(status).expect("a status code"), body)
        }
    };
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(async move {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            tx.send(listener.local_addr().unwrap()).unwrap();
            let app = axum::Router::new().route("/_bulk", axum::routing::post(handler));
            axum::serve(listener, app).await.unwrap();
        });
    });
    (format!("http://{}", rx.recv().unwrap()), requests)
}

/// A `_bulk` response accepting every id (201 created).
pub fn all_created(ids: &[String]) -> String {
    let items: Vec<serde_json::Value> = ids
        .iter()
        .map(|id| serde_json::json!({"index": {"_id": id, "status": 201, "result": "created"}}))
        .collect();
    serde_json::json!({"took": 1, "errors": false, "items": items}).to_string()
}
