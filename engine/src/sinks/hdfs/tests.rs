//! The lake sink against a local directory: rotation boundaries, acks held
//! until the rename, recovery after a crash, revocation, refusals.

use std::path::Path;
use std::sync::Arc;

use apache_avro::types::Value as Avro;
use tokio::sync::mpsc;

use super::*;
use crate::ack::{AckReceiver, AckStatus};
use crate::pipeline::dead_letter::DeadLetterBatch;
use crate::pipeline::stats::PipelineStats;
use crate::record::{Origin, Record};

const SCHEMA: &str = r#"{"type":"record","name":"N","fields":[{"name":"n","type":"long"},{"name":"pad","type":"string","default":""}]}"#;

struct Harness {
    sink: HdfsSink,
    dead: mpsc::Receiver<DeadLetterBatch>,
    stats: Arc<PipelineStats>,
}

fn harness(lake: &Path, options: &str) -> Harness {
    let text = format!(
        "name = \"t\"\n[source]\ntype = \"kafka\"\ntopics = [\"t\"]\n[sink]\ntype = \"hdfs\"\nurl = \"file://{}\"\nschema = '{SCHEMA}'\n{options}\n",
        lake.display()
    );
    let config =
        crate::config::parse_str(&lake.join("p.toml"), &text).unwrap_or_else(|e| panic!("{e}")).remove(0);
    let SinkConfig::Hdfs(sink_config) = &config.sink else { panic!() };
    let (tx, dead) = mpsc::channel(16);
    let stats = Arc::new(PipelineStats::default());
    let ctx = SinkContext { pipeline: "t".into(), dead_letters: Some(tx), stats: stats.clone() };
    Harness { sink: HdfsSink::new(sink_config, &config, ctx).unwrap(), dead, stats }
}

use crate::sinks::SinkConfig;

fn record(partition: i32, offset: i64, value: &str) -> Record {
    let mut record = Record::new(value.to_string(), Origin { source: "t".into(), partition, offset });
    record.timestamp = Some(1_709_287_200_000); // 2024-03-01
    record
}

fn numbered(partition: i32, offsets: std::ops::Range<i64>) -> Vec<Record> {
    offsets.map(|n| record(partition, n, &format!(r#"{{"n":{n}}}"#))).collect()
}

async fn write(sink: &mut HdfsSink, records: Vec<Record>) -> AckReceiver {
    let (ack, receiver) = Ack::new();
    sink.write(Batch::new(records, vec![ack])).await.unwrap();
    receiver
}

/// Committed files under the lake (name, the `n` of each record).
fn files(lake: &Path) -> Vec<(String, Vec<i64>)> {
    let mut out = Vec::new();
    for entry in walk(lake) {
        let name = entry.file_name().unwrap().to_string_lossy().to_string();
        if !layout::is_data_file(&name) {
            continue;
        }
        let bytes = std::fs::read(&entry).unwrap();
        let numbers = apache_avro::Reader::new(&bytes[..])
            .unwrap()
            .map(|v| match v.unwrap() {
                Avro::Record(fields) => match fields[0].1 {
                    Avro::Long(n) => n,
                    _ => panic!(),
                },
                _ => panic!(),
            })
            .collect();
        out.push((name, numbers));
    }
    out.sort();
    out
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() { out.extend(walk(&path)) } else { out.push(path) }
    }
    out
}

#[tokio::test]
async fn max_records_cuts_files_at_exactly_that_many_and_acks_wait_for_the_rename() {
    let lake = tempfile::tempdir().unwrap();
    let Harness { mut sink, stats, .. } = harness(lake.path(), "max_records = 3");
    let mut first = write(&mut sink, numbered(0, 0..4)).await;
    // Records 0-2 are committed but record 3 (same batch) is in an open file.
    assert_eq!(first.try_status(), None);
    let mut second = write(&mut sink, numbered(0, 4..10)).await;
    assert_eq!(first.try_status(), Some(AckStatus::Delivered));
    assert_eq!(second.try_status(), None, "record 9 is not committed yet");
    let committed = files(lake.path());
    assert_eq!(
        committed,
        [
            (layout::committed_name("t", 0, 0, 2), vec![0, 1, 2]),
            (layout::committed_name("t", 0, 3, 5), vec![3, 4, 5]),
            (layout::committed_name("t", 0, 6, 8), vec![6, 7, 8]),
        ]
    );
    let hidden = layout::temporary_name("t", 0, 9, &sink.writer_id);
    assert!(lake.path().join("topics/t/date=2024-03-01").join(hidden).exists());
    Box::new(sink).close().await.unwrap();
    assert_eq!(second.try_status(), Some(AckStatus::Delivered));
    assert_eq!(files(lake.path()).last().unwrap().1, vec![9]);
    assert_eq!(stats.written.load(std::sync::atomic::Ordering::Relaxed), 10);
}

#[tokio::test]
async fn max_bytes_closes_a_file_before_it_would_pass_the_limit() {
    let lake = tempfile::tempdir().unwrap();
    let max = 2_000u64;
    let Harness { mut sink, .. } = harness(lake.path(), &format!("codec = \"null\"\nmax_bytes = {max}"));
    let pad = "x".repeat(180);
    let records = (0..40).map(|n| record(0, n, &format!(r#"{{"n":{n},"pad":"{pad}"}}"#))).collect();
    write(&mut sink, records).await;
    Box::new(sink).close().await.unwrap();
    let mut sizes = Vec::new();
    for path in walk(lake.path()).into_iter().filter(|p| p.extension().is_some_and(|e| e == "avro")) {
        sizes.push(std::fs::metadata(&path).unwrap().len());
    }
    let record_bytes = 1 + 2 + 180; // long, string length, text
    assert!(sizes.len() > 2, "{sizes:?}");
    for size in &sizes {
        assert!(*size <= max, "a file of {size} bytes passes max_bytes {max}: {sizes:?}");
    }
    // Every file but the last was full: one more record would have passed.
    let mut sorted = sizes.clone();
    sorted.sort();
    for size in &sorted[1..] {
        assert!(size + record_bytes + 40 > max, "file of {size} bytes closed early: {sizes:?}");
    }
    let all: Vec<i64> = files(lake.path()).into_iter().flat_map(|(_, n)| n).collect();
    assert_eq!(all, (0..40).collect::<Vec<_>>());
}

#[tokio::test]
async fn a_record_larger_than_max_bytes_gets_a_file_of_its_own() {
    let lake = tempfile::tempdir().unwrap();
    let Harness { mut sink, .. } = harness(lake.path(), "max_bytes = 100");
    let big = "y".repeat(500);
    let records = vec![
        record(0, 0, r#"{"n":0}"#),
        record(0, 1, &format!(r#"{{"n":1,"pad":"{big}"}}"#)),
        record(0, 2, r#"{"n":2}"#),
    ];
    write(&mut sink, records).await;
    Box::new(sink).close().await.unwrap();
    let numbers: Vec<Vec<i64>> = files(lake.path()).into_iter().map(|(_, n)| n).collect();
    assert_eq!(numbers, [vec![0], vec![1], vec![2]]);
}

#[tokio::test]
async fn max_age_commits_an_idle_file_on_tick() {
    let lake = tempfile::tempdir().unwrap();
    let Harness { mut sink, .. } = harness(lake.path(), "max_age_ms = 50");
    assert_eq!(sink.tick_interval(), Some(Duration::from_millis(20)));
    let mut ack = write(&mut sink, numbered(0, 0..2)).await;
    sink.tick().await.unwrap();
    assert_eq!(ack.try_status(), None, "too young to rotate");
    tokio::time::sleep(Duration::from_millis(60)).await;
    sink.tick().await.unwrap();
    assert_eq!(ack.try_status(), Some(AckStatus::Delivered));
    assert_eq!(files(lake.path()).len(), 1);
}

#[tokio::test]
async fn after_a_crash_recovery_skips_what_the_lake_has_and_deletes_leftovers() {
    let lake = tempfile::tempdir().unwrap();
    {
        let Harness { mut sink, .. } = harness(lake.path(), "max_records = 4");
        write(&mut sink, numbered(0, 0..6)).await;
        write(&mut sink, numbered(1, 0..2)).await;
        // Dropped without close: a crash. 0-3 of partition 0 are committed;
        // 4-5 and partition 1's records are in hidden files.
    }
    let leftovers: Vec<_> =
        walk(lake.path()).into_iter().filter(|p| p.to_string_lossy().ends_with(".tmp")).collect();
    assert_eq!(leftovers.len(), 2);

    let Harness { mut sink, stats, .. } = harness(lake.path(), "max_records = 4");
    // The source replays from its last committed offset, which may be
    // older than the lake's (the crash hit before the offset commit).
    let mut replay = write(&mut sink, numbered(0, 2..9)).await;
    write(&mut sink, numbered(1, 0..2)).await;
    Box::new(sink).close().await.unwrap();
    assert_eq!(replay.try_status(), Some(AckStatus::Delivered));
    assert!(walk(lake.path()).iter().all(|p| !p.to_string_lossy().ends_with(".tmp")), "leftovers deleted");
    let mut by_partition: HashMap<String, Vec<i64>> = HashMap::new();
    for (name, numbers) in files(lake.path()) {
        by_partition.entry(name[..3].to_string()).or_default().extend(numbers);
    }
    assert_eq!(by_partition["t+0"], (0..9).collect::<Vec<_>>());
    assert_eq!(by_partition["t+1"], vec![0, 1]);
    assert_eq!(stats.sink.duplicates_skipped.load(std::sync::atomic::Ordering::Relaxed), 2);
}

#[tokio::test]
async fn a_revoked_partition_is_committed_at_once_and_not_held_again_until_reassigned() {
    let lake = tempfile::tempdir().unwrap();
    let Harness { mut sink, .. } = harness(lake.path(), "");
    let mut before = write(&mut sink, numbered(0, 0..3)).await;
    let mut other = write(&mut sink, numbered(1, 0..3)).await;
    let key: PartitionKey = ("t".into(), 0);
    sink.partitions_changed(PartitionEvent::Revoked(vec![key])).await.unwrap();
    assert_eq!(before.try_status(), Some(AckStatus::Delivered));
    assert_eq!(other.try_status(), None, "partition 1 was not revoked");
    // Records of the revoked partition still in flight: committed per batch.
    let mut late = write(&mut sink, numbered(0, 3..5)).await;
    assert_eq!(late.try_status(), Some(AckStatus::Delivered));
    sink.partitions_changed(PartitionEvent::Assigned { keys: vec![key], generation: None }).await.unwrap();
    let mut held = write(&mut sink, numbered(0, 5..6)).await;
    assert_eq!(held.try_status(), None, "owned again: held in an open file");
    Box::new(sink).close().await.unwrap();
    assert_eq!(held.try_status(), Some(AckStatus::Delivered));
    assert_eq!(other.try_status(), Some(AckStatus::Delivered));
}

#[tokio::test]
async fn records_that_do_not_fit_go_to_the_dead_letters_with_the_field() {
    let lake = tempfile::tempdir().unwrap();
    let Harness { mut sink, mut dead, .. } = harness(lake.path(), "");
    let records = vec![
        record(0, 0, r#"{"n":0}"#),
        record(0, 1, r#"{"n":"one"}"#),
        record(0, 2, "not json"),
        record(0, 3, r#"{"n":3,"extra":1}"#),
        record(0, 4, r#"{"n":4}"#),
    ];
    let mut ack = write(&mut sink, records).await;
    let letters = dead.try_recv().unwrap();
    let reasons: Vec<(String, String)> =
        letters.letters.iter().map(|l| (l.kind.to_string(), l.message.clone())).collect();
    assert_eq!(reasons[0], ("schema-mismatch".into(), "field `n`: expected long, found \"one\"".into()));
    assert_eq!(reasons[1].0, "invalid-json");
    assert_eq!(reasons[2], ("schema-mismatch".into(), "field `extra`: is not a field of record N".into()));
    Ack::all_done(letters.acks); // the dead-letter destination wrote them
    Box::new(sink).close().await.unwrap();
    assert_eq!(ack.try_status(), Some(AckStatus::Delivered));
    assert_eq!(files(lake.path())[0].1, vec![0, 4]);
}

#[tokio::test]
async fn avro_datums_pass_through_and_bad_ones_are_refused() {
    let lake = tempfile::tempdir().unwrap();
    let Harness { mut sink, mut dead, .. } = harness(lake.path(), "input = \"avro\"");
    let schema = apache_avro::Schema::parse_str(SCHEMA).unwrap();
    let datum = |n: i64| {
        apache_avro::to_avro_datum(
            &schema,
            Avro::Record(vec![("n".into(), Avro::Long(n)), ("pad".into(), Avro::String("p".into()))]),
        )
        .unwrap()
    };
    let mut good = record(0, 0, "");
    good.value = datum(7).into();
    let mut long = record(0, 1, "");
    long.value = [datum(8), vec![0]].concat().into();
    let mut cut = record(0, 2, "");
    cut.value = datum(9)[..2].to_vec().into();
    write(&mut sink, vec![good, long, cut]).await;
    let letters = dead.try_recv().unwrap();
    let messages: Vec<&str> = letters.letters.iter().map(|l| l.message.as_str()).collect();
    assert_eq!(letters.letters.len(), 2, "{messages:?}");
    assert!(letters.letters[0].message.contains("1 bytes left over"), "{}", letters.letters[0].message);
    Ack::all_done(letters.acks); // the dead-letter destination wrote them
    Box::new(sink).close().await.unwrap();
    assert_eq!(files(lake.path())[0].1, vec![7]);
}

#[tokio::test]
async fn records_of_another_day_go_to_another_directory() {
    let lake = tempfile::tempdir().unwrap();
    let Harness { mut sink, .. } = harness(lake.path(), "");
    let mut next_day = record(0, 1, r#"{"n":1}"#);
    next_day.timestamp = Some(1_709_287_200_000 + 86_400_000);
    write(&mut sink, vec![record(0, 0, r#"{"n":0}"#), next_day]).await;
    Box::new(sink).close().await.unwrap();
    assert!(lake.path().join("topics/t/date=2024-03-01").join(layout::committed_name("t", 0, 0, 0)).exists());
    assert!(lake.path().join("topics/t/date=2024-03-02").join(layout::committed_name("t", 0, 1, 1)).exists());
}

/// Two outputs per input, as a transform that fans out emits them: every
/// output keeps its input's offset.
fn fanned_out(partition: i32, offsets: std::ops::Range<i64>) -> Vec<Record> {
    offsets
        .flat_map(|n| {
            [
                record(partition, n, &format!(r#"{{"n":{}}}"#, 2 * n)),
                record(partition, n, &format!(r#"{{"n":{}}}"#, 2 * n + 1)),
            ]
        })
        .collect()
}

#[tokio::test]
async fn every_output_of_a_fanning_out_transform_is_written_and_files_never_split_an_input() {
    let lake = tempfile::tempdir().unwrap();
    let Harness { mut sink, stats, .. } = harness(lake.path(), "max_records = 3");
    write(&mut sink, fanned_out(0, 0..3)).await;
    write(&mut sink, fanned_out(0, 3..5)).await;
    Box::new(sink).close().await.unwrap();
    let committed = files(lake.path());
    let all: Vec<i64> = committed.iter().flat_map(|(_, n)| n.clone()).collect();
    assert_eq!(all, (0..10).collect::<Vec<_>>(), "{committed:?}");
    for (_, numbers) in &committed {
        assert!(numbers.len() % 2 == 0, "a file ends between two outputs of one input: {committed:?}");
    }
    assert_eq!(stats.sink.duplicates_skipped.load(std::sync::atomic::Ordering::Relaxed), 0);
}

#[tokio::test]
async fn fanned_out_records_replayed_after_a_crash_are_written_once() {
    let lake = tempfile::tempdir().unwrap();
    {
        let Harness { mut sink, .. } = harness(lake.path(), "max_records = 4");
        // Inputs 0-1 (four outputs) are committed; 2-3 wait in a hidden file.
        write(&mut sink, fanned_out(0, 0..2)).await;
        write(&mut sink, fanned_out(0, 2..4)).await;
    }
    let Harness { mut sink, .. } = harness(lake.path(), "max_records = 4");
    // The source replays from input 1, before what the lake has.
    let mut replay = write(&mut sink, fanned_out(0, 1..6)).await;
    // And a redelivery of what the open file holds.
    write(&mut sink, fanned_out(0, 4..6)).await;
    Box::new(sink).close().await.unwrap();
    assert_eq!(replay.try_status(), Some(AckStatus::Delivered));
    let all: Vec<i64> = files(lake.path()).into_iter().flat_map(|(_, n)| n).collect();
    assert_eq!(all, (0..12).collect::<Vec<_>>());
}

#[tokio::test]
async fn another_writers_hidden_file_is_left_until_it_is_stale() {
    let lake = tempfile::tempdir().unwrap();
    let dir = lake.path().join("topics/t/date=2024-03-01");
    std::fs::create_dir_all(&dir).unwrap();
    let fresh = dir.join(layout::temporary_name("t", 0, 100, "0ther0live0"));
    let stale = dir.join(layout::temporary_name("t", 0, 50, "0ther0dead0"));
    let old = dir.join(".t+0+00000000000000000040.avro.tmp");
    for path in [&fresh, &stale, &old] {
        std::fs::write(path, b"partial").unwrap();
    }
    let long_ago = std::time::SystemTime::now() - Duration::from_secs(3600);
    for path in [&stale, &old] {
        std::fs::File::options().write(true).open(path).unwrap().set_modified(long_ago).unwrap();
    }
    let Harness { mut sink, .. } = harness(lake.path(), "");
    write(&mut sink, numbered(0, 0..2)).await;
    assert!(fresh.exists(), "a live writer may still rename it");
    assert!(!stale.exists() && !old.exists(), "stale leftovers are deleted");
    Box::new(sink).close().await.unwrap();
}

/// Two engines' sinks on one lake, as when the group moves partition 0
/// from a live engine that has not noticed yet (the old owner) to another.
fn owners(lake: &Path) -> (HdfsSink, HdfsSink) {
    let Harness { sink: mut old, .. } = harness(lake, "max_records = 1000");
    let Harness { sink: mut new, .. } = harness(lake, "max_records = 1000");
    old.writer_id = "01d".into();
    new.writer_id = "0e3".into();
    (old, new)
}

fn assigned(generation: i32) -> PartitionEvent {
    PartitionEvent::Assigned { keys: vec![("t".into(), 0)], generation: Some(generation) }
}

#[tokio::test]
async fn an_owner_that_lost_its_partition_cannot_rename_into_the_lake() {
    let lake = tempfile::tempdir().unwrap();
    let (mut old, mut new) = owners(lake.path());
    old.partitions_changed(assigned(1)).await.unwrap();
    let mut old_ack = write(&mut old, numbered(0, 0..5)).await;
    // The group moves the partition; the new owner reads from the last
    // committed offset (none) and deletes the old owner's hidden file.
    new.partitions_changed(assigned(2)).await.unwrap();
    let mut new_ack = write(&mut new, numbered(0, 0..8)).await;
    // The old owner keeps going and rotates: its file is not committed.
    let mut later_ack = write(&mut old, numbered(0, 5..7)).await;
    Box::new(old).close().await.unwrap();
    Box::new(new).close().await.unwrap();
    assert_eq!(files(lake.path()), vec![(layout::committed_name("t", 0, 0, 7), (0..8).collect())]);
    assert_eq!(new_ack.try_status(), Some(AckStatus::Delivered));
    assert_eq!(old_ack.try_status(), Some(AckStatus::Failed), "fenced: read again by the new owner");
    assert_eq!(later_ack.try_status(), Some(AckStatus::Failed));
    let hidden: Vec<_> =
        walk(lake.path()).into_iter().filter(|p| p.to_string_lossy().ends_with(".tmp")).collect();
    assert!(hidden.is_empty(), "{hidden:?}");
}

#[tokio::test]
async fn a_file_the_old_owner_renamed_first_is_kept_and_skipped_by_the_new_owner() {
    let lake = tempfile::tempdir().unwrap();
    let (mut old, mut new) = owners(lake.path());
    old.partitions_changed(assigned(1)).await.unwrap();
    let mut old_ack = write(&mut old, numbered(0, 0..5)).await;
    // A revocation the old owner saw: it commits before letting go.
    old.partitions_changed(PartitionEvent::Revoked(vec![("t".into(), 0)])).await.unwrap();
    new.partitions_changed(assigned(2)).await.unwrap();
    // The consumer commit may have missed the last offsets: redelivered.
    let mut new_ack = write(&mut new, numbered(0, 3..9)).await;
    Box::new(new).close().await.unwrap();
    assert_eq!(old_ack.try_status(), Some(AckStatus::Delivered));
    assert_eq!(new_ack.try_status(), Some(AckStatus::Delivered));
    assert_eq!(
        files(lake.path()),
        vec![
            (layout::committed_name("t", 0, 0, 4), (0..5).collect()),
            (layout::committed_name("t", 0, 5, 8), (5..9).collect())
        ]
    );
}
