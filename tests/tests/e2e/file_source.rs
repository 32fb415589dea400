//! The file source's `read = "files"` mode: each file is one record (how
//! images enter), keyed and headed by its name; files over the size limit
//! are dead-lettered without being read.

use base64::Engine as _;
use sluice_tests::{fixture, guest, read_ndjson};

use super::{run_pipeline_file, toml_path, write_pipeline};

#[test]
fn each_file_is_one_record_byte_exact() {
    let dir = tempfile::tempdir().unwrap();
    let images = fixture("images");
    let pipeline = write_pipeline(
        dir.path(),
        &format!(
            "name = \"images\"\n[source]\ntype = \"file\"\npath = {}\nread = \"files\"\nmax_record_bytes = 200000\n[[stage]]\nname = \"copy\"\nmodule = {}\n[sink]\ntype = \"file\"\npath = \"out.ndjson\"\ncodec = \"record\"\n[dead_letter]\ntype = \"file\"\npath = \"dead.ndjson\"\n",
            toml_path(&images.join("*")),
            toml_path(&guest("passthrough"))
        ),
    );
    let report = run_pipeline_file(&pipeline).unwrap();
    let mut names: Vec<String> = std::fs::read_dir(&images)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(report.read as usize, names.len());

    let written = read_ndjson(&dir.path().join("out.ndjson"));
    let dead = read_ndjson(&dir.path().join("dead.ndjson"));
    assert_eq!(written.len() + dead.len(), names.len());
    for record in &written {
        let name = record["key"].as_str().unwrap();
        assert_eq!(record["headers"]["filename"], name);
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(record["value_base64"].as_str().unwrap())
            .unwrap();
        assert_eq!(bytes, std::fs::read(images.join(name)).unwrap(), "{name} arrives byte-exact");
    }
    for letter in &dead {
        assert_eq!(letter["error"]["kind"], "too-large");
        assert_eq!(letter["stage"], "source");
        let name = letter["record"]["key"].as_str().unwrap();
        let size = std::fs::metadata(images.join(name)).unwrap().len();
        assert!(size > 200_000);
        assert_eq!(
            letter["error"]["message"],
            format!("file is {size} bytes, over max_record_bytes = 200000")
        );
    }
    assert!(!written.is_empty() && !dead.is_empty(), "the fixtures hold images on both sides of the limit");
}
