//! The web dashboard in real headless Chromium: the browser test in
//! web-ui/tests runs against a `sluice serve` started here. Screenshots go
//! to target/test-artifacts/dashboard/.

use std::process::Command;

use sluice_tests::engine::{Engine, TOKEN};
use sluice_tests::{fixture, guest, root};

use super::SLUICE;

#[test]
fn dashboard_in_a_real_browser() {
    let web_ui = root().join("web-ui");
    assert!(
        web_ui.join("dist/index.html").exists() && web_ui.join("node_modules/playwright-core").exists(),
        "the dashboard is not built: run `make ui` (npm ci and build in web-ui/)"
    );
    let dir = tempfile::tempdir().unwrap();
    let ui_dir = web_ui.join("dist");
    let engine = Engine::serve(
        SLUICE,
        &dir.path().join("data"),
        &[],
        &["--ui-dir", ui_dir.to_str().unwrap()],
        &dir.path().join("log"),
    );
    let screenshots = root().join("target/test-artifacts/dashboard");
    let output = Command::new("node")
        .args(["--test", "--test-reporter=spec", "tests/dashboard.test.mjs"])
        .current_dir(&web_ui)
        .env("SLUICE_URL", &engine.url)
        .env("SLUICE_TOKEN", TOKEN)
        .env("SLUICE_MODULE_PARSE", guest("log_parse"))
        .env("SLUICE_MODULE_COPY", guest("passthrough"))
        .env("SLUICE_MODULE_HOSTILE", guest("hostile"))
        .env("SLUICE_FIXTURE_LOG", fixture("logs/apache_combined_sample.log"))
        .env("SLUICE_WORK_DIR", dir.path())
        .env("SLUICE_SCREENSHOTS", &screenshots)
        .output()
        .expect("cannot run node");
    let report = format!(
        "{}\n{}\nengine log: {}\nscreenshots: {}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr),
        std::fs::read_to_string(dir.path().join("log"))
            .unwrap_or_default()
            .lines()
            .rev()
            .take(30)
            .collect::<Vec<_>>()
            .join("\n"),
        screenshots.display()
    );
    assert!(output.status.success(), "browser test failed:\n{report}");
    eprintln!("{}", String::from_utf8_lossy(&output.stdout));
}
