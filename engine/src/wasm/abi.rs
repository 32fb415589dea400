//! Packing records into the batch encoding of `transform.wit` and unpacking
//! what the guest returns, without trusting a byte of it.
//!
//! Output records become slices of the one buffer the guest returned (one
//! allocation per call, not per record), or share their input's key and
//! value when the guest says they are unchanged. Every span and index is checked:
//! a guest that returns garbage fails its records with `invalid-output`, it
//! cannot make the host panic or read out of bounds.

use bytes::Bytes;

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
mod layout;

use layout::*;

/// Lays `records` out in `batch`, reusing its buffers.
pub(crate) fn pack(records: &[Record], batch: &mut Batch) {
    batch.data.clear();
    batch.records.clear();
    batch.timestamps.clear();
    batch.headers.clear();
    batch.data.reserve(records.iter().map(Record::size).sum());
    batch.records.reserve(records.len() * RECORD_WORDS);
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
}

fn append(data: &mut Vec<u8>, bytes: &[u8]) -> (u32, u32) {
    let offset = data.len() as u32;
    data.extend_from_slice(bytes);
    (offset, bytes.len() as u32)
}

/// Turns the guest's answer into records, checking every index and offset.
pub(crate) fn unpack(
    output: BatchOutput,
    inputs: &[Record],
    max_output_bytes: usize,
) -> Result<CallOutput, CallFailure> {
    let invalid = |message: String| CallFailure { kind: FailureKind::InvalidOutput, message };
    let BatchOutput { records: batch, errors } = output;
    let data = Bytes::from(batch.data);
    let slice = |offset: u32, len: u32| -> Result<Bytes, CallFailure> {
        let start = offset as usize;
        let end = start.checked_add(len as usize).filter(|&end| end <= data.len());
        match end {
            Some(end) => Ok(data.slice(start..end)),
            None => Err(invalid(format!(
                "range {offset}..+{len} is outside the {}-byte output buffer",
                data.len()
            ))),
        }
    };
    let count = batch.records.len() / RECORD_WORDS;
    if batch.records.len() % RECORD_WORDS != 0 || batch.timestamps.len() != count {
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
            failed.resize(inputs.len(), None);
        }
        failed[index] = Some((kind, message));
    };
    for error in errors {
        let index = error.input as usize;
        if index >= inputs.len() {
            return Err(invalid(format!("error for input {index} of a {}-record batch", inputs.len())));
        }
        fail(&mut failed, index, FailureKind::Rejected(error.kind), error.message);
    }

    // No input's outputs can be over the limit when all of them together
    // are not: then sizes need not be counted per input.
    let count_sizes = data.len() > max_output_bytes;
    let mut output_bytes = vec![0usize; if count_sizes { inputs.len() } else { 0 }];
    let mut records: Vec<Record> = Vec::with_capacity(count);
    let mut record_inputs: Vec<u32> = Vec::with_capacity(count);
    for (words, &timestamp) in batch.records.chunks_exact(RECORD_WORDS).zip(&batch.timestamps) {
        let index = words[INPUT] as usize;
        let Some(input) = inputs.get(index) else {
            return Err(invalid(format!("output for input {index} of a {}-record batch", inputs.len())));
        };
        let start = words[FIRST_HEADER] as usize * HEADER_WORDS;
        let Some(header_words) = (words[HEADER_COUNT] as usize)
            .checked_mul(HEADER_WORDS)
            .and_then(|len| start.checked_add(len))
            .and_then(|end| batch.headers.get(start..end))
        else {
            return Err(invalid(format!("header range of output for input {index} is out of bounds")));
        };
        let mut headers = Vec::with_capacity(words[HEADER_COUNT] as usize);
        for h in header_words.chunks_exact(HEADER_WORDS) {
            let name = String::from_utf8(slice(h[0], h[1])?.to_vec())
                .map_err(|_| invalid("a header name is not valid UTF-8".to_string()))?;
            headers.push(Header { name, value: slice(h[2], h[3])? });
        }
        // An output that keeps its input's key or value refers to it
        // instead of carrying a copy.
        let key = match words[KEY_LEN] {
            NO_KEY => None,
            INPUT_KEY => input.key.clone(),
            len => Some(slice(words[KEY_OFFSET], len)?),
        };
        let value = match words[VALUE_LEN] {
            INPUT_VALUE => input.value.clone(),
            len => slice(words[VALUE_OFFSET], len)?,
        };
        let record = Record {
            key,
            value,
            headers,
            timestamp: (timestamp != NO_TIMESTAMP).then_some(timestamp),
            origin: input.origin.clone(),
        };
        if count_sizes {
            output_bytes[index] += record.size();
        }
        records.push(record);
        record_inputs.push(words[INPUT]);
    }

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

    // Records are large enough that moving them shows in profiles, so the
    // common case (outputs in order, nothing failed) keeps them where they
    // are. Otherwise: restore input order (a stable sort, as a guest may
    // emit out of order) and drop the outputs of inputs that failed.
    let unordered = record_inputs.windows(2).any(|w| w[0] > w[1]);
    if unordered || !failed.is_empty() {
        let mut order: Vec<usize> = (0..records.len()).collect();
        order.sort_by_key(|&i| record_inputs[i]);
        order.retain(|&i| failed.get(record_inputs[i] as usize).is_none_or(Option::is_none));
        let mut slots: Vec<Option<Record>> = records.into_iter().map(Some).collect();
        records = order.iter().filter_map(|&i| slots[i].take()).collect();
        record_inputs = order.iter().map(|&i| record_inputs[i]).collect();
    }
    let failures = failed
        .into_iter()
        .enumerate()
        .filter_map(|(index, failure)| failure.map(|(kind, message)| (index, kind, message)))
        .collect();
    Ok(CallOutput { records, inputs: record_inputs, failures })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::Origin;

    fn input(key: Option<&'static str>, value: &'static str) -> Record {
        let mut record = Record::new(value, Origin { source: "t".into(), partition: 0, offset: 0 });
        record.key = key.map(|k| Bytes::from_static(k.as_bytes()));
        record
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
        let records = unpack(out, &inputs, 1 << 20).unwrap().records;
        // In input order: both outputs of input 0, then input 1's.
        let pairs: Vec<_> = records.iter().map(|r| (r.key.as_deref(), &r.value[..])).collect();
        assert_eq!(pairs, [(Some(&b"k0"[..]), &b"zero"[..]), (None, &b"zero"[..]), (None, &b"new"[..])]);
    }

    #[test]
    fn spans_outside_the_buffer_are_invalid_output() {
        let inputs = [input(None, "zero")];
        for words in [(0, INPUT_KEY, 1, 3, 0), (0, 4, 0, INPUT_VALUE, 0), (0, NO_KEY, 0, INPUT_VALUE, 1)] {
            let failure = unpack(output(&[words], b"new"), &inputs, 1 << 20).unwrap_err();
            assert_eq!(failure.kind, FailureKind::InvalidOutput, "{words:?}: {}", failure.message);
        }
    }
}
