//! Records in the batch encoding of `transform.wit`, as they pass from one
//! wasm stage to the next.
//!
//! A stage's guest returns its outputs packed: one byte buffer and a few
//! words per record. Building a [`Record`] for each output only for the
//! next stage to pack it again can cost more than a light transform's own
//! work (a filter, a router). So between two wasm stages the output can
//! stay in this form and be lowered into the next guest as it is; records
//! are built once, by the last stage, for the sink.

use bytes::Bytes;

use super::abi::layout::*;
use super::bindings::Batch;
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
