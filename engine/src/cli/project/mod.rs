//! Transform projects: `sluice new` scaffolds one, `sluice build` builds its
//! component, and `sluice test` (run inside one) builds it and runs the
//! golden tests of its `pipeline.toml`.
//!
//! A project is a directory with a `transform.toml` manifest (name,
//! language, the config keys the transform takes), the transform's source,
//! a copy of the guest SDK for its language under `sdk/`, and a
//! `pipeline.toml` around it with `[[tests]]`. The SDK is copied rather
//! than referenced so a project builds wherever it is moved, against the
//! SDK of the engine that created it.

mod build;
mod scaffold;

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use serde::Deserialize;

use crate::wasm::config_spec::ConfigSpec;

pub use build::{BuildArgs, build, build_project, is_stale};
pub use scaffold::{NewArgs, new};

/// The manifest's file name.
pub const MANIFEST: &str = "transform.toml";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Language {
    Rust,
    Python,
    Js,
}

impl Language {
    fn name(self) -> &'static str {
        match self {
            Language::Rust => "Rust",
            Language::Python => "Python",
            Language::Js => "JavaScript",
        }
    }

    fn key(self) -> &'static str {
        match self {
            Language::Rust => "rust",
            Language::Python => "python",
            Language::Js => "js",
        }
    }

    /// The file the transform's code starts in.
    fn source(self) -> &'static str {
        match self {
            Language::Rust => "src/lib.rs",
            Language::Python => "transform.py",
            Language::Js => "transform.js",
        }
    }
}

/// `transform.toml`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub name: String,
    pub language: Language,
    /// The config keys the transform takes, embedded in the component.
    #[serde(default)]
    pub config: Option<ConfigSpec>,
}

/// A project found on disk.
pub struct Project {
    pub dir: PathBuf,
    pub manifest: Manifest,
}

impl Project {
    /// The project in `dir`, if `dir` has a manifest.
    pub fn find(dir: &Path) -> anyhow::Result<Option<Project>> {
        let path = dir.join(MANIFEST);
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(error) => return Err(error).with_context(|| format!("cannot read {}", path.display())),
        };
        let manifest: Manifest = toml::from_str(&text).map_err(|e| {
            let at = e.span().map(|s| crate::config::line_column(&text, s.start));
            let at = at.map(|(line, column)| format!(":{line}:{column}")).unwrap_or_default();
            anyhow::anyhow!("{}{at}: {}", path.display(), e.message())
        })?;
        check_name(&manifest.name).with_context(|| format!("{}: `name`", path.display()))?;
        Ok(Some(Project { dir: dir.to_path_buf(), manifest }))
    }

    /// Where `sluice build` puts the component.
    pub fn output(&self) -> PathBuf {
        self.dir.join("build").join(format!("{}.wasm", self.manifest.name))
    }
}

/// Project names become directory, crate, module and pipeline names.
pub fn check_name(name: &str) -> anyhow::Result<()> {
    let valid = !name.is_empty()
        && name.len() <= 64
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !name.ends_with('-');
    anyhow::ensure!(
        valid,
        "`{name}` is not a valid transform name: use 1-64 lowercase letters, digits and `-`, starting with a letter"
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_plain_lowercase_words() {
        for good in ["redact", "geo-tag", "v2-route"] {
            assert!(check_name(good).is_ok(), "{good}");
        }
        for bad in ["", "Redact", "../x", "a/b", "-x", "x-", "2x", "a_b", &"x".repeat(65)] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
    }
}
