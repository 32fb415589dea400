//! Golden tests over the shared fixture images and hand-made edge cases,
//! through `sluice_guest::testing` (the same batch code the component
//! runs). Expected widths and heights come from the `image` crate's own
//! decoder, the hashes from `sha2` directly: independent of the header
//! parsing under test.

use std::path::PathBuf;

use image_record::{Format, decode};
use image_serialize::ImageSerialize;
use sha2::{Digest, Sha256};
use sluice_guest::testing::{TestRecord, init, run_one};

fn fixture(name: &str) -> Vec<u8> {
    let path =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../../shared/fixtures/images").join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn transform(config: &str) -> ImageSerialize {
    init::<ImageSerialize>(config).unwrap()
}

fn upload(name: &str, bytes: Vec<u8>) -> TestRecord {
    TestRecord::new(bytes).with_key(name).with_header("filename", name).with_timestamp(1_764_000_000_000)
}

/// An image made here, encoded by the `image` crate, for formats the
/// fixtures lack.
fn made(format: image::ImageFormat) -> Vec<u8> {
    let picture =
        image::RgbaImage::from_fn(37, 23, |x, y| image::Rgba([x as u8 * 7, y as u8 * 11, 128, 255]));
    let mut bytes = Vec::new();
    image::DynamicImage::ImageRgba8(picture).write_to(&mut std::io::Cursor::new(&mut bytes), format).unwrap();
    bytes
}

#[test]
fn fixture_images_become_records_with_their_true_facts() {
    let mut serialize = transform(r#"{"verify": true}"#);
    for (name, format) in
        [("rocket.jpg", Format::Jpeg), ("coffee.png", Format::Png), ("chelsea.png", Format::Png)]
    {
        let bytes = fixture(name);
        let expected = image::load_from_memory(&bytes).unwrap();
        let out = run_one(&mut serialize, upload(name, bytes.clone())).unwrap();
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].key.as_deref(), Some(name.as_bytes()));
        assert_eq!(out[0].header("filename"), Some(name.as_bytes()));
        let record = decode(&out[0].value).unwrap();
        assert_eq!(record.id, name);
        assert_eq!(record.filename, Some(name));
        assert_eq!(record.format, format);
        assert_eq!(record.content_type, format.mime());
        assert_eq!(
            (record.width as u32, record.height as u32),
            (expected.width(), expected.height()),
            "{name}"
        );
        assert_eq!(record.size, bytes.len() as i64);
        assert_eq!(record.sha256, hex::encode(Sha256::digest(&bytes)));
        assert_eq!(record.ingested_at, 1_764_000_000_000);
        assert_eq!(record.data, &bytes[..], "byte-exact");
        assert_eq!(record.thumbnail, None);
    }
}

#[test]
fn gif_and_webp_sizes_are_read_from_their_headers() {
    let mut serialize = transform(r#"{"verify": true}"#);
    for (format, ours) in [(image::ImageFormat::Gif, Format::Gif), (image::ImageFormat::WebP, Format::Webp)] {
        let out = run_one(&mut serialize, TestRecord::new(made(format))).unwrap();
        let record = decode(&out[0].value).unwrap();
        assert_eq!((record.format, record.width, record.height), (ours, 37, 23));
        assert_eq!(record.id, record.sha256, "no key: the id is the hash");
    }
}

#[test]
fn a_thumbnail_is_a_small_png() {
    let mut serialize = transform(r#"{"thumbnail_px": 64}"#);
    let out = run_one(&mut serialize, upload("chelsea.png", fixture("chelsea.png"))).unwrap();
    let record = decode(&out[0].value).unwrap();
    let thumbnail =
        image::load_from_memory_with_format(record.thumbnail.unwrap(), image::ImageFormat::Png).unwrap();
    assert_eq!(thumbnail.width().max(thumbnail.height()), 64);
}

fn refusal(config: &str, record: TestRecord) -> (String, String) {
    let error = run_one(&mut transform(config), record).unwrap_err();
    (error.kind().to_string(), error.message().to_string())
}

#[test]
fn bad_images_are_refused_with_a_precise_reason() {
    let png = fixture("coffee.png");
    assert_eq!(refusal("{}", upload("empty.png", vec![])).0, "empty");

    let (kind, message) = refusal("{}", upload("noise.jpg", b"this is not an image at all".to_vec()));
    assert_eq!(kind, "unsupported-format");
    assert!(message.contains("74686973"), "shows the first bytes: {message}");

    let (kind, message) = refusal("{}", upload("short.png", png[..20].to_vec()));
    assert_eq!(kind, "truncated");
    assert_eq!(message, "PNG ends at byte 20, before its IHDR header");

    // Cut in the middle of the image data: the header is fine, decoding is not.
    let (kind, message) = refusal(r#"{"verify": true}"#, upload("cut.png", png[..png.len() / 2].to_vec()));
    assert!(kind == "truncated" || kind == "corrupt", "{kind}: {message}");
    assert!(message.starts_with("png does not decode"), "{message}");
    // Without verify the same cut image passes: verification is what catches it.
    assert!(run_one(&mut transform("{}"), upload("cut.png", png[..png.len() / 2].to_vec())).is_ok());

    let (kind, message) = refusal("{}", upload("really-a-gif.png", made(image::ImageFormat::Gif)));
    assert_eq!(kind, "format-mismatch");
    assert_eq!(message, "file name `really-a-gif.png` claims png, but the bytes are gif");

    let claimed = TestRecord::new(png.clone()).with_header("content-type", "image/jpeg");
    assert_eq!(refusal("{}", claimed).0, "format-mismatch");
    let unchecked = TestRecord::new(png.clone()).with_header("content-type", "image/jpeg");
    assert!(run_one(&mut transform(r#"{"check_claims": false}"#), unchecked).is_ok());

    let (kind, message) = refusal(r#"{"verify": true, "max_pixels": 1000}"#, upload("big.png", png.clone()));
    assert_eq!(kind, "too-large");
    assert!(message.contains("max_pixels is 1000"), "{message}");

    let mut jpeg = fixture("rocket.jpg");
    jpeg.truncate(40);
    assert_eq!(refusal("{}", upload("cut.jpg", jpeg)).0, "truncated");
}

#[test]
fn bad_config_is_refused_at_init() {
    assert!(init::<ImageSerialize>(r#"{"thumbnail_px": 2}"#).err().unwrap().contains("thumbnail_px"));
    assert!(init::<ImageSerialize>(r#"{"verfy": true}"#).err().unwrap().contains("verfy"));
}
