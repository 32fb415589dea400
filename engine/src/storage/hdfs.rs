//! The lake on HDFS (`hdfs://`), through `hdfs-native`, a pure-Rust client
//! that speaks the NameNode and DataNode protocols (no JVM, no libhdfs).
//!
//! Durability: `finish` closes the file, which returns once every block is
//! acknowledged by the DataNode pipeline and the NameNode has completed the
//! file; a rename is one NameNode transaction.

use anyhow::Context as _;
use bytes::Bytes;
use hdfs_native::{Client, ClientBuilder, HdfsError, WriteOptions};

use super::{FileEntry, FileWrite, HdfsOptions, Storage};

pub struct HdfsStorage {
    client: Client,
    /// `hdfs://host:port`, for messages.
    namenode: String,
    /// Absolute directory every path is relative to.
    root: String,
}

impl HdfsStorage {
    pub fn connect(namenode: &str, root: &str, options: &HdfsOptions) -> anyhow::Result<Self> {
        let mut builder = ClientBuilder::new().with_url(namenode);
        if let Some(user) = &options.user {
            builder = builder.with_user(user.clone());
        }
        let client = builder.build()?;
        Ok(HdfsStorage {
            client,
            namenode: namenode.to_string(),
            root: root.trim_end_matches('/').to_string(),
        })
    }

    fn path(&self, path: &str) -> String {
        format!("{}/{}", self.root, path.trim_start_matches('/'))
    }
}

#[async_trait::async_trait]
impl Storage for HdfsStorage {
    fn url(&self, path: &str) -> String {
        format!("{}{}", self.namenode, self.path(path))
    }

    async fn create(&self, path: &str) -> anyhow::Result<Box<dyn FileWrite>> {
        let options = WriteOptions { overwrite: false, create_parent: true, ..WriteOptions::default() };
        let writer = self
            .client
            .create(&self.path(path), options)
            .await
            .with_context(|| format!("cannot create {}", self.url(path)))?;
        Ok(Box::new(HdfsFile { writer, url: self.url(path) }))
    }

    async fn rename(&self, from: &str, to: &str) -> anyhow::Result<()> {
        self.client
            .rename(&self.path(from), &self.path(to), false)
            .await
            .with_context(|| format!("cannot rename {} to {}", self.url(from), self.url(to)))
    }

    async fn delete(&self, path: &str) -> anyhow::Result<()> {
        match self.client.delete(&self.path(path), false).await {
            Ok(_) | Err(HdfsError::FileNotFound(_)) => Ok(()),
            Err(e) => Err(e).with_context(|| format!("cannot delete {}", self.url(path))),
        }
    }

    async fn list(&self, dir: &str) -> anyhow::Result<Vec<FileEntry>> {
        let statuses = match self.client.list_status(&self.path(dir), true).await {
            Ok(statuses) => statuses,
            Err(HdfsError::FileNotFound(_)) => return Ok(Vec::new()),
            Err(e) => return Err(e).with_context(|| format!("cannot list {}", self.url(dir))),
        };
        let prefix = format!("{}/", self.root);
        let mut files: Vec<FileEntry> = statuses
            .into_iter()
            .filter(|status| !status.isdir)
            .map(|status| FileEntry {
                path: status.path.strip_prefix(&prefix).unwrap_or(&status.path).to_string(),
                len: status.length as u64,
                modified: Some(
                    std::time::UNIX_EPOCH + std::time::Duration::from_millis(status.modification_time),
                ),
            })
            .collect();
        files.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(files)
    }

    async fn read(&self, path: &str) -> anyhow::Result<Bytes> {
        let read = async {
            let mut reader = self.client.read(&self.path(path)).await?;
            reader.read_bytes(reader.file_length()).await
        };
        read.await.with_context(|| format!("cannot read {}", self.url(path)))
    }
}

struct HdfsFile {
    writer: hdfs_native::file::FileWriter,
    url: String,
}

#[async_trait::async_trait]
impl FileWrite for HdfsFile {
    async fn write(&mut self, bytes: Vec<u8>) -> anyhow::Result<()> {
        self.writer
            .write_bytes(Bytes::from(bytes))
            .await
            .with_context(|| format!("cannot write {}", self.url))?;
        Ok(())
    }

    async fn finish(mut self: Box<Self>) -> anyhow::Result<()> {
        self.writer.close().await.with_context(|| format!("cannot close {}", self.url))
    }
}
