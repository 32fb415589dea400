//! `sluice run` as a child process, the way an operator runs it: on a free
//! HTTP port, with a known API token, killable with any signal.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// The token tests run engines with.
pub const TOKEN: &str = "test-token-0123456789";

pub struct Engine {
    child: Child,
    /// `http://127.0.0.1:PORT`.
    pub url: String,
}

impl Engine {
    /// Starts `bin run <pipelines…> <extra…>` and waits until it serves
    /// HTTP. Its log goes to `log` (appended, so restarts keep history).
    pub fn start(bin: &str, pipelines: &[&Path], extra: &[&str], log: &Path) -> Engine {
        Engine::start_on(bin, "127.0.0.1:0", pipelines, extra, log)
    }

    /// Like [`Engine::start`], listening on `listen`.
    pub fn start_on(bin: &str, listen: &str, pipelines: &[&Path], extra: &[&str], log: &Path) -> Engine {
        Engine::launch(bin, "run", listen, pipelines, extra, &[], log)
    }

    /// Starts `bin serve` with its state in `data_dir`: the control plane,
    /// running until stopped.
    pub fn serve(bin: &str, data_dir: &Path, pipelines: &[&Path], extra: &[&str], log: &Path) -> Engine {
        let mut args = vec!["--data-dir", data_dir.to_str().expect("UTF-8 path")];
        args.extend_from_slice(extra);
        Engine::launch(bin, "serve", "127.0.0.1:0", pipelines, &args, &[], log)
    }

    /// Like [`Engine::serve`], with more environment variables (e.g.
    /// `HADOOP_CONF_DIR`) and no pipeline files.
    pub fn serve_with_env(
        bin: &str,
        data_dir: &Path,
        extra: &[&str],
        env: &[(&str, &Path)],
        log: &Path,
    ) -> Engine {
        let mut args = vec!["--data-dir", data_dir.to_str().expect("UTF-8 path")];
        args.extend_from_slice(extra);
        Engine::launch(bin, "serve", "127.0.0.1:0", &[], &args, env, log)
    }

    fn launch(
        bin: &str,
        subcommand: &str,
        listen: &str,
        pipelines: &[&Path],
        extra: &[&str],
        env: &[(&str, &Path)],
        log: &Path,
    ) -> Engine {
        let mut command = Command::new(bin);
        command.arg(subcommand).args(["--listen", listen]).args(pipelines).args(extra);
        // Each engine of a test keeps its state beside its log: the same
        // directory across its restarts (so it is the same engine to the
        // brokers), never the repository's.
        if !extra.contains(&"--data-dir") {
            command.arg("--data-dir").arg(log.parent().unwrap_or(Path::new(".")).join("engine-data"));
        }
        command
            .env("SLUICE_API_TOKEN", TOKEN)
            .env("SLUICE_LOG", std::env::var("SLUICE_TEST_LOG").unwrap_or_else(|_| "info".into()))
            .env("NO_COLOR", "1")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        // An engine outlives nothing: if the test process dies (killed,
        // or aborted before Drop runs), the kernel kills its engines too, so
        // a stray one cannot join a later test's consumer group.
        // SAFETY: prctl is async-signal-safe and touches no memory of ours.
        unsafe {
            use std::os::unix::process::CommandExt as _;
            command.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) == -1 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let mut child = command.spawn().unwrap_or_else(|e| panic!("cannot start sluice {subcommand}: {e}"));
        let stderr = child.stderr.take().expect("piped");
        let (tx, rx) = std::sync::mpsc::channel();
        let log_path = log.to_path_buf();
        std::thread::spawn(move || {
            use std::io::Write;
            let mut file = std::fs::OpenOptions::new().create(true).append(true).open(&log_path).unwrap();
            let mut tx = Some(tx);
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = writeln!(file, "{line}");
                if let Some(at) = line.find("listening on http://") {
                    let url = line[at + "listening on ".len()..].trim().to_string();
                    if let Some(tx) = tx.take() {
                        let _ = tx.send(url);
                    }
                }
            }
        });
        // An engine serves once its pipelines are built, which includes
        // compiling their modules: the Python and JavaScript components
        // take tens of seconds on two cores that other tests are using.
        let url = match rx.recv_timeout(Duration::from_secs(180)) {
            Ok(url) => url,
            Err(_) => {
                let _ = child.kill();
                panic!("sluice {subcommand} did not start serving; see {}", log.display());
            }
        };
        Engine { child, url }
    }

    /// The sum of the samples of metric `name` on `/metrics` whose labels
    /// contain every one of `labels` (e.g. `pipeline="p"`).
    pub fn metric(&self, name: &str, labels: &[&str]) -> f64 {
        let text = reqwest::blocking::get(format!("{}/metrics", self.url))
            .and_then(|r| r.text())
            .unwrap_or_else(|e| panic!("GET /metrics: {e}"));
        text.lines()
            .filter(|line| !line.starts_with('#'))
            .filter(|line| line.split(['{', ' ']).next() == Some(name))
            .filter(|line| labels.iter().all(|label| line.contains(label)))
            .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }

    /// The engine's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends a signal (`"TERM"`, `"KILL"`) and waits for the exit.
    pub fn signal(mut self, name: &str) -> std::process::ExitStatus {
        let status = Command::new("kill").args(["-s", name, &self.child.id().to_string()]).status().unwrap();
        assert!(status.success());
        let status = self.child.wait().unwrap();
        std::mem::forget(self);
        status
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A blocking client for one engine's API, authenticated with [`TOKEN`].
pub struct Api {
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    http: reqwest::blocking::Client,
}

impl Api {
    pub fn new(engine: &Engine) -> Api {
        // Uploads of interpreted-language modules compile for seconds.
        let http = reqwest::blocking::Client::builder().timeout(Duration::from_secs(120)).build().unwrap();
        Api { url: engine.url.clone(), http }
    }

    pub fn get(&self, path: &str) -> (u16, serde_json::Value) {
        self.send(reqwest::Method::GET, path, Vec::new())
    }

    /// The status and the JSON body (the text as a string when it is not JSON).
    pub fn send(&self, method: reqwest::Method, path: &str, body: Vec<u8>) -> (u16, serde_json::Value) {
        let response = self
            .http
            .request(method, format!("{}{path}", self.url))
            .bearer_auth(TOKEN)
            .body(body)
            .send()
            .unwrap();
        let status = response.status().as_u16();
        let text = response.text().unwrap_or_default();
        (status, serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text)))
    }
}
