//! Builds every guest the tests and benchmarks use — the test guests in
//! `guests/` and the example transforms in `../pipelines/transforms/` — into
//! wasm32-wasip2 components, so no test is skipped for want of a `.wasm`.
//!
//! The nested cargo uses its own target directory (`target/wasm`, the same
//! one `make transforms` uses) so it does not wait on the outer build's lock.

use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    let manifest_dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap());
    let root = manifest_dir.parent().unwrap().to_path_buf();
    let target_dir = root.join("target").join("wasm");
    for workspace in [manifest_dir.join("guests"), root.join("pipelines").join("transforms")] {
        build(&workspace.join("Cargo.toml"), &target_dir);
        watch_crates(&workspace);
    }
    println!("cargo:rerun-if-changed={}", root.join("guest-sdk").display());
    let out = target_dir.join("wasm32-wasip2").join("release");
    println!("cargo:rustc-env=SLUICE_GUEST_DIR={}", out.display());
    println!("cargo:rustc-env=SLUICE_ROOT={}", root.display());
}

fn build(manifest: &Path, target_dir: &Path) {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        // From the workspace's folder, so its .cargo/config.toml applies.
        .current_dir(manifest.parent().unwrap())
        .args(["build", "--release", "--target", "wasm32-wasip2", "--manifest-path"])
        .arg(manifest)
        .arg("--target-dir")
        .arg(target_dir)
        // Flags meant for the host build must not leak into the guest build.
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("CARGO_BUILD_TARGET")
        .env_remove("CARGO_MAKEFLAGS")
        .status()
        .expect("run cargo to build the guest components");
    assert!(
        status.success(),
        "building {} for wasm32-wasip2 failed (is the target installed? `rustup target add wasm32-wasip2`)",
        manifest.display()
    );
}

/// Reruns when a Rust crate of `workspace` changes, not when a Python or
/// JavaScript project beside them is built into its `build/` folder.
fn watch_crates(workspace: &Path) {
    for file in ["Cargo.toml", "Cargo.lock"] {
        println!("cargo:rerun-if-changed={}", workspace.join(file).display());
    }
    for entry in std::fs::read_dir(workspace).into_iter().flatten().flatten() {
        if entry.path().join("Cargo.toml").is_file() {
            println!("cargo:rerun-if-changed={}", entry.path().display());
        }
    }
}
