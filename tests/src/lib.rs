//! Helpers shared by the end-to-end tests and the benchmarks.

pub mod bench;
pub mod broker;
pub mod engine;
pub mod hdfs;
pub mod ingest;
pub mod opensearch;
pub mod prometheus;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// A guest component built by `build.rs`, e.g. `guest("hostile")`.
pub fn guest(name: &str) -> PathBuf {
    let dir = Path::new(env!("SLUICE_GUEST_DIR"));
    // Libraries get `_` in their file name, binaries keep their `-`.
    let library = dir.join(format!("{}.wasm", name.replace('-', "_")));
    let path = if library.exists() { library } else { dir.join(format!("{name}.wasm")) };
    assert!(path.exists(), "{} was not built", path.display());
    path
}

/// Writes `toml` as `pipeline.toml` in `dir` and returns its path.
pub fn write_pipeline(dir: &Path, toml: &str) -> PathBuf {
    let path = dir.join("pipeline.toml");
    std::fs::write(&path, toml).unwrap();
    path
}

/// Loads and runs the pipelines in `file` to completion in-process.
pub fn run_pipeline_file(file: &Path) -> anyhow::Result<sluice::pipeline::PipelineReport> {
    let mut configs = sluice::config::load_file(file).map_err(|d| anyhow::anyhow!("{d}"))?;
    assert_eq!(configs.len(), 1);
    let pipeline = sluice::pipeline::Pipeline::build(configs.remove(0), host())?;
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(pipeline.run(tokio_util::sync::CancellationToken::new()))
}

/// A TOML string literal for a path.
pub fn toml_path(path: &Path) -> String {
    toml::Value::String(path.display().to_string()).to_string()
}

/// One wasm host for the whole test binary, so each module is compiled once
/// however many tests load it (the host caches by content hash).
pub fn host() -> &'static sluice::wasm::WasmHost {
    static HOST: std::sync::OnceLock<sluice::wasm::WasmHost> = std::sync::OnceLock::new();
    HOST.get_or_init(sluice::wasm::WasmHost::new)
}

/// The repository root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("SLUICE_ROOT"))
}

/// A file from the shared fixtures (`../shared/fixtures/` beside the repo).
pub fn fixture(relative: &str) -> PathBuf {
    let path = root().join("..").join("shared").join("fixtures").join(relative);
    assert!(path.exists(), "fixture {} is missing", path.display());
    path
}

/// Runs the sluice CLI with `args` and returns its output.
pub fn sluice(bin: &str, args: &[&str], stdin: Option<&[u8]>) -> Output {
    use std::io::Write;
    let mut command = Command::new(bin);
    command.args(args).env("SLUICE_LOG", "warn");
    command.stdin(if stdin.is_some() { std::process::Stdio::piped() } else { std::process::Stdio::null() });
    command.stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped());
    let mut child = command.spawn().expect("start sluice");
    if let Some(input) = stdin {
        child.stdin.take().expect("piped").write_all(input).expect("write stdin");
    }
    child.wait_with_output().expect("wait for sluice")
}

/// Reads an NDJSON file into JSON values.
pub fn read_ndjson(path: &Path) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines().map(|l| serde_json::from_str(l).expect("a JSON line")).collect()
}

/// A name no other test in this process uses.
pub fn unique() -> String {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("{}-{n}", std::process::id())
}

/// `PATH` with the guest toolchains the tests use in front: the
/// JavaScript one is installed into `guest-sdk/js/node_modules` by
/// `scripts/guest-toolchains.sh` (componentize-py goes on `PATH` itself).
pub fn toolchain_path() -> std::ffi::OsString {
    let js = root().join("guest-sdk/js/node_modules/.bin");
    let mut dirs = vec![js];
    dirs.extend(std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()));
    std::env::join_paths(dirs).expect("PATH entries")
}

/// Builds the transform project in `dir` (Python, JavaScript or Rust) with
/// `sluice build`, once per test process, and returns the component.
/// Rust projects share one target directory across runs, so a scaffolded
/// project does not compile its dependencies from scratch each time.
pub fn built_project(bin: &str, dir: &Path) -> PathBuf {
    static BUILT: std::sync::Mutex<Vec<(PathBuf, PathBuf)>> = std::sync::Mutex::new(Vec::new());
    let mut built = BUILT.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((_, output)) = built.iter().find(|(d, _)| d == dir) {
        return output.clone();
    }
    let output = Command::new(bin)
        .args(["build", "--dir"])
        .arg(dir)
        .env("PATH", toolchain_path())
        .env("CARGO_TARGET_DIR", root().join("target/wasm-projects"))
        .output()
        .expect("run sluice build");
    assert!(
        output.status.success(),
        "sluice build --dir {} failed:\n{}{}",
        dir.display(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let name = std::fs::read_to_string(dir.join("transform.toml"))
        .ok()
        .and_then(|t| t.parse::<toml::Table>().ok())
        .and_then(|t| t.get("name").and_then(|n| n.as_str()).map(str::to_string))
        .expect("the project's name");
    let component = dir.join("build").join(format!("{name}.wasm"));
    built.push((dir.to_path_buf(), component.clone()));
    component
}
