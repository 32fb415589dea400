//! The lake on the local filesystem (`file://`).
//!
//! Durability: `finish` fsyncs the file and `rename` fsyncs the directory,
//! so a committed file survives a power loss, not only a crash of sluice.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use bytes::Bytes;
use tokio::io::AsyncWriteExt as _;

use super::{FileEntry, FileWrite, Storage};

pub struct LocalStorage {
    root: PathBuf,
}

impl LocalStorage {
    pub fn new(root: PathBuf) -> Self {
        LocalStorage { root }
    }

    fn path(&self, path: &str) -> PathBuf {
        self.root.join(path.trim_start_matches('/'))
    }
}

#[async_trait::async_trait]
impl Storage for LocalStorage {
    fn url(&self, path: &str) -> String {
        format!("file://{}", self.path(path).display())
    }

    async fn create(&self, path: &str) -> anyhow::Result<Box<dyn FileWrite>> {
        let full = self.path(path);
        if let Some(dir) = full.parent() {
            tokio::fs::create_dir_all(dir)
                .await
                .with_context(|| format!("cannot create {}", dir.display()))?;
        }
        let file = tokio::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&full)
            .await
            .with_context(|| format!("cannot create {}", full.display()))?;
        Ok(Box::new(LocalFile { file, path: full }))
    }

    async fn rename(&self, from: &str, to: &str) -> anyhow::Result<()> {
        let (from, to) = (self.path(from), self.path(to));
        tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
            // rename(2) replaces silently; a commit must never do that.
            anyhow::ensure!(!to.exists(), "{} already exists", to.display());
            std::fs::rename(&from, &to)
                .with_context(|| format!("cannot rename {} to {}", from.display(), to.display()))?;
            sync_dir(to.parent().unwrap_or(Path::new("/")))
        })
        .await?
    }

    async fn delete(&self, path: &str) -> anyhow::Result<()> {
        let full = self.path(path);
        match tokio::fs::remove_file(&full).await {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(e).with_context(|| format!("cannot delete {}", full.display()))
            }
            _ => Ok(()),
        }
    }

    async fn list(&self, dir: &str) -> anyhow::Result<Vec<FileEntry>> {
        let (root, start) = (self.root.clone(), self.path(dir));
        tokio::task::spawn_blocking(move || {
            let mut files = Vec::new();
            walk(&root, &start, &mut files)?;
            files.sort_by(|a, b| a.path.cmp(&b.path));
            Ok(files)
        })
        .await?
    }

    async fn read(&self, path: &str) -> anyhow::Result<Bytes> {
        let full = self.path(path);
        Ok(tokio::fs::read(&full).await.with_context(|| format!("cannot read {}", full.display()))?.into())
    }
}

fn walk(root: &Path, dir: &Path, files: &mut Vec<FileEntry>) -> anyhow::Result<()> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if matches!(e.kind(), std::io::ErrorKind::NotFound | std::io::ErrorKind::NotADirectory) => {
            return Ok(());
        }
        Err(e) => return Err(e).with_context(|| format!("cannot list {}", dir.display())),
    };
    for entry in entries {
        let entry = entry.with_context(|| format!("cannot list {}", dir.display()))?;
        let path = entry.path();
        // A file being committed or cleaned up may vanish mid-listing.
        let metadata = match entry.metadata() {
            Ok(metadata) => metadata,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e).with_context(|| format!("cannot list {}", path.display())),
        };
        if metadata.is_dir() {
            walk(root, &path, files)?;
        } else if metadata.is_file() {
            let relative = path.strip_prefix(root).unwrap_or(&path);
            let relative = relative.to_string_lossy().replace(std::path::MAIN_SEPARATOR, "/");
            files.push(FileEntry { path: relative, len: metadata.len(), modified: metadata.modified().ok() });
        }
    }
    Ok(())
}

fn sync_dir(dir: &Path) -> anyhow::Result<()> {
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .with_context(|| format!("cannot sync directory {}", dir.display()))
}

struct LocalFile {
    file: tokio::fs::File,
    path: PathBuf,
}

#[async_trait::async_trait]
impl FileWrite for LocalFile {
    async fn write(&mut self, bytes: Vec<u8>) -> anyhow::Result<()> {
        self.file.write_all(&bytes).await.with_context(|| format!("cannot write {}", self.path.display()))
    }

    async fn finish(mut self: Box<Self>) -> anyhow::Result<()> {
        self.file.flush().await?;
        self.file.sync_all().await.with_context(|| format!("cannot sync {}", self.path.display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn create_never_overwrites_and_rename_never_replaces() {
        let dir = tempfile::tempdir().unwrap();
        let storage = LocalStorage::new(dir.path().to_path_buf());
        let mut file = storage.create("a/b/x.tmp").await.unwrap();
        file.write(b"hello".to_vec()).await.unwrap();
        file.finish().await.unwrap();
        assert!(storage.create("a/b/x.tmp").await.is_err());
        storage.rename("a/b/x.tmp", "a/b/x").await.unwrap();
        storage.create("a/b/y").await.unwrap().finish().await.unwrap();
        let e = storage.rename("a/b/y", "a/b/x").await.unwrap_err();
        assert!(e.to_string().contains("already exists"), "{e}");
        let listed: Vec<_> = storage.list("a").await.unwrap().into_iter().map(|f| (f.path, f.len)).collect();
        assert_eq!(listed, [("a/b/x".to_string(), 5), ("a/b/y".to_string(), 0)]);
        assert_eq!(&storage.read("a/b/x").await.unwrap()[..], b"hello");
        storage.delete("a/b/y").await.unwrap();
        storage.delete("a/b/y").await.unwrap();
        assert!(storage.list("missing").await.unwrap().is_empty());
    }
}
