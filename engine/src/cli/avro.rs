//! `sluice avro`: getting data back out of the lake. `cat` prints records
//! as JSON lines; `extract` writes images (or any record with a bytes field
//! and a file name) back as files, byte-exact.

use std::collections::HashSet;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use apache_avro::types::Value;
use sha2::Digest as _;

use crate::storage::HdfsOptions;

#[derive(clap::Args)]
pub struct AvroArgs {
    #[command(subcommand)]
    command: AvroCommand,
}

#[derive(clap::Subcommand)]
enum AvroCommand {
    /// Print the records of Avro container files as JSON lines.
    Cat(CatArgs),
    /// Write each record's bytes field back as a file with its name.
    Extract(ExtractArgs),
}

#[derive(clap::Args)]
struct Target {
    /// A file or a lake directory (read recursively): a path,
    /// file:///dir or hdfs://namenode:port/dir.
    #[arg(value_name = "FILE|DIR|URL")]
    target: String,
    /// The HDFS user to read as.
    #[arg(long, env = "HADOOP_USER_NAME")]
    hdfs_user: Option<String>,
}

#[derive(clap::Args)]
struct CatArgs {
    #[command(flatten)]
    target: Target,
    /// Print bytes fields whole (base64) instead of their length and SHA-256.
    #[arg(long)]
    bytes: bool,
    /// Print the writer schema of the first file instead of records.
    #[arg(long)]
    schema: bool,
}

#[derive(clap::Args)]
struct ExtractArgs {
    #[command(flatten)]
    target: Target,
    /// Directory to write files into (created if missing).
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    /// The record field holding the file's bytes.
    #[arg(long, default_value = "data")]
    data_field: String,
    /// The record field holding the file's name.
    #[arg(long, default_value = "filename")]
    name_field: String,
}

pub fn avro(args: AvroArgs) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    match args.command {
        AvroCommand::Cat(args) => runtime.block_on(cat(args)),
        AvroCommand::Extract(args) => runtime.block_on(extract(args)),
    }
}

/// Calls `each` with every record of every file under the target.
async fn for_each_record(
    target: &Target,
    mut each: impl FnMut(&str, &apache_avro::Schema, Value) -> anyhow::Result<bool>,
) -> anyhow::Result<()> {
    let options = HdfsOptions { user: target.hdfs_user.clone() };
    let (storage, files) = crate::storage::open_files(&target.target, Path::new("."), &options).await?;
    if files.is_empty() {
        eprintln!("no Avro files under {}", target.target);
    }
    for file in files {
        let bytes = storage.read(&file).await?;
        let url = storage.url(&file);
        let reader = apache_avro::Reader::new(&bytes[..])
            .with_context(|| format!("{url} is not an Avro container file"))?;
        let schema = reader.writer_schema().clone();
        for value in reader {
            let value = value.with_context(|| format!("{url}: a block is corrupt"))?;
            if !each(&url, &schema, value)? {
                return Ok(());
            }
        }
    }
    Ok(())
}

async fn cat(args: CatArgs) -> anyhow::Result<ExitCode> {
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    if args.schema {
        let options = HdfsOptions { user: args.target.hdfs_user.clone() };
        let (storage, files) =
            crate::storage::open_files(&args.target.target, Path::new("."), &options).await?;
        let first = files.first().context("no Avro files found")?;
        let bytes = storage.read(first).await?;
        let reader = apache_avro::Reader::new(&bytes[..])
            .with_context(|| format!("{} is not an Avro container file", storage.url(first)))?;
        writeln!(out, "{}", reader.writer_schema().canonical_form())?;
        return Ok(ExitCode::SUCCESS);
    }
    for_each_record(&args.target, |_, _, value| {
        serde_json::to_writer(&mut out, &to_json(value, args.bytes))?;
        out.write_all(b"\n")?;
        Ok(true)
    })
    .await?;
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

async fn extract(args: ExtractArgs) -> anyhow::Result<ExitCode> {
    std::fs::create_dir_all(&args.out).with_context(|| format!("cannot create {}", args.out.display()))?;
    let mut written = HashSet::new();
    let mut count = 0usize;
    for_each_record(&args.target, |url, _, value| {
        let Value::Record(fields) = value else {
            anyhow::bail!("{url}: records are not Avro records");
        };
        let field = |name: &str| fields.iter().find(|(n, _)| n == name).map(|(_, v)| unwrap_union(v));
        let Some(Value::Bytes(data)) = field(&args.data_field) else {
            anyhow::bail!("{url}: records have no bytes field `{}` (see --data-field)", args.data_field);
        };
        if let Some(Value::String(expected)) = field("sha256") {
            let actual = hex::encode(sha2::Sha256::digest(data));
            anyhow::ensure!(
                &actual == expected,
                "{url}: a record's {} does not match its sha256",
                args.data_field
            );
        }
        let name = match field(&args.name_field) {
            Some(Value::String(name)) => safe_file_name(name),
            _ => None,
        };
        let id = match field("id") {
            Some(Value::String(id)) => id.clone(),
            _ => format!("record-{count}"),
        };
        let mut name = name.unwrap_or_else(|| id.clone());
        if !written.insert(name.clone()) {
            // Two records with one name: keep both.
            name = format!("{id}-{name}");
            written.insert(name.clone());
        }
        let path = args.out.join(&name);
        std::fs::write(&path, data).with_context(|| format!("cannot write {}", path.display()))?;
        println!("{}", path.display());
        count += 1;
        Ok(true)
    })
    .await?;
    eprintln!("extracted {count} files into {}", args.out.display());
    Ok(ExitCode::SUCCESS)
}

/// The last component of a name a record carries, if it is a plain name:
/// records come from users, and must not write outside `--out`.
fn safe_file_name(name: &str) -> Option<String> {
    let base = name.rsplit(['/', '\\']).next()?;
    (!base.is_empty() && base != "." && base != ".." && !base.contains('\0')).then(|| base.to_string())
}

fn unwrap_union(value: &Value) -> &Value {
    match value {
        Value::Union(_, inner) => inner,
        other => other,
    }
}

/// A value as JSON: records as objects, unions unwrapped, timestamps as
/// numbers, bytes as `{"length", "sha256"}` (or `{"base64"}` with `--bytes`).
pub fn to_json(value: Value, whole_bytes: bool) -> serde_json::Value {
    use serde_json::Value as Json;
    match value {
        Value::Null => Json::Null,
        Value::Boolean(b) => b.into(),
        Value::Int(n) | Value::Date(n) | Value::TimeMillis(n) => n.into(),
        Value::Long(n)
        | Value::TimeMicros(n)
        | Value::TimestampMillis(n)
        | Value::TimestampMicros(n)
        | Value::TimestampNanos(n)
        | Value::LocalTimestampMillis(n)
        | Value::LocalTimestampMicros(n)
        | Value::LocalTimestampNanos(n) => n.into(),
        Value::Float(x) => f64::from(x).into(),
        Value::Double(x) => x.into(),
        Value::String(s) | Value::Enum(_, s) => s.into(),
        Value::Bytes(bytes) | Value::Fixed(_, bytes) => {
            if whole_bytes {
                use base64::Engine as _;
                serde_json::json!({ "base64": base64::engine::general_purpose::STANDARD.encode(&bytes) })
            } else {
                serde_json::json!({ "length": bytes.len(), "sha256": hex::encode(sha2::Sha256::digest(&bytes)) })
            }
        }
        Value::Union(_, inner) => to_json(*inner, whole_bytes),
        Value::Array(items) => items.into_iter().map(|v| to_json(v, whole_bytes)).collect(),
        Value::Map(map) => map.into_iter().map(|(k, v)| (k, to_json(v, whole_bytes))).collect(),
        Value::Record(fields) => fields.into_iter().map(|(k, v)| (k, to_json(v, whole_bytes))).collect(),
        Value::Uuid(uuid) => uuid.to_string().into(),
        other => format!("{other:?}").into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_from_records_cannot_leave_the_output_directory() {
        assert_eq!(safe_file_name("cat.jpg").as_deref(), Some("cat.jpg"));
        assert_eq!(safe_file_name("../../etc/passwd").as_deref(), Some("passwd"));
        assert_eq!(safe_file_name("C:\\x\\y.png").as_deref(), Some("y.png"));
        assert_eq!(safe_file_name(".."), None);
        assert_eq!(safe_file_name("dir/"), None);
    }
}
