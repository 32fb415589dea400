//! `make demo`'s Kafka half as a newcomer without tansu runs it: the engine
//! falls back to its in-memory cluster, and the demo still ends with the
//! logs parsed, the images in the lake and extracted back byte-exact, and
//! the documents in the search index. Run from a copy of the repository's
//! scripts and pipelines, so the repository's own `data/` is not touched.

use std::path::Path;
use std::process::Command;

use sluice_tests::broker::free_port;
use sluice_tests::root;

use super::SLUICE;

/// A directory holding `repo/` (the demo's scripts and pipelines, and the
/// built modules) beside `shared/` (the fixtures), as a checkout has them.
fn demo_checkout(dir: &Path) -> std::path::PathBuf {
    let repo = dir.join("repo");
    std::fs::create_dir_all(&repo).unwrap();
    for folder in ["scripts", "pipelines"] {
        let status = Command::new("cp").arg("-r").arg(root().join(folder)).arg(&repo).status().unwrap();
        assert!(status.success());
    }
    std::os::unix::fs::symlink(root().join("target"), repo.join("target")).unwrap();
    std::os::unix::fs::symlink(root().join("..").join("shared"), dir.join("shared")).unwrap();
    repo
}

/// `PATH` without any directory that holds a `tansu`.
fn path_without_tansu() -> String {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let kept: Vec<_> = std::env::split_paths(&path).filter(|dir| !dir.join("tansu").exists()).collect();
    std::env::join_paths(kept).unwrap().into_string().unwrap()
}

#[test]
fn the_demo_works_without_tansu_on_the_in_memory_cluster() {
    let dir = tempfile::tempdir().unwrap();
    let repo = demo_checkout(dir.path());
    let home = dir.path().join("home");
    std::fs::create_dir_all(&home).unwrap();
    let output = Command::new("bash")
        .arg(repo.join("scripts/demo-ingest.sh"))
        .env("PATH", path_without_tansu())
        // The engine also looks in ~/.cargo/bin.
        .env("HOME", &home)
        .env_remove("SLUICE_TANSU")
        .env("SLUICE_BIN", SLUICE)
        .env("SLUICE_DEMO_PORT", free_port().to_string())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "the demo failed:\n{stdout}\n{stderr}");
    assert!(stderr.contains("IN-MEMORY"), "the fallback cluster was used and said so:\n{stderr}");
    let documents = std::fs::read_to_string(repo.join("../repo/data/weblogs-kafka.ndjson")).unwrap();
    assert_eq!(documents.lines().count(), 500, "every fixture line parsed");
    for image in ["rocket.jpg", "coffee.png", "chelsea.png"] {
        assert!(
            stdout.contains(&format!("data/extracted/{image}: identical to the original")),
            "{image}:\n{stdout}"
        );
    }
    assert!(stdout.contains("weblogs-* holds 500 documents"), "every line indexed:\n{stdout}");
    assert!(stdout.contains("broken.png"), "the broken image is dead-lettered:\n{stdout}");
}
