//! Packing records into the batch encoding of `transform.wit` and unpacking
//! what the guest returns, without trusting a byte of it.
//!
//! Output records become slices of the one buffer the guest returned (one
//! allocation per call, not per record), or share their input's key and
//! value when the guest says they are unchanged. Every span and index is checked:
//! a guest that returns garbage fails its records with `invalid-output`, it
//! cannot make the host panic or read out of bounds.

use bytes::Bytes;

use super::bindings::sluice::transform::types::RecordError;
use super::bindings::{Batch, BatchOutput};
use super::error::FailureKind;
use super::instance::CallFailure;
use crate::record::{Header, Record};

/// What one call produced.
#[derive(Debug, Default)]
pub struct CallOutput {
    /// Outputs of the records that succeeded, in input order.
    pub records: Vec<Record>,
    /// For each output, the position of its input in the call's batch.
    pub inputs: Vec<u32>,
    /// Inputs that failed, by position in the call's batch, with the reason.
    pub failures: Vec<(usize, FailureKind, String)>,
}

/// The fate of one input record, for callers that look at records one by one.
#[derive(Debug, PartialEq, Eq)]
pub enum RecordOutcome {
    Outputs(Vec<Record>),
    Failed(FailureKind, String),
}

impl CallOutput {
    /// Regroups the outputs per input record (for tools and tests; the
    /// pipeline uses the flat form).
    pub fn per_input(self, inputs: usize) -> Vec<RecordOutcome> {
        let mut outcomes: Vec<RecordOutcome> =
            (0..inputs).map(|_| RecordOutcome::Outputs(Vec::new())).collect();
        for (record, index) in self.records.into_iter().zip(self.inputs) {
            if let Some(RecordOutcome::Outputs(outputs)) = outcomes.get_mut(index as usize) {
                outputs.push(record);
            }
        }
        for (index, kind, message) in self.failures {
            if let Some(slot) = outcomes.get_mut(index) {
                *slot = RecordOutcome::Failed(kind, message);
            }
        }
        outcomes
    }
}

/// The batch encoding of `guest-sdk/wit/transform.wit` (its `batch`
/// record): the guest SDK's definition, shared so the two sides cannot drift.
#[path = "../../../guest-sdk/src/layout.rs"]
pub(super) mod layout;

use layout::*;

/// Lays `records` out in `batch`, reusing its buffers.
pub(crate) fn pack(records: &[Record], batch: &mut Batch) {
    lay_out::<true>(records, batch);
}

/// Lays out the word tables of `records` in `batch` as [`pack`] does, but
/// leaves its `data` empty, for [`write_data`] to write where it is needed
/// (`lowering.rs`: straight into the guest). Returns the length of the
/// data.
pub(crate) fn pack_words(records: &[Record], batch: &mut Batch) -> usize {
    lay_out::<false>(records, batch)
}

/// Writes the data of a batch of `records` laid out by [`pack_words`]:
/// each record's key, value, then its headers' names and values.
/// `buffer` is exactly as long as [`pack_words`] said.
pub(crate) fn write_data(records: &[Record], buffer: &mut [u8]) {
    let mut rest = buffer;
    let mut put = |bytes: &[u8]| {
        let (here, after) = std::mem::take(&mut rest).split_at_mut(bytes.len());
        here.copy_from_slice(bytes);
        rest = after;
    };
    for record in records {
        if let Some(key) = &record.key {
            put(key);
        }
        put(&record.value);
        for header in &record.headers {
            put(header.name.as_bytes());
            put(&header.value);
        }
    }
}

/// [`pack`] and [`pack_words`]: the words, and the bytes too when `COPY`.
/// Returns the length of the data.
fn lay_out<const COPY: bool>(records: &[Record], batch: &mut Batch) -> usize {
    batch.data.clear();
    batch.records.clear();
    batch.timestamps.clear();
    batch.headers.clear();
    if COPY {
        batch.data.reserve(records.iter().map(Record::size).sum());
    }
    batch.records.reserve(records.len() * RECORD_WORDS);
    // Where the next bytes go, whether or not they are copied here.
    let mut end = 0usize;
    let mut append = |data: &mut Vec<u8>, bytes: &[u8]| {
        let offset = end as u32;
        end += bytes.len();
        if COPY {
            data.extend_from_slice(bytes);
        }
        (offset, bytes.len() as u32)
    };
    for (index, record) in records.iter().enumerate() {
        let (key_offset, key_len) = match &record.key {
            Some(key) => append(&mut batch.data, key),
            None => (0, NO_KEY),
        };
        let (value_offset, value_len) = append(&mut batch.data, &record.value);
        let first_header = (batch.headers.len() / HEADER_WORDS) as u32;
        for header in &record.headers {
            let (name_offset, name_len) = append(&mut batch.data, header.name.as_bytes());
            let (value_offset, value_len) = append(&mut batch.data, &header.value);
            batch.headers.extend_from_slice(&[name_offset, name_len, value_offset, value_len]);
        }
        batch.records.extend_from_slice(&[
            key_offset,
            key_len,
            value_offset,
            value_len,
            first_header,
            record.headers.len() as u32,
            index as u32,
        ]);
        batch.timestamps.push(record.timestamp.unwrap_or(NO_TIMESTAMP));
    }
    end
}

/// The records a call's outputs refer back to. Borrowed, outputs share the
/// key and value they keep; owned by the call, the last output that keeps
/// an input's key or value takes it over. Taking saves an atomic reference
/// count increment now and a decrement when the input is dropped: about
/// 12 ns per record for a passthrough stage (`bench-quick`'s
/// `passthrough_stage_call_*` keys).
pub(crate) trait Inputs {
    /// Whether outputs take what they keep (so last references are worth finding).
    const TAKES: bool;
    fn records(&self) -> &[Record];
    /// Input `index`'s key for an output; taken when no later output keeps it.
    fn key(&mut self, index: usize, last: bool) -> Option<Bytes>;
    /// Input `index`'s value for an output; taken when no later output keeps it.
    fn value(&mut self, index: usize, last: bool) -> Bytes;
    /// The inputs themselves, when the call owns them and each has exactly
    /// one output: they become their outputs, changed in place, so nothing
    /// is built, moved or dropped but what the guest changed.
    fn in_place(&mut self) -> Option<&mut Vec<Record>> {
        None
    }
}

impl Inputs for &[Record] {
    const TAKES: bool = false;

    fn records(&self) -> &[Record] {
        self
    }

    fn key(&mut self, index: usize, _last: bool) -> Option<Bytes> {
        self[index].key.clone()
    }

    fn value(&mut self, index: usize, _last: bool) -> Bytes {
        self[index].value.clone()
    }
}

impl Inputs for &mut Vec<Record> {
    const TAKES: bool = true;

    fn records(&self) -> &[Record] {
        self
    }

    fn key(&mut self, index: usize, last: bool) -> Option<Bytes> {
        if last { self[index].key.take() } else { self[index].key.clone() }
    }

    fn value(&mut self, index: usize, last: bool) -> Bytes {
        if last { std::mem::take(&mut self[index].value) } else { self[index].value.clone() }
    }

    fn in_place(&mut self) -> Option<&mut Vec<Record>> {
        Some(self)
    }
}

/// Marks "no output keeps this input's key (or value)".
const NOT_KEPT: u32 = u32::MAX;

/// What the first pass over a guest's answer found.
pub(super) struct Checked {
    /// Output records.
    pub(super) count: usize,
    /// Per input, why it failed; empty when none did.
    pub(super) failed: Vec<Option<(FailureKind, String)>>,
    /// Whether output n is input n's only output, for every n.
    pub(super) one_to_one: bool,
    /// Whether some output comes before an output of an earlier input.
    pub(super) unordered: bool,
    /// Bytes of the inputs' keys and values that outputs keep, when
    /// [`InputSizes::COUNTS_KEPT`].
    pub(super) kept_bytes: usize,
}

impl Checked {
    pub(super) fn failed(&self, index: usize) -> bool {
        self.failed.get(index).is_some_and(Option::is_some)
    }

    pub(super) fn failures(self) -> Vec<(usize, FailureKind, String)> {
        self.failed
            .into_iter()
            .enumerate()
            .filter_map(|(index, failure)| failure.map(|(kind, message)| (index, kind, message)))
            .collect()
    }
}

/// The sizes of a call's inputs, which outputs that keep an input's key or
/// value carry on.
pub(super) trait InputSizes {
    /// Whether [`check`] adds up the kept bytes (a packed call copies them).
    const COUNTS_KEPT: bool;
    fn count(&self) -> usize;
    /// Bytes of input `index`'s key (0 without one) and of its value.
    fn key_and_value_len(&self, index: usize) -> (usize, usize);
}

impl InputSizes for [Record] {
    const COUNTS_KEPT: bool = false;

    fn count(&self) -> usize {
        self.len()
    }

    fn key_and_value_len(&self, index: usize) -> (usize, usize) {
        let record = &self[index];
        (record.key.as_ref().map_or(0, Bytes::len), record.value.len())
    }
}

/// First pass over the guest's answer: checks every index, span and header
/// name, and settles which inputs failed (rejected by the guest, or over
/// `max_output_bytes`), before anything is built. So an `Err` (the whole
/// call fails) leaves the inputs untouched for the one-by-one retry.
pub(super) fn check<S: InputSizes + ?Sized>(
    batch: &Batch,
    errors: Vec<RecordError>,
    inputs: &S,
    max_output_bytes: usize,
) -> Result<Checked, CallFailure> {
    let invalid = |message: String| CallFailure { kind: FailureKind::InvalidOutput, message };
    let data = &batch.data;
    let input_count = inputs.count();
    let check = |offset: u32, len: u32| -> Result<u32, CallFailure> {
        match (offset as usize).checked_add(len as usize) {
            Some(end) if end <= data.len() => Ok(len),
            _ => Err(invalid(format!(
                "range {offset}..+{len} is outside the {}-byte output buffer",
                data.len()
            ))),
        }
    };
    let count = batch.records.len() / RECORD_WORDS;
    if !batch.records.len().is_multiple_of(RECORD_WORDS) || batch.timestamps.len() != count {
        return Err(invalid(format!(
            "{} record words and {} timestamps do not describe whole records",
            batch.records.len(),
            batch.timestamps.len()
        )));
    }

    // Most calls fail nothing: the per-input table is only built when
    // something did.
    let mut failed: Vec<Option<(FailureKind, String)>> = Vec::new();
    let fail = |failed: &mut Vec<Option<(FailureKind, String)>>, index: usize, kind, message| {
        if failed.is_empty() {
            failed.resize(input_count, None);
        }
        failed[index] = Some((kind, message));
    };
    for error in errors {
        let index = error.input as usize;
        if index >= input_count {
            return Err(invalid(format!("error for input {index} of a {input_count}-record batch")));
        }
        fail(&mut failed, index, FailureKind::Rejected(error.kind), error.message);
    }

    // Bound the bytes of all outputs together. No input's outputs can be
    // over the limit when all of them are not, so only then are they
    // counted per input. The bound is of the outputs, not of the guest's
    // buffer: outputs that keep their input's key or value, or name the
    // same span of the buffer, each carry those bytes to the sink.
    let mut written_bytes = 0usize;
    let mut kept = 0usize;
    let mut kept_bytes = 0usize;
    let mut one_to_one = count == input_count;
    let mut unordered = false;
    let mut previous_input = 0;
    for (output, words) in batch.records.as_chunks::<RECORD_WORDS>().0.iter().enumerate() {
        let index = words[INPUT] as usize;
        if index >= input_count {
            return Err(invalid(format!("output for input {index} of a {input_count}-record batch")));
        }
        unordered |= index < previous_input;
        one_to_one &= index == output;
        previous_input = index;
        let headers = header_words(&batch.headers, words)
            .ok_or_else(|| invalid(format!("header range of output for input {index} is out of bounds")))?;
        for h in headers.chunks_exact(HEADER_WORDS) {
            written_bytes += check(h[0], h[1])? as usize + check(h[2], h[3])? as usize;
            if std::str::from_utf8(&data[h[0] as usize..][..h[1] as usize]).is_err() {
                return Err(invalid("a header name is not valid UTF-8".to_string()));
            }
        }
        let (keeps_key, keeps_value) = (words[KEY_LEN] == INPUT_KEY, words[VALUE_LEN] == INPUT_VALUE);
        if !keeps_key && words[KEY_LEN] != NO_KEY {
            written_bytes += check(words[KEY_OFFSET], words[KEY_LEN])? as usize;
        }
        if !keeps_value {
            written_bytes += check(words[VALUE_OFFSET], words[VALUE_LEN])? as usize;
        }
        kept += keeps_key as usize + keeps_value as usize;
        if S::COUNTS_KEPT && (keeps_key || keeps_value) {
            let (key, value) = inputs.key_and_value_len(index);
            kept_bytes += if keeps_key { key } else { 0 } + if keeps_value { value } else { 0 };
        }
    }
    // Counted, the kept bytes are exact; otherwise each kept key or value
    // is at most the batch's largest key or value.
    let kept_bound = match kept {
        0 => 0,
        _ if S::COUNTS_KEPT => kept_bytes,
        _ => {
            let largest = (0..input_count)
                .map(|i| {
                    let (key, value) = inputs.key_and_value_len(i);
                    key.max(value)
                })
                .max()
                .unwrap_or(0);
            kept.saturating_mul(largest)
        }
    };
    let bound = written_bytes.saturating_add(kept_bound);
    let output_bytes = match bound > max_output_bytes {
        true => bytes_per_input(&batch.records, &batch.headers, inputs),
        false => Vec::new(),
    };
    for (index, bytes) in output_bytes.iter().enumerate() {
        if *bytes > max_output_bytes && failed.get(index).is_none_or(Option::is_none) {
            fail(
                &mut failed,
                index,
                FailureKind::InvalidOutput,
                format!(
                    "outputs of this record total {bytes} bytes, over max_output_bytes = {max_output_bytes}"
                ),
            );
        }
    }
    Ok(Checked { count, failed, one_to_one, unordered, kept_bytes })
}

/// Whether the guest's answer has exactly one output per input, in order,
/// each keeping its input's value, and no rejections: outputs that are
/// their inputs, changed at most in their key, headers or timestamp.
pub(crate) fn forwards_in_place(output: &BatchOutput, inputs: usize) -> bool {
    let words = &output.records.records;
    output.errors.is_empty()
        && words.len() == inputs * RECORD_WORDS
        && words
            .as_chunks::<RECORD_WORDS>()
            .0
            .iter()
            .enumerate()
            .all(|(index, words)| words[INPUT] as usize == index && words[VALUE_LEN] == INPUT_VALUE)
}

/// Turns the guest's answer into records.
///
/// [`check`] first, then the outputs of the inputs that did not fail are
/// built. So an `Err` (the whole call fails) leaves `inputs` untouched for
/// the one-by-one retry, and inputs that failed keep their key and value
/// for their dead letters, whichever [`Inputs`] is used.
pub(crate) fn unpack<I: Inputs>(
    output: BatchOutput,
    mut inputs: I,
    max_output_bytes: usize,
) -> Result<CallOutput, CallFailure> {
    let BatchOutput { records: batch, errors } = output;
    let checked = check(&batch, errors, inputs.records(), max_output_bytes)?;
    let (count, one_to_one, unordered) = (checked.count, checked.one_to_one, checked.unordered);
    let data = Bytes::from(batch.data);
    let input_count = inputs.records().len();
    // Spans the first pass checked.
    let slice = |offset: u32, len: u32| data.slice(offset as usize..offset as usize + len as usize);

    // Second pass: the outputs of the inputs that did not fail. When each
    // input has one output (a parser, an enricher, a passthrough), owned
    // inputs are turned into their outputs where they lie.
    if one_to_one
        && checked.failed.is_empty()
        && let Some(records) = inputs.in_place()
    {
        for (record, (words, &timestamp)) in
            records.iter_mut().zip(batch.records.chunks_exact(RECORD_WORDS).zip(&batch.timestamps))
        {
            match words[KEY_LEN] {
                INPUT_KEY => {}
                NO_KEY => record.key = None,
                len => record.key = Some(slice(words[KEY_OFFSET], len)),
            }
            if words[VALUE_LEN] != INPUT_VALUE {
                record.value = slice(words[VALUE_OFFSET], words[VALUE_LEN]);
            }
            if words[HEADER_COUNT] != 0 || !record.headers.is_empty() {
                record.headers = headers_of(&batch.headers, words, &data);
            }
            record.timestamp = (timestamp != NO_TIMESTAMP).then_some(timestamp);
        }
        return Ok(CallOutput {
            records: std::mem::take(records),
            inputs: (0..count as u32).collect(),
            failures: Vec::new(),
        });
    }
    // Owned inputs give what they keep to their last output that keeps it.
    let (mut last_key, mut last_value) = match I::TAKES {
        true => (vec![NOT_KEPT; input_count], vec![NOT_KEPT; input_count]),
        false => (Vec::new(), Vec::new()),
    };
    if I::TAKES {
        for (output, words) in batch.records.chunks_exact(RECORD_WORDS).enumerate() {
            let index = words[INPUT] as usize;
            if words[KEY_LEN] == INPUT_KEY {
                last_key[index] = output as u32;
            }
            if words[VALUE_LEN] == INPUT_VALUE {
                last_value[index] = output as u32;
            }
        }
    }
    let mut records: Vec<Record> = Vec::with_capacity(count);
    let mut record_inputs: Vec<u32> = Vec::with_capacity(count);
    for (output, (words, &timestamp)) in
        batch.records.chunks_exact(RECORD_WORDS).zip(&batch.timestamps).enumerate()
    {
        let index = words[INPUT] as usize;
        if checked.failed(index) {
            continue;
        }
        let headers = headers_of(&batch.headers, words, &data);
        let last = |kept: &[u32]| I::TAKES && kept[index] == output as u32;
        let key = match words[KEY_LEN] {
            NO_KEY => None,
            INPUT_KEY => inputs.key(index, last(&last_key)),
            len => Some(slice(words[KEY_OFFSET], len)),
        };
        let value = match words[VALUE_LEN] {
            INPUT_VALUE => inputs.value(index, last(&last_value)),
            len => slice(words[VALUE_OFFSET], len),
        };
        records.push(Record {
            key,
            value,
            headers,
            timestamp: (timestamp != NO_TIMESTAMP).then_some(timestamp),
            origin: inputs.records()[index].origin.clone(),
        });
        record_inputs.push(words[INPUT]);
    }

    // Records are large enough that moving them shows in profiles, so the
    // common case (outputs in input order) keeps them where they are. A
    // guest may emit out of order: a stable sort restores input order.
    if unordered {
        let mut order: Vec<usize> = (0..records.len()).collect();
        order.sort_by_key(|&i| record_inputs[i]);
        let mut slots: Vec<Option<Record>> = records.into_iter().map(Some).collect();
        records = order.iter().filter_map(|&i| slots[i].take()).collect();
        record_inputs = order.iter().map(|&i| record_inputs[i]).collect();
    }
    Ok(CallOutput { records, inputs: record_inputs, failures: checked.failures() })
}

/// The bytes one output carries to the sink: its key, value and headers,
/// whether written by the guest or kept from its input, whose key and
/// value are `input` bytes long. Its header range must have been checked.
fn output_size(headers: &[u32], words: &[u32], (input_key, input_value): (usize, usize)) -> usize {
    let key = match words[KEY_LEN] {
        NO_KEY => 0,
        INPUT_KEY => input_key,
        len => len as usize,
    };
    let value = match words[VALUE_LEN] {
        INPUT_VALUE => input_value,
        len => len as usize,
    };
    let headers: usize = headers.chunks_exact(HEADER_WORDS).map(|h| h[1] as usize + h[3] as usize).sum();
    key + value + headers
}

/// The bytes of each input's outputs together, for a call whose outputs
/// are over the limit in total. The first pass checked every index and
/// header range.
fn bytes_per_input<S: InputSizes + ?Sized>(records: &[u32], headers: &[u32], inputs: &S) -> Vec<usize> {
    let mut bytes = vec![0usize; inputs.count()];
    for words in records.chunks_exact(RECORD_WORDS) {
        let index = words[INPUT] as usize;
        let headers = header_words(headers, words).unwrap_or_default();
        let size = output_size(headers, words, inputs.key_and_value_len(index));
        bytes[index] = bytes[index].saturating_add(size);
    }
    bytes
}

/// The headers of the output record described by `words`, whose spans
/// and names the first pass of [`unpack`] checked.
fn headers_of(headers: &[u32], words: &[u32], data: &Bytes) -> Vec<Header> {
    // Most records have none; building an empty vector through an
    // iterator showed in profiles.
    if words[HEADER_COUNT] == 0 {
        return Vec::new();
    }
    let slice = |offset: u32, len: u32| data.slice(offset as usize..offset as usize + len as usize);
    header_words(headers, words)
        .unwrap_or_default()
        .chunks_exact(HEADER_WORDS)
        .map(|h| Header {
            // Checked to be UTF-8 by the first pass, so nothing is replaced.
            name: String::from_utf8_lossy(&data[h[0] as usize..][..h[1] as usize]).into_owned(),
            value: slice(h[2], h[3]),
        })
        .collect()
}

/// The header words of the output record described by `words`, if in bounds.
fn header_words<'a>(headers: &'a [u32], words: &[u32]) -> Option<&'a [u32]> {
    let start = (words[FIRST_HEADER] as usize).checked_mul(HEADER_WORDS)?;
    let len = (words[HEADER_COUNT] as usize).checked_mul(HEADER_WORDS)?;
    headers.get(start..start.checked_add(len)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::Origin;
    use crate::wasm::packed::{PackedBatch, unpack_packed};

    fn input(key: Option<&'static str>, value: &'static str) -> Record {
        let mut record = Record::new(value, Origin { source: "t".into(), partition: 0, offset: 0 });
        record.key = key.map(|k| Bytes::from_static(k.as_bytes()));
        record
    }

    #[test]
    fn the_words_laid_out_without_the_bytes_point_where_the_bytes_are_written() {
        let mut with_headers = input(Some("key"), "value");
        with_headers.headers = vec![
            Header { name: "first".into(), value: Bytes::from_static(b"1") },
            Header { name: "".into(), value: Bytes::new() },
        ];
        with_headers.timestamp = Some(1_700_000_000_000);
        let records = [input(None, "no key"), with_headers, input(Some(""), ""), input(Some("k"), "")];
        let mut packed = crate::wasm::packed::empty_wire();
        pack(&records, &mut packed);

        let mut words = crate::wasm::packed::empty_wire();
        let len = pack_words(&records, &mut words);
        let mut data = vec![0xee; len];
        write_data(&records, &mut data);

        assert_eq!(data, packed.data);
        assert!(words.data.is_empty());
        assert_eq!(words.records, packed.records);
        assert_eq!(words.timestamps, packed.timestamps);
        assert_eq!(words.headers, packed.headers);
    }

    /// An output batch whose records have these (key, value) words.
    fn output(words: &[(u32, u32, u32, u32, u32)], data: &[u8]) -> BatchOutput {
        let mut records = Vec::new();
        for &(key_offset, key_len, value_offset, value_len, input) in words {
            records.extend_from_slice(&[key_offset, key_len, value_offset, value_len, 0, 0, input]);
        }
        let timestamps = vec![NO_TIMESTAMP; words.len()];
        BatchOutput {
            records: Batch { data: data.to_vec(), records, timestamps, headers: Vec::new() },
            errors: Vec::new(),
        }
    }

    #[test]
    fn outputs_can_keep_their_inputs_key_and_value() {
        let inputs = [input(Some("k0"), "zero"), input(None, "one")];
        let out = output(
            &[(0, INPUT_KEY, 0, INPUT_VALUE, 0), (0, INPUT_KEY, 0, 3, 1), (0, NO_KEY, 0, INPUT_VALUE, 0)],
            b"new",
        );
        let records = unpack(out, &inputs[..], 1 << 20).unwrap().records;
        // In input order: both outputs of input 0, then input 1's.
        let pairs: Vec<_> = records.iter().map(|r| (r.key.as_deref(), &r.value[..])).collect();
        assert_eq!(pairs, [(Some(&b"k0"[..]), &b"zero"[..]), (None, &b"zero"[..]), (None, &b"new"[..])]);
    }

    #[test]
    fn consuming_outputs_take_what_they_keep_at_its_last_reference() {
        let mut inputs = vec![input(Some("k0"), "zero"), input(None, "one")];
        let zero = inputs[0].value.as_ptr();
        let out = output(
            &[(0, INPUT_KEY, 0, INPUT_VALUE, 0), (0, NO_KEY, 0, INPUT_VALUE, 0), (0, INPUT_KEY, 0, 3, 1)],
            b"new",
        );
        let records = unpack(out, &mut inputs, 1 << 20).unwrap().records;
        let pairs: Vec<_> = records.iter().map(|r| (r.key.as_deref(), &r.value[..])).collect();
        assert_eq!(pairs, [(Some(&b"k0"[..]), &b"zero"[..]), (None, &b"zero"[..]), (None, &b"new"[..])]);
        // Both outputs of input 0 hold its value itself, not a copy; the
        // input is left empty.
        assert!(records[..2].iter().all(|r| r.value.as_ptr() == zero));
        assert_eq!((inputs[0].key.as_deref(), &inputs[0].value[..]), (None, &b""[..]));
        assert_eq!(&inputs[1].value[..], b"one", "an input no output keeps is left as it was");
    }

    #[test]
    fn consuming_leaves_failed_inputs_and_failed_calls_whole() {
        let whole = vec![input(Some("k0"), "zero"), input(Some("k1"), "one")];
        // Input 0 is rejected although the guest also kept its value; input 1 passes.
        let mut out = output(&[(0, INPUT_KEY, 0, INPUT_VALUE, 0), (0, INPUT_KEY, 0, INPUT_VALUE, 1)], b"");
        out.errors.push(RecordError { input: 0, kind: "invalid-input".into(), message: "no".into() });
        let mut inputs = whole.clone();
        let call = unpack(out, &mut inputs, 1 << 20).unwrap();
        assert_eq!(call.records, [whole[1].clone()]);
        assert_eq!(call.failures.len(), 1);
        assert_eq!(inputs[0], whole[0], "a failed input keeps what its dead letter needs");

        // The last output's span is bad: the call fails, after outputs that
        // would have taken both inputs' values.
        let out = output(
            &[(0, INPUT_KEY, 0, INPUT_VALUE, 0), (0, INPUT_KEY, 0, INPUT_VALUE, 1), (0, NO_KEY, 2, 9, 1)],
            b"new",
        );
        let mut inputs = whole.clone();
        let failure = unpack(out, &mut inputs, 1 << 20).unwrap_err();
        assert_eq!(failure.kind, FailureKind::InvalidOutput);
        assert_eq!(inputs, whole, "a failed call takes nothing: the retry needs every input");
    }

    #[test]
    fn owned_inputs_with_one_output_each_become_their_outputs_in_place() {
        let mut with_header = input(Some("k1"), "one");
        with_header.headers.push(Header { name: "h".into(), value: Bytes::from_static(b"v") });
        with_header.timestamp = Some(7);
        let whole = vec![input(Some("k0"), "zero"), with_header, input(Some("k2"), "two")];
        // Input 0 passes through; input 1 gets a new value, no key and no
        // headers; input 2 a new key, a header and a timestamp.
        let answer = || {
            let mut out = output(
                &[(0, INPUT_KEY, 0, INPUT_VALUE, 0), (0, NO_KEY, 0, 3, 1), (3, 2, 0, INPUT_VALUE, 2)],
                b"newk2hv",
            );
            out.records.records[2 * RECORD_WORDS + FIRST_HEADER] = 0;
            out.records.records[2 * RECORD_WORDS + HEADER_COUNT] = 1;
            out.records.headers = vec![5, 1, 6, 1];
            out.records.timestamps[2] = 42;
            out
        };
        let borrowed = unpack(answer(), &whole[..], 1 << 20).unwrap();

        let mut inputs = whole.clone();
        let first = inputs.as_ptr();
        let zero = inputs[0].value.as_ptr();
        let call = unpack(answer(), &mut inputs, 1 << 20).unwrap();
        assert_eq!(call.records, borrowed.records, "the same outputs as a borrowing call");
        assert_eq!(call.inputs, borrowed.inputs);
        assert_eq!(call.records[2].headers[0].name, "h");
        assert_eq!(call.records[2].timestamp, Some(42));
        assert_eq!(call.records.as_ptr(), first, "the inputs' own vector, not a new one");
        assert_eq!(call.records[0].value.as_ptr(), zero, "a kept value is not even moved");
        assert!(inputs.is_empty());

        // Two outputs for one input, or a failure: outputs are built apart,
        // and a failed input stays whole for its dead letter.
        let mut inputs = whole.clone();
        let fan_out = output(&[(0, INPUT_KEY, 0, INPUT_VALUE, 0), (0, INPUT_KEY, 0, INPUT_VALUE, 0)], b"");
        let call = unpack(fan_out, &mut inputs, 1 << 20).unwrap();
        assert_eq!(call.records, [whole[0].clone(), whole[0].clone()]);
        assert_eq!(inputs.len(), 3);
        let mut inputs = whole.clone();
        let mut rejected = answer();
        rejected.errors.push(RecordError { input: 1, kind: "invalid-input".into(), message: "no".into() });
        let call = unpack(rejected, &mut inputs, 1 << 20).unwrap();
        assert_eq!(call.records.len(), 2);
        assert_eq!(inputs[1], whole[1], "a failed input keeps what its dead letter needs");
    }

    #[test]
    fn every_output_counts_toward_max_output_bytes_even_when_it_adds_nothing_to_the_buffer() {
        let inputs = [input(Some("k"), "0123456789"), input(None, "ok")];
        // Input 0 fans out ten times: by keeping its value (11 bytes with the
        // key) and by naming one written span over and over (10 bytes).
        // Neither grows the guest's 10-byte buffer; input 1 is kept once.
        let kept = [(0, INPUT_KEY, 0, INPUT_VALUE, 0); 5];
        let same_span = [(0, NO_KEY, 0, 10, 0); 5];
        let words: Vec<_> =
            kept.iter().chain(&same_span).copied().chain([(0, NO_KEY, 0, INPUT_VALUE, 1)]).collect();
        let call = unpack(output(&words, b"abcdefghij"), &inputs[..], 100).unwrap();
        assert_eq!(call.failures.len(), 1);
        let (index, kind, message) = &call.failures[0];
        assert_eq!((*index, kind), (0, &FailureKind::InvalidOutput));
        assert!(message.contains("total 105 bytes, over max_output_bytes = 100"), "{message}");
        assert_eq!(call.records.len(), 1, "the other input's output passes");

        let call = unpack(output(&words, b"abcdefghij"), &inputs[..], 105).unwrap();
        assert!(call.failures.is_empty(), "at the limit is within it");
        assert_eq!(call.records.len(), 11);
    }

    #[test]
    fn spans_outside_the_buffer_are_invalid_output() {
        let inputs = [input(None, "zero")];
        for words in [(0, INPUT_KEY, 1, 3, 0), (0, 4, 0, INPUT_VALUE, 0), (0, NO_KEY, 0, INPUT_VALUE, 1)] {
            let failure = unpack(output(&[words], b"new"), &inputs[..], 1 << 20).unwrap_err();
            assert_eq!(failure.kind, FailureKind::InvalidOutput, "{words:?}: {}", failure.message);
        }
    }

    /// A packed call's outputs and failures are those of the same answer
    /// unpacked into records; a whole-call failure gives the inputs back.
    fn assert_packed_agrees(answer: impl Fn() -> BatchOutput, inputs: &[Record], max_output_bytes: usize) {
        let packed = PackedBatch::from_records(inputs).unwrap();
        match (unpack(answer(), inputs, max_output_bytes), unpack_packed(answer(), packed, max_output_bytes))
        {
            (Ok(records), Ok(packed)) => {
                let failures: Vec<_> = records
                    .failures
                    .iter()
                    .map(|(i, kind, message)| (inputs[*i].clone(), kind.clone(), message.clone()))
                    .collect();
                assert_eq!(packed.failures, failures);
                assert_eq!(packed.batch.size(), records.records.iter().map(Record::size).sum::<usize>());
                assert_eq!(packed.batch.into_records(), records.records);
            }
            (Err(records), Err(packed)) => {
                assert_eq!(packed.failure, records);
                assert_eq!(
                    packed.inputs.into_records(),
                    inputs,
                    "a failed packed call gives its inputs back whole"
                );
            }
            (records, packed) => panic!("records: {records:?}\npacked: {packed:?}"),
        }
    }

    #[test]
    fn packed_calls_agree_with_record_calls() {
        let mut with_header = input(Some("k1"), "one");
        with_header.headers.push(Header { name: "h".into(), value: Bytes::from_static(b"v") });
        with_header.timestamp = Some(7);
        let inputs = vec![input(Some("k0"), "zero"), with_header, input(None, "two")];
        let cases: Vec<(BatchOutput, usize)> = vec![
            // A passthrough: nothing written, everything kept.
            (
                output(
                    &[
                        (0, INPUT_KEY, 0, INPUT_VALUE, 0),
                        (0, INPUT_KEY, 0, INPUT_VALUE, 1),
                        (0, INPUT_KEY, 0, INPUT_VALUE, 2),
                    ],
                    b"",
                ),
                1 << 20,
            ),
            // Fan-out and a filter: input 0 twice, input 1 not at all.
            (
                output(
                    &[(0, INPUT_KEY, 0, INPUT_VALUE, 0), (0, NO_KEY, 0, 3, 0), (0, INPUT_KEY, 3, 2, 2)],
                    b"newab",
                ),
                1 << 20,
            ),
            // Out of input order, a new key, and more written than kept.
            (
                output(
                    &[(0, 2, 2, 20, 2), (0, INPUT_KEY, 0, 22, 0), (22, 0, 0, INPUT_VALUE, 1)],
                    b"abcdefghijklmnopqrstuvwxyz",
                ),
                1 << 20,
            ),
            // Over max_output_bytes: input 0's two outputs fail it.
            (
                output(
                    &[(0, INPUT_KEY, 0, 10, 0), (0, INPUT_KEY, 0, 10, 0), (0, NO_KEY, 0, INPUT_VALUE, 1)],
                    b"0123456789",
                ),
                20,
            ),
            // A span outside the buffer: the whole call fails.
            (output(&[(0, INPUT_KEY, 0, INPUT_VALUE, 0), (0, NO_KEY, 2, 9, 1)], b"new"), 1 << 20),
            // An output for an input the batch does not have.
            (output(&[(0, NO_KEY, 0, INPUT_VALUE, 3)], b""), 1 << 20),
        ];
        for (case, (answer, max_output_bytes)) in cases.into_iter().enumerate() {
            println!("case {case}");
            assert_packed_agrees(
                || BatchOutput { records: answer.records.clone(), errors: answer.errors.clone() },
                &inputs,
                max_output_bytes,
            );
            // The same, with input 1 rejected by the guest.
            let mut rejected = BatchOutput { records: answer.records.clone(), errors: answer.errors.clone() };
            rejected.errors.push(RecordError {
                input: 1,
                kind: "invalid-input".into(),
                message: "no".into(),
            });
            assert_packed_agrees(
                || BatchOutput { records: rejected.records.clone(), errors: rejected.errors.clone() },
                &inputs,
                max_output_bytes,
            );
        }
    }

    #[test]
    fn only_one_output_per_input_in_order_keeping_its_value_forwards_in_place() {
        let kept = (0, INPUT_KEY, 0, INPUT_VALUE, 0);
        let in_place =
            |words: &[(u32, u32, u32, u32, u32)], inputs| forwards_in_place(&output(words, b"k"), inputs);
        assert!(in_place(&[kept, (0, 1, 0, INPUT_VALUE, 1)], 2), "a new key is changed in place");
        assert!(!in_place(&[kept, (0, INPUT_KEY, 0, 1, 1)], 2), "a new value");
        assert!(!in_place(&[kept], 2), "an input filtered out");
        assert!(!in_place(&[kept, kept, (0, INPUT_KEY, 0, INPUT_VALUE, 1)], 2), "fan-out");
        assert!(!in_place(&[(0, INPUT_KEY, 0, INPUT_VALUE, 1), kept], 2), "out of order");
        let mut rejected = output(&[kept], b"");
        rejected.errors.push(RecordError { input: 0, kind: "invalid-input".into(), message: "no".into() });
        assert!(!forwards_in_place(&rejected, 1), "a rejection");
    }

    #[test]
    fn a_batch_handed_on_carries_the_input_buffer_only_when_most_of_it_is_kept() {
        let long = |n: u8| {
            let mut record = input(None, "");
            record.value = Bytes::from(vec![n; 100]);
            record
        };
        let inputs = vec![long(0), long(1), long(2), long(3)];
        let keep = |indices: &[u32]| {
            let words: Vec<_> = indices.iter().map(|&i| (0, NO_KEY, 0, INPUT_VALUE, i)).collect();
            unpack_packed(output(&words, b""), PackedBatch::from_records(&inputs).unwrap(), 1 << 20).unwrap()
        };
        // Three of four kept: the input's buffer is handed on as it is.
        assert_eq!(keep(&[0, 1, 3]).batch.wire.data.len(), 400);
        // One of four: its 100 bytes are copied, not the 400 of the input.
        let one = keep(&[2]).batch;
        assert_eq!(one.wire.data.len(), 100);
        assert_eq!(one.into_records()[0].value, inputs[2].value);
    }

    #[test]
    fn a_written_header_moves_with_the_guests_bytes() {
        // The guest keeps each value and adds a header: its 2 bytes go after
        // the input's, so the header's spans move with them.
        let inputs = vec![input(Some("key"), "a longer value"), input(None, "another")];
        let answer = || {
            let mut out =
                output(&[(0, INPUT_KEY, 0, INPUT_VALUE, 0), (0, INPUT_KEY, 0, INPUT_VALUE, 1)], b"hv");
            out.records.records[HEADER_COUNT] = 1;
            out.records.headers = vec![0, 1, 1, 1];
            out
        };
        assert_packed_agrees(answer, &inputs, 1 << 20);
        let call = unpack_packed(answer(), PackedBatch::from_records(&inputs).unwrap(), 1 << 20).unwrap();
        let first = &call.batch.into_records()[0];
        assert_eq!((first.headers[0].name.as_str(), &first.headers[0].value[..]), ("h", &b"v"[..]));
    }
}
