//! Records in the batch encoding of `transform.wit`, as they pass from one
//! wasm stage to the next.
//!
//! A stage's guest returns its outputs packed: one byte buffer and a few
//! words per record. Building a [`Record`] for each output only for the
//! next stage to pack it again can cost more than a light transform's own
//! work (a filter, a router). So between two wasm stages the output can
//! stay in this form and be lowered into the next guest as it is; records
//! are built once, by the last stage, for the sink. [`unpack_packed`]
//! turns a guest's answer into the next such batch, after the checks
//! both paths share (`abi::check`).

use bytes::Bytes;

use super::abi::layout::*;
use super::abi::{InputSizes, check};
use super::bindings::{Batch, BatchOutput};
use super::error::FailureKind;
use super::instance::CallFailure;
use crate::record::{Header, Origin, Record};

/// A batch of records in the wire layout, every span inside `data`: no
/// word refers to another batch, so it can be lowered into a guest as it
/// is. Record `i`'s `input` word is `i`.
#[derive(Debug, Clone)]
pub struct PackedBatch {
    pub(super) wire: Batch,
    /// Where each record was read (outputs keep their input's).
    pub(super) origins: Vec<Origin>,
}

impl PackedBatch {
    /// Packs `records`, or `None` when their bytes do not fit the
    /// encoding's 32-bit offsets (such a batch stays as records).
    pub fn from_records(records: &[Record]) -> Option<PackedBatch> {
        Self::from_records_into(records, empty_wire())
    }

    /// Like [`from_records`](Self::from_records), reusing `wire`'s buffers.
    pub(super) fn from_records_into(records: &[Record], mut wire: Batch) -> Option<PackedBatch> {
        let bytes: usize = records.iter().map(Record::size).sum();
        if bytes > MAX_DATA_BYTES {
            return None;
        }
        super::abi::pack(records, &mut wire);
        Some(PackedBatch { wire, origins: records.iter().map(|r| r.origin.clone()).collect() })
    }

    pub fn len(&self) -> usize {
        self.origins.len()
    }

    pub fn is_empty(&self) -> bool {
        self.origins.is_empty()
    }

    /// Bytes the records carry (keys, values and headers), as [`Record::size`] counts them.
    pub fn size(&self) -> usize {
        self.wire
            .records
            .chunks_exact(RECORD_WORDS)
            .map(|words| {
                let key = match words[KEY_LEN] {
                    NO_KEY => 0,
                    len => len as usize,
                };
                let first = words[FIRST_HEADER] as usize * HEADER_WORDS;
                let headers = &self.wire.headers[first..][..words[HEADER_COUNT] as usize * HEADER_WORDS];
                let headers: usize =
                    headers.chunks_exact(HEADER_WORDS).map(|h| h[1] as usize + h[3] as usize).sum();
                key + words[VALUE_LEN] as usize + headers
            })
            .sum()
    }

    /// Record `index`, with its own copy of its bytes: for the few records
    /// that leave the packed form alone (a dead letter, a tap's sample).
    pub fn record(&self, index: usize) -> Record {
        let data = &self.wire.data;
        let copy = |offset: u32, len: u32| Bytes::copy_from_slice(&data[offset as usize..][..len as usize]);
        self.build(index, copy)
    }

    /// The records, sharing the one buffer their bytes are in.
    pub fn into_records(mut self) -> Vec<Record> {
        let data = Bytes::from(std::mem::take(&mut self.wire.data));
        let slice = |offset: u32, len: u32| data.slice(offset as usize..offset as usize + len as usize);
        (0..self.len()).map(|index| self.build(index, slice)).collect()
    }

    fn build(&self, index: usize, bytes: impl Fn(u32, u32) -> Bytes) -> Record {
        let words = &self.wire.records[index * RECORD_WORDS..][..RECORD_WORDS];
        let headers = match words[HEADER_COUNT] {
            0 => Vec::new(),
            count => {
                let first = words[FIRST_HEADER] as usize * HEADER_WORDS;
                self.wire.headers[first..][..count as usize * HEADER_WORDS]
                    .chunks_exact(HEADER_WORDS)
                    .map(|h| Header {
                        // Names were checked to be UTF-8 when the batch was made.
                        name: String::from_utf8_lossy(&bytes(h[0], h[1])).into_owned(),
                        value: bytes(h[2], h[3]),
                    })
                    .collect()
            }
        };
        let timestamp = self.wire.timestamps[index];
        Record {
            key: match words[KEY_LEN] {
                NO_KEY => None,
                len => Some(bytes(words[KEY_OFFSET], len)),
            },
            value: bytes(words[VALUE_OFFSET], words[VALUE_LEN]),
            headers,
            timestamp: (timestamp != NO_TIMESTAMP).then_some(timestamp),
            origin: self.origins[index].clone(),
        }
    }

    /// Record `index`'s key span (`NO_KEY` length when it has none) and value span.
    pub(super) fn spans(&self, index: usize) -> ((u32, u32), (u32, u32)) {
        let words = &self.wire.records.as_chunks::<RECORD_WORDS>().0[index];
        ((words[KEY_OFFSET], words[KEY_LEN]), (words[VALUE_OFFSET], words[VALUE_LEN]))
    }
}

impl InputSizes for PackedBatch {
    const COUNTS_KEPT: bool = true;

    fn count(&self) -> usize {
        self.len()
    }

    fn key_and_value_len(&self, index: usize) -> (usize, usize) {
        let ((_, key_len), (_, value_len)) = self.spans(index);
        (if key_len == NO_KEY { 0 } else { key_len as usize }, value_len as usize)
    }
}

/// A packed call that failed as a whole, with its inputs as they were.
#[derive(Debug)]
pub struct FailedPackedCall {
    pub failure: CallFailure,
    pub inputs: PackedBatch,
}

impl FailedPackedCall {
    pub fn new(failure: CallFailure, inputs: PackedBatch) -> Box<FailedPackedCall> {
        Box::new(FailedPackedCall { failure, inputs })
    }
}

/// What a call on a packed batch produced.
#[derive(Debug)]
pub struct PackedCall {
    /// Outputs of the inputs that succeeded, in input order, packed for
    /// the next stage.
    pub batch: PackedBatch,
    /// The inputs that failed, as records for their dead letters, with the reason.
    pub failures: Vec<(Record, FailureKind, String)>,
}

/// Turns the guest's answer to a packed batch into the packed batch the
/// next stage gets, after the same [`check`] as [`unpack`](super::abi::unpack).
///
/// The guest's words become the new batch's: outputs of inputs that
/// failed are left out and outputs are put in input order. What an
/// output keeps of its input has to be in the new batch's one buffer
/// too, so either the kept bytes are copied after the guest's, or the
/// guest's after the input's (whose buffer the outputs then take over).
/// The second is chosen when it costs less counting the next stage's
/// copy of the whole buffer into its guest: a passthrough, or a filter
/// that keeps most records, copies nothing but its words; a filter that
/// keeps few copies those few rather than hand on a buffer of bytes no
/// record refers to. A failed call gives `inputs` back as they were.
pub(crate) fn unpack_packed(
    output: BatchOutput,
    inputs: PackedBatch,
    max_output_bytes: usize,
) -> Result<PackedCall, Box<FailedPackedCall>> {
    let BatchOutput { records: mut batch, errors } = output;
    let checked = match check(&batch, errors, &inputs, max_output_bytes) {
        Ok(checked) => checked,
        Err(failure) => return Err(FailedPackedCall::new(failure, inputs)),
    };
    let kept_bytes = checked.kept_bytes;
    // Appending costs the guest's bytes once here and the input's and the
    // guest's in the next lowering; copying costs the kept bytes here and
    // the guest's and the kept ones in the next lowering.
    let after_input = inputs.wire.data.len() + batch.data.len() < 2 * kept_bytes;
    let total = match after_input {
        true => inputs.wire.data.len() + batch.data.len(),
        false => batch.data.len() + kept_bytes,
    };
    if total > MAX_DATA_BYTES {
        let message = format!(
            "the outputs, with the keys and values they keep, are {total} bytes, over the {MAX_DATA_BYTES} a batch can hold"
        );
        return Err(FailedPackedCall::new(CallFailure { kind: FailureKind::InvalidOutput, message }, inputs));
    }
    let failures = checked
        .failed
        .iter()
        .enumerate()
        .filter_map(|(index, failure)| {
            let (kind, message) = failure.clone()?;
            Some((inputs.record(index), kind, message))
        })
        .collect();
    let reuse_origins = checked.one_to_one && checked.failed.is_empty();
    let PackedBatch { wire: input, origins: input_origins } = inputs;
    let Batch { data: input_data, records: input_words, .. } = input;
    // The buffer the outputs take, how far the guest's bytes moved in it,
    // and where kept bytes are copied from (nowhere when they stay put).
    let (mut data, shift, kept_from) = match after_input {
        true => {
            let mut data = input_data;
            let shift = data.len() as u32;
            data.extend_from_slice(&batch.data);
            (data, shift, Vec::new())
        }
        false => {
            let mut data = std::mem::take(&mut batch.data);
            data.reserve(kept_bytes);
            (data, 0, input_data)
        }
    };
    let mut kept_bytes = KeptBytes { data: &mut data, from: (!after_input).then_some(&kept_from[..]), shift };
    if shift != 0 {
        for h in batch.headers.chunks_exact_mut(HEADER_WORDS) {
            h[0] += shift;
            h[2] += shift;
        }
    }
    let Batch { records: words, timestamps, .. } = &mut batch;
    if reuse_origins {
        // Output n is input n's only output: nothing moves.
        let outputs = words.as_chunks_mut::<RECORD_WORDS>().0;
        for (output, input) in outputs.iter_mut().zip(input_words.as_chunks::<RECORD_WORDS>().0) {
            kept_bytes.resolve(output, input);
        }
        batch.data = data;
        return Ok(PackedCall { batch: PackedBatch { wire: batch, origins: input_origins }, failures });
    }
    let mut origins = Vec::with_capacity(checked.count);
    // The input of each output, to restore input order when the guest did not keep it.
    let mut sources = Vec::new();
    let mut kept = 0;
    for output in 0..checked.count {
        let at = output * RECORD_WORDS;
        let index = words[at + INPUT] as usize;
        if checked.failed(index) {
            continue;
        }
        kept_bytes.resolve(
            &mut words.as_chunks_mut::<RECORD_WORDS>().0[output],
            &input_words.as_chunks::<RECORD_WORDS>().0[index],
        );
        if kept != output {
            words.copy_within(at..at + RECORD_WORDS, kept * RECORD_WORDS);
            timestamps[kept] = timestamps[output];
        }
        words[kept * RECORD_WORDS + INPUT] = kept as u32;
        origins.push(input_origins[index].clone());
        if checked.unordered {
            sources.push(index);
        }
        kept += 1;
    }
    words.truncate(kept * RECORD_WORDS);
    timestamps.truncate(kept);
    if checked.unordered {
        let mut order: Vec<usize> = (0..kept).collect();
        order.sort_by_key(|&output| sources[output]);
        let (old_words, old_timestamps, old_origins) =
            (std::mem::take(words), std::mem::take(timestamps), std::mem::take(&mut origins));
        for (position, &output) in order.iter().enumerate() {
            words.extend_from_slice(&old_words[output * RECORD_WORDS..][..RECORD_WORDS]);
            words[position * RECORD_WORDS + INPUT] = position as u32;
            timestamps.push(old_timestamps[output]);
            origins.push(old_origins[output].clone());
        }
    }
    batch.data = data;
    Ok(PackedCall { batch: PackedBatch { wire: batch, origins }, failures })
}

/// Where the keys and values outputs keep of their inputs end up in a
/// packed call's new buffer.
struct KeptBytes<'a> {
    data: &'a mut Vec<u8>,
    /// The input's buffer, to copy kept bytes from; `None` when the new
    /// buffer is the input's, the guest's bytes appended to it.
    from: Option<&'a [u8]>,
    /// How far the guest's bytes moved in the new buffer.
    shift: u32,
}

impl KeptBytes<'_> {
    /// Rewrites the spans of `output` (checked) to the new buffer.
    #[inline(always)]
    fn resolve(&mut self, output: &mut [u32; RECORD_WORDS], input: &[u32; RECORD_WORDS]) {
        match output[KEY_LEN] {
            NO_KEY => {}
            INPUT_KEY => [output[KEY_OFFSET], output[KEY_LEN]] = self.kept(input[KEY_OFFSET], input[KEY_LEN]),
            _ => output[KEY_OFFSET] += self.shift,
        }
        match output[VALUE_LEN] {
            INPUT_VALUE => {
                [output[VALUE_OFFSET], output[VALUE_LEN]] = self.kept(input[VALUE_OFFSET], input[VALUE_LEN])
            }
            _ => output[VALUE_OFFSET] += self.shift,
        }
    }

    /// The span, in the new buffer, of the input's span `offset..+len`
    /// (`NO_KEY` for a key the input does not have).
    #[inline(always)]
    fn kept(&mut self, offset: u32, len: u32) -> [u32; 2] {
        match self.from {
            Some(from) if len != NO_KEY => {
                let start = self.data.len() as u32;
                self.data.extend_from_slice(&from[offset as usize..][..len as usize]);
                [start, len]
            }
            _ => [offset, len],
        }
    }
}

/// The most bytes a batch can hold: offsets and lengths are 32-bit, and the
/// largest lengths are sentinels.
pub(super) const MAX_DATA_BYTES: usize = (INPUT_KEY - 1) as usize;

pub(super) fn empty_wire() -> Batch {
    Batch { data: Vec::new(), records: Vec::new(), timestamps: Vec::new(), headers: Vec::new() }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::SourceName;

    fn records() -> Vec<Record> {
        let origin = |offset| Origin { source: SourceName::new("packed-test"), partition: 2, offset };
        let mut keyed = Record::new("value one", origin(7));
        keyed.key = Some(Bytes::from_static(b"key"));
        keyed.timestamp = Some(1_700_000_000_000);
        keyed.headers = vec![
            Header { name: "h1".into(), value: Bytes::from_static(b"v1") },
            Header { name: "h2".into(), value: Bytes::from_static(b"") },
        ];
        let mut empty_key = Record::new("", origin(8));
        empty_key.key = Some(Bytes::new());
        vec![keyed, empty_key, Record::new(vec![0xff, 0x00, 0xfe], origin(9))]
    }

    #[test]
    fn records_come_back_as_they_were_packed() {
        let records = records();
        let packed = PackedBatch::from_records(&records).unwrap();
        assert_eq!(packed.len(), 3);
        assert_eq!(packed.size(), records.iter().map(Record::size).sum::<usize>());
        for (index, record) in records.iter().enumerate() {
            assert_eq!(&packed.record(index), record, "record {index} copied out");
        }
        assert_eq!(packed.into_records(), records);
    }

    #[test]
    fn an_empty_key_is_not_a_missing_key() {
        let packed = PackedBatch::from_records(&records()).unwrap();
        assert_eq!(packed.record(1).key, Some(Bytes::new()));
        assert_eq!(packed.record(2).key, None);
    }
}
