//! Two engines in one consumer group split a topic's partitions; when one
//! stops, the other takes its partitions over from the committed offsets
//! and nothing is lost.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, Instant};

use sluice_tests::broker::Tansu;
use sluice_tests::engine::Engine;
use sluice_tests::guest;

use super::{SLUICE, ids_in, post_ids, toml_path, wait_for_ids, write_pipeline};

fn member(dir: &Path) -> std::path::PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    write_pipeline(
        dir,
        &format!(
            "name = \"member\"\n[source]\ntype = \"kafka\"\ntopics = [\"in\"]\ngroup_id = \"shared\"\ncommit_interval_ms = 200\n\
             [source.options]\n\"session.timeout.ms\" = \"6000\"\n\"heartbeat.interval.ms\" = \"500\"\n\
             [batch]\nlinger_ms = 5\n[[stage]]\nname = \"copy\"\nmodule = {}\n\
             [sink]\ntype = \"file\"\npath = \"out.ndjson\"\n",
            toml_path(&guest("passthrough"))
        ),
    )
}

fn ingest(engine: &Engine, range: std::ops::Range<u64>) {
    let http = reqwest::blocking::Client::new();
    let ids: Vec<u64> = range.collect();
    for chunk in ids.chunks(100) {
        assert_eq!(post_ids(&http, &engine.url, chunk).status(), 200);
    }
}

#[test]
fn a_second_engine_takes_over_the_partitions_of_one_that_stops() {
    let broker = Tansu::start();
    broker.create_topic("in", 4);
    let dir = tempfile::tempdir().unwrap();
    let (a_dir, b_dir) = (dir.path().join("a"), dir.path().join("b"));
    let (a_pipeline, b_pipeline) = (member(&a_dir), member(&b_dir));
    let args = ["--brokers", broker.bootstrap.as_str()];
    let a = Engine::start(SLUICE, &[&a_pipeline], &args, &a_dir.join("engine.log"));
    let b = Engine::start(SLUICE, &[&b_pipeline], &args, &b_dir.join("engine.log"));
    // Both members are in the group before records flow.
    let deadline = Instant::now() + Duration::from_secs(60);
    while ["a", "b"].iter().any(|m| {
        !std::fs::read_to_string(dir.path().join(m).join("engine.log"))
            .unwrap_or_default()
            .contains("partitions assigned")
    }) {
        assert!(Instant::now() < deadline, "both engines should get partitions");
        std::thread::sleep(Duration::from_millis(100));
    }

    ingest(&a, 0..1000);
    let (a_out, b_out) = (a_dir.join("out.ndjson"), b_dir.join("out.ndjson"));
    let first: BTreeSet<u64> = (0..1000).collect();
    let seen = wait_for_ids(&[&a_out, &b_out], &first, 90);
    assert!(first.is_subset(&seen), "{} of the first 1000 missing", first.difference(&seen).count());
    let (from_a, from_b) = (ids_in(&a_out).len(), ids_in(&b_out).len());
    assert!(from_a > 0 && from_b > 0, "the partitions were split: a wrote {from_a}, b wrote {from_b}");

    assert!(b.signal("TERM").success());
    ingest(&a, 1000..2000);
    let all: BTreeSet<u64> = (0..2000).collect();
    let seen = wait_for_ids(&[&a_out, &b_out], &all, 90);
    let missing: Vec<u64> = all.difference(&seen).copied().collect();
    assert!(
        missing.is_empty(),
        "{} records lost after the rebalance, e.g. {:?}",
        missing.len(),
        &missing[..missing.len().min(10)]
    );
    let after: Vec<u64> = ids_in(&a_out);
    assert!(after.iter().any(|&id| id >= 1000), "a took over");
    drop(a);
}
