//! The unit of data that flows through a pipeline.

use std::collections::HashMap;
use std::fmt;
use std::sync::Mutex;

use bytes::Bytes;
use serde::Serialize;

use crate::ack::Ack;

/// One record: what a source reads, a transform sees, and a sink writes.
///
/// Keys and values are [`Bytes`], so the records a transform emits can all
/// point into the one buffer the call returned instead of each owning a copy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub key: Option<Bytes>,
    pub value: Bytes,
    pub headers: Vec<Header>,
    /// Milliseconds since the Unix epoch.
    pub timestamp: Option<i64>,
    /// Where the record was read; outputs of a transform keep their input's.
    pub origin: Origin,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Header {
    pub name: String,
    pub value: Bytes,
}

/// The position a record was read from, in the source's own terms: a Kafka
/// topic, partition and offset, or a file path and line number.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Origin {
    pub source: SourceName,
    pub partition: i32,
    pub offset: i64,
}

/// The name of what a record was read from: a topic, a file, a lake file.
///
/// Names are interned, so an origin is copied without a reference count.
/// Every output of a transform copies its input's origin, on whichever
/// stage worker ran it, and the sink drops it on another thread: with an
/// `Arc<str>` shared by all records of a source, the cores spent their time
/// passing that one counter's cache line back and forth. Each distinct name
/// is kept for the life of the process (a few bytes per topic or file).
///
/// A name is one pointer (to the interned, leaked `&str`), so that a
/// `Record` fits in 128 bytes: larger values are moved with a call to
/// `memcpy` on x86-64, smaller ones with a few inline stores, and records
/// are moved at every step (into a batch, out of a transform, into a sink).
#[derive(Clone, Copy)]
pub struct SourceName(&'static &'static str);

impl SourceName {
    /// The interned name; looking it up takes a lock, so sources call this
    /// once per topic or file, not per record.
    pub fn new(name: &str) -> SourceName {
        static NAMES: std::sync::LazyLock<Mutex<HashMap<&'static str, SourceName>>> =
            std::sync::LazyLock::new(Default::default);
        let mut names = NAMES.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(&interned) = names.get(name) {
            return interned;
        }
        let text: &'static str = Box::leak(name.into());
        let interned = SourceName(Box::leak(Box::new(text)));
        names.insert(text, interned);
        interned
    }

    pub fn as_str(&self) -> &'static str {
        self.0
    }
}

impl PartialEq for SourceName {
    fn eq(&self, other: &Self) -> bool {
        // Interned: one name, one pointer.
        std::ptr::eq(self.0, other.0)
    }
}

impl Eq for SourceName {}

impl std::hash::Hash for SourceName {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.as_str().hash(state);
    }
}

impl PartialOrd for SourceName {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for SourceName {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.as_str().cmp(other.as_str())
    }
}

impl std::ops::Deref for SourceName {
    type Target = str;

    fn deref(&self) -> &str {
        self.0
    }
}

impl From<&str> for SourceName {
    fn from(name: &str) -> Self {
        SourceName::new(name)
    }
}

impl fmt::Display for SourceName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

impl fmt::Debug for SourceName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.0, f)
    }
}

impl Serialize for SourceName {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.0)
    }
}

impl Record {
    pub fn new(value: impl Into<Bytes>, origin: Origin) -> Self {
        Record { key: None, value: value.into(), headers: Vec::new(), timestamp: None, origin }
    }

    /// Bytes the record carries, the measure batch and size limits use.
    pub fn size(&self) -> usize {
        self.key.as_ref().map_or(0, Bytes::len)
            + self.value.len()
            + self.headers.iter().map(|h| h.name.len() + h.value.len()).sum::<usize>()
    }

    pub fn header(&self, name: &str) -> Option<&Bytes> {
        self.headers.iter().find(|h| h.name == name).map(|h| &h.value)
    }
}

/// Records travelling together, with the acknowledgements that tell their
/// source when they are safely written.
#[derive(Debug, Default)]
pub struct Batch {
    pub records: Vec<Record>,
    /// Dropped (or failed) once every record of the batch is durable in a
    /// sink or a dead-letter destination.
    pub acks: Vec<Ack>,
}

impl Batch {
    pub fn new(records: Vec<Record>, acks: Vec<Ack>) -> Self {
        Batch { records, acks }
    }

    pub fn len(&self) -> usize {
        self.records.len()
    }

    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    pub fn size(&self) -> usize {
        self.records.iter().map(Record::size).sum()
    }
}

impl Record {
    /// The record as a JSON object: `key`, `value`, `headers`, `timestamp`.
    /// Bytes that are not UTF-8 are written base64-encoded under `key_base64`
    /// / `value_base64` (and `{"base64": …}` for header values), so any
    /// record round-trips through JSON losslessly.
    pub fn to_json(&self) -> serde_json::Value {
        let mut object = serde_json::Map::new();
        match &self.key {
            None => {
                object.insert("key".into(), serde_json::Value::Null);
            }
            Some(key) => insert_bytes(&mut object, "key", key),
        }
        insert_bytes(&mut object, "value", &self.value);
        let headers: serde_json::Map<String, serde_json::Value> = self
            .headers
            .iter()
            .map(|h| {
                let value = match std::str::from_utf8(&h.value) {
                    Ok(text) => serde_json::Value::String(text.to_string()),
                    Err(_) => serde_json::json!({ "base64": base64_encode(&h.value) }),
                };
                (h.name.clone(), value)
            })
            .collect();
        object.insert("headers".into(), headers.into());
        object.insert("timestamp".into(), self.timestamp.into());
        object.into()
    }
}

impl Record {
    /// Reads back what [`Record::to_json`] wrote, at `origin`. Headers come
    /// back ordered by name (JSON objects do not keep order).
    pub fn from_json(json: &serde_json::Value, origin: Origin) -> Option<Record> {
        let bytes = |field: &str| -> Option<Option<Bytes>> {
            if let Some(text) = json.get(field).and_then(|v| v.as_str()) {
                return Some(Some(Bytes::copy_from_slice(text.as_bytes())));
            }
            match json.get(format!("{field}_base64")).and_then(|v| v.as_str()) {
                Some(encoded) => base64_decode(encoded).map(|b| Some(b.into())),
                None => Some(None),
            }
        };
        let mut headers = Vec::new();
        for (name, value) in json.get("headers").and_then(|h| h.as_object()).into_iter().flatten() {
            let value = match value {
                serde_json::Value::String(text) => Bytes::copy_from_slice(text.as_bytes()),
                other => base64_decode(other.get("base64")?.as_str()?)?.into(),
            };
            headers.push(Header { name: name.clone(), value });
        }
        Some(Record {
            key: bytes("key")?,
            value: bytes("value")?.unwrap_or_default(),
            headers,
            timestamp: json.get("timestamp").and_then(|t| t.as_i64()),
            origin,
        })
    }
}

fn base64_decode(text: &str) -> Option<Vec<u8>> {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.decode(text).ok()
}

fn insert_bytes(object: &mut serde_json::Map<String, serde_json::Value>, field: &str, bytes: &[u8]) {
    match std::str::from_utf8(bytes) {
        Ok(text) => object.insert(field.to_string(), text.into()),
        Err(_) => object.insert(format!("{field}_base64"), base64_encode(bytes).into()),
    };
}

fn base64_encode(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Milliseconds since the Unix epoch, now.
pub fn now_millis() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn source_names_are_interned_once() {
        let topic = String::from("interned-topic");
        let a = SourceName::new(&topic);
        let b: SourceName = "interned-topic".into();
        assert_eq!(a, b);
        // The same leaked string, not a second copy.
        assert!(std::ptr::eq(a.as_str(), b.as_str()));
        assert_ne!(a, SourceName::new("another-topic"));
        assert_eq!(serde_json::to_string(&a).unwrap(), "\"interned-topic\"");
        assert_eq!(format!("{a} {a:?}"), "interned-topic \"interned-topic\"");
        assert!(a < SourceName::new("z") && SourceName::new("a") < a, "ordered by name");
    }

    #[test]
    fn a_record_fits_in_128_bytes() {
        // Beyond that, x86-64 code moves it with a `memcpy` call (see `SourceName`).
        assert!(std::mem::size_of::<Record>() <= 128, "{} bytes", std::mem::size_of::<Record>());
    }

    #[test]
    fn json_form_keeps_binary_bytes_as_base64() {
        let origin = Origin { source: "t".into(), partition: 0, offset: 1 };
        let mut record = Record::new(vec![0xff, 0x00], origin);
        record.key = Some(Bytes::from_static(b"k"));
        record.headers.push(Header { name: "h".into(), value: Bytes::from_static(b"v") });
        let json = record.to_json();
        assert_eq!(json["key"], "k");
        assert_eq!(json["value_base64"], "/wA=");
        assert_eq!(json["headers"]["h"], "v");
        assert!(json.get("value").is_none());
        let back = Record::from_json(&json, record.origin.clone()).unwrap();
        assert_eq!(back, record);
    }
}
