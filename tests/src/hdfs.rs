//! A real single-node HDFS (Hadoop 2.7.3 NameNode and DataNode on Java) for
//! the lake tests, started by `scripts/hdfs/hdfs.sh` on free loopback ports.
//!
//! One instance serves the whole test binary (it takes seconds to start);
//! each test writes under its own directory. It is stopped when the test
//! process exits. The jars come from `scripts/hdfs/install-hadoop.sh`,
//! which `.ci/run` runs.

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

pub struct Hdfs {
    /// `hdfs://127.0.0.1:PORT`
    pub url: String,
    dir: PathBuf,
}

fn script() -> PathBuf {
    crate::root().join("scripts/hdfs/hdfs.sh")
}

impl Hdfs {
    /// The shared instance, started on first use.
    pub fn shared() -> &'static Hdfs {
        static HDFS: OnceLock<Hdfs> = OnceLock::new();
        HDFS.get_or_init(|| {
            let hdfs = Hdfs::start();
            // Statics are never dropped: stop the daemons when the process
            // exits (libtest exits through `exit`, which runs these).
            extern "C" fn stop() {
                if let Some(hdfs) = HDFS.get() {
                    hdfs.stop();
                }
            }
            // SAFETY: registering a plain `extern "C" fn` with no captures.
            unsafe { libc::atexit(stop) };
            hdfs
        })
    }

    fn start() -> Hdfs {
        let dir = std::env::temp_dir().join(format!("sluice-hdfs-{}", std::process::id()));
        let output = Command::new("bash").arg(script()).arg("start").arg(&dir).output().expect("run hdfs.sh");
        assert!(
            output.status.success(),
            "HDFS did not start (install it with scripts/hdfs/install-hadoop.sh):\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
        let url = String::from_utf8(output.stdout).expect("utf-8").trim().to_string();
        assert!(url.starts_with("hdfs://"), "hdfs.sh printed {url:?}");
        Hdfs { url, dir }
    }

    fn stop(&self) {
        let _ = Command::new("bash").arg(script()).arg("stop").arg(&self.dir).output();
        let _ = std::fs::remove_dir_all(&self.dir);
    }

    /// A directory URL of its own for one test.
    pub fn directory(&self, name: &str) -> String {
        format!("{}/{name}-{}", self.url, crate::unique())
    }

    /// Copies an HDFS directory to the local disk with Hadoop's own client
    /// (`hdfs dfs -get`), an independent reader of what sluice wrote.
    pub fn get(&self, url: &str, local: &std::path::Path) {
        let home = std::env::var("SLUICE_HADOOP_HOME").map(PathBuf::from).unwrap_or_else(|_| {
            PathBuf::from(std::env::var("HOME").expect("HOME")).join(".cache/sluice/hadoop-2.7.3")
        });
        let classpath = format!("{}:{}/lib/*", self.dir.join("conf").display(), home.display());
        let output = Command::new("java")
            .args(["-cp", &classpath, "org.apache.hadoop.fs.FsShell", "-fs", &self.url, "-get", url])
            .arg(local)
            .output()
            .expect("run java");
        assert!(output.status.success(), "hdfs dfs -get {url}: {}", String::from_utf8_lossy(&output.stderr));
    }
}

/// An HDFS with two NameNodes behind a nameservice
/// (`scripts/hdfs/hdfs-ha.sh`: three JournalNodes, one DataNode), for one
/// test: clients reach it as `hdfs://sluice-ns` with `HADOOP_CONF_DIR` set
/// to [`HdfsHa::conf_dir`]. Stopped when dropped.
pub struct HdfsHa {
    /// `hdfs://NAMESERVICE`
    pub url: String,
    dir: tempfile::TempDir,
}

fn ha_script() -> PathBuf {
    crate::root().join("scripts/hdfs/hdfs-ha.sh")
}

impl HdfsHa {
    pub fn start() -> HdfsHa {
        let dir = tempfile::tempdir().unwrap();
        let stdout = HdfsHa::run(dir.path(), "start");
        let nameservice =
            stdout.split_whitespace().next().expect("hdfs-ha.sh prints the nameservice").to_string();
        HdfsHa { url: format!("hdfs://{nameservice}"), dir }
    }

    fn run(dir: &std::path::Path, command: &str) -> String {
        let output =
            Command::new("bash").arg(ha_script()).arg(command).arg(dir).output().expect("run hdfs-ha.sh");
        assert!(
            output.status.success(),
            "hdfs-ha.sh {command} failed (install the jars with scripts/hdfs/install-hadoop.sh):\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).expect("utf-8")
    }

    /// The client configuration that defines the nameservice.
    pub fn conf_dir(&self) -> PathBuf {
        self.dir.path().join("conf")
    }

    /// A graceful failover (`hdfs haadmin -failover`): the active NameNode
    /// becomes standby and the other active. Returns once it serves.
    pub fn failover(&self) {
        HdfsHa::run(self.dir.path(), "failover");
    }

    /// Copies an HDFS directory to the local disk with Hadoop's own client,
    /// through the nameservice.
    pub fn try_get(&self, url: &str, local: &std::path::Path) -> Result<(), String> {
        let home = std::env::var("SLUICE_HADOOP_HOME").map(PathBuf::from).unwrap_or_else(|_| {
            PathBuf::from(std::env::var("HOME").expect("HOME")).join(".cache/sluice/hadoop-2.7.3")
        });
        let classpath = format!("{}:{}/lib/*", self.conf_dir().display(), home.display());
        let output = Command::new("java")
            .args(["-cp", &classpath, "org.apache.hadoop.fs.FsShell", "-get", url])
            .arg(local)
            .output()
            .expect("run java");
        match output.status.success() {
            true => Ok(()),
            false => Err(String::from_utf8_lossy(&output.stderr).into_owned()),
        }
    }
}

impl Drop for HdfsHa {
    fn drop(&mut self) {
        let _ = Command::new("bash").arg(ha_script()).arg("stop").arg(self.dir.path()).output();
    }
}
