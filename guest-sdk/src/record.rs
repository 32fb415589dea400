//! A read-only view of one input record, borrowed from the batch buffer.

use crate::Error;
use crate::bindings::Batch;
use crate::layout::*;

/// One input record. Keys, values and headers are slices of the batch the
/// host sent, so reading them copies nothing.
#[derive(Clone, Copy)]
pub struct Record<'a> {
    batch: &'a Batch,
    position: usize,
    words: &'a [u32],
}

impl<'a> Record<'a> {
    /// The record at `position`, if the batch has one there.
    pub(crate) fn new(batch: &'a Batch, position: usize) -> Option<Self> {
        let start = position.checked_mul(RECORD_WORDS)?;
        let words = batch.records.get(start..start + RECORD_WORDS)?;
        Some(Record { batch, position, words })
    }

    #[inline]
    fn slice(&self, offset: u32, len: u32) -> &'a [u8] {
        // The host builds the offsets; a bad one is a host bug, not bad
        // input, and an empty slice is the least surprising answer to it.
        let start = offset as usize;
        self.batch.data.get(start..start + len as usize).unwrap_or(&[])
    }

    /// Position of this record in its batch.
    #[inline]
    pub fn index(&self) -> u32 {
        self.words[INPUT]
    }

    #[inline]
    pub fn key(&self) -> Option<&'a [u8]> {
        let len = self.words[KEY_LEN];
        (len != NO_KEY).then(|| self.slice(self.words[KEY_OFFSET], len))
    }

    #[inline]
    pub fn value(&self) -> &'a [u8] {
        self.slice(self.words[VALUE_OFFSET], self.words[VALUE_LEN])
    }

    /// The value as UTF-8, or an `invalid-utf8` error naming the byte offset.
    pub fn value_str(&self) -> Result<&'a str, Error> {
        std::str::from_utf8(self.value()).map_err(|e| {
            Error::new("invalid-utf8", format!("value is not valid UTF-8 at byte {}", e.valid_up_to()))
        })
    }

    /// Milliseconds since the Unix epoch, when the source provided one.
    #[inline]
    pub fn timestamp(&self) -> Option<i64> {
        self.batch.timestamps.get(self.position).copied().filter(|&t| t != NO_TIMESTAMP)
    }

    /// Whether the record has any headers.
    #[inline]
    pub fn has_headers(&self) -> bool {
        self.words[HEADER_COUNT] != 0
    }

    /// Headers in the order the source delivered them.
    pub fn headers(&self) -> impl Iterator<Item = (&'a str, &'a [u8])> + 'a {
        let start = self.words[FIRST_HEADER] as usize * HEADER_WORDS;
        let end = start + self.words[HEADER_COUNT] as usize * HEADER_WORDS;
        let this = *self;
        self.batch
            .headers
            .get(start..end)
            .unwrap_or(&[])
            .chunks_exact(HEADER_WORDS)
            .map(move |h| (std::str::from_utf8(this.slice(h[0], h[1])).unwrap_or(""), this.slice(h[2], h[3])))
    }

    /// The first header named `name`, if any.
    pub fn header(&self, name: &str) -> Option<&'a [u8]> {
        self.headers().find(|(n, _)| *n == name).map(|(_, v)| v)
    }

    /// The first header named `name` as UTF-8; `None` if absent or not text.
    pub fn header_str(&self, name: &str) -> Option<&'a str> {
        self.header(name).and_then(|v| std::str::from_utf8(v).ok())
    }
}
