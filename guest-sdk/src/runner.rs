//! Drives a [`Transform`] over a batch; shared by the wasm exports and by
//! [`testing`](crate::testing), so native tests exercise the same code.

use std::any::Any;
use std::cell::{Cell, RefCell};

use crate::bindings::{Batch, BatchOutput, RecordError};
use crate::layout::RECORD_WORDS;
use crate::{Config, Output, Record, Transform};

thread_local! {
    // A component instance is single-threaded and holds one transform.
    static INSTANCE: RefCell<Option<Box<dyn Any>>> = const { RefCell::new(None) };
    // Output bytes per input byte of the last batch, in 1/256ths.
    static OUTPUT_RATIO: Cell<usize> = const { Cell::new(256) };
}

pub fn init<T: Transform>(config: &str) -> Result<(), String> {
    let config = Config::from_json(config)?;
    let transform = T::init(&config)?;
    INSTANCE.with(|cell| *cell.borrow_mut() = Some(Box::new(transform)));
    Ok(())
}

pub fn process<T: Transform>(input: Batch) -> BatchOutput {
    INSTANCE.with(|cell| {
        let mut slot = cell.borrow_mut();
        match slot.as_mut().and_then(|t| t.downcast_mut::<T>()) {
            Some(transform) => run_batch(transform, &input),
            None => fail_all(&input, "not-initialized", "process was called before init"),
        }
    })
}

pub(crate) fn run_batch<T: Transform>(transform: &mut T, input: &Batch) -> BatchOutput {
    let count = input.records.len() / RECORD_WORDS;
    let mut out = Output::with_capacity(expected_output_bytes(input.data.len()), count);
    let mut errors = Vec::new();
    for record in (0..count).filter_map(|position| Record::new(input, position)) {
        let mark = out.begin(&record);
        if let Err(error) = transform.process(&record, &mut out) {
            out.rollback(mark);
            errors.push(RecordError {
                input: record.index(),
                kind: error.kind().to_string(),
                message: error.message().to_string(),
            });
        }
    }
    let records = out.finish();
    OUTPUT_RATIO.set(records.data.len().saturating_mul(256) / input.data.len().max(1));
    BatchOutput { records, errors }
}

/// How many output bytes to make room for: as many per input byte as the
/// last batch produced, plus an eighth. A transform that doubles its input
/// (a log line into a JSON document) would otherwise grow the buffer, and
/// copy what it had written, in every batch.
fn expected_output_bytes(input_bytes: usize) -> usize {
    let expected = input_bytes.saturating_mul(OUTPUT_RATIO.get()) / 256;
    expected.saturating_add(expected / 8)
}

fn fail_all(input: &Batch, kind: &str, message: &str) -> BatchOutput {
    let errors = (0..input.records.len() / RECORD_WORDS)
        .map(|i| RecordError { input: i as u32, kind: kind.into(), message: message.into() })
        .collect();
    let empty = Batch { data: Vec::new(), records: Vec::new(), timestamps: Vec::new(), headers: Vec::new() };
    BatchOutput { records: empty, errors }
}
