//! Keeps `docs/CONFIGURATION.md` true: every key of every config struct
//! must appear in the table of its section there.

use serde::de::DeserializeOwned;

use super::struct_fields;

const REFERENCE: &str = include_str!("../../../docs/CONFIGURATION.md");

/// The keys listed (as "| `key` |" rows) in the section whose heading
/// starts with `heading`, up to the next heading of the same or a higher level.
fn listed(heading: &str) -> Vec<&'static str> {
    let start = REFERENCE
        .find(&format!("\n{heading}"))
        .unwrap_or_else(|| panic!("docs/CONFIGURATION.md has no section `{heading}`"));
    let level = heading.chars().take_while(|c| *c == '#').count();
    let body = &REFERENCE[start + 1 + heading.len()..];
    let end = body
        .match_indices("\n#")
        .find(|(at, _)| body[at + 1..].chars().take_while(|c| *c == '#').count() <= level)
        .map_or(body.len(), |(at, _)| at);
    body[..end].lines().filter_map(|line| line.strip_prefix("| `")?.split('`').next()).collect()
}

fn check<T: DeserializeOwned>(heading: &str) {
    let listed = listed(heading);
    let missing: Vec<&str> =
        struct_fields::<T>().iter().copied().filter(|key| !listed.contains(key)).collect();
    assert!(missing.is_empty(), "docs/CONFIGURATION.md, section `{heading}`, does not list {missing:?}");
}

#[test]
fn every_config_key_is_in_the_reference() {
    use crate::{kafka, lookup, pipeline, sinks, sources};
    check::<super::pipeline::PipelineKeys>("## The pipeline table");
    check::<super::BatchConfig>("## `[batch]`");
    check::<sources::file::FileSourceConfig>("## `[source]` `type = \"file\"`");
    check::<sources::kafka::KafkaSourceConfig>("## `[source]` `type = \"kafka\"`");
    check::<kafka::Security>("## `[source.security]`");
    check::<sources::lake::LakeSourceConfig>("## `[source]` `type = \"lake\"`");
    check::<super::StageConfig>("## `[[stage]]`");
    check::<pipeline::quarantine::QuarantineConfig>("## `[stage.quarantine]`");
    check::<sinks::file::FileSinkConfig>("## `[sink]` `type = \"file\"`");
    check::<sinks::kafka::KafkaSinkConfig>("## `[sink]` `type = \"kafka\"`");
    check::<sinks::hdfs::HdfsSinkConfig>("## `[sink]` `type = \"hdfs\"`");
    check::<sinks::opensearch::OpenSearchSinkConfig>("## `[sink]` `type = \"opensearch\"`");
    check::<sinks::opensearch::TlsConfig>("### `[sink.tls]`");
    check::<sinks::opensearch::IndexTemplateConfig>("### `[sink.template]`");
    check::<lookup::LookupConfig>("## `[lookup.NAME]`");
    check::<pipeline::test_case::TestCase>("## `[[tests]]`");
    check::<pipeline::test_case::ExpectedOutput>("### `[[tests.outputs]]`");
    check::<pipeline::test_case::ExpectedDeadLetter>("### `[[tests.dead_letters]]`");
}

#[test]
fn the_check_notices_a_missing_key() {
    let listed = listed("## `[batch]`");
    assert_eq!(listed, ["max_records", "max_bytes", "linger_ms"]);
    #[derive(serde::Deserialize)]
    #[allow(dead_code)]
    struct WithExtra {
        max_records: usize,
        not_documented: usize,
    }
    let result = std::panic::catch_unwind(|| check::<WithExtra>("## `[batch]`"));
    assert!(result.is_err(), "an undocumented key fails the check");
}
