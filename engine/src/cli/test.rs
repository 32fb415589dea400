//! `sluice test`: run the `[[tests]]` of pipeline files and print each
//! case's result, with a diff or the unmet conditions when it fails.

use std::path::PathBuf;
use std::process::ExitCode;

use crate::config;
use crate::pipeline::test_case::run_case;
use crate::wasm::WasmHost;

#[derive(clap::Args)]
pub struct TestArgs {
    /// Pipeline files (TOML); none: the transform project here.
    #[arg(value_name = "PIPELINE.toml")]
    files: Vec<PathBuf>,
    /// Run only the cases whose name contains this text.
    #[arg(long)]
    filter: Option<String>,
}

pub fn test(args: TestArgs) -> anyhow::Result<ExitCode> {
    let files = if args.files.is_empty() { project_pipeline()? } else { args.files.clone() };
    let pipelines = match config::load_files(&files) {
        Ok(pipelines) => pipelines,
        Err(diagnostics) => {
            eprintln!("{diagnostics}");
            return Ok(ExitCode::from(2));
        }
    };
    let host = WasmHost::new();
    let (mut run, mut failed) = (0, 0);
    for pipeline in &pipelines {
        let cases: Vec<_> = pipeline
            .tests
            .iter()
            .filter(|case| args.filter.as_ref().is_none_or(|f| case.name.contains(f.as_str())))
            .collect();
        if cases.is_empty() {
            continue;
        }
        println!("{} (pipeline `{}`)", pipeline.file.display(), pipeline.name);
        for case in cases {
            run += 1;
            match run_case(pipeline, case, &host) {
                Ok(outcome) if outcome.passed() => println!("  ok    {}", outcome.name),
                Ok(outcome) => {
                    failed += 1;
                    println!("  FAIL  {}", outcome.name);
                    for failure in &outcome.failures {
                        for (i, line) in failure.lines().enumerate() {
                            println!("        {}{line}", if i == 0 { "" } else { "  " });
                        }
                    }
                }
                Err(error) => {
                    failed += 1;
                    println!("  FAIL  {}\n        {error}", case.name);
                }
            }
        }
    }
    if run == 0 {
        eprintln!(
            "no [[tests]] found{}",
            args.filter.map(|f| format!(" matching {f:?}")).unwrap_or_default()
        );
        return Ok(ExitCode::FAILURE);
    }
    println!("{run} test{}, {} passed, {failed} failed", if run == 1 { "" } else { "s" }, run - failed);
    Ok(if failed == 0 { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

/// Inside a transform project: its `pipeline.toml`, after building the
/// component if any file changed since it was built.
fn project_pipeline() -> anyhow::Result<Vec<PathBuf>> {
    let here = PathBuf::from(".");
    let project = super::project::Project::find(&here)?.ok_or_else(|| {
        anyhow::anyhow!(
            "no pipeline files given and no {} here: name pipeline files, or run this inside a transform project",
            super::project::MANIFEST
        )
    })?;
    if super::project::is_stale(&project) {
        let output = super::project::build_project(&project)?;
        println!("built {}", output.display());
    }
    Ok(vec![project.dir.join("pipeline.toml")])
}
