//! A read-only view of one input record, borrowed from the batch buffer.

use crate::Error;
use crate::bindings::{Batch, RecordRef, Span};

/// One input record. Keys, values and headers are slices of the batch the
/// host sent, so reading them copies nothing.
#[derive(Clone, Copy)]
pub struct Record<'a> {
    batch: &'a Batch,
    meta: &'a RecordRef,
}

impl<'a> Record<'a> {
    pub(crate) fn new(batch: &'a Batch, meta: &'a RecordRef) -> Self {
        Record { batch, meta }
    }

    fn slice(&self, span: Span) -> &'a [u8] {
        // The host builds the spans; a bad one is a host bug, not bad input,
        // and an empty slice is the least surprising answer to it.
        let start = span.offset as usize;
        self.batch.data.get(start..start + span.len as usize).unwrap_or(&[])
    }

    /// Position of this record in its batch.
    pub fn index(&self) -> u32 {
        self.meta.input
    }

    pub fn key(&self) -> Option<&'a [u8]> {
        self.meta.key.map(|span| self.slice(span))
    }

    pub fn value(&self) -> &'a [u8] {
        self.slice(self.meta.value)
    }

    /// The value as UTF-8, or an `invalid-utf8` error naming the byte offset.
    pub fn value_str(&self) -> Result<&'a str, Error> {
        std::str::from_utf8(self.value()).map_err(|e| {
            Error::new("invalid-utf8", format!("value is not valid UTF-8 at byte {}", e.valid_up_to()))
        })
    }

    /// Milliseconds since the Unix epoch, when the source provided one.
    pub fn timestamp(&self) -> Option<i64> {
        self.meta.timestamp
    }

    /// Headers in the order the source delivered them.
    pub fn headers(&self) -> impl Iterator<Item = (&'a str, &'a [u8])> + 'a {
        let start = self.meta.headers_start as usize;
        let end = start + self.meta.headers_len as usize;
        let this = *self;
        self.batch
            .headers
            .get(start..end)
            .unwrap_or(&[])
            .iter()
            .map(move |h| (std::str::from_utf8(this.slice(h.name)).unwrap_or(""), this.slice(h.value)))
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
