//! The batch encoding of `wit/transform.wit` (its `batch` record): word
//! positions and sentinels, in one place for the reader and the writer.

/// Words per record in `batch.records`.
pub const RECORD_WORDS: usize = 7;
/// Words per header in `batch.headers`.
pub const HEADER_WORDS: usize = 4;

pub const KEY_OFFSET: usize = 0;
pub const KEY_LEN: usize = 1;
pub const VALUE_OFFSET: usize = 2;
pub const VALUE_LEN: usize = 3;
pub const FIRST_HEADER: usize = 4;
pub const HEADER_COUNT: usize = 5;
pub const INPUT: usize = 6;

/// `key-len` of a record without a key.
pub const NO_KEY: u32 = u32::MAX;
/// Timestamp of a record without one.
pub const NO_TIMESTAMP: i64 = i64::MIN;

/// In an output, `key-len` of a record that keeps its input's key (or has
/// none if its input had none); the key is not copied.
pub const INPUT_KEY: u32 = u32::MAX - 1;
/// In an output, `value-len` of a record whose value is its input's value,
/// unchanged; the value is not copied.
pub const INPUT_VALUE: u32 = u32::MAX - 1;
