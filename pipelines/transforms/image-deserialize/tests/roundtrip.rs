//! image-serialize then image-deserialize gives back every fixture image
//! byte-exact, with its name and type; damaged records are refused.

use std::path::PathBuf;

use image_deserialize::ImageDeserialize;
use image_serialize::ImageSerialize;
use sluice_guest::testing::{TestRecord, init, run_one};

fn fixture(name: &str) -> Vec<u8> {
    let path =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../../shared/fixtures/images").join(name);
    std::fs::read(&path).unwrap()
}

fn serialized(name: &str) -> Vec<u8> {
    let mut serialize = init::<ImageSerialize>("{}").unwrap();
    let input = TestRecord::new(fixture(name)).with_key(name).with_header("filename", name);
    run_one(&mut serialize, input).unwrap().remove(0).value
}

#[test]
fn every_fixture_comes_back_byte_exact() {
    let mut deserialize = init::<ImageDeserialize>("{}").unwrap();
    for (name, mime) in
        [("rocket.jpg", "image/jpeg"), ("coffee.png", "image/png"), ("chelsea.png", "image/png")]
    {
        let out = run_one(&mut deserialize, TestRecord::new(serialized(name))).unwrap();
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].value, fixture(name), "{name} byte-exact");
        assert_eq!(out[0].key.as_deref(), Some(name.as_bytes()));
        assert_eq!(out[0].header("filename"), Some(name.as_bytes()));
        assert_eq!(out[0].header("content-type"), Some(mime.as_bytes()));
    }
}

#[test]
fn damaged_records_are_refused_naming_the_field() {
    let mut deserialize = init::<ImageDeserialize>("{}").unwrap();
    let good = serialized("coffee.png");

    // Flip one byte inside the image data: the hash no longer matches.
    let mut flipped = good.clone();
    let at = flipped.len() - 100;
    flipped[at] ^= 0xff;
    let error = run_one(&mut deserialize, TestRecord::new(flipped)).unwrap_err();
    assert_eq!(error.kind(), "corrupt");
    assert!(error.message().starts_with("field `sha256` says"), "{}", error.message());

    let error = run_one(&mut deserialize, TestRecord::new(good[..good.len() / 2].to_vec())).unwrap_err();
    assert_eq!(error.kind(), "invalid-record");
    assert!(error.message().contains("field `data`"), "{}", error.message());

    let error = run_one(&mut deserialize, TestRecord::new(b"{\"json\": true}".to_vec())).unwrap_err();
    assert_eq!(error.kind(), "invalid-record");
}
