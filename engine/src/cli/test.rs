//! `sluice test`: run the `[[tests]]` of pipeline files and print each
//! case's result, with a diff or the unmet conditions when it fails.

use std::process::ExitCode;

use crate::config;
use crate::pipeline::test_case::run_case;
use crate::wasm::WasmHost;

#[derive(clap::Args)]
pub struct TestArgs {
    #[command(flatten)]
    files: super::PipelineFiles,
    /// Run only the cases whose name contains this text.
    #[arg(long)]
    filter: Option<String>,
}

pub fn test(args: TestArgs) -> anyhow::Result<ExitCode> {
    let pipelines = match config::load_files(&args.files.files) {
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
