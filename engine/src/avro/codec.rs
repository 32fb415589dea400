//! Block compression for Avro container files.

use apache_avro::{Codec, DeflateSettings, ZstandardSettings};
use miniz_oxide::deflate::CompressionLevel;
use serde::{Deserialize, Serialize};

/// `codec` of the `hdfs` sink: how each block of a file is compressed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CodecName {
    Null,
    Deflate,
    #[default]
    Snappy,
    #[serde(alias = "zstandard")]
    Zstd,
}

/// Resolves a codec and its optional level, or says which levels exist.
pub fn codec(name: CodecName, level: Option<i64>) -> Result<Codec, String> {
    match (name, level) {
        (CodecName::Null, None) => Ok(Codec::Null),
        (CodecName::Snappy, None) => Ok(Codec::Snappy),
        (CodecName::Null | CodecName::Snappy, Some(_)) => {
            Err("`codec_level` applies to deflate and zstd only; null and snappy have no levels".into())
        }
        (CodecName::Deflate, level) => {
            let level = match level {
                None | Some(6) => CompressionLevel::DefaultLevel,
                Some(0) => CompressionLevel::NoCompression,
                Some(1) => CompressionLevel::BestSpeed,
                Some(9) => CompressionLevel::BestCompression,
                Some(other) => {
                    return Err(format!(
                        "deflate level {other} is not available: use 0 (store), 1 (fastest), 6 (default) or 9 (smallest)"
                    ));
                }
            };
            Ok(Codec::Deflate(DeflateSettings::new(level)))
        }
        (CodecName::Zstd, level) => match level.unwrap_or(3) {
            level @ 1..=22 => Ok(Codec::Zstandard(ZstandardSettings::new(level as u8))),
            other => Err(format!("zstd level {other} is out of range 1..=22")),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_are_checked_per_codec() {
        assert!(codec(CodecName::Zstd, Some(19)).is_ok());
        assert!(codec(CodecName::Zstd, Some(0)).unwrap_err().contains("1..=22"));
        assert!(codec(CodecName::Deflate, Some(4)).unwrap_err().contains("0 (store)"));
        assert!(codec(CodecName::Snappy, Some(1)).unwrap_err().contains("no levels"));
        assert_eq!(codec(CodecName::Null, None), Ok(Codec::Null));
    }
}
