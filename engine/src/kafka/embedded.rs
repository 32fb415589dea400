//! The embedded Kafka cluster `sluice run` brings up when no `--brokers`
//! are given, so the demo needs nothing installed besides sluice.
//!
//! - With a `tansu` binary (a Kafka-compatible broker; on `PATH` or named
//!   by `SLUICE_TANSU`), sluice runs it as a supervised child process that
//!   keeps its data in SQLite under the data directory: records survive a
//!   restart of the engine. The child dies with the engine.
//! - Without one it falls back to librdkafka's in-process mock cluster and
//!   says so loudly: that cluster is **in memory**, and everything in it is
//!   gone when sluice exits.
//!
//! Production points `--brokers` at a real Kafka cluster instead.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::Context as _;
use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::mocking::MockCluster;
use rdkafka::producer::DefaultProducerContext;
use tokio::process::{Child, Command};

/// A running embedded cluster; stopping it is dropping it.
pub enum EmbeddedCluster {
    Tansu { child: Child, bootstrap: String },
    InMemory { cluster: MockCluster<'static, DefaultProducerContext>, bootstrap: String },
}

impl EmbeddedCluster {
    /// Starts tansu if it can be found, the in-memory cluster otherwise.
    /// `port` 0 picks a free one.
    pub async fn start(data_dir: &Path, port: u16) -> anyhow::Result<EmbeddedCluster> {
        match find_tansu() {
            Some(binary) => start_tansu(&binary, data_dir, port).await,
            None => {
                let cluster = MockCluster::new(1).context("cannot start the in-memory Kafka cluster")?;
                let bootstrap = cluster.bootstrap_servers();
                tracing::warn!(
                    bootstrap = %bootstrap,
                    "no `tansu` broker found (install it with `cargo install tansu --locked --features dynostore,libsql`): \
                     using an IN-MEMORY Kafka cluster; records in it are LOST when sluice exits"
                );
                Ok(EmbeddedCluster::InMemory { cluster, bootstrap })
            }
        }
    }

    pub fn bootstrap(&self) -> &str {
        match self {
            EmbeddedCluster::Tansu { bootstrap, .. } | EmbeddedCluster::InMemory { bootstrap, .. } => {
                bootstrap
            }
        }
    }

    pub fn describe(&self) -> String {
        match self {
            EmbeddedCluster::Tansu { bootstrap, .. } => format!("embedded tansu broker at {bootstrap}"),
            EmbeddedCluster::InMemory { bootstrap, .. } => {
                format!("embedded IN-MEMORY cluster at {bootstrap} (not durable)")
            }
        }
    }

    /// Creates the topics that do not exist yet.
    pub async fn create_topics(&self, topics: &[String], partitions: i32) -> anyhow::Result<()> {
        if let EmbeddedCluster::InMemory { cluster, .. } = self {
            for topic in topics {
                cluster
                    .create_topic(topic, partitions, 1)
                    .with_context(|| format!("cannot create topic `{topic}`"))?;
            }
            return Ok(());
        }
        create_topics(self.bootstrap(), topics, partitions).await
    }
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
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
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

async fn start_tansu(binary: &Path, data_dir: &Path, port: u16) -> anyhow::Result<EmbeddedCluster> {
    let dir = data_dir.join("kafka");
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let port = match port {
        0 => free_port()?,
        port => port,
    };
    let url = format!("tcp://127.0.0.1:{port}");
    let log_path = dir.join("tansu.log");
    let log =
        std::fs::File::create(&log_path).with_context(|| format!("cannot create {}", log_path.display()))?;
    let mut command = Command::new(binary);
    command
        .arg("broker")
        .args(["--listener-url", &url, "--advertised-listener-url", &url])
        .arg("--storage-engine")
        // tansu resolves the SQLite path against its working directory.
        .arg("sqlite://tansu.db")
        .current_dir(&dir)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .kill_on_drop(true);
    // The broker must not outlive the engine, even one killed with
    // SIGKILL (which skips every destructor): ask the kernel to stop it.
    // SAFETY: prctl is async-signal-safe and touches no memory of ours.
    unsafe {
        command.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) == -1 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let child = command.spawn().with_context(|| format!("cannot start {}", binary.display()))?;
    let bootstrap = format!("127.0.0.1:{port}");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while tokio::net::TcpStream::connect(&bootstrap).await.is_err() {
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "the tansu broker did not start listening within 20 s; see {}",
            log_path.display()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tracing::info!(bootstrap = %bootstrap, data = %dir.display(), "embedded tansu broker started");
    Ok(EmbeddedCluster::Tansu { child, bootstrap })
}

fn free_port() -> anyhow::Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").context("no free port for the broker")?;
    Ok(listener.local_addr()?.port())
}

impl Drop for EmbeddedCluster {
    fn drop(&mut self) {
        if let EmbeddedCluster::Tansu { child, .. } = self {
            let _ = child.start_kill();
        }
    }
}
