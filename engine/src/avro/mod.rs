//! Avro, the lake's file format: the object-container writer the `hdfs`
//! sink streams records into, schema loading, and the JSON-to-Avro encoding
//! that tells a user which field of a record did not fit.
//!
//! Reading is left to `apache_avro::Reader`; writing has its own framing
//! ([`container`]) because records that already are Avro datums (what
//! `image-serialize` emits) are appended as they are, without decoding them
//! into values and encoding them again, which `apache_avro::Writer` cannot do.

pub mod codec;
pub mod container;
pub mod datum;
pub mod from_json;

use std::path::Path;

use anyhow::Context as _;
use apache_avro::Schema;

/// Parses a schema given inline (JSON text) or as the path of an `.avsc`
/// file, relative to `base`.
pub fn load_schema(inline_or_path: &str, base: &Path) -> anyhow::Result<Schema> {
    let text = inline_or_path.trim_start();
    if text.starts_with('{') || text.starts_with('[') || text.starts_with('"') {
        return Schema::parse_str(text).context("the inline schema is not a valid Avro schema");
    }
    let path = base.join(inline_or_path);
    let json =
        std::fs::read_to_string(&path).with_context(|| format!("cannot read schema {}", path.display()))?;
    Schema::parse_str(&json).with_context(|| format!("{} is not a valid Avro schema", path.display()))
}
