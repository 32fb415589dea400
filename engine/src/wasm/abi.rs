//! Packing records into the batch layout of `transform.wit` and unpacking
//! what the guest returns, without trusting a byte of it.
//!
//! Output records become slices of the one buffer the guest returned (one
//! allocation per call, not per record). Every span and index is checked:
//! a guest that returns garbage fails its records with `invalid-output`, it
//! cannot make the host panic or read out of bounds.

use bytes::Bytes;

use super::bindings::{Batch, BatchOutput, HeaderRef, RecordRef, Span};
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

/// Lays `records` out in `batch`, reusing its buffers.
pub(crate) fn pack(records: &[Record], batch: &mut Batch) {
    batch.data.clear();
    batch.records.clear();
    batch.headers.clear();
    batch.data.reserve(records.iter().map(Record::size).sum());
    for (index, record) in records.iter().enumerate() {
        let key = record.key.as_ref().map(|k| append(&mut batch.data, k));
        let value = append(&mut batch.data, &record.value);
        let headers_start = batch.headers.len() as u32;
        for header in &record.headers {
            let name = append(&mut batch.data, header.name.as_bytes());
            let value = append(&mut batch.data, &header.value);
            batch.headers.push(HeaderRef { name, value });
        }
        batch.records.push(RecordRef {
            key,
            value,
            headers_start,
            headers_len: record.headers.len() as u32,
            timestamp: record.timestamp,
            input: index as u32,
        });
    }
}

fn append(data: &mut Vec<u8>, bytes: &[u8]) -> Span {
    let offset = data.len() as u32;
    data.extend_from_slice(bytes);
    Span { offset, len: bytes.len() as u32 }
}

/// Turns the guest's answer into records, checking every index and span.
pub(crate) fn unpack(
    output: BatchOutput,
    inputs: &[Record],
    max_output_bytes: usize,
) -> Result<CallOutput, CallFailure> {
    let invalid = |message: String| CallFailure { kind: FailureKind::InvalidOutput, message };
    let BatchOutput { records: batch, errors } = output;
    let data = Bytes::from(batch.data);
    let slice = |span: Span| -> Result<Bytes, CallFailure> {
        let start = span.offset as usize;
        let end = start.checked_add(span.len as usize).filter(|&end| end <= data.len());
        match end {
            Some(end) => Ok(data.slice(start..end)),
            None => Err(invalid(format!(
                "span {}..+{} is outside the {}-byte output buffer",
                span.offset,
                span.len,
                data.len()
            ))),
        }
    };

    let mut failed = vec![None::<(FailureKind, String)>; inputs.len()];
    for error in errors {
        let index = error.input as usize;
        if index >= inputs.len() {
            return Err(invalid(format!("error for input {index} of a {}-record batch", inputs.len())));
        }
        failed[index] = Some((FailureKind::Rejected(error.kind), error.message));
    }

    let mut output_bytes = vec![0usize; inputs.len()];
    let mut outputs: Vec<(u32, Record)> = Vec::with_capacity(batch.records.len());
    for meta in &batch.records {
        let index = meta.input as usize;
        let Some(input) = inputs.get(index) else {
            return Err(invalid(format!("output for input {index} of a {}-record batch", inputs.len())));
        };
        let start = meta.headers_start as usize;
        let Some(header_refs) =
            start.checked_add(meta.headers_len as usize).and_then(|end| batch.headers.get(start..end))
        else {
            return Err(invalid(format!("header range {start}..+{} is out of bounds", meta.headers_len)));
        };
        let mut headers = Vec::with_capacity(header_refs.len());
        for h in header_refs {
            let name = slice(h.name)?;
            let name = String::from_utf8(name.to_vec())
                .map_err(|_| invalid("a header name is not valid UTF-8".to_string()))?;
            headers.push(Header { name, value: slice(h.value)? });
        }
        let record = Record {
            key: meta.key.map(slice).transpose()?,
            value: slice(meta.value)?,
            headers,
            timestamp: meta.timestamp,
            origin: input.origin.clone(),
        };
        output_bytes[index] += record.size();
        outputs.push((meta.input, record));
    }

    for (index, bytes) in output_bytes.iter().enumerate() {
        if *bytes > max_output_bytes && failed[index].is_none() {
            failed[index] = Some((
                FailureKind::InvalidOutput,
                format!(
                    "outputs of this record total {bytes} bytes, over max_output_bytes = {max_output_bytes}"
                ),
            ));
        }
    }

    // Keep outputs in input order even if a guest emitted them out of order
    // (the sort is stable), and drop the outputs of inputs that failed.
    if outputs.windows(2).any(|w| w[0].0 > w[1].0) {
        outputs.sort_by_key(|(index, _)| *index);
    }
    outputs.retain(|(index, _)| failed[*index as usize].is_none());
    let (inputs, records) = outputs.into_iter().unzip();
    let failures = failed
        .into_iter()
        .enumerate()
        .filter_map(|(index, failure)| failure.map(|(kind, message)| (index, kind, message)))
        .collect();
    Ok(CallOutput { records, inputs, failures })
}
