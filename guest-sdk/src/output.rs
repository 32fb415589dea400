//! The output buffer a transform appends records to.

use std::io;

use crate::Record;
use crate::bindings::Batch;
use crate::layout::*;

/// Where [`Transform::process`](crate::Transform::process) puts its results.
///
/// All output records of a batch share one byte buffer; pushing a record
/// appends its bytes and a small index entry, so it does not allocate once
/// the buffer has grown to the batch's size.
pub struct Output {
    batch: Batch,
    /// The input record being processed: new records inherit its position,
    /// key (by reference, [`INPUT_KEY`]) and timestamp.
    input: u32,
    input_timestamp: Option<i64>,
}

/// Marks the output length before a record is processed, to undo its
/// outputs when it fails.
#[derive(Clone, Copy)]
pub(crate) struct Mark {
    data: usize,
    records: usize,
    timestamps: usize,
    headers: usize,
}

impl Output {
    pub(crate) fn with_capacity(bytes: usize, records: usize) -> Self {
        Output {
            batch: Batch {
                data: Vec::with_capacity(bytes),
                records: Vec::with_capacity(records * RECORD_WORDS),
                timestamps: Vec::with_capacity(records),
                headers: Vec::new(),
            },
            input: 0,
            input_timestamp: None,
        }
    }

    #[inline]
    pub(crate) fn begin(&mut self, record: &Record<'_>) -> Mark {
        self.input = record.index();
        self.input_timestamp = record.timestamp();
        self.mark()
    }

    #[inline]
    fn mark(&self) -> Mark {
        Mark {
            data: self.batch.data.len(),
            records: self.batch.records.len(),
            timestamps: self.batch.timestamps.len(),
            headers: self.batch.headers.len(),
        }
    }

    pub(crate) fn rollback(&mut self, mark: Mark) {
        self.batch.data.truncate(mark.data);
        self.batch.records.truncate(mark.records);
        self.batch.timestamps.truncate(mark.timestamps);
        self.batch.headers.truncate(mark.headers);
    }

    pub(crate) fn finish(self) -> Batch {
        self.batch
    }

    /// Appends bytes to the buffer; returns their offset and length.
    #[inline]
    fn append(&mut self, bytes: &[u8]) -> (u32, u32) {
        let offset = self.batch.data.len();
        extend(&mut self.batch.data, bytes);
        (offset as u32, bytes.len() as u32)
    }

    #[inline(always)]
    fn start_record(&mut self, (value_offset, value_len): (u32, u32)) -> Emitted<'_> {
        let first_header = (self.batch.headers.len() / HEADER_WORDS) as u32;
        self.batch.records.extend_from_slice(&[
            0,
            INPUT_KEY,
            value_offset,
            value_len,
            first_header,
            0,
            self.input,
        ]);
        self.batch.timestamps.push(self.input_timestamp.unwrap_or(NO_TIMESTAMP));
        Emitted { output: self }
    }

    /// Emits a record with this value. It keeps the input's key and
    /// timestamp and has no headers; change that on the returned [`Emitted`].
    pub fn push(&mut self, value: impl AsRef<[u8]>) -> Emitted<'_> {
        let value = self.append(value.as_ref());
        self.start_record(value)
    }

    /// Emits a record whose value `write` writes straight into the output
    /// buffer, which saves building it in a `Vec` first.
    pub fn push_with(&mut self, write: impl FnOnce(&mut ValueWriter<'_>)) -> Emitted<'_> {
        let offset = self.batch.data.len();
        write(&mut ValueWriter { data: &mut self.batch.data, start: offset });
        let len = self.batch.data.len() - offset;
        self.start_record((offset as u32, len as u32))
    }

    /// Emits an exact copy of `record`: key, value, headers and timestamp.
    /// Key and value are passed by reference ([`INPUT_KEY`],
    /// [`INPUT_VALUE`]), so forwarding copies no bytes but the headers.
    #[inline(always)]
    pub fn forward(&mut self, record: &Record<'_>) {
        // The common case, a record passed on as it came, stays inline in
        // the transform's loop: a call costs more in a component than
        // natively (a stack-limit and an epoch check, callee-saved spills).
        if record.index() == self.input && !record.has_headers() {
            self.start_record((0, INPUT_VALUE));
        } else {
            self.forward_copying(record);
        }
    }

    #[inline(never)]
    fn forward_copying(&mut self, record: &Record<'_>) {
        let mut emitted = if record.index() == self.input {
            self.start_record((0, INPUT_VALUE))
        } else {
            // Another record of the batch: its key and value are copied.
            self.push(record.value()).key(record.key()).timestamp(record.timestamp())
        };
        for (name, value) in record.headers() {
            emitted = emitted.header(name, value);
        }
    }
}

/// The record just pushed; its methods set what differs from the defaults.
pub struct Emitted<'o> {
    output: &'o mut Output,
}

impl Emitted<'_> {
    /// The words of the record just pushed (`Emitted` only exists then).
    fn words(&mut self) -> &mut [u32] {
        let start = self.output.batch.records.len() - RECORD_WORDS;
        &mut self.output.batch.records[start..]
    }

    /// Replaces the key (`None` removes it).
    pub fn key(mut self, key: Option<&[u8]>) -> Self {
        let (offset, len) = key.map_or((0, NO_KEY), |k| self.output.append(k));
        let words = self.words();
        words[KEY_OFFSET] = offset;
        words[KEY_LEN] = len;
        self
    }

    pub fn timestamp(self, timestamp: Option<i64>) -> Self {
        if let Some(last) = self.output.batch.timestamps.last_mut() {
            *last = timestamp.unwrap_or(NO_TIMESTAMP);
        }
        self
    }

    /// Adds a header.
    pub fn header(mut self, name: &str, value: impl AsRef<[u8]>) -> Self {
        let (name_offset, name_len) = self.output.append(name.as_bytes());
        let (value_offset, value_len) = self.output.append(value.as_ref());
        self.output.batch.headers.extend_from_slice(&[name_offset, name_len, value_offset, value_len]);
        self.words()[HEADER_COUNT] += 1;
        self
    }

    /// Copies every header of `record`.
    pub fn headers_from(mut self, record: &Record<'_>) -> Self {
        for (name, value) in record.headers() {
            self = self.header(name, value);
        }
        self
    }
}

/// Appends a record value in place; see [`Output::push_with`].
pub struct ValueWriter<'a> {
    data: &'a mut Vec<u8>,
    start: usize,
}

impl ValueWriter<'_> {
    #[inline(always)]
    pub fn extend_from_slice(&mut self, bytes: &[u8]) {
        extend(self.data, bytes);
    }

    #[inline(always)]
    pub fn push(&mut self, byte: u8) {
        self.data.push(byte);
    }

    /// Bytes written to this value so far.
    #[inline]
    pub fn len(&self) -> usize {
        self.data.len() - self.start
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Where a transform's encoder writes bytes: the output buffer in the
/// component ([`ValueWriter`], through [`Output::push_with`]), a `Vec<u8>`
/// when the same code runs natively (tests, benchmarks). Encoding into the
/// output buffer directly saves building a value first and copying it in.
pub trait Sink {
    fn put(&mut self, bytes: &[u8]);
    fn put_byte(&mut self, byte: u8);
    /// Makes room for `additional` more bytes, so a large value (an image)
    /// is copied in once instead of into a buffer that keeps doubling.
    fn reserve(&mut self, additional: usize);
}

impl Sink for Vec<u8> {
    #[inline]
    fn put(&mut self, bytes: &[u8]) {
        self.extend_from_slice(bytes);
    }

    #[inline]
    fn put_byte(&mut self, byte: u8) {
        self.push(byte);
    }

    fn reserve(&mut self, additional: usize) {
        Vec::reserve(self, additional);
    }
}

// Always inlined: in a component, LLVM left `put` as a function of its
// own, and a call there costs more than the copy of a short field.
impl Sink for ValueWriter<'_> {
    #[inline(always)]
    fn put(&mut self, bytes: &[u8]) {
        self.extend_from_slice(bytes);
    }

    #[inline(always)]
    fn put_byte(&mut self, byte: u8) {
        self.push(byte);
    }

    fn reserve(&mut self, additional: usize) {
        self.data.reserve(additional);
    }
}

impl io::Write for ValueWriter<'_> {
    #[inline]
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        extend(self.data, buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Appends `bytes` to `data`.
///
/// In a component, `extend_from_slice` becomes a `memory.copy` instruction,
/// which Wasmtime runs as a call into the host: ~10 ns, more than copying a
/// short field. Transforms append many short pieces (JSON keys, numbers,
/// fields), so copies of up to 32 bytes are done here with plain loads and
/// stores instead; longer ones still go to `memory.copy`, which is faster
/// for them.
#[inline(always)]
fn extend(data: &mut Vec<u8>, bytes: &[u8]) {
    if cfg!(target_arch = "wasm32") && bytes.len() <= 32 {
        data.reserve(bytes.len());
        // SAFETY: `reserve` made room for `bytes.len()` more bytes after
        // `len`, which `copy_short` fills before `set_len` counts them; a
        // shared `bytes` cannot overlap the vector's spare capacity.
        unsafe {
            let end = data.len();
            copy_short(bytes, data.as_mut_ptr().add(end));
            data.set_len(end + bytes.len());
        }
    } else {
        data.extend_from_slice(bytes);
    }
}

/// Copies up to 32 bytes to `dst` with at most four overlapping loads and
/// stores of one width, chosen by the length (no loop, so no `memcpy`).
///
/// # Safety
/// `dst` must be valid for `src.len()` bytes of writes and not overlap `src`.
#[inline(always)]
unsafe fn copy_short(src: &[u8], dst: *mut u8) {
    use std::ptr::{read_unaligned, write_unaligned};
    let len = src.len();
    debug_assert!(len <= 32);
    let s = src.as_ptr();
    // SAFETY (every block): each access lies within the first `len` bytes of
    // `src` and `dst`, given the length tested before it.
    unsafe {
        if len >= 16 {
            let (a, b) = (read_unaligned(s.cast::<u64>()), read_unaligned(s.add(8).cast::<u64>()));
            let (c, d) =
                (read_unaligned(s.add(len - 16).cast::<u64>()), read_unaligned(s.add(len - 8).cast::<u64>()));
            write_unaligned(dst.cast::<u64>(), a);
            write_unaligned(dst.add(8).cast::<u64>(), b);
            write_unaligned(dst.add(len - 16).cast::<u64>(), c);
            write_unaligned(dst.add(len - 8).cast::<u64>(), d);
        } else if len >= 8 {
            let (a, b) = (read_unaligned(s.cast::<u64>()), read_unaligned(s.add(len - 8).cast::<u64>()));
            write_unaligned(dst.cast::<u64>(), a);
            write_unaligned(dst.add(len - 8).cast::<u64>(), b);
        } else if len >= 4 {
            let (a, b) = (read_unaligned(s.cast::<u32>()), read_unaligned(s.add(len - 4).cast::<u32>()));
            write_unaligned(dst.cast::<u32>(), a);
            write_unaligned(dst.add(len - 4).cast::<u32>(), b);
        } else if len > 0 {
            *dst = *s;
            *dst.add(len / 2) = *s.add(len / 2);
            *dst.add(len - 1) = *s.add(len - 1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::copy_short;

    #[test]
    fn short_copies_are_exact_at_every_length() {
        let src: Vec<u8> = (1..=32).collect();
        for len in 0..=32 {
            let mut dst = vec![0u8; 40];
            // SAFETY: `dst` has room for 32 bytes; the buffers are distinct.
            unsafe { copy_short(&src[..len], dst.as_mut_ptr()) };
            assert_eq!(&dst[..len], &src[..len], "length {len}");
            assert!(dst[len..].iter().all(|&b| b == 0), "wrote past {len}");
        }
    }
}
