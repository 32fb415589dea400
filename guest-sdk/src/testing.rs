//! Run a transform natively in `cargo test`, through the same batch code the
//! component uses.
//!
//! ```ignore
//! let mut t = sluice_guest::testing::init::<MyTransform>(r#"{"format": "json"}"#).unwrap();
//! let results = sluice_guest::testing::run(&mut t, &[TestRecord::new("a line")]);
//! assert_eq!(results[0].as_ref().unwrap()[0].value_str(), "...");
//! ```

use crate::bindings::Batch;
use crate::layout::*;
use crate::{Config, Error, Transform};

/// An owned record, for test inputs and outputs.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TestRecord {
    pub key: Option<Vec<u8>>,
    pub value: Vec<u8>,
    pub headers: Vec<(String, Vec<u8>)>,
    pub timestamp: Option<i64>,
}

impl TestRecord {
    pub fn new(value: impl Into<Vec<u8>>) -> Self {
        TestRecord { value: value.into(), ..Default::default() }
    }

    pub fn with_key(mut self, key: impl Into<Vec<u8>>) -> Self {
        self.key = Some(key.into());
        self
    }

    pub fn with_header(mut self, name: &str, value: impl Into<Vec<u8>>) -> Self {
        self.headers.push((name.to_string(), value.into()));
        self
    }

    pub fn with_timestamp(mut self, millis: i64) -> Self {
        self.timestamp = Some(millis);
        self
    }

    /// The value as UTF-8; panics otherwise (this is for tests).
    pub fn value_str(&self) -> &str {
        std::str::from_utf8(&self.value).expect("value is UTF-8")
    }

    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_slice())
    }
}

/// Grants lookup table `name` to transforms run natively on this thread:
/// `lookup(key)` answers as the host's table would (a JSON object or none).
#[cfg(not(target_arch = "wasm32"))]
pub fn grant_lookup(name: &str, lookup: impl Fn(&str) -> Option<String> + 'static) {
    crate::lookup::imp::grant(name, Box::new(lookup));
}

/// Builds a transform from a JSON config, as the host does at deploy.
pub fn init<T: Transform>(config_json: &str) -> Result<T, String> {
    T::init(&Config::from_json(config_json)?)
}

/// Runs `inputs` through `transform` as one batch. Each input gets either
/// its outputs or the error it was refused with.
pub fn run<T: Transform>(transform: &mut T, inputs: &[TestRecord]) -> Vec<Result<Vec<TestRecord>, Error>> {
    let batch = pack(inputs);
    let output = crate::runner::run_batch(transform, &batch);
    let mut results: Vec<Result<Vec<TestRecord>, Error>> = inputs.iter().map(|_| Ok(Vec::new())).collect();
    for record in unpack(&output.records, inputs) {
        let (input, record) = record;
        if let Some(Ok(outputs)) = results.get_mut(input as usize) {
            outputs.push(record);
        }
    }
    for error in output.errors {
        results[error.input as usize] = Err(Error::new(error.kind, error.message));
    }
    results
}

/// Runs one record and returns its outputs or error.
pub fn run_one<T: Transform>(transform: &mut T, input: TestRecord) -> Result<Vec<TestRecord>, Error> {
    run(transform, &[input]).pop().expect("one result per input")
}

/// Packs records into the batch layout the host sends. With
/// [`run_packed`], lets a benchmark time the transform itself natively,
/// without the cost of building test records.
#[doc(hidden)]
pub fn pack(inputs: &[TestRecord]) -> Batch {
    let mut batch =
        Batch { data: Vec::new(), records: Vec::new(), timestamps: Vec::new(), headers: Vec::new() };
    let append = |data: &mut Vec<u8>, bytes: &[u8]| {
        let offset = data.len() as u32;
        data.extend_from_slice(bytes);
        (offset, bytes.len() as u32)
    };
    for (index, input) in inputs.iter().enumerate() {
        let (key_offset, key_len) = input.key.as_deref().map_or((0, NO_KEY), |k| append(&mut batch.data, k));
        let (value_offset, value_len) = append(&mut batch.data, &input.value);
        let first_header = (batch.headers.len() / HEADER_WORDS) as u32;
        for (name, value) in &input.headers {
            let (name_offset, name_len) = append(&mut batch.data, name.as_bytes());
            let (value_offset, value_len) = append(&mut batch.data, value);
            batch.headers.extend_from_slice(&[name_offset, name_len, value_offset, value_len]);
        }
        let header_count = input.headers.len() as u32;
        batch.records.extend_from_slice(&[
            key_offset,
            key_len,
            value_offset,
            value_len,
            first_header,
            header_count,
            index as u32,
        ]);
        batch.timestamps.push(input.timestamp.unwrap_or(NO_TIMESTAMP));
    }
    batch
}

/// Runs a packed batch through `transform`, as the component export does.
#[doc(hidden)]
pub fn run_packed<T: Transform>(transform: &mut T, batch: &Batch) -> crate::bindings::BatchOutput {
    crate::runner::run_batch(transform, batch)
}

fn unpack<'a>(batch: &'a Batch, inputs: &'a [TestRecord]) -> impl Iterator<Item = (u32, TestRecord)> + 'a {
    let slice = move |offset: u32, len: u32| batch.data[offset as usize..(offset + len) as usize].to_vec();
    batch.records.chunks_exact(RECORD_WORDS).zip(&batch.timestamps).map(move |(w, &timestamp)| {
        let input = &inputs[w[INPUT] as usize];
        let start = w[FIRST_HEADER] as usize * HEADER_WORDS;
        let end = start + w[HEADER_COUNT] as usize * HEADER_WORDS;
        let headers = batch.headers[start..end]
            .chunks_exact(HEADER_WORDS)
            .map(|h| (String::from_utf8_lossy(&slice(h[0], h[1])).into_owned(), slice(h[2], h[3])))
            .collect();
        let record = TestRecord {
            key: match w[KEY_LEN] {
                NO_KEY => None,
                INPUT_KEY => input.key.clone(),
                len => Some(slice(w[KEY_OFFSET], len)),
            },
            value: match w[VALUE_LEN] {
                INPUT_VALUE => input.value.clone(),
                len => slice(w[VALUE_OFFSET], len),
            },
            headers,
            timestamp: (timestamp != NO_TIMESTAMP).then_some(timestamp),
        };
        (w[INPUT], record)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Output, Record};

    /// Splits a value on commas; refuses values containing `!`.
    struct Split;

    impl Transform for Split {
        fn init(config: &Config) -> Result<Self, String> {
            config.expect_keys(&[])?;
            Ok(Split)
        }

        fn process(&mut self, record: &Record<'_>, out: &mut Output) -> Result<(), Error> {
            let text = record.value_str()?;
            for part in text.split(',') {
                out.push(part).header("part", "yes");
            }
            if text.contains('!') {
                return Err(Error::invalid_input("bang"));
            }
            Ok(())
        }
    }

    #[test]
    fn outputs_keep_input_key_and_timestamp_and_errors_roll_back() {
        let mut t = init::<Split>("").unwrap();
        let inputs = [
            TestRecord::new("a,b").with_key("k").with_timestamp(7),
            TestRecord::new("x,!"),
            TestRecord::new(vec![0xff, 0xfe]),
            TestRecord::new(""),
        ];
        let results = run(&mut t, &inputs);
        let first = results[0].as_ref().unwrap();
        assert_eq!(first.len(), 2);
        assert_eq!(first[1].value_str(), "b");
        assert_eq!(first[1].key.as_deref(), Some(&b"k"[..]));
        assert_eq!(first[1].timestamp, Some(7));
        assert_eq!(first[1].header("part"), Some(&b"yes"[..]));
        assert_eq!(results[1].as_ref().unwrap_err().message(), "bang");
        assert_eq!(results[2].as_ref().unwrap_err().kind(), "invalid-utf8");
        assert_eq!(results[3].as_ref().unwrap()[0].value_str(), "");
    }

    /// Forwards every record, and a copy of it with a new key.
    struct Twice;

    impl Transform for Twice {
        fn init(_config: &Config) -> Result<Self, String> {
            Ok(Twice)
        }

        fn process(&mut self, record: &Record<'_>, out: &mut Output) -> Result<(), Error> {
            out.forward(record);
            out.push(record.value()).key(Some(b"new"));
            Ok(())
        }
    }

    #[test]
    fn forwarded_records_are_exact_copies_without_copying_key_or_value() {
        let mut t = init::<Twice>("").unwrap();
        let inputs = [
            TestRecord::new("one").with_key("k1").with_header("h", "v").with_timestamp(5),
            TestRecord::new("two"),
        ];
        let batch = pack(&inputs);
        let output = crate::runner::run_batch(&mut t, &batch);
        // Only the pushed values and the header were copied.
        assert_eq!(output.records.data, b"hvonenewtwonew");
        let results = run(&mut t, &inputs);
        for (input, result) in inputs.iter().zip(results) {
            let outputs = result.unwrap();
            assert_eq!(&outputs[0], input);
            assert_eq!(outputs[1].value, input.value);
            assert_eq!(outputs[1].key.as_deref(), Some(&b"new"[..]));
        }
    }

    #[test]
    fn init_rejects_unknown_keys() {
        let err = init::<Split>(r#"{"colour": 1}"#).err().unwrap();
        assert!(err.contains("unknown config key `colour`"), "{err}");
    }
}
