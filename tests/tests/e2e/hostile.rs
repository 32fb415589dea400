//! Hostile modules: the host survives each misbehaviour, the record that
//! caused it is dead-lettered with the right kind, and the records around
//! it are processed normally and in order.

use sluice_tests::{guest, read_ndjson};

use super::{run_pipeline_file, toml_path, write_pipeline};

struct Outcome {
    written: Vec<String>,
    dead: Vec<serde_json::Value>,
}

fn run_lines(lines: &[&str], stage_extra: &str) -> Outcome {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("in.txt"), lines.join("\n")).unwrap();
    let pipeline = write_pipeline(
        dir.path(),
        &format!(
            r#"
name = "hostile"
[source]
type = "file"
path = "in.txt"
[batch]
max_records = 4
linger_ms = 5
[[stage]]
name = "evil"
module = {module}
timeout_ms = 200
max_memory_mb = 16
{stage_extra}
[sink]
type = "file"
path = "out.ndjson"
[dead_letter]
type = "file"
path = "dead.ndjson"
"#,
            module = toml_path(&guest("hostile"))
        ),
    );
    let report = run_pipeline_file(&pipeline).expect("the pipeline runs to the end");
    let written = std::fs::read_to_string(dir.path().join("out.ndjson")).unwrap_or_default();
    let written: Vec<String> = written.lines().map(str::to_string).collect();
    let dead = read_ndjson(&dir.path().join("dead.ndjson"));
    assert_eq!(report.read as usize, lines.len());
    assert_eq!(
        report.written as usize + report.dead_lettered as usize + report.dropped as usize,
        lines.len()
    );
    Outcome { written, dead }
}

fn assert_isolated(bad: &str, kind: &str, message_part: &str) {
    let outcome = run_lines(&["a", "b", bad, "c", "d", "e"], "");
    assert_eq!(outcome.written, ["a", "b", "c", "d", "e"], "the other records pass, in order");
    assert_eq!(outcome.dead.len(), 1, "{:?}", outcome.dead);
    let letter = &outcome.dead[0];
    assert_eq!(letter["error"]["kind"], kind, "{letter}");
    let message = letter["error"]["message"].as_str().unwrap();
    assert!(message.contains(message_part), "message {message:?} should mention {message_part:?}");
    assert_eq!(letter["record"]["value"], bad);
    assert_eq!(letter["stage"], "evil");
    assert_eq!(letter["pipeline"], "hostile");
    assert_eq!(letter["origin"]["offset"], 3, "line number of the bad record");
    assert_eq!(letter["module"]["hash"].as_str().unwrap().len(), 64);
}

#[test]
fn infinite_loop_times_out() {
    assert_isolated("loop", "timeout", "timeout_ms = 200");
}

#[test]
fn memory_bomb_hits_the_cap() {
    assert_isolated("oom", "out-of-memory", "max_memory_mb = 16");
}

#[test]
fn deep_recursion_overflows_the_stack() {
    assert_isolated("recurse", "stack-overflow", "stack overflow");
}

#[test]
fn unreachable_traps() {
    assert_isolated("trap", "trap", "unreachable");
}

#[test]
fn out_of_bounds_access_traps() {
    assert_isolated("smash", "trap", "out of bounds");
}

#[test]
fn guest_panic_is_reported_with_its_message() {
    assert_isolated("panic", "panic", "hostile guest panicked on purpose");
}

#[test]
fn a_rejected_record_keeps_the_transforms_kind() {
    assert_isolated("reject", "refused", "the value was `reject`");
}

#[test]
fn output_over_max_output_bytes_is_refused() {
    // "amplify" emits 100x its input; the cap admits 10x.
    let outcome = run_lines(&["a", "amplify", "b"], "max_output_bytes = 70");
    assert_eq!(outcome.written, ["a", "b"]);
    assert_eq!(outcome.dead[0]["error"]["kind"], "invalid-output");
    assert!(outcome.dead[0]["error"]["message"].as_str().unwrap().contains("over max_output_bytes = 70"));
}

#[test]
fn outputs_that_keep_their_inputs_value_count_toward_max_output_bytes() {
    // "echo" forwards itself 100 times, which writes nothing to the guest's
    // buffer: each copy still carries its bytes to the sink.
    let outcome = run_lines(&["a", "echo", "b"], "max_output_bytes = 70");
    assert_eq!(outcome.written, ["a", "b"]);
    assert_eq!(outcome.dead[0]["error"]["kind"], "invalid-output");
    let message = outcome.dead[0]["error"]["message"].as_str().unwrap();
    assert!(message.contains("total 400 bytes, over max_output_bytes = 70"), "{message}");
}

#[test]
fn amplified_output_within_limits_passes() {
    let outcome = run_lines(&["amplify"], "");
    assert_eq!(outcome.written, ["x".repeat(700)]);
}

#[test]
fn a_guest_that_sleeps_is_cut_off_at_its_budget() {
    // Sleeping is waiting in a host call, where no epoch check fires.
    let started = std::time::Instant::now();
    assert_isolated("sleep", "timeout", "while blocked in a host call");
    // The batch call and the lone retry each sleep 30 s unless cut off.
    assert!(started.elapsed() < std::time::Duration::from_secs(20), "{:?}", started.elapsed());
}

#[test]
fn a_guest_polling_what_never_becomes_ready_is_cut_off_at_its_budget() {
    let started = std::time::Instant::now();
    assert_isolated("poll", "timeout", "timeout_ms = 200");
    assert!(started.elapsed() < std::time::Duration::from_secs(20), "{:?}", started.elapsed());
}

#[test]
fn poison_records_scattered_among_good_ones_never_quarantine_the_stage() {
    // 1,000 records that crash the module among 100,000 good ones.
    let lines: Vec<String> =
        (0..101_000).map(|i| if i % 101 == 50 { "trap".to_string() } else { format!("ok-{i}") }).collect();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("in.txt"), lines.join("\n")).unwrap();
    let pipeline = write_pipeline(
        dir.path(),
        &format!(
            "name = \"poisoned\"\n[source]\ntype = \"file\"\npath = \"in.txt\"\n[[stage]]\nname = \"evil\"\nmodule = {}\n\
             [sink]\ntype = \"file\"\npath = \"out.ndjson\"\n[dead_letter]\ntype = \"file\"\npath = \"dead.ndjson\"\n",
            toml_path(&guest("hostile"))
        ),
    );
    let report = run_pipeline_file(&pipeline).expect("the pipeline runs to the end");
    assert!(!report.stages[0].counters.quarantined, "{report:?}");
    assert_eq!((report.read, report.written, report.dead_lettered), (101_000, 100_000, 1_000));
    let written = std::fs::read_to_string(dir.path().join("out.ndjson")).unwrap();
    let good: Vec<&str> = lines.iter().map(String::as_str).filter(|l| *l != "trap").collect();
    assert_eq!(written.lines().collect::<Vec<_>>(), good, "every good record, in order");
    let dead = read_ndjson(&dir.path().join("dead.ndjson"));
    assert!(dead.iter().all(|d| d["error"]["kind"] == "trap" && d["record"]["value"] == "trap"));
}
#[test]
fn on_error_drop_counts_and_drops() {
    let outcome = run_lines(&["a", "trap", "b"], r#"on_error = "drop""#);
    assert_eq!(outcome.written, ["a", "b"]);
    assert!(outcome.dead.is_empty());
}

#[test]
fn on_error_stop_stops_the_pipeline() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("in.txt"), "a\ntrap\nb\n").unwrap();
    let pipeline = write_pipeline(
        dir.path(),
        &format!(
            "name = \"stopper\"\n[source]\ntype = \"file\"\npath = \"in.txt\"\n[[stage]]\nname = \"evil\"\nmodule = {}\non_error = \"stop\"\n[sink]\ntype = \"file\"\npath = \"out.ndjson\"\n",
            toml_path(&guest("hostile"))
        ),
    );
    let error = run_pipeline_file(&pipeline).expect_err("on_error = stop fails the run");
    let message = format!("{error:#}");
    assert!(message.contains("stage `evil` stopped the pipeline"), "{message}");
    assert!(message.contains("in.txt:2 failed with trap"), "{message}");
}

#[test]
fn init_rejecting_its_config_fails_the_build() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("in.txt"), "a\n").unwrap();
    let pipeline = write_pipeline(
        dir.path(),
        &format!(
            "name = \"p\"\n[source]\ntype = \"file\"\npath = \"in.txt\"\n[[stage]]\nname = \"evil\"\nmodule = {}\n[stage.config]\nreject = true\n[sink]\ntype = \"file\"\npath = \"out.ndjson\"\n",
            toml_path(&guest("hostile"))
        ),
    );
    let error = run_pipeline_file(&pipeline).expect_err("build fails");
    assert!(format!("{error:#}").contains("init rejected the stage config: reject = true"), "{error:#}");
}

#[test]
fn fuel_metering_stops_a_spinning_module() {
    let outcome = run_lines(&["a", "loop", "b"], "max_fuel = 5000000");
    assert_eq!(outcome.written, ["a", "b"]);
    assert_eq!(outcome.dead[0]["error"]["kind"], "fuel-exhausted");
    assert!(outcome.dead[0]["error"]["message"].as_str().unwrap().contains("max_fuel = 5000000"));
}

#[test]
fn the_sandbox_grants_nothing_by_default() {
    let outcome = run_lines(&["clock", "file", "env", "network"], "");
    assert_eq!(outcome.written[0], "0", "the clock is frozen at the epoch");
    assert!(outcome.written[1].starts_with("denied"), "{}", outcome.written[1]);
    assert_eq!(outcome.written[2], "0 variables");
    assert!(outcome.written[3].starts_with("denied"), "{}", outcome.written[3]);
}

#[test]
fn the_hosts_hash_answers_only_a_stage_granted_it_and_agrees_with_the_guests() {
    let denied = run_lines(&["hash"], "");
    assert_eq!(denied.written[0], "guest ba7816bf", "without the grant the guest hashes itself");
    let granted = run_lines(&["hash"], r#"capabilities = ["hash"]"#);
    assert_eq!(granted.written[0], "host ba7816bf", "the same digest, from the host");
}

#[test]
fn a_granted_clock_is_the_real_one() {
    let outcome = run_lines(&["clock"], r#"capabilities = ["clock"]"#);
    let seconds: u64 = outcome.written[0].parse().unwrap();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    assert!(now.abs_diff(seconds) < 600, "{seconds} vs {now}");
}
