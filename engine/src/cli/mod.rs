//! The `sluice` command line.

mod avro;
mod project;
mod run;
mod test;
mod transform;
mod validate;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "sluice", version, about = "A stream processor whose transforms are WebAssembly components")]
struct Cli {
    /// Log filter, e.g. `info`, `sluice=debug` (overrides RUST_LOG).
    #[arg(long, global = true, env = "SLUICE_LOG")]
    log: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run pipelines until their inputs end or the process is stopped
    /// (SIGINT/SIGTERM: in-flight batches are drained first).
    Run(run::RunArgs),
    /// Serve the API, dashboard and metrics until stopped, running the
    /// pipelines of the files named and those deployed through the API
    /// (kept in the data directory across restarts).
    Serve(run::RunArgs),
    /// Check pipeline files: syntax, keys, types, and that every stage's
    /// module loads and accepts its config.
    Validate(validate::ValidateArgs),
    /// Run the `[[tests]]` of pipeline files: inputs through the transform
    /// chain, checked against expected outputs and dead letters. Without
    /// files, inside a transform project: build it (when changed) and run
    /// its pipeline.toml's tests.
    Test(test::TestArgs),
    /// Run one transform over records and print what it makes of each.
    Transform(transform::TransformArgs),
    /// Read the lake's Avro files: print records, or extract files.
    Avro(avro::AvroArgs),
    /// Create a transform project in ./NAME (Rust, Python or JavaScript)
    /// whose golden tests pass out of the box.
    New(project::NewArgs),
    /// Build the transform project in the current directory into
    /// build/NAME.wasm, with its config declaration embedded.
    Build(project::BuildArgs),
}

pub fn main() -> ExitCode {
    crate::memory::tune_allocator();
    let cli = Cli::parse();
    init_tracing(cli.log.as_deref());
    // Only `run` needs the async runtime. The others call wasm directly on
    // this thread, and WASI's blocking host calls must not run inside it.
    let result = match cli.command {
        Command::Run(args) => serve(args, run::Mode::Run),
        Command::Serve(args) => serve(args, run::Mode::Serve),
        Command::Validate(args) => validate::validate(args),
        Command::Test(args) => test::test(args),
        Command::Transform(args) => transform::transform(args),
        Command::Avro(args) => avro::avro(args),
        Command::New(args) => project::new(args),
        Command::Build(args) => project::build(args),
    };
    match result {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn serve(args: run::RunArgs, mode: run::Mode) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| anyhow::anyhow!("cannot start the async runtime: {e}"))?;
    let result = runtime.block_on(run::run(args, mode));
    // Threads still blocked somewhere (a consumer that did not hear the
    // stop) must not keep a finished engine, or one that failed to start,
    // from exiting.
    runtime.shutdown_timeout(std::time::Duration::from_secs(2));
    result
}

fn init_tracing(filter: Option<&str>) {
    use tracing_subscriber::EnvFilter;
    let filter = match filter {
        Some(filter) => EnvFilter::new(filter),
        None => EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
    };
    use std::io::IsTerminal as _;
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false)
        .init();
}

/// Pipeline files named on the command line.
#[derive(clap::Args)]
struct PipelineFiles {
    /// Pipeline definition files (TOML).
    #[arg(required = true, value_name = "PIPELINE.toml")]
    files: Vec<PathBuf>,
}
