//! The image transforms as components in real pipelines: the fixture images
//! and broken ones go through image-serialize (files → Avro image records),
//! the broken ones are dead-lettered with their reasons, and
//! image-deserialize turns the records back into byte-exact images.

use std::collections::BTreeMap;

use base64::Engine as _;
use sluice_tests::{fixture, guest, read_ndjson};

use super::{run_pipeline_file, toml_path, write_pipeline};

/// The smallest valid GIF (1×1), to rename as a PNG.
const GIF: &[u8] = b"GIF89a\x01\x00\x01\x00\x80\x00\x00\xff\xff\xff\x00\x00\x00!\xf9\x04\x01\x00\x00\x00\x00,\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;";

fn value(record: &serde_json::Value) -> Vec<u8> {
    base64::engine::general_purpose::STANDARD.decode(record["value_base64"].as_str().unwrap()).unwrap()
}

#[test]
fn images_go_to_avro_records_and_back_byte_exact_and_broken_ones_are_dead_lettered() {
    let dir = tempfile::tempdir().unwrap();
    let inbox = dir.path().join("inbox");
    std::fs::create_dir(&inbox).unwrap();
    let mut originals = BTreeMap::new();
    for name in ["rocket.jpg", "coffee.png", "chelsea.png"] {
        let bytes = std::fs::read(fixture(&format!("images/{name}"))).unwrap();
        std::fs::write(inbox.join(name), &bytes).unwrap();
        originals.insert(name.to_string(), bytes);
    }
    let png = &originals["coffee.png"];
    std::fs::write(inbox.join("cut.png"), &png[..png.len() / 2]).unwrap();
    std::fs::write(inbox.join("noise.jpg"), b"random bytes, not a picture").unwrap();
    std::fs::write(inbox.join("zero.png"), b"").unwrap();
    std::fs::write(inbox.join("gif-renamed.png"), GIF).unwrap();

    let serialize = write_pipeline(
        dir.path(),
        &format!(
            "name = \"images-in\"\n[source]\ntype = \"file\"\npath = \"inbox\"\nread = \"files\"\n\
             [[stage]]\nname = \"serialize\"\nmodule = {}\nmax_memory_mb = 256\n[stage.config]\nverify = true\nthumbnail_px = 64\n\
             [sink]\ntype = \"file\"\npath = \"records.ndjson\"\ncodec = \"record\"\n\
             [dead_letter]\ntype = \"file\"\npath = \"dead.ndjson\"\n",
            toml_path(&guest("image-serialize"))
        ),
    );
    let report = run_pipeline_file(&serialize).unwrap();
    assert_eq!((report.read, report.written, report.dead_lettered), (7, 3, 4));

    let mut reasons: Vec<(String, String)> = read_ndjson(&dir.path().join("dead.ndjson"))
        .iter()
        .map(|d| {
            (
                d["record"]["key"].as_str().unwrap().to_string(),
                d["error"]["kind"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    reasons.sort();
    assert_eq!(reasons[0], ("cut.png".to_string(), reasons[0].1.clone()));
    assert!(["truncated", "corrupt"].contains(&reasons[0].1.as_str()), "{reasons:?}");
    assert_eq!(
        reasons[1..],
        [
            ("gif-renamed.png".to_string(), "format-mismatch".to_string()),
            ("noise.jpg".to_string(), "unsupported-format".to_string()),
            ("zero.png".to_string(), "empty".to_string()),
        ]
    );

    // Each Avro record becomes a file again, and image-deserialize reads it.
    let lake = dir.path().join("lake");
    std::fs::create_dir(&lake).unwrap();
    for record in read_ndjson(&dir.path().join("records.ndjson")) {
        let name = record["key"].as_str().unwrap();
        std::fs::write(lake.join(format!("{name}.avro-datum")), value(&record)).unwrap();
    }
    let back = dir.path().join("back");
    std::fs::create_dir(&back).unwrap();
    let deserialize = write_pipeline(
        &back,
        &format!(
            "name = \"images-out\"\n[source]\ntype = \"file\"\npath = \"../lake\"\nread = \"files\"\n\
             [[stage]]\nname = \"deserialize\"\nmodule = {}\n\
             [sink]\ntype = \"file\"\npath = \"images.ndjson\"\ncodec = \"record\"\n",
            toml_path(&guest("image-deserialize"))
        ),
    );
    let report = run_pipeline_file(&deserialize).unwrap();
    assert_eq!((report.read, report.written, report.dead_lettered), (3, 3, 0));
    let restored = read_ndjson(&back.join("images.ndjson"));
    for record in &restored {
        let name = record["key"].as_str().unwrap();
        assert_eq!(record["headers"]["filename"], name);
        assert_eq!(value(record), originals[name], "{name} comes back byte-exact");
    }
    assert_eq!(restored.len(), originals.len());
}
