//! The `lake` source: reads back the Avro container files the lake sink
//! wrote (on `file://` or `hdfs://`), for replay and backfill, e.g.
//! lake → `image-deserialize` → files.
//!
//! Each record's value is one datum in Avro's binary encoding with a
//! `content-type: avro/binary` header, exactly what `image-serialize`
//! produced before the lake, and a `lake-file` header naming its file.
//! Files are read in name order (for one partition, that is offset order);
//! hidden files still being written are skipped. The source ends after
//! the last file.

use std::path::Path;

use anyhow::Context as _;
use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::{Source, SourceContext};
use crate::ack::Ack;
use crate::config::PipelineConfig;
use crate::record::{Batch, Header, Origin, Record, SourceName};
use crate::storage::{HdfsOptions, join};

/// `[source]` with `type = "lake"`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LakeSourceConfig {
    /// `hdfs://namenode:port/dir`, `file:///dir`, or a directory relative
    /// to the pipeline file; left out, the engine's own lake.
    pub url: Option<String>,
    /// What to read below `url`: a directory (recursively) or one file,
    /// e.g. `topics/images` or `topics/images/date=2024-03-01`.
    #[serde(default)]
    pub path: String,
    /// The HDFS user to read as.
    pub hdfs_user: Option<String>,
}

pub struct LakeSource {
    config: LakeSourceConfig,
    base: std::path::PathBuf,
}

/// Records per chunk sent into the pipeline.
const CHUNK: usize = 256;

impl LakeSource {
    pub fn new(config: &LakeSourceConfig, pipeline: &PipelineConfig) -> anyhow::Result<Self> {
        let base = pipeline.file.parent().unwrap_or(Path::new(".")).to_path_buf();
        Ok(LakeSource { config: config.clone(), base })
    }
}

#[async_trait::async_trait]
impl Source for LakeSource {
    async fn run(self: Box<Self>, ctx: SourceContext) -> anyhow::Result<()> {
        let url = self
            .config
            .url
            .as_deref()
            .context("the lake source has no `url` and no engine default was set")?;
        let target = join(url, &self.config.path);
        let options = HdfsOptions { user: self.config.hdfs_user.clone() };
        let (storage, files) = crate::storage::open_files(&target, &self.base, &options).await?;
        tracing::info!(pipeline = %ctx.pipeline, files = files.len(), lake = %target, "reading the lake");
        for file in files {
            if ctx.shutdown.is_cancelled() {
                break;
            }
            let bytes = storage.read(&file).await?;
            let name = SourceName::new(&storage.url(&file));
            let records = tokio::task::spawn_blocking(move || datums(&bytes, name)).await??;
            let mut chunk = Vec::with_capacity(CHUNK);
            for record in records {
                chunk.push(record);
                if chunk.len() == CHUNK {
                    let (ack, _) = Ack::new();
                    if ctx.send(Batch::new(std::mem::take(&mut chunk), vec![ack])).await.is_err() {
                        return Ok(());
                    }
                }
            }
            if !chunk.is_empty() {
                let (ack, _) = Ack::new();
                if ctx.send(Batch::new(chunk, vec![ack])).await.is_err() {
                    return Ok(());
                }
            }
        }
        Ok(())
    }
}

/// A container file's records, each as one binary datum.
fn datums(bytes: &[u8], file: SourceName) -> anyhow::Result<Vec<Record>> {
    let reader =
        apache_avro::Reader::new(bytes).with_context(|| format!("{file} is not an Avro container file"))?;
    let schema = reader.writer_schema().clone();
    let mut records = Vec::new();
    for (index, value) in reader.enumerate() {
        let value = value.with_context(|| format!("{file}: a block is corrupt"))?;
        let datum = apache_avro::to_avro_datum(&schema, value)?;
        let mut record = Record::new(datum, Origin { source: file, partition: 0, offset: index as i64 });
        record
            .headers
            .push(Header { name: "content-type".into(), value: Bytes::from_static(b"avro/binary") });
        record
            .headers
            .push(Header { name: "lake-file".into(), value: Bytes::copy_from_slice(file.as_bytes()) });
        records.push(record);
    }
    Ok(records)
}
