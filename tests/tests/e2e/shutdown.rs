//! `sluice run` keeps following its input until SIGTERM, then drains what
//! is in flight and exits cleanly.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use sluice_tests::guest;

use super::{SLUICE, toml_path, write_pipeline};

fn wait_for_lines(path: &std::path::Path, count: usize) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let lines: Vec<String> = text.lines().map(str::to_string).collect();
        if lines.len() >= count || Instant::now() > deadline {
            return lines;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn sigterm_drains_in_flight_records_and_exits_zero() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.log");
    std::fs::write(&input, "").unwrap();
    let pipeline = write_pipeline(
        dir.path(),
        &format!(
            "name = \"tail\"\n[source]\ntype = \"file\"\npath = \"in.log\"\nfollow = true\n[batch]\nlinger_ms = 20\n[[stage]]\nname = \"copy\"\nmodule = {}\n[sink]\ntype = \"file\"\npath = \"out.log\"\n",
            toml_path(&guest("passthrough"))
        ),
    );
    let mut child = Command::new(SLUICE)
        .args(["run", "--listen", "127.0.0.1:0", pipeline.to_str().unwrap()])
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .env("SLUICE_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();

    let mut file = std::fs::OpenOptions::new().append(true).open(&input).unwrap();
    for i in 0..100 {
        writeln!(file, "line {i}").unwrap();
    }
    file.flush().unwrap();
    let out = dir.path().join("out.log");
    assert_eq!(wait_for_lines(&out, 100).len(), 100, "the followed lines arrive");

    // A line that is still being written (no newline yet) is not a record.
    write!(file, "partial").unwrap();
    file.flush().unwrap();
    std::thread::sleep(Duration::from_millis(500));
    writeln!(file, " line").unwrap();
    file.flush().unwrap();
    assert_eq!(wait_for_lines(&out, 101).last().map(String::as_str), Some("partial line"));

    let status = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(20);
    let exit = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "sluice did not stop after SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    };
    let output = child.wait_with_output().unwrap();
    assert!(exit.success(), "exit {exit:?}: {}", String::from_utf8_lossy(&output.stderr));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("pipeline tail: 101 read, 101 written, 0 dead-lettered"), "{stdout}");
    let lines = wait_for_lines(&out, 101);
    let expected: Vec<String> =
        (0..100).map(|i| format!("line {i}")).chain(["partial line".to_string()]).collect();
    assert_eq!(lines, expected);
}
