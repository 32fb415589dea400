//! The embedded Kafka cluster `sluice run` brings up when no `--brokers`
//! are given, so the demo needs nothing installed besides sluice.
//!
//! - With a `tansu` binary (a Kafka-compatible broker; on `PATH` or named
//!   by `SLUICE_TANSU`), sluice runs it as a supervised child process that
//!   keeps its data in SQLite under the data directory: records survive a
//!   restart of the engine, and a crash of it.
//! - Without one it falls back to librdkafka's in-process mock cluster and
//!   says so loudly: that cluster is **in memory**, and everything in it is
//!   gone when sluice exits.
//!
//! What keeps the broker's data safe across crashes of the engine:
//! - Only one broker ever runs on a data directory. The broker inherits a
//!   lock on `kafka/broker.lock`, so the lock lasts as long as the broker
//!   does, even when the engine that started it was killed. A new broker
//!   starts only once it holds the lock: the engine waits for the previous
//!   broker (killed by the kernel when its engine died) to be gone, and
//!   kills it itself if it lingers.
//! - The child is supervised: if it exits or stops answering, the engine
//!   says so in its log, `/health` and `/metrics`, and starts it again on
//!   the same port.
//!
//! Production points `--brokers` at a real Kafka cluster instead.

use std::os::fd::AsRawFd as _;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{BaseProducer, DefaultProducerContext, Producer as _};
use serde::Serialize;
use tokio::process::{Child, Command};
use tokio_util::sync::CancellationToken;

/// How long a new broker waits for the previous one to let go of the data
/// directory before it kills it.
const PREVIOUS_BROKER_GRACE: Duration = Duration::from_secs(10);
/// How long a broker may take to start listening.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How often the broker is asked for metadata, and how many unanswered
/// probes in a row mean it is stuck.
const PROBE_EVERY: Duration = Duration::from_secs(5);
const PROBES_MISSED: u32 = 3;

/// A running embedded cluster; stopping it is dropping it.
pub enum EmbeddedCluster {
    Tansu(TansuBroker),
    InMemory(InMemoryCluster),
}

/// librdkafka's mock cluster, kept on a thread of its own (it cannot move
/// between threads); topics are created by asking that thread. It stops
/// when the last handle is dropped.
#[derive(Clone)]
pub struct InMemoryCluster {
    bootstrap: String,
    requests: std::sync::mpsc::Sender<TopicRequest>,
}

struct TopicRequest {
    topics: Vec<String>,
    partitions: i32,
    done: tokio::sync::oneshot::Sender<anyhow::Result<()>>,
}

impl InMemoryCluster {
    fn start() -> anyhow::Result<InMemoryCluster> {
        let (requests, incoming) = std::sync::mpsc::channel::<TopicRequest>();
        let (ready, started) = std::sync::mpsc::channel();
        std::thread::Builder::new()
            .name("sluice-kafka-mem".into())
            .spawn(move || {
                let cluster: MockCluster<'static, DefaultProducerContext> = match MockCluster::new(1) {
                    Ok(cluster) => cluster,
                    Err(error) => {
                        let _ = ready.send(Err(error));
                        return;
                    }
                };
                let _ = ready.send(Ok(cluster.bootstrap_servers()));
                for request in incoming {
                    let created = request.topics.iter().try_for_each(|topic| {
                        match cluster.create_topic(topic, request.partitions, 1) {
                            Ok(()) => Ok(()),
                            Err(error)
                                if error.rdkafka_error_code()
                                    == Some(rdkafka::types::RDKafkaErrorCode::TopicAlreadyExists) =>
                            {
                                Ok(())
                            }
                            Err(error) => Err(anyhow::anyhow!("cannot create topic `{topic}`: {error}")),
                        }
                    });
                    let _ = request.done.send(created);
                }
            })
            .context("cannot start the in-memory Kafka cluster's thread")?;
        let bootstrap = started
            .recv()
            .context("the in-memory Kafka cluster did not start")?
            .context("cannot start the in-memory Kafka cluster")?;
        Ok(InMemoryCluster { bootstrap, requests })
    }

    async fn create_topics(&self, topics: &[String], partitions: i32) -> anyhow::Result<()> {
        let (done, created) = tokio::sync::oneshot::channel();
        let request = TopicRequest { topics: topics.to_vec(), partitions, done };
        self.requests.send(request).map_err(|_| anyhow::anyhow!("the in-memory Kafka cluster stopped"))?;
        created.await.context("the in-memory Kafka cluster stopped")?
    }
}

/// Creates topics on the engine's own cluster, from anywhere in the engine.
#[derive(Clone)]
pub enum TopicMaker {
    Broker { bootstrap: String },
    InMemory(InMemoryCluster),
}

impl TopicMaker {
    /// Creates the topics that do not exist yet.
    pub async fn create(&self, topics: &[String], partitions: i32) -> anyhow::Result<()> {
        match self {
            TopicMaker::Broker { bootstrap } => create_topics(bootstrap, topics, partitions).await,
            // librdkafka's admin API never gets an answer from its mock
            // cluster: ask the cluster itself.
            TopicMaker::InMemory(cluster) => cluster.create_topics(topics, partitions).await,
        }
    }
}

/// A supervised tansu child.
pub struct TansuBroker {
    bootstrap: String,
    health: Arc<BrokerHealth>,
    stop: CancellationToken,
}

/// What the engine knows of its embedded broker, for `/health` and `/metrics`.
#[derive(Debug, Default)]
pub struct BrokerHealth {
    state: Mutex<BrokerState>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct BrokerState {
    /// Whether it is up and answering.
    pub up: bool,
    /// Times it was started again after it died or stopped answering.
    pub restarts: u64,
    pub last_error: Option<String>,
    pub pid: Option<u32>,
}

impl BrokerHealth {
    pub fn state(&self) -> BrokerState {
        self.lock().clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BrokerState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn update(&self, change: impl FnOnce(&mut BrokerState)) {
        change(&mut self.lock());
    }
}

impl EmbeddedCluster {
    /// Starts tansu if it can be found, the in-memory cluster otherwise.
    /// `port` 0 picks a free one.
    pub async fn start(data_dir: &Path, port: u16) -> anyhow::Result<EmbeddedCluster> {
        match find_tansu() {
            Some(binary) => Ok(EmbeddedCluster::Tansu(TansuBroker::start(&binary, data_dir, port).await?)),
            None => {
                let cluster = InMemoryCluster::start()?;
                tracing::warn!(
                    bootstrap = %cluster.bootstrap,
                    "no `tansu` broker found (install it with `cargo install tansu --locked --features dynostore,libsql`): \
                     using an IN-MEMORY Kafka cluster; records in it are LOST when sluice exits"
                );
                Ok(EmbeddedCluster::InMemory(cluster))
            }
        }
    }

    pub fn bootstrap(&self) -> &str {
        match self {
            EmbeddedCluster::Tansu(broker) => &broker.bootstrap,
            EmbeddedCluster::InMemory(cluster) => &cluster.bootstrap,
        }
    }

    pub fn describe(&self) -> String {
        match self {
            EmbeddedCluster::Tansu(broker) => format!("embedded tansu broker at {}", broker.bootstrap),
            EmbeddedCluster::InMemory(cluster) => {
                format!("embedded IN-MEMORY cluster at {} (not durable)", cluster.bootstrap)
            }
        }
    }

    /// The supervised broker's health; `None` for the in-memory cluster,
    /// which lives in this process.
    pub fn health(&self) -> Option<Arc<BrokerHealth>> {
        match self {
            EmbeddedCluster::Tansu(broker) => Some(broker.health.clone()),
            EmbeddedCluster::InMemory(_) => None,
        }
    }

    /// What creates topics on this cluster, for the rest of the engine.
    pub fn topic_maker(&self) -> TopicMaker {
        match self {
            EmbeddedCluster::Tansu(broker) => TopicMaker::Broker { bootstrap: broker.bootstrap.clone() },
            EmbeddedCluster::InMemory(cluster) => TopicMaker::InMemory(cluster.clone()),
        }
    }

    /// Creates the topics that do not exist yet.
    pub async fn create_topics(&self, topics: &[String], partitions: i32) -> anyhow::Result<()> {
        self.topic_maker().create(topics, partitions).await
    }
}

impl Drop for TansuBroker {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl TansuBroker {
    async fn start(binary: &Path, data_dir: &Path, port: u16) -> anyhow::Result<TansuBroker> {
        let dir = data_dir.join("kafka");
        std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let port = match port {
            0 => free_port()?,
            port => port,
        };
        let lock = lock_data_dir(&dir).await?;
        let launcher = Launcher { binary: binary.to_path_buf(), dir, port, lock };
        let child = launcher.launch().await?;
        let health = Arc::new(BrokerHealth::default());
        health.update(|s| {
            s.up = true;
            s.pid = child.id();
        });
        let stop = CancellationToken::new();
        let bootstrap = launcher.bootstrap();
        tokio::spawn(supervise(launcher, child, health.clone(), stop.clone()));
        Ok(TansuBroker { bootstrap, health, stop })
    }
}

/// Everything needed to start the broker again.
struct Launcher {
    binary: PathBuf,
    dir: PathBuf,
    port: u16,
    /// Held by this engine and inherited by each broker it starts.
    lock: std::fs::File,
}

impl Launcher {
    fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn log_path(&self) -> PathBuf {
        self.dir.join("tansu.log")
    }

    /// Starts a broker and waits until it listens.
    async fn launch(&self) -> anyhow::Result<Child> {
        // Something else on the port would answer in the broker's place.
        std::net::TcpListener::bind(("127.0.0.1", self.port)).with_context(|| {
            format!("the tansu broker cannot listen on 127.0.0.1:{}: the port is in use", self.port)
        })?;
        let url = format!("tcp://127.0.0.1:{}", self.port);
        let log_path = self.log_path();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .with_context(|| format!("cannot open {}", log_path.display()))?;
        let mut command = Command::new(&self.binary);
        command
            .arg("broker")
            .args(["--listener-url", &url, "--advertised-listener-url", &url])
            .arg("--storage-engine")
            // tansu resolves the SQLite path against its working directory.
            .arg("sqlite://tansu.db")
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .kill_on_drop(true);
        let lock_fd = self.lock.as_raw_fd();
        // SAFETY: prctl and fcntl are async-signal-safe and touch no memory
        // of ours.
        unsafe {
            command.pre_exec(move || {
                // The broker must not outlive the engine, even one killed
                // with SIGKILL (which skips every destructor): the kernel
                // kills it too. At once, as a stopping engine does: SQLite
                // keeps what the broker committed, and a broker taking its
                // time to stop would only delay the next one.
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) == -1 {
                    return Err(std::io::Error::last_os_error());
                }
                // Keep the data directory's lock open in the broker, so it
                // is held until the broker itself has exited.
                if libc::fcntl(lock_fd, libc::F_SETFD, 0) == -1 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let mut child = command.spawn().with_context(|| format!("cannot start {}", self.binary.display()))?;
        if let Some(pid) = child.id() {
            let _ = std::fs::write(self.dir.join("broker.pid"), pid.to_string());
        }
        let bootstrap = self.bootstrap();
        let deadline = Instant::now() + START_TIMEOUT;
        while tokio::net::TcpStream::connect(&bootstrap).await.is_err() {
            if let Some(status) = child.try_wait()? {
                anyhow::bail!(
                    "the tansu broker exited at start ({status}): {}",
                    last_lines(&log_path, 5).unwrap_or_else(|| format!("see {}", log_path.display()))
                );
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "the tansu broker did not start listening on {bootstrap} within {} s; see {}",
                START_TIMEOUT.as_secs(),
                log_path.display()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        tracing::info!(bootstrap = %bootstrap, data = %self.dir.display(), pid = ?child.id(), "embedded tansu broker started");
        Ok(child)
    }
}

/// Watches the broker: when it exits or stops answering it is started
/// again, with backoff, until the engine stops.
async fn supervise(launcher: Launcher, mut child: Child, health: Arc<BrokerHealth>, stop: CancellationToken) {
    let prober = match ClientConfig::new()
        .set("bootstrap.servers", launcher.bootstrap())
        .set("client.id", "sluice-broker-probe")
        .create::<BaseProducer>()
    {
        Ok(producer) => Some(Arc::new(producer)),
        Err(error) => {
            tracing::warn!("cannot probe the embedded broker: {error}");
            None
        }
    };
    let mut backoff = Duration::from_millis(500);
    loop {
        let problem = tokio::select! {
            _ = stop.cancelled() => {
                let _ = child.start_kill();
                let _ = child.wait().await;
                return;
            }
            status = child.wait() => match status {
                Ok(status) => format!("the embedded broker exited ({status}): {}", last_lines(&launcher.log_path(), 5).unwrap_or_default()),
                Err(error) => format!("cannot wait for the embedded broker: {error}"),
            },
            stuck = unanswered(prober.clone(), &stop) => {
                let _ = child.start_kill();
                let _ = child.wait().await;
                stuck
            }
        };
        tracing::error!("{problem}; starting it again");
        health.update(|s| {
            s.up = false;
            s.last_error = Some(problem);
        });
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(Duration::from_secs(10));
            match launcher.launch().await {
                Ok(started) => {
                    child = started;
                    health.update(|s| {
                        s.up = true;
                        s.restarts += 1;
                        s.pid = child.id();
                    });
                    backoff = Duration::from_millis(500);
                    break;
                }
                Err(error) => {
                    tracing::error!("the embedded broker did not start again: {error:#}");
                    health.update(|s| s.last_error = Some(format!("{error:#}")));
                }
            }
        }
    }
}

/// Resolves when the broker has not answered a metadata request
/// [`PROBES_MISSED`] times in a row.
async fn unanswered(prober: Option<Arc<BaseProducer>>, stop: &CancellationToken) -> String {
    let Some(prober) = prober else { return std::future::pending().await };
    let mut missed = 0;
    loop {
        tokio::select! {
            _ = stop.cancelled() => return std::future::pending().await,
            _ = tokio::time::sleep(PROBE_EVERY) => {}
        }
        let probe = prober.clone();
        let answered = tokio::task::spawn_blocking(move || {
            probe.client().fetch_metadata(None, Duration::from_secs(3)).is_ok()
        })
        .await
        .unwrap_or(false);
        missed = if answered { 0 } else { missed + 1 };
        if missed >= PROBES_MISSED {
            return format!("the embedded broker stopped answering ({missed} metadata requests in a row)");
        }
    }
}

/// Takes the lock of the broker's data directory: waits for a broker left
/// by an engine that died to exit (it was told to), and kills it if it
/// does not within [`PREVIOUS_BROKER_GRACE`].
async fn lock_data_dir(dir: &Path) -> anyhow::Result<std::fs::File> {
    let path = dir.join("broker.lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("cannot open {}", path.display()))?;
    let started = Instant::now();
    let (mut killed, mut waiting) = (false, false);
    loop {
        // SAFETY: flock on a descriptor we own.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
            if started.elapsed() > Duration::from_millis(100) {
                tracing::info!(
                    waited_ms = started.elapsed().as_millis() as u64,
                    "the previous broker let go of its data"
                );
            }
            return Ok(file);
        }
        let previous =
            std::fs::read_to_string(dir.join("broker.pid")).ok().and_then(|p| p.trim().parse::<i32>().ok());
        if started.elapsed() > PREVIOUS_BROKER_GRACE && !killed {
            if let Some(pid) = previous.filter(|pid| is_tansu(*pid)) {
                tracing::warn!(
                    pid,
                    "the previous embedded broker is still running on {}; killing it",
                    dir.display()
                );
                // SAFETY: a signal to a process we checked is a tansu broker.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
            killed = true;
        }
        anyhow::ensure!(
            started.elapsed() < PREVIOUS_BROKER_GRACE * 3,
            "another broker holds {} (pid {}); stop it first",
            path.display(),
            previous.map_or("unknown".to_string(), |p| p.to_string())
        );
        if !waiting {
            tracing::info!("waiting for the previous embedded broker to exit");
            waiting = true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn is_tansu(pid: i32) -> bool {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|cmdline| cmdline.split(|&b| b == 0).next().is_some_and(|exe| exe.ends_with(b"tansu")))
        .unwrap_or(false)
}

/// The last `n` non-empty lines of a log, on one line.
fn last_lines(path: &Path, n: usize) -> Option<String> {
    let text = std::fs::read_to_string(path).ok()?;
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let tail = lines[lines.len().saturating_sub(n)..].join(" | ");
    (!tail.is_empty()).then_some(tail)
}

/// Creates `topics` through the Kafka admin API; topics that exist already
/// are left as they are.
pub async fn create_topics(bootstrap: &str, topics: &[String], partitions: i32) -> anyhow::Result<()> {
    if topics.is_empty() {
        return Ok(());
    }
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .context("cannot create an admin client")?;
    let new: Vec<NewTopic<'_>> =
        topics.iter().map(|t| NewTopic::new(t, partitions, TopicReplication::Fixed(1))).collect();
    // Bounded: a cluster that never answers must not hang whoever asked.
    let options = AdminOptions::new()
        .operation_timeout(Some(Duration::from_secs(10)))
        .request_timeout(Some(Duration::from_secs(15)));
    for result in admin.create_topics(&new, &options).await.context("cannot create topics")? {
        match result {
            Ok(_) => {}
            Err((_, rdkafka::types::RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((topic, code)) => anyhow::bail!("cannot create topic `{topic}`: {code}"),
        }
    }
    Ok(())
}

fn find_tansu() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("SLUICE_TANSU") {
        return Some(PathBuf::from(path));
    }
    let mut places: Vec<PathBuf> =
        std::env::var_os("PATH").map(|p| std::env::split_paths(&p).collect()).unwrap_or_default();
    if let Some(home) = std::env::var_os("HOME") {
        places.push(Path::new(&home).join(".cargo/bin"));
    }
    places.into_iter().map(|dir| dir.join("tansu")).find(|p| p.is_file())
}

fn free_port() -> anyhow::Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").context("no free port for the broker")?;
    Ok(listener.local_addr()?.port())
}
