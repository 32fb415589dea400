//! The pipeline runtime: source → batcher → stages → sink, with dead
//! letters on the side.

pub mod batcher;
pub mod controls;
pub mod dead_letter;
pub mod dead_letter_log;
pub mod handoff;
pub mod partitions;
pub mod quarantine;
mod runtime;
pub mod stage;
mod stage_pool;
pub mod stats;
pub mod test_case;

pub use crate::config::BatchConfig;
pub use runtime::{
    FilesReport, History, Pipeline, PipelineReport, StageReport, StoppedByStage, stopped_on_purpose,
};
