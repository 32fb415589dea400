//! The batch ABI round-trips any record byte-exact through a passthrough
//! module, as records and packed: empty and binary values, absent and
//! empty keys, zero to many headers, huge records.

use bytes::Bytes;
use proptest::prelude::*;
use sluice::record::{Header, Origin, Record};
use sluice::wasm::{Grants, Limits, PackedBatch, TransformInstance};
use sluice_tests::guest;

fn instance() -> TransformInstance {
    let module = sluice_tests::host().load_file(&guest("passthrough"), false).unwrap();
    let limits = Limits { max_memory_bytes: 256 << 20, ..Limits::default() };
    TransformInstance::new(&module, &limits, &Grants::default(), "{}").unwrap()
}

fn record(
    key: Option<Vec<u8>>,
    value: Vec<u8>,
    headers: Vec<(String, Vec<u8>)>,
    timestamp: Option<i64>,
    i: usize,
) -> Record {
    Record {
        key: key.map(Bytes::from),
        value: Bytes::from(value),
        headers: headers
            .into_iter()
            .map(|(name, value)| Header { name, value: Bytes::from(value) })
            .collect(),
        timestamp,
        origin: Origin { source: "test".into(), partition: 0, offset: i as i64 },
    }
}

fn assert_round_trip(instance: &mut TransformInstance, inputs: &[Record]) {
    let output = instance.call(inputs).expect("passthrough does not fail");
    assert!(output.failures.is_empty());
    assert_eq!(output.records.len(), inputs.len());
    for (input, out) in inputs.iter().zip(&output.records) {
        assert_eq!(out, input);
    }
    // A stage's call, which takes over what outputs keep: the same records.
    let mut batch = inputs.to_vec();
    let output = instance.call_consuming(&mut batch).expect("passthrough does not fail");
    assert_eq!(output.records, inputs);
    // Packed, as stages between stages pass batches on, twice over: the
    // second call gets the first's output as it is.
    let packed = PackedBatch::from_records(inputs).unwrap();
    let once = instance.call_packed(packed).expect("passthrough does not fail");
    assert!(once.failures.is_empty());
    let twice = instance.call_packed(once.batch).expect("passthrough does not fail");
    assert!(twice.failures.is_empty());
    assert_eq!(twice.batch.into_records(), inputs);
}

/// Key, value, headers and timestamp of a generated record.
type Parts = (Option<Vec<u8>>, Vec<u8>, Vec<(String, Vec<u8>)>, Option<i64>);

fn arb_record() -> impl Strategy<Value = Parts> {
    (
        proptest::option::of(proptest::collection::vec(any::<u8>(), 0..24)),
        prop_oneof![
            Just(Vec::new()),
            proptest::collection::vec(any::<u8>(), 0..64),
            proptest::collection::vec(any::<u8>(), 0..4096),
        ],
        proptest::collection::vec(
            ("[a-zA-Z0-9._-]{0,12}", proptest::collection::vec(any::<u8>(), 0..32)),
            0..5,
        ),
        proptest::option::of(any::<i64>()),
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn random_batches_round_trip(batch in proptest::collection::vec(arb_record(), 0..80)) {
        let mut instance = instance();
        let inputs: Vec<Record> = batch
            .into_iter()
            .enumerate()
            .map(|(i, (k, v, h, t))| record(k, v, h, t, i))
            .collect();
        assert_round_trip(&mut instance, &inputs);
        // The same instance keeps working for the next batch.
        assert_round_trip(&mut instance, &inputs);
    }
}

#[test]
fn huge_records_and_many_headers_round_trip() {
    let mut instance = instance();
    let huge: Vec<u8> = (0..(8 << 20)).map(|i| (i * 7 % 251) as u8).collect();
    let headers: Vec<(String, Vec<u8>)> = (0..200).map(|i| (format!("h{i}"), vec![i as u8; i])).collect();
    let inputs = vec![
        record(Some(vec![]), huge.clone(), vec![], None, 0),
        record(None, vec![], headers, Some(-1), 1),
        record(Some(vec![0xff; 3]), huge, vec![("".into(), vec![])], Some(i64::MAX), 2),
    ];
    assert_round_trip(&mut instance, &inputs);
}

#[test]
fn an_empty_batch_is_a_no_op() {
    let mut instance = instance();
    assert_round_trip(&mut instance, &[]);
}
