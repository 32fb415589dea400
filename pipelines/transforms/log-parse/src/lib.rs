//! `log-parse`: a sluice transform that turns one log line per record into
//! one Elastic Common Schema JSON document.
//!
//! How a record flows through the crate:
//!
//! - [`LogParse::process`] hands the record value to [`parse_line`], which
//!   writes the document straight into the SDK's output buffer.
//! - [`parse_event`] checks what every format shares (length, empty line,
//!   UTF-8, line terminator) and dispatches on [`Format`] to [`apache`] or
//!   [`json_input`]; each returns an [`Event`], the one shape all formats
//!   parse into (borrowed from the line where possible).
//! - [`json_out`] writes an event, or with `on_parse_failure = "tag"` a
//!   failure document, as JSON. [`time`] parses and converts timestamps,
//!   with the calendar arithmetic in [`civil`].
//! - [`config`] validates the stage config; [`failure`] lists the error kinds.
//!
//! The parse is a plain Rust API ([`parse_line`], [`parse_event`]) so
//! benchmarks and other tools run the same code natively.

pub mod apache;
mod chunk16;
pub mod civil;
pub mod config;
pub mod event;
pub mod failure;
pub mod json_input;
pub mod json_out;
pub mod time;

use sluice_guest::{Config, Error, Output, Record, Transform};

pub use config::{Format, OnParseFailure, ParseConfig};
pub use event::{Escaping, Event};
pub use sluice_guest::Sink;

/// Parses one line and appends its JSON document to `out`.
///
/// On failure nothing is written and the error is returned, unless the
/// config says `on_parse_failure = "tag"`: then the failure document is
/// written and the result is `Ok`.
pub fn parse_line(line: &[u8], config: &ParseConfig, out: &mut impl Sink) -> Result<(), Error> {
    match parse_event(line, config) {
        Ok(event) => {
            json_out::write_event(&event, out);
            Ok(())
        }
        Err(error) => match config.on_parse_failure {
            OnParseFailure::Error => Err(error),
            OnParseFailure::Tag => {
                json_out::write_failure(line, config.max_line_bytes, &error, out);
                Ok(())
            }
        },
    }
}

/// Parses one line into an [`Event`] without writing anything.
///
/// A trailing `\n`, `\r\n` or `\r` is ignored: line-splitting sources differ
/// in whether they keep it, and Windows servers write CRLF.
pub fn parse_event<'a>(line: &'a [u8], config: &ParseConfig) -> Result<Event<'a>, Error> {
    // Checked before anything else so a huge record costs no UTF-8 scan.
    if line.len() > config.max_line_bytes {
        return Err(failure::too_long(line.len(), config.max_line_bytes));
    }
    let line = strip_line_terminator(line);
    if line.is_empty() {
        return Err(failure::empty());
    }
    let line = utf8(line)?;
    match config.format {
        Format::ApacheCombined => apache::parse(line, apache::Layout::Combined),
        Format::ApacheCommon => apache::parse(line, apache::Layout::Common),
        Format::Json => json_input::parse(line),
    }
}

/// The line as text. Log lines are nearly always ASCII, which a 16-byte
/// check proves faster than the general UTF-8 validation (whose fast path
/// reads a machine word at a time: 4 bytes on wasm32).
fn utf8(line: &[u8]) -> Result<&str, Error> {
    if chunk16::is_ascii(line) {
        // SAFETY: ASCII is valid UTF-8.
        return Ok(unsafe { std::str::from_utf8_unchecked(line) });
    }
    std::str::from_utf8(line).map_err(|e| failure::invalid_utf8(e.valid_up_to()))
}

fn strip_line_terminator(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// The transform the component exports.
pub struct LogParse {
    config: ParseConfig,
}

impl Transform for LogParse {
    fn init(config: &Config) -> Result<Self, String> {
        Ok(LogParse { config: ParseConfig::from_config(config)? })
    }

    fn process(&mut self, record: &Record<'_>, out: &mut Output) -> Result<(), Error> {
        // `push_with` always adds a record; when the parse fails it is empty
        // and the SDK drops it, because outputs of a record that returns an
        // error are rolled back. Parsing inside the closure lets the
        // document be written straight into the batch buffer.
        let mut result = Ok(());
        out.push_with(|value| result = parse_line(record.value(), &self.config, value));
        result
    }
}

sluice_guest::export_transform!(LogParse);

sluice_guest::declare_config!(
    r#"{
  "format": {"type": "string", "default": "apache_combined",
    "description": "The log format: apache_combined, nginx (the same layout), apache_common, or json (the API server JSON lines)."},
  "max_line_bytes": {"type": "integer", "default": 65536,
    "description": "Longer lines fail with kind too-long before any parsing."},
  "on_parse_failure": {"type": "string", "default": "error",
    "description": "error dead-letters a line that does not parse; tag emits a _parse_failure document instead."}
}"#
);
