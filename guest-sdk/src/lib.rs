//! The sluice guest SDK: write a transform as one Rust function per record,
//! build it with `cargo build --release --target wasm32-wasip2`, and get a
//! WebAssembly component the sluice engine can load.
//!
//! ```ignore
//! use sluice_guest::{Config, Error, Output, Record, Transform};
//!
//! struct Upper;
//!
//! impl Transform for Upper {
//!     fn init(_config: &Config) -> Result<Self, String> {
//!         Ok(Upper)
//!     }
//!
//!     fn process(&mut self, record: &Record<'_>, out: &mut Output) -> Result<(), Error> {
//!         let text = record.value_str()?;
//!         out.push(text.to_uppercase());
//!         Ok(())
//!     }
//! }
//!
//! sluice_guest::export_transform!(Upper);
//! ```
//!
//! The host calls the component once per *batch*, not once per record (see
//! `wit/transform.wit`); [`Record`] borrows from that batch and [`Output`]
//! appends to one output buffer, so a transform that does not allocate itself
//! costs a handful of allocations per batch. [`testing`] runs a transform
//! natively, through the same batch code, in plain `cargo test`.

mod config;
mod error;
pub mod hash;
mod layout;
pub mod lookup;
mod output;
mod record;
mod runner;
pub mod testing;

pub use config::Config;
pub use error::Error;
pub use output::{Emitted, Output, Sink, ValueWriter};
pub use record::Record;

/// Bindings generated from `wit/transform.wit`. Public so that
/// [`export_transform!`] can name them from the transform's crate.
#[doc(hidden)]
#[allow(clippy::too_many_arguments)] // Generated code.
pub mod bindings {
    wit_bindgen::generate!({
        path: "wit",
        world: "transform",
        pub_export_macro: true,
        export_macro_name: "__export_transform_world",
        default_bindings_module: "::sluice_guest::bindings",
    });
    pub use self::sluice::transform::types::*;
}

/// A transform: built once per instance from the stage config, then called
/// for each record in order.
pub trait Transform: Sized + 'static {
    /// Builds the transform from the stage's `config` table. An error here
    /// fails the pipeline deploy with this message, so say what is wrong and
    /// what was expected.
    fn init(config: &Config) -> Result<Self, String>;

    /// Turns one record into zero or more records pushed to `out`, or an
    /// error that sends the record to the dead-letter destination. Outputs
    /// pushed before an error is returned are discarded.
    fn process(&mut self, record: &Record<'_>, out: &mut Output) -> Result<(), Error>;
}

/// Exports a [`Transform`] implementation as the component's `transform` world.
#[macro_export]
macro_rules! export_transform {
    ($transform:ty) => {
        // Only the component exports the world: natively (tests, benchmarks)
        // several transforms may be linked into one binary, and their export
        // symbols would clash.
        #[cfg(target_arch = "wasm32")]
        const _: () = {
            struct __SluiceTransformExport;

            impl $crate::bindings::Guest for __SluiceTransformExport {
                fn init(config: ::std::string::String) -> ::std::result::Result<(), ::std::string::String> {
                    $crate::__private::init::<$transform>(&config)
                }

                fn process(input: $crate::bindings::Batch) -> $crate::bindings::BatchOutput {
                    $crate::__private::process::<$transform>(input)
                }
            }

            $crate::bindings::__export_transform_world!(
                __SluiceTransformExport with_types_in $crate::bindings
            );
        };
    };
}

/// Declares the config keys the transform takes, as JSON: each key with
/// `type` (`string`, `integer`, `float`, `boolean`, `array`, `table` or
/// `any`), and optionally `default`, `required` and `description`.
///
/// ```ignore
/// sluice_guest::declare_config!(r#"{
///     "format": {"type": "string", "default": "apache_combined", "description": "The log format."}
/// }"#);
/// ```
///
/// The JSON goes into the component as its `sluice-config` custom section.
/// The engine reads it without running the transform: `sluice validate`,
/// the API and the dashboard check each stage's `[stage.config]` against it
/// (unknown keys with a did-you-mean, wrong types, missing required keys),
/// the dashboard documents it, and defaults are filled in before `init`.
#[macro_export]
macro_rules! declare_config {
    ($json:expr) => {
        #[cfg(target_arch = "wasm32")]
        const _: () = {
            const JSON: &str = $json;
            #[used]
            #[unsafe(link_section = "sluice-config")]
            static DECLARATION: [u8; JSON.len()] = $crate::__private::bytes(JSON);
        };
    };
}

#[doc(hidden)]
pub mod __private {
    pub use crate::runner::{init, process};

    /// A string's bytes as an array, at compile time (for a link section).
    pub const fn bytes<const N: usize>(text: &str) -> [u8; N] {
        let source = text.as_bytes();
        let mut out = [0u8; N];
        let mut i = 0;
        while i < N {
            out[i] = source[i];
            i += 1;
        }
        out
    }
}
