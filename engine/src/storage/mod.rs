//! Where the lake lives: one small interface over the local filesystem
//! (`file://`) and HDFS (`hdfs://`), so the Avro sink, the lake source and
//! `sluice avro` have one code path for both.
//!
//! Paths are relative to the URL the storage was opened at and use `/`.
//! The operations are the ones a commit protocol needs: create a new file
//! (never overwrite), make it durable, rename it into place, list and
//! delete.

pub mod hdfs;
pub mod local;

use std::path::Path;
use std::sync::Arc;

use anyhow::Context as _;
use bytes::Bytes;

#[async_trait::async_trait]
pub trait Storage: Send + Sync + 'static {
    /// The full URL of `path`, for messages.
    fn url(&self, path: &str) -> String;

    /// Creates a new file (and its parent directories); fails if it exists.
    async fn create(&self, path: &str) -> anyhow::Result<Box<dyn FileWrite>>;

    /// Moves a file; fails if `to` exists. Durable once it returns.
    async fn rename(&self, from: &str, to: &str) -> anyhow::Result<()>;

    /// Deletes a file; a file that is already gone is not an error.
    async fn delete(&self, path: &str) -> anyhow::Result<()>;

    /// Every file under `dir`, recursively, sorted by path; a missing
    /// directory has none.
    async fn list(&self, dir: &str) -> anyhow::Result<Vec<FileEntry>>;

    /// A whole file.
    async fn read(&self, path: &str) -> anyhow::Result<Bytes>;
}

/// A file being written.
#[async_trait::async_trait]
pub trait FileWrite: Send + Sync {
    async fn write(&mut self, bytes: Vec<u8>) -> anyhow::Result<()>;

    /// Makes everything written durable and closes the file.
    async fn finish(self: Box<Self>) -> anyhow::Result<()>;
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileEntry {
    /// Relative to the storage's root.
    pub path: String,
    pub len: u64,
    /// When the file last changed, where the storage says.
    pub modified: Option<std::time::SystemTime>,
}

impl FileEntry {
    /// The last path segment.
    pub fn name(&self) -> &str {
        self.path.rsplit('/').next().unwrap_or(&self.path)
    }
}

/// Options for reaching HDFS, given beside the URL.
#[derive(Debug, Clone, Default)]
pub struct HdfsOptions {
    /// The user files are written as (default: `HADOOP_USER_NAME`, then the
    /// login name).
    pub user: Option<String>,
}

/// Opens the storage at `url`: `file:///abs/dir`, `hdfs://host:port/dir`,
/// or a plain path (relative to `base`).
pub fn open(url: &str, base: &Path, hdfs: &HdfsOptions) -> anyhow::Result<Arc<dyn Storage>> {
    if let Some(rest) = url.strip_prefix("hdfs://") {
        let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
        anyhow::ensure!(!authority.is_empty(), "`{url}` names no NameNode (expected hdfs://host:port/path)");
        let storage = hdfs::HdfsStorage::connect(&format!("hdfs://{authority}"), &format!("/{path}"), hdfs)
            .with_context(|| format!("cannot reach {url}"))?;
        return Ok(Arc::new(storage));
    }
    let path = match url.strip_prefix("file://") {
        Some(path) => {
            anyhow::ensure!(
                path.starts_with('/'),
                "`{url}` is not an absolute file URL (expected file:///path)"
            );
            Path::new(path).to_path_buf()
        }
        None if url.contains("://") => anyhow::bail!("`{url}`: only file:// and hdfs:// lakes are supported"),
        None => base.join(url),
    };
    Ok(Arc::new(local::LocalStorage::new(path)))
}

/// Opens what a user points at, a lake directory or one file in it, and
/// lists the data files there (hidden files being written are skipped).
/// Paths returned are relative to the returned storage.
pub async fn open_files(
    target: &str,
    base: &Path,
    hdfs: &HdfsOptions,
) -> anyhow::Result<(Arc<dyn Storage>, Vec<String>)> {
    let target = target.trim_end_matches('/');
    let (parent, last) = match target.rfind('/') {
        // Keep `file:///x` and `hdfs://nn:port/x` whole up to the last slash.
        Some(at) if !target[..at].ends_with('/') && !target[..at].ends_with(':') => {
            (&target[..at], &target[at + 1..])
        }
        Some(at) => (&target[..at + 1], &target[at + 1..]),
        None => (".", target),
    };
    let storage = open(parent, base, hdfs)?;
    let mut files: Vec<String> = storage
        .list(last)
        .await?
        .into_iter()
        .filter(|f| crate::sinks::hdfs::layout::is_data_file(f.name()))
        .map(|f| f.path)
        .collect();
    if files.is_empty() && last.ends_with(".avro") {
        // Not a directory: the target is a file (reading it says if not).
        files.push(last.to_string());
    }
    Ok((storage, files))
}

/// Joins relative path segments with `/`, ignoring empty ones.
pub fn join(dir: &str, name: &str) -> String {
    match (dir.trim_end_matches('/'), name.trim_start_matches('/')) {
        ("", name) => name.to_string(),
        (dir, "") => dir.to_string(),
        (dir, name) => format!("{dir}/{name}"),
    }
}
