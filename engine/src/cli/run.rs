//! `sluice run`: run pipelines until their inputs end or a signal arrives.

use std::process::ExitCode;

use anyhow::Context as _;
use tokio_util::sync::CancellationToken;

use crate::config;
use crate::pipeline::{Pipeline, PipelineReport};
use crate::wasm::WasmHost;

#[derive(clap::Args)]
pub struct RunArgs {
    #[command(flatten)]
    files: super::PipelineFiles,
    /// Print the end-of-run summary as JSON lines instead of text.
    #[arg(long)]
    json_summary: bool,
}

pub async fn run(args: RunArgs) -> anyhow::Result<ExitCode> {
    let configs = match config::load_files(&args.files.files) {
        Ok(configs) => configs,
        Err(diagnostics) => {
            eprintln!("{diagnostics}");
            return Ok(ExitCode::from(2));
        }
    };
    let host = WasmHost::new();
    let mut pipelines = Vec::new();
    for config in configs {
        let sink = config.sink.describe(&config);
        let pipeline = Pipeline::build(config, &host)?;
        tracing::info!(pipeline = %pipeline.name, sink = %sink, "pipeline ready");
        pipelines.push(pipeline);
    }

    let shutdown = CancellationToken::new();
    tokio::spawn(stop_on_signal(shutdown.clone()));
    let runs: Vec<_> = pipelines.into_iter().map(|p| tokio::spawn(p.run(shutdown.clone()))).collect();

    let mut failed = false;
    for run in runs {
        match run.await.context("pipeline task panicked")? {
            Ok(report) => print_report(&report, args.json_summary),
            Err(error) => {
                failed = true;
                eprintln!("error: {error:#}");
            }
        }
    }
    Ok(if failed { ExitCode::FAILURE } else { ExitCode::SUCCESS })
}

async fn stop_on_signal(shutdown: CancellationToken) {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate => {}
    }
    tracing::info!("stopping: draining in-flight batches");
    shutdown.cancel();
}

fn print_report(report: &PipelineReport, json: bool) {
    if json {
        println!("{}", serde_json::to_string(report).unwrap_or_default());
        return;
    }
    println!(
        "pipeline {}: {} read, {} written, {} dead-lettered, {} dropped",
        report.pipeline, report.read, report.written, report.dead_lettered, report.dropped
    );
    for stage in &report.stages {
        println!(
            "  stage {} ({}): {} in, {} out, {} failed, {} calls ({} failed, {} recycles){}, {} ns/record",
            stage.stage,
            stage.module,
            stage.records_in,
            stage.records_out,
            stage.records_failed,
            stage.calls,
            stage.failed_calls,
            stage.recycles,
            if stage.quarantined { ", QUARANTINED" } else { "" },
            stage.nanos_per_record
        );
    }
}
