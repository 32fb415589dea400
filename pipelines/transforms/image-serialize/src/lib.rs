//! `image-serialize`: a sluice transform that turns raw image bytes (one
//! image per record, as REST multipart ingest delivers them) into one Avro
//! image record (`pipelines/schemas/image.avsc`), ready for the lake.
//!
//! The format and size come from the bytes ([`sniff`]); a file name or
//! content type that claims another format is an error, not a hint. With
//! `verify = true` the image is fully decoded, so a corrupt body is caught
//! at ingest rather than when someone opens it years later; `thumbnail_px`
//! adds a small PNG. Every refusal has a kind (`empty`, `unsupported-format`,
//! `truncated`, `corrupt`, `format-mismatch`, `too-large`) and a message
//! saying what was wrong, and the record goes to the dead-letter
//! destination.

pub mod sniff;

use image_record::{Format, ImageRecord};
use serde::Deserialize;
use sluice_guest::{Config, Error, Output, Record, Sink, Transform};

/// The stage's `[stage.config]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SerializeConfig {
    /// Decode the whole image to prove it is intact.
    #[serde(default)]
    pub verify: bool,
    /// Add a PNG thumbnail at most this many pixels on its longer side.
    pub thumbnail_px: Option<u32>,
    /// Images with more pixels are refused before decoding (a guard
    /// against decompression bombs); only matters with `verify` or
    /// `thumbnail_px`.
    #[serde(default = "default_max_pixels")]
    pub max_pixels: u64,
    /// Refuse an image whose file name or content type claims another
    /// format than its bytes.
    #[serde(default = "default_true")]
    pub check_claims: bool,
}

fn default_max_pixels() -> u64 {
    50_000_000
}

fn default_true() -> bool {
    true
}

impl SerializeConfig {
    pub fn from_config(config: &Config) -> Result<Self, String> {
        let parsed: SerializeConfig = config.deserialize()?;
        if let Some(px) = parsed.thumbnail_px
            && !(8..=1024).contains(&px)
        {
            return Err(format!("thumbnail_px must be 8 to 1024, not {px}"));
        }
        Ok(parsed)
    }
}

pub struct ImageSerialize {
    config: SerializeConfig,
}

impl Transform for ImageSerialize {
    fn init(config: &Config) -> Result<Self, String> {
        Ok(ImageSerialize { config: SerializeConfig::from_config(config)? })
    }

    fn process(&mut self, record: &Record<'_>, out: &mut Output) -> Result<(), Error> {
        let filename = record.header_str("filename");
        // The record is encoded straight into the output buffer. When the
        // image is refused nothing has been written yet (every check comes
        // before the encoding), and the SDK drops the empty record anyway:
        // a failed record's outputs are rolled back.
        let mut result = Ok(());
        let mut emitted = out
            .push_with(|value| {
                result = serialize(
                    record.value(),
                    record.key(),
                    filename,
                    record.header_str("content-type"),
                    record.timestamp(),
                    &self.config,
                    value,
                );
            })
            .header("content-type", "avro/binary");
        if let Some(name) = filename {
            emitted = emitted.header("filename", name);
        }
        let _ = emitted;
        result
    }
}

sluice_guest::export_transform!(ImageSerialize);

sluice_guest::declare_config!(
    r#"{
  "verify": {"type": "boolean", "default": false, "description": "Decode the whole image to prove it is intact."},
  "thumbnail_px": {"type": "integer", "description": "Add a PNG thumbnail at most this many pixels (8 to 1024) on its longer side. Unset: no thumbnail."},
  "max_pixels": {"type": "integer", "default": 50000000,
    "description": "Images with more pixels are refused before decoding (a guard against decompression bombs); only matters with verify or thumbnail_px."},
  "check_claims": {"type": "boolean", "default": true,
    "description": "Refuse an image whose file name or content type claims another format than its bytes."}
}"#
);

/// Serializes one image into `out` (an Avro datum of the image schema).
pub fn serialize(
    data: &[u8],
    key: Option<&[u8]>,
    filename: Option<&str>,
    claimed_type: Option<&str>,
    timestamp: Option<i64>,
    config: &SerializeConfig,
    out: &mut impl Sink,
) -> Result<(), Error> {
    let header = sniff::sniff(data)?;
    if config.check_claims {
        check_claim(header.format, filename.and_then(sniff::format_of_name), || {
            format!("file name `{}`", filename.unwrap_or_default())
        })?;
        check_claim(header.format, claimed_type.and_then(sniff::format_of_mime), || {
            format!("content type `{}`", claimed_type.unwrap_or_default())
        })?;
    }
    let pixels = u64::from(header.width) * u64::from(header.height);
    let needs_decode = config.verify || config.thumbnail_px.is_some();
    if needs_decode && pixels > config.max_pixels {
        return Err(Error::new(
            "too-large",
            format!(
                "{}×{} is {pixels} pixels; max_pixels is {}",
                header.width, header.height, config.max_pixels
            ),
        ));
    }
    let thumbnail = if needs_decode {
        let decoded = decode(data, header)?;
        config.thumbnail_px.map(|px| thumbnail(&decoded, px)).transpose()?
    } else {
        None
    };
    // The host's native hash when the stage grants `hash`.
    let sha256 = hex::encode(sluice_guest::hash::sha256(data));
    let id = match key.map(std::str::from_utf8) {
        Some(Ok(key)) if !key.is_empty() => key,
        _ => sha256.as_str(),
    };
    ImageRecord {
        id,
        filename,
        content_type: header.format.mime(),
        format: header.format,
        width: i32::try_from(header.width).unwrap_or(i32::MAX),
        height: i32::try_from(header.height).unwrap_or(i32::MAX),
        size: data.len() as i64,
        sha256: &sha256,
        ingested_at: timestamp.unwrap_or(0),
        data,
        thumbnail: thumbnail.as_deref(),
    }
    .encode(out);
    Ok(())
}

fn check_claim(actual: Format, claimed: Option<Format>, what: impl FnOnce() -> String) -> Result<(), Error> {
    match claimed {
        Some(claimed) if claimed != actual => Err(Error::new(
            "format-mismatch",
            format!("{} claims {}, but the bytes are {}", what(), claimed.name(), actual.name()),
        )),
        _ => Ok(()),
    }
}

fn decode(data: &[u8], header: sniff::Header) -> Result<image::DynamicImage, Error> {
    let format = match header.format {
        Format::Jpeg => image::ImageFormat::Jpeg,
        Format::Png => image::ImageFormat::Png,
        Format::Gif => image::ImageFormat::Gif,
        Format::Webp => image::ImageFormat::WebP,
    };
    image::load_from_memory_with_format(data, format).map_err(|error| {
        let kind = if error.to_string().contains("end of file") || error.to_string().contains("EOF") {
            "truncated"
        } else {
            "corrupt"
        };
        Error::new(kind, format!("{} does not decode: {error}", header.format.name()))
    })
}

fn thumbnail(image: &image::DynamicImage, px: u32) -> Result<Vec<u8>, Error> {
    let small = image.thumbnail(px, px);
    let mut png = Vec::new();
    small
        .write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
        .map_err(|e| Error::new("thumbnail", format!("cannot encode the thumbnail: {e}")))?;
    Ok(png)
}
