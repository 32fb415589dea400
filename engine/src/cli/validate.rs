//! `sluice validate`: every problem in the given pipeline files, with
//! positions, including modules that do not load or reject their config.

use std::path::Path;
use std::process::ExitCode;

use crate::config::{self, Diagnostic, Diagnostics, PipelineConfig};
use crate::pipeline::stage::{Stage, config_diagnostics};
use crate::wasm::WasmHost;

#[derive(clap::Args)]
pub struct ValidateArgs {
    #[command(flatten)]
    files: super::PipelineFiles,
}

pub fn validate(args: ValidateArgs) -> anyhow::Result<ExitCode> {
    let result = config::load_files(&args.files.files).and_then(|pipelines| {
        check_modules(&pipelines, &WasmHost::new())?;
        Ok(pipelines)
    });
    match result {
        Ok(pipelines) => {
            for pipeline in &pipelines {
                println!(
                    "{}: pipeline `{}` is valid ({} stages)",
                    pipeline.file.display(),
                    pipeline.name,
                    pipeline.stages.len()
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(diagnostics) => {
            eprintln!("{diagnostics}");
            eprintln!("{} error{}", diagnostics.0.len(), if diagnostics.0.len() == 1 { "" } else { "s" });
            Ok(ExitCode::from(2))
        }
    }
}

/// Loads every stage's module and runs its `init` with the stage config,
/// reporting failures at the `module` key (cannot load) or the `config`
/// table (rejected).
pub fn check_modules(pipelines: &[PipelineConfig], host: &WasmHost) -> Result<(), Diagnostics> {
    let mut diagnostics = Vec::new();
    for pipeline in pipelines {
        for (index, stage) in pipeline.stages.iter().enumerate() {
            let Err(error) = Stage::build(stage, pipeline, host) else {
                continue;
            };
            if let crate::wasm::LoadError::ConfigMismatch { problems } = &error.source {
                // A missing key is reported at the config table.
                let text = std::fs::read_to_string(&pipeline.file).unwrap_or_default();
                let table = config::line_column(&text, stage.config.span().start);
                diagnostics.extend(config_diagnostics(pipeline, stage, &error.module, problems, table));
                continue;
            }
            let rejected = matches!(error.source, crate::wasm::LoadError::InitRejected(_));
            let (span, field) =
                if rejected { (stage.config.span(), "config") } else { (stage.module.span(), "module") };
            let key = config::join(&pipeline.key, &format!("stage[{index}].{field}"));
            diagnostics.push(diagnostic_at(&pipeline.file, span.start, key, format!("{}", error.source)));
        }
    }
    if diagnostics.is_empty() { Ok(()) } else { Err(Diagnostics(diagnostics)) }
}

fn diagnostic_at(file: &Path, offset: usize, key: String, message: String) -> Diagnostic {
    let text = std::fs::read_to_string(file).unwrap_or_default();
    let (line, column) = config::line_column(&text, offset);
    Diagnostic { file: file.to_path_buf(), line, column, key: Some(key), message }
}
