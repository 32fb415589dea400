//! `image-deserialize`: a sluice transform that turns an Avro image record
//! (`pipelines/schemas/image.avsc`, as `image-serialize` writes it) back
//! into the original image: the value is the image's bytes, byte-exact, the
//! key its id, with `filename` and `content-type` headers.
//!
//! The bytes are checked against the record's `size` and `sha256` before
//! they leave: a record damaged in storage goes to the dead-letter
//! destination (`corrupt`, naming the field) instead of handing someone a
//! broken image.

use image_record::ImageRecord;
use sha2::{Digest, Sha256};
use sluice_guest::{Config, Error, Output, Record, Transform};

pub struct ImageDeserialize;

impl Transform for ImageDeserialize {
    fn init(config: &Config) -> Result<Self, String> {
        config.expect_keys(&[])?;
        Ok(ImageDeserialize)
    }

    fn process(&mut self, record: &Record<'_>, out: &mut Output) -> Result<(), Error> {
        let image = deserialize(record.value())?;
        let mut emitted =
            out.push(image.data).key(Some(image.id.as_bytes())).header("content-type", image.content_type);
        if let Some(name) = image.filename {
            emitted = emitted.header("filename", name);
        }
        let _ = emitted;
        Ok(())
    }
}

sluice_guest::export_transform!(ImageDeserialize);

// It takes no config.
sluice_guest::declare_config!("{}");

/// Decodes and verifies one image record.
pub fn deserialize(value: &[u8]) -> Result<ImageRecord<'_>, Error> {
    let image = image_record::decode(value)
        .map_err(|e| Error::new("invalid-record", format!("not an image record: {e}")))?;
    if image.size != image.data.len() as i64 {
        return Err(Error::new(
            "corrupt",
            format!("field `size` says {} bytes, `data` holds {}", image.size, image.data.len()),
        ));
    }
    let actual = hex::encode(Sha256::digest(image.data));
    if actual != image.sha256 {
        return Err(Error::new(
            "corrupt",
            format!("field `sha256` says {}, the data hashes to {actual}", image.sha256),
        ));
    }
    Ok(image)
}
