//! Integration tests, one binary with a module per area (faster to link).
//! They run the transform through `sluice_guest::testing`, the same batch
//! code the component uses.

mod bad_input;
mod config;
mod fixtures;
mod golden;
mod support;
