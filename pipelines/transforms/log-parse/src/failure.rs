//! The error kinds this transform refuses a record with.
//!
//! They are [`sluice_guest::Error`]s, so the engine counts and dead-letters
//! them by `kind` without knowing this transform; with
//! `on_parse_failure = "tag"` the same kind and message go into the emitted
//! document instead.

use sluice_guest::Error;

/// The record is longer than `max_line_bytes`.
pub const TOO_LONG: &str = "too-long";
/// The record is empty, or only a line terminator.
pub const EMPTY: &str = "empty";
/// The record is not UTF-8; same kind and message as the SDK's
/// `Record::value_str`, so every transform reports it alike.
pub const INVALID_UTF8: &str = "invalid-utf8";
/// The line ends before the format's last field: a cut or partly written line.
pub const TRUNCATED: &str = "truncated";
/// The line does not match the format; the message names the field and the
/// byte offset (counted from 0).
pub const PARSE_ERROR: &str = "parse-error";

pub(crate) fn too_long(len: usize, max: usize) -> Error {
    Error::new(TOO_LONG, format!("line is {len} bytes, over max_line_bytes = {max}"))
}

pub(crate) fn empty() -> Error {
    Error::new(EMPTY, "empty line")
}

pub(crate) fn invalid_utf8(valid_up_to: usize) -> Error {
    Error::new(INVALID_UTF8, format!("value is not valid UTF-8 at byte {valid_up_to}"))
}

pub(crate) fn truncated(message: String) -> Error {
    Error::new(TRUNCATED, message)
}

pub(crate) fn parse_error(message: String) -> Error {
    Error::new(PARSE_ERROR, message)
}

/// Shows the byte found where something else was expected.
pub(crate) fn describe_byte(byte: u8) -> String {
    match byte {
        b' ' => "a space".to_string(),
        b'\'' => "\"'\"".to_string(),
        0x21..=0x7e => format!("'{}'", byte as char),
        _ => format!("byte 0x{byte:02x}"),
    }
}
