//! `sluice validate` points at the file, line, column and key of every
//! mistake, and says what was expected.

use sluice_tests::{guest, sluice};

use super::{SLUICE, toml_path, write_pipeline};

/// Runs `sluice validate` on `toml` and returns its error lines (file name
/// replaced by `P`), asserting it failed.
fn errors(toml: &str) -> Vec<String> {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("in.txt"), "x\n").unwrap();
    let path = write_pipeline(dir.path(), toml);
    let output = sluice(SLUICE, &["validate", path.to_str().unwrap()], None);
    assert_eq!(output.status.code(), Some(2), "validate must fail: {output:?}");
    let stderr = String::from_utf8(output.stderr).unwrap();
    let prefix = path.display().to_string();
    stderr.lines().filter(|l| l.starts_with(&prefix)).map(|l| l.replacen(&prefix, "P", 1)).collect()
}

fn pipeline_with_stage(stage: &str) -> String {
    format!(
        "name = \"p\"\n[source]\ntype = \"file\"\npath = \"in.txt\"\n[[stage]]\nname = \"s\"\n{stage}\n[sink]\ntype = \"file\"\npath = \"out\"\n"
    )
}

#[test]
fn syntax_error() {
    let errors = errors("name = \"p\"\n[source\ntype = \"file\"\n");
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(errors[0].starts_with("P:2:8: invalid TOML: "), "{errors:?}");
}

#[test]
fn unknown_keys_are_all_reported_with_suggestions() {
    let toml = format!(
        "name = \"p\"\n[source]\ntype = \"file\"\npath = \"in.txt\"\nfolow = true\n[batch]\nmax_recods = 10\n[[stage]]\nname = \"s\"\nmodule = {}\ntimeout = 5\n[sink]\ntype = \"fiel\"\npath = \"out\"\n",
        toml_path(&guest("passthrough"))
    );
    assert_eq!(
        errors(&toml),
        [
            "P:5:1: key `source.folow`: unknown key; did you mean `follow`?",
            "P:7:1: key `batch.max_recods`: unknown key; did you mean `max_records`?",
            "P:11:1: key `stage[0].timeout`: unknown key; did you mean `timeout_ms`?",
            "P:13:8: key `sink.type`: unknown type `fiel`; did you mean `file`?",
        ]
    );
}

#[test]
fn wrong_types_name_what_was_expected() {
    let toml =
        pipeline_with_stage(&format!("module = {}\ntimeout_ms = \"fast\"", toml_path(&guest("passthrough"))));
    let errors = errors(&toml);
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(
        errors[0]
            .starts_with("P:8:14: key `stage[0].timeout_ms`: invalid type: string \"fast\", expected u64"),
        "{errors:?}"
    );
}

#[test]
fn missing_required_keys() {
    let errors = errors("name = \"p\"\n[source]\ntype = \"file\"\n[sink]\npath = \"x\"\n");
    assert_eq!(errors.len(), 2, "{errors:?}");
    assert!(errors[0].starts_with("P:2:1: key `source`: missing field `path`"), "{errors:?}");
    assert_eq!(
        errors[1],
        "P:4:1: key `sink`: missing key `type` (one of: file, hdfs, kafka, opensearch, blackhole)"
    );
}

#[test]
fn missing_module_file() {
    let errors = errors(&pipeline_with_stage("module = \"nope.wasm\""));
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(errors[0].starts_with("P:7:10: key `stage[0].module`: cannot read "), "{errors:?}");
    assert!(errors[0].contains("nope.wasm"), "{errors:?}");
}

#[test]
fn core_module_is_not_a_component() {
    let dir = tempfile::tempdir().unwrap();
    let core = dir.path().join("core.wasm");
    std::fs::write(&core, b"\0asm\x01\0\0\0").unwrap();
    let errors = errors(&pipeline_with_stage(&format!("module = {}", toml_path(&core))));
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(
        errors[0]
            .starts_with("P:7:10: key `stage[0].module`: this is a core WebAssembly module, not a component"),
        "{errors:?}"
    );
}

#[test]
fn component_of_another_world() {
    let errors = errors(&pipeline_with_stage(&format!("module = {}", toml_path(&guest("not-a-transform")))));
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(errors[0].contains("does not implement the sluice:transform/transform world: missing exports `init: func(config: string) -> result<_, string>`, `process: func(input: batch) -> batch-output`"), "{errors:?}");
}

#[test]
fn config_rejected_by_init_points_at_the_config_table() {
    let toml = pipeline_with_stage(&format!(
        "module = {}\nconfig = {{ reject = true }}",
        toml_path(&guest("hostile"))
    ));
    assert_eq!(
        errors(&toml),
        [
            "P:8:10: key `stage[0].config`: init rejected the stage config: reject = true: this config is refused on purpose"
        ]
    );
}

#[test]
fn semantic_checks() {
    let toml = format!(
        "name = \"bad name!\"\n[source]\ntype = \"file\"\npath = \"in.txt\"\n[[stage]]\nname = \"s\"\nmodule = {m}\ncapabilities = [\"network\"]\n[[stage]]\nname = \"s\"\nmodule = {m}\nmax_memory_mb = 0\nparallelism = 0\n[sink]\ntype = \"file\"\npath = \"out\"\n",
        m = toml_path(&guest("passthrough"))
    );
    assert_eq!(
        errors(&toml),
        [
            "P:1:8: key `name`: expected 1-64 characters of a-z, A-Z, 0-9, `-` and `_`",
            "P:8:16: key `stage[0].capabilities`: unknown capability `network`; expected one of: clock, random, hash, lookup:NAME",
            "P:9:1: key `stage[1].name`: another stage is already named `s`",
            "P:13:15: key `stage[1].parallelism`: expected 1 to 64 worker threads",
            "P:12:17: key `stage[1].max_memory_mb`: expected 1 to 4096 (a wasm32 memory is at most 4 GiB)",
        ]
    );
}

#[test]
fn several_pipelines_per_file() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("in.txt"), "x\n").unwrap();
    let toml = "[[pipeline]]\nname = \"a\"\nsource = { type = \"file\", path = \"in.txt\" }\nsink = { type = \"file\", path = \"a.out\" }\n\n[[pipeline]]\nname = \"b\"\nsource = { type = \"file\", path = \"in.txt\" }\nsink = { type = \"file\", path = \"b.out\" }\n";
    let path = write_pipeline(dir.path(), toml);
    let output = sluice(SLUICE, &["validate", path.to_str().unwrap()], None);
    assert!(output.status.success(), "{output:?}");
    let stdout = String::from_utf8(output.stdout).unwrap();
    assert!(stdout.contains("pipeline `a` is valid") && stdout.contains("pipeline `b` is valid"), "{stdout}");
}

#[test]
fn lake_sink_mistakes_are_reported_at_their_keys() {
    let toml = "name = \"p\"\n[source]\ntype = \"file\"\npath = \"in.txt\"\n\
                [sink]\ntype = \"hdfs\"\nschema = \"missing.avsc\"\npath = \"topics/{day}\"\n\
                codec = \"deflate\"\ncodec_level = 4\nmax_records = 0\nurl = \"s3://bucket/x\"\n";
    let errors = self::errors(toml);
    assert_eq!(errors.len(), 5, "{errors:?}");
    assert!(errors[0].starts_with("P:7:10: key `sink.schema`: cannot read schema "), "{errors:?}");
    assert!(
        errors[1].starts_with("P:8:8: key `sink.path`: `{day}` is not a known placeholder"),
        "{errors:?}"
    );
    assert!(
        errors[2].starts_with("P:10:15: key `sink.codec_level`: deflate level 4 is not available"),
        "{errors:?}"
    );
    assert_eq!(errors[3], "P:11:15: key `sink.max_records`: must be at least 1");
    assert!(errors[4].starts_with("P:12:7: key `sink.url`: expected hdfs://"), "{errors:?}");

    // A valid lake sink in the wrong place: behind a file source, or as
    // the dead-letter destination.
    let schema = r#"schema = '{"type":"record","name":"R","fields":[]}'"#;
    let toml = format!(
        "name = \"p\"\n[source]\ntype = \"file\"\npath = \"in.txt\"\n[sink]\ntype = \"hdfs\"\n{schema}\n\
         [dead_letter]\ntype = \"hdfs\"\n{schema}\n"
    );
    let placement = self::errors(&toml);
    assert_eq!(placement.len(), 2, "{placement:?}");
    assert!(
        placement[0].contains("key `source.type`: an `hdfs` sink needs a `kafka` source"),
        "{placement:?}"
    );
    assert!(
        placement[1].contains("key `dead_letter.type`: dead letters cannot go to an `hdfs` sink"),
        "{placement:?}"
    );
}
