//! The control plane: the module registry, the pipelines the engine runs
//! and every change to them, and the durable state behind both.

pub mod cluster;
mod definition;
pub mod history;
pub mod managed;
pub mod modules;
mod replay;
mod shared;
mod stages;
pub mod store;
pub mod supervisor;
pub mod view;

pub use managed::{Managed, Status};
pub use modules::{ModuleError, ModuleRegistry, ModuleVersion};
pub use replay::ReplayOutcome;
pub use store::StateStore;
pub use supervisor::{ControlError, EngineEnv, Supervisor};
pub use view::{PipelineView, StageView};
