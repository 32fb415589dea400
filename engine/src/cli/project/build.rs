//! `sluice build`: a project's component, built with its language's
//! toolchain, with the config declaration of `transform.toml` embedded.
//!
//! - Rust: `cargo build --release --target wasm32-wasip2`.
//! - Python: `componentize-py` (the project's `.venv`, else `PATH`).
//! - JavaScript: `componentize-js` (the project's `node_modules`, else
//!   `PATH`), without the HTTP features a transform cannot use.
//!
//! A missing toolchain is one line saying how to get it.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use anyhow::Context as _;

use super::{Language, Project};
use crate::wasm::config_spec;

#[derive(clap::Args)]
pub struct BuildArgs {
    /// The project directory (default: the current one).
    #[arg(long, default_value = ".")]
    dir: PathBuf,
}

pub fn build(args: BuildArgs) -> anyhow::Result<ExitCode> {
    let project = Project::find(&args.dir)?.ok_or_else(|| not_a_project(&args.dir))?;
    let output = build_project(&project)?;
    let size = std::fs::metadata(&output).map(|m| m.len()).unwrap_or(0);
    let keys = project.manifest.config.as_ref().map_or(0, |c| c.0.len());
    println!(
        "built {} ({}, {:.1} MB, declares {keys} config key{})",
        output.display(),
        project.manifest.language.name(),
        size as f64 / 1e6,
        if keys == 1 { "" } else { "s" }
    );
    Ok(ExitCode::SUCCESS)
}

pub fn not_a_project(dir: &Path) -> anyhow::Error {
    anyhow::anyhow!(
        "{} is not a transform project (no {}); create one with `sluice new NAME --lang rust|python|js`",
        dir.display(),
        super::MANIFEST
    )
}

/// Builds the project's component; returns where it is.
pub fn build_project(project: &Project) -> anyhow::Result<PathBuf> {
    let output = project.output();
    std::fs::create_dir_all(output.parent().unwrap_or(&project.dir))
        .with_context(|| format!("cannot create {}", project.dir.join("build").display()))?;
    let built = match project.manifest.language {
        Language::Rust => build_rust(project)?,
        Language::Python => build_python(project, &output)?,
        Language::Js => build_js(project, &output)?,
    };
    let mut component = std::fs::read(&built).with_context(|| format!("cannot read {}", built.display()))?;
    if built.extension().is_some_and(|e| e == "wasm") && built.starts_with(project.dir.join("build")) {
        let _ = std::fs::remove_file(&built);
    }
    if let Some(spec) = &project.manifest.config {
        config_spec::embed(&mut component, spec);
    }
    std::fs::write(&output, component).with_context(|| format!("cannot write {}", output.display()))?;
    Ok(output)
}

/// Whether the component is older than any file of the project.
pub fn is_stale(project: &Project) -> bool {
    let Ok(built) = std::fs::metadata(project.output()).and_then(|m| m.modified()) else { return true };
    newer_than(&project.dir, built)
}

/// What a project holds that is not its source: outputs, dependencies.
const NOT_SOURCE: &[&str] = &["build", "out", "target", "node_modules", ".venv", "__pycache__", ".git"];

fn newer_than(dir: &Path, time: std::time::SystemTime) -> bool {
    let Ok(entries) = std::fs::read_dir(dir) else { return true };
    entries.flatten().any(|entry| {
        let name = entry.file_name();
        if NOT_SOURCE.iter().any(|s| name == *s) {
            return false;
        }
        match entry.file_type() {
            Ok(t) if t.is_dir() => newer_than(&entry.path(), time),
            _ => entry.metadata().and_then(|m| m.modified()).map_or(true, |m| m > time),
        }
    })
}

fn build_rust(project: &Project) -> anyhow::Result<PathBuf> {
    let sysroot = Command::new("rustc").args(["--print", "sysroot"]).output();
    let Ok(sysroot) = sysroot else {
        anyhow::bail!("Rust is not installed: get it from https://rustup.rs, then run ./setup.sh");
    };
    let sysroot = PathBuf::from(String::from_utf8_lossy(&sysroot.stdout).trim());
    if !sysroot.join("lib/rustlib/wasm32-wasip2").is_dir() {
        anyhow::bail!(
            "the wasm32-wasip2 target is not installed: run ./setup.sh (rustup target add wasm32-wasip2)"
        );
    }
    // The project's own target directory unless the caller names one.
    let target_dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(|dir| absolute(Path::new(&dir)))
        .unwrap_or_else(|| project.dir.join("target"));
    run(Command::new("cargo")
        .args(["build", "--release", "--target", "wasm32-wasip2", "--target-dir"])
        .arg(&target_dir)
        .current_dir(&project.dir))?;
    let crate_name = project.manifest.name.replace('-', "_");
    Ok(target_dir.join("wasm32-wasip2/release").join(format!("{crate_name}.wasm")))
}

fn build_python(project: &Project, output: &Path) -> anyhow::Result<PathBuf> {
    let tool = find_tool(project, ".venv/bin/componentize-py", "componentize-py")
        .or_else(|| python_scripts().into_iter().map(|dir| dir.join("componentize-py")).find(|p| p.is_file()))
        .ok_or_else(|| {
            anyhow::anyhow!(
                "componentize-py is not installed: run ./setup.sh (a .venv with componentize-py 0.25.1), \
             or `pip install componentize-py==0.25.1`"
            )
        })?;
    let staged = output.with_extension("unembedded.wasm");
    run(Command::new(tool)
        .args([
            "-d",
            "sdk/wit",
            "-w",
            "transform",
            "componentize",
            "-p",
            ".",
            "-p",
            "sdk/python",
            "transform",
            "-o",
        ])
        .arg(absolute(&staged))
        .current_dir(&project.dir))?;
    Ok(staged)
}

fn build_js(project: &Project, output: &Path) -> anyhow::Result<PathBuf> {
    let tool = find_tool(project, "node_modules/.bin/componentize-js", "componentize-js").ok_or_else(|| {
        anyhow::anyhow!(
            "componentize-js is not installed: run ./setup.sh (npm install in the project; needs Node.js 20+)"
        )
    })?;
    let staged = output.with_extension("unembedded.wasm");
    // The JavaScript engine runs the module at build time (wizer) and can
    // read only below its directory, without following links out of it:
    // the sources are copied to one place first, links resolved.
    let sources = project.dir.join("build/js");
    let _ = std::fs::remove_dir_all(&sources);
    copy_sources(&project.dir, &sources, &["js", "mjs", "json", "wit"])?;
    run(Command::new(tool)
        .args(["transform.js", "--wit", "sdk/wit", "--world-name", "transform"])
        // Transforms get no network; these would import wasi:http.
        .args(["--disable", "http", "fetch-event", "--out"])
        .arg(absolute(&staged))
        .current_dir(&sources))?;
    Ok(staged)
}

/// Copies the files with these extensions below `from` to `to`, keeping
/// their layout and following links, past build outputs and dependencies.
fn copy_sources(from: &Path, to: &Path, extensions: &[&str]) -> anyhow::Result<()> {
    let entries = std::fs::read_dir(from).with_context(|| format!("cannot read {}", from.display()))?;
    for entry in entries.flatten() {
        let name = entry.file_name();
        if NOT_SOURCE.iter().any(|s| name == *s) {
            continue;
        }
        let path = entry.path();
        // `metadata` follows links, so a linked SDK directory is copied.
        let Ok(metadata) = std::fs::metadata(&path) else { continue };
        if metadata.is_dir() {
            copy_sources(&path, &to.join(&name), extensions)?;
        } else if path.extension().and_then(|e| e.to_str()).is_some_and(|e| extensions.contains(&e)) {
            std::fs::create_dir_all(to).with_context(|| format!("cannot create {}", to.display()))?;
            std::fs::copy(&path, to.join(&name))
                .with_context(|| format!("cannot copy {}", path.display()))?;
        }
    }
    Ok(())
}

/// Where python3 installs commands (its scripts folder and the user's),
/// which need not be on `PATH` (pyenv, say, until it rehashes).
fn python_scripts() -> Vec<PathBuf> {
    let probe = "import os, site, sysconfig; print(sysconfig.get_path('scripts')); print(os.path.join(site.USER_BASE, 'bin'))";
    match Command::new("python3").args(["-c", probe]).output() {
        Ok(output) if output.status.success() => {
            String::from_utf8_lossy(&output.stdout).lines().map(PathBuf::from).collect()
        }
        _ => Vec::new(),
    }
}

/// The project's own copy of a tool, else one on `PATH`.
fn find_tool(project: &Project, local: &str, name: &str) -> Option<PathBuf> {
    let local = project.dir.join(local);
    if local.is_file() {
        return Some(absolute(&local));
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|dir| dir.join(name)).find(|p| p.is_file())
}

fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())
}

fn run(command: &mut Command) -> anyhow::Result<()> {
    let program = command.get_program().to_string_lossy().into_owned();
    let status = command.status().with_context(|| format!("cannot run {program}"))?;
    anyhow::ensure!(status.success(), "{program} failed ({status}); its output is above");
    Ok(())
}
