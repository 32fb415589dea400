//! Encoding JSON documents with an Avro schema, with errors that name the
//! field that did not fit (`field "http.status": expected int, found "x"`),
//! because that is what a user needs to fix a producer or a schema.
//!
//! JSON maps onto Avro the way people write it, not Avro's own JSON
//! encoding: a union takes the plain value of its first branch that fits
//! (no `{"string": …}` wrapper), `bytes` and `fixed` take text (one byte per
//! character, as Avro's JSON encoding does) or `{"base64": "…"}`, and
//! timestamps and dates take numbers or RFC 3339 / ISO 8601 text.

use std::collections::HashMap;

use apache_avro::Schema;
use apache_avro::schema::{Name, RecordField};
use apache_avro::types::Value as Avro;
use serde_json::Value as Json;

/// Why a document does not fit the schema, and where.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("field `{path}`: {message}")]
pub struct FieldError {
    /// `a.b[3]`, or `(root)` for the document itself.
    pub path: String,
    pub message: String,
}

/// Encodes JSON documents as datums of one schema.
pub struct JsonEncoder {
    schema: Schema,
    names: HashMap<Name, Schema>,
    ignore_unknown_fields: bool,
}

impl JsonEncoder {
    pub fn new(schema: Schema, ignore_unknown_fields: bool) -> anyhow::Result<Self> {
        let names = apache_avro::schema::ResolvedSchema::try_from(&schema)?
            .get_names()
            .iter()
            .map(|(name, schema)| (name.clone(), (*schema).clone()))
            .collect();
        Ok(JsonEncoder { schema, names, ignore_unknown_fields })
    }

    /// The document as an Avro datum (binary encoding, no framing).
    pub fn encode(&self, document: &Json) -> Result<Vec<u8>, FieldError> {
        let mut path = Vec::new();
        let value = self.convert(document, &self.schema, &mut path)?;
        apache_avro::to_avro_datum(&self.schema, value)
            .map_err(|e| FieldError { path: "(root)".into(), message: e.to_string() })
    }

    fn convert(&self, json: &Json, schema: &Schema, path: &mut Vec<String>) -> Result<Avro, FieldError> {
        let mismatch = |path: &Vec<String>, expected: &str| {
            error(path, format!("expected {expected}, found {}", show(json)))
        };
        Ok(match schema {
            Schema::Ref { name } => {
                let named =
                    self.names.get(name).ok_or_else(|| error(path, format!("unknown type {name}")))?;
                return self.convert(json, named, path);
            }
            Schema::Null => match json {
                Json::Null => Avro::Null,
                _ => return Err(mismatch(path, "null")),
            },
            Schema::Boolean => Avro::Boolean(json.as_bool().ok_or_else(|| mismatch(path, "boolean"))?),
            Schema::Int => Avro::Int(
                json.as_i64()
                    .and_then(|n| i32::try_from(n).ok())
                    .ok_or_else(|| mismatch(path, "int (32-bit)"))?,
            ),
            Schema::Long => Avro::Long(json.as_i64().ok_or_else(|| mismatch(path, "long"))?),
            Schema::Float => Avro::Float(json.as_f64().ok_or_else(|| mismatch(path, "float"))? as f32),
            Schema::Double => Avro::Double(json.as_f64().ok_or_else(|| mismatch(path, "double"))?),
            Schema::String => {
                Avro::String(json.as_str().ok_or_else(|| mismatch(path, "string"))?.to_string())
            }
            Schema::Bytes => {
                Avro::Bytes(bytes(json).ok_or_else(|| mismatch(path, "bytes (text or {\"base64\": …})"))?)
            }
            Schema::Fixed(fixed) => {
                let bytes = bytes(json).ok_or_else(|| mismatch(path, "fixed bytes"))?;
                if bytes.len() != fixed.size {
                    return Err(error(path, format!("expected {} bytes, found {}", fixed.size, bytes.len())));
                }
                Avro::Fixed(fixed.size, bytes)
            }
            Schema::Enum(enumeration) => {
                let symbol = json.as_str().ok_or_else(|| mismatch(path, "an enum symbol"))?;
                let index = enumeration.symbols.iter().position(|s| s == symbol).ok_or_else(|| {
                    error(path, format!("`{symbol}` is not one of {}", enumeration.symbols.join(", ")))
                })?;
                Avro::Enum(index as u32, symbol.to_string())
            }
            Schema::Array(array) => {
                let items = json.as_array().ok_or_else(|| mismatch(path, "array"))?;
                let mut values = Vec::with_capacity(items.len());
                for (i, item) in items.iter().enumerate() {
                    path.push(format!("[{i}]"));
                    values.push(self.convert(item, &array.items, path)?);
                    path.pop();
                }
                Avro::Array(values)
            }
            Schema::Map(map) => {
                let object = json.as_object().ok_or_else(|| mismatch(path, "object (map)"))?;
                let mut values = HashMap::with_capacity(object.len());
                for (key, item) in object {
                    path.push(format!(".{key}"));
                    values.insert(key.clone(), self.convert(item, &map.types, path)?);
                    path.pop();
                }
                Avro::Map(values)
            }
            Schema::Union(union) => {
                let mut tried = Vec::new();
                for (index, branch) in union.variants().iter().enumerate() {
                    match self.convert(json, branch, path) {
                        Ok(value) => return Ok(Avro::Union(index as u32, Box::new(value))),
                        Err(e) => tried.push(e),
                    }
                }
                // One non-null branch: its error is the useful one.
                let non_null: Vec<&FieldError> = union
                    .variants()
                    .iter()
                    .zip(&tried)
                    .filter(|(s, _)| **s != Schema::Null)
                    .map(|(_, e)| e)
                    .collect();
                if let [only] = non_null[..] {
                    return Err(only.clone());
                }
                return Err(mismatch(path, &format!("one of the union's {} types", union.variants().len())));
            }
            Schema::Record(record) => {
                let object = json.as_object().ok_or_else(|| mismatch(path, "object (record)"))?;
                if !self.ignore_unknown_fields
                    && let Some(unknown) =
                        object.keys().find(|k| !record.fields.iter().any(|f| &f.name == *k))
                {
                    path.push(format!(".{unknown}"));
                    let e = error(path, format!("is not a field of record {}", record.name));
                    path.pop();
                    return Err(e);
                }
                let mut fields = Vec::with_capacity(record.fields.len());
                for field in &record.fields {
                    path.push(format!(".{}", field.name));
                    let value = match object.get(&field.name) {
                        Some(value) => self.convert(value, &field.schema, path)?,
                        None => self.missing(field, path)?,
                    };
                    path.pop();
                    fields.push((field.name.clone(), value));
                }
                Avro::Record(fields)
            }
            Schema::Date => match json {
                Json::String(text) => {
                    let date = chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d")
                        .map_err(|_| mismatch(path, "a date (YYYY-MM-DD or days since 1970-01-01)"))?;
                    Avro::Date((date - chrono::NaiveDate::default()).num_days() as i32)
                }
                _ => Avro::Date(
                    json.as_i64()
                        .and_then(|n| i32::try_from(n).ok())
                        .ok_or_else(|| mismatch(path, "a date"))?,
                ),
            },
            Schema::TimestampMillis => Avro::TimestampMillis(timestamp(json, 1_000).ok_or_else(|| {
                mismatch(path, "a timestamp (RFC 3339 text or milliseconds since the epoch)")
            })?),
            Schema::TimestampMicros => {
                Avro::TimestampMicros(timestamp(json, 1_000_000).ok_or_else(|| {
                    mismatch(path, "a timestamp (RFC 3339 text or microseconds since the epoch)")
                })?)
            }
            Schema::TimestampNanos => {
                Avro::TimestampNanos(timestamp(json, 1_000_000_000).ok_or_else(|| {
                    mismatch(path, "a timestamp (RFC 3339 text or nanoseconds since the epoch)")
                })?)
            }
            Schema::TimeMillis => Avro::TimeMillis(
                json.as_i64()
                    .and_then(|n| i32::try_from(n).ok())
                    .ok_or_else(|| mismatch(path, "time in milliseconds"))?,
            ),
            Schema::TimeMicros => {
                Avro::TimeMicros(json.as_i64().ok_or_else(|| mismatch(path, "time in microseconds"))?)
            }
            Schema::Uuid => {
                let text = json.as_str().ok_or_else(|| mismatch(path, "a UUID"))?;
                Avro::String(text.to_string()).resolve(schema).map_err(|_| mismatch(path, "a UUID"))?
            }
            other => {
                return Err(error(path, format!("{other:?} fields cannot be written from JSON")));
            }
        })
    }

    /// A field the document leaves out: its default, or null for an
    /// optional (null-first or null-containing) union.
    fn missing(&self, field: &RecordField, path: &mut Vec<String>) -> Result<Avro, FieldError> {
        if let Some(default) = &field.default {
            // A union's default belongs to its first branch.
            let schema = match &field.schema {
                Schema::Union(union) => &union.variants()[0],
                other => other,
            };
            let value = self.convert(default, schema, path)?;
            return Ok(match &field.schema {
                Schema::Union(_) => Avro::Union(0, Box::new(value)),
                _ => value,
            });
        }
        if let Schema::Union(union) = &field.schema
            && let Some(index) = union.variants().iter().position(|s| *s == Schema::Null)
        {
            return Ok(Avro::Union(index as u32, Box::new(Avro::Null)));
        }
        Err(error(path, "is required and missing".into()))
    }
}

fn error(path: &[String], message: String) -> FieldError {
    let path = match path.concat().strip_prefix('.') {
        Some(rest) => rest.to_string(),
        None if path.is_empty() => "(root)".to_string(),
        None => path.concat(),
    };
    FieldError { path, message }
}

/// A short rendering of the offending value, cut for long text.
fn show(json: &Json) -> String {
    let text = json.to_string();
    match text.char_indices().nth(60) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text,
    }
}

fn bytes(json: &Json) -> Option<Vec<u8>> {
    match json {
        Json::String(text) => text.chars().map(|c| u8::try_from(u32::from(c)).ok()).collect(),
        Json::Object(object) if object.len() == 1 => {
            use base64::Engine as _;
            let encoded = object.get("base64")?.as_str()?;
            base64::engine::general_purpose::STANDARD.decode(encoded).ok()
        }
        _ => None,
    }
}

/// Units since the epoch from a number, or from RFC 3339 text.
fn timestamp(json: &Json, per_second: i64) -> Option<i64> {
    match json {
        Json::String(text) => {
            let time = chrono::DateTime::parse_from_rfc3339(text).ok()?;
            let seconds = time.timestamp().checked_mul(per_second)?;
            seconds.checked_add(i64::from(time.timestamp_subsec_nanos()) / (1_000_000_000 / per_second))
        }
        _ => json.as_i64(),
    }
}

#[cfg(test)]
mod tests {
    use apache_avro::from_avro_datum;
    use serde_json::json;

    use super::*;

    const SCHEMA: &str = r#"{
        "type": "record", "name": "Log", "namespace": "sluice",
        "fields": [
            {"name": "ts", "type": {"type": "long", "logicalType": "timestamp-millis"}},
            {"name": "status", "type": "int"},
            {"name": "path", "type": ["null", "string"]},
            {"name": "tags", "type": {"type": "array", "items": "string"}, "default": []},
            {"name": "method", "type": {"type": "enum", "name": "Method", "symbols": ["GET", "POST"]}},
            {"name": "client", "type": {"type": "record", "name": "Client", "fields": [
                {"name": "ip", "type": "string"},
                {"name": "port", "type": ["null", "int"], "default": null}
            ]}},
            {"name": "peer", "type": ["null", "Client"], "default": null},
            {"name": "raw", "type": "bytes", "default": ""}
        ]
    }"#;

    fn encoder() -> JsonEncoder {
        JsonEncoder::new(Schema::parse_str(SCHEMA).unwrap(), false).unwrap()
    }

    fn decode(datum: &[u8]) -> Avro {
        let schema = Schema::parse_str(SCHEMA).unwrap();
        from_avro_datum(&schema, &mut &datum[..], None).unwrap()
    }

    #[test]
    fn a_document_that_fits_round_trips_with_defaults_filled_in() {
        let datum = encoder()
            .encode(&json!({
                "ts": "2024-03-01T10:00:00.250Z", "status": 200, "path": "/x", "method": "POST",
                "client": {"ip": "10.0.0.1"}, "peer": {"ip": "10.0.0.2", "port": 80},
                "raw": {"base64": "AAE="}
            }))
            .unwrap();
        let Avro::Record(fields) = decode(&datum) else { panic!() };
        assert_eq!(fields[0].1, Avro::TimestampMillis(1_709_287_200_250));
        assert_eq!(fields[2].1, Avro::Union(1, Box::new(Avro::String("/x".into()))));
        assert_eq!(fields[3].1, Avro::Array(vec![]));
        assert_eq!(fields[4].1, Avro::Enum(1, "POST".into()));
        let Avro::Union(1, peer) = &fields[6].1 else { panic!("{:?}", fields[6].1) };
        assert!(matches!(&**peer, Avro::Record(f) if f[1].1 == Avro::Union(1, Box::new(Avro::Int(80)))));
        assert_eq!(fields[7].1, Avro::Bytes(vec![0, 1]));
    }

    #[test]
    fn errors_name_the_field_that_failed() {
        let base = json!({"ts": 1, "status": 200, "method": "GET", "client": {"ip": "a"}});
        let cases = [
            (json!({"status": "ok"}), "status", "expected int (32-bit), found \"ok\""),
            (json!({"status": 5_000_000_000i64}), "status", "expected int (32-bit)"),
            (json!({"method": "PUT"}), "method", "`PUT` is not one of GET, POST"),
            (json!({"client": {"ip": 7}}), "client.ip", "expected string, found 7"),
            (json!({"client": {}}), "client.ip", "is required and missing"),
            (json!({"tags": ["a", 1]}), "tags[1]", "expected string"),
            (json!({"ts": "yesterday"}), "ts", "expected a timestamp"),
            (json!({"path": 3}), "path", "expected string, found 3"),
            (json!({"extra": 1}), "extra", "is not a field of record sluice.Log"),
        ];
        for (patch, path, message) in cases {
            let mut document = base.clone();
            for (key, value) in patch.as_object().unwrap() {
                document[key] = value.clone();
            }
            let e = encoder().encode(&document).unwrap_err();
            assert_eq!(e.path, path, "{document}");
            assert!(e.message.contains(message), "{document}: {e}");
        }
        let e = encoder().encode(&json!([1])).unwrap_err();
        assert_eq!(e.to_string(), "field `(root)`: expected object (record), found [1]");
    }

    #[test]
    fn unknown_fields_can_be_ignored() {
        let encoder = JsonEncoder::new(Schema::parse_str(SCHEMA).unwrap(), true).unwrap();
        let document =
            json!({"ts": 1, "status": 1, "method": "GET", "client": {"ip": "a", "x": 1}, "extra": true});
        assert!(encoder.encode(&document).is_ok());
    }
}
