//! sluice: a stream processor whose per-record logic is user-supplied
//! WebAssembly.
//!
//! A record's way through the engine, and the module that owns each step:
//!
//! - [`config`] reads pipeline TOML files and reports every mistake with
//!   file:line:column before anything runs.
//! - [`sources`] read records (files, Kafka, the lake) and attach an
//!   [`ack::Ack`] so they learn when their records are durable.
//! - [`pipeline`] batches records ([`pipeline::batcher`]), runs each batch
//!   through the transform stages ([`pipeline::stage`]) and hands the result
//!   to the sink; failed records go to the dead-letter destination
//!   ([`pipeline::dead_letter`]) with the reason.
//! - [`wasm`] hosts the transform components: validation, the compiled-module
//!   cache, limits (time, memory, fuel) and classifying guest failures.
//! - [`sinks`] write records out (NDJSON files, Kafka, the lake's Avro
//!   files) and finish their acks once the records are durable.
//! - [`avro`] frames, encodes and checks Avro for the lake; [`storage`] is
//!   the one interface over the local filesystem and HDFS.
//! - [`kafka`] holds what Kafka clients share (connection, security, the
//!   embedded broker); [`api`] serves REST ingest and health over HTTP.
//! - [`cli`] is the `sluice` command line.

pub mod ack;
pub mod api;
pub mod avro;
pub mod cli;
pub mod config;
pub mod control;
pub mod identity;
pub mod kafka;
pub mod lookup;
pub mod memory;
pub mod metrics;
pub mod pipeline;
pub mod record;
pub mod sinks;
pub mod sources;
pub mod storage;
pub mod template;
pub mod wasm;
