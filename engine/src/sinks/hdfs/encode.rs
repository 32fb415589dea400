//! Turning a record into a datum of the lake's schema: Avro datums pass
//! through (checked, never re-encoded), JSON documents are encoded through
//! the schema. Also finds the time a record is filed under.

use apache_avro::Schema;
use apache_avro::types::Value as Avro;
use serde::{Deserialize, Serialize};

use crate::avro::datum::DatumChecker;
use crate::avro::from_json::JsonEncoder;
use crate::record::Record;

/// `input` of the `hdfs` sink: what record values hold.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum InputFormat {
    /// Avro when the record says so (`content-type: avro/binary`, as
    /// `image-serialize` sets), JSON otherwise.
    #[default]
    Auto,
    /// Every value is a datum of the schema.
    Avro,
    /// Every value is a JSON document.
    Json,
}

/// Why a record cannot go into the lake; it goes to the dead-letter
/// destination with this.
#[derive(Debug)]
pub struct Refusal {
    pub kind: &'static str,
    pub message: String,
}

pub struct RecordEncoder {
    schema: Schema,
    json: JsonEncoder,
    datums: DatumChecker,
    input: InputFormat,
    timestamp_field: Option<String>,
}

/// A record ready for a file.
pub struct Encoded {
    pub datum: Vec<u8>,
    /// Milliseconds since the epoch the record is filed under.
    pub time_ms: i64,
}

impl RecordEncoder {
    pub fn new(
        schema: Schema,
        input: InputFormat,
        timestamp_field: Option<String>,
        ignore_unknown_fields: bool,
    ) -> anyhow::Result<Self> {
        let json = JsonEncoder::new(schema.clone(), ignore_unknown_fields)?;
        let datums = DatumChecker::new(schema.clone())?;
        Ok(RecordEncoder { schema, json, datums, input, timestamp_field })
    }

    pub fn encode(&self, record: &Record) -> Result<Encoded, Refusal> {
        let is_avro = match self.input {
            InputFormat::Avro => true,
            InputFormat::Json => false,
            InputFormat::Auto => record.header("content-type").is_some_and(|t| t.as_ref() == b"avro/binary"),
        };
        let fallback_time = record.timestamp.unwrap_or_else(crate::record::now_millis);
        if is_avro {
            self.datums.check(&record.value).map_err(|e| {
                refuse("schema-mismatch", format!("the value is not a datum of the lake's schema: {e}"))
            })?;
            let time_ms = match &self.timestamp_field {
                Some(field) => {
                    // Checked above, so decoding is safe; only done when asked.
                    let value = apache_avro::from_avro_datum(&self.schema, &mut &record.value[..], None)
                        .map_err(|e| refuse("schema-mismatch", e.to_string()))?;
                    avro_time(&value, field)?
                }
                None => fallback_time,
            };
            return Ok(Encoded { datum: record.value.to_vec(), time_ms });
        }
        let document: serde_json::Value = serde_json::from_slice(&record.value).map_err(|e| {
            refuse(
                "invalid-json",
                format!("the value is not JSON ({e}); set input = \"avro\" for Avro datums"),
            )
        })?;
        let datum = self.json.encode(&document).map_err(|e| refuse("schema-mismatch", e.to_string()))?;
        let time_ms = match &self.timestamp_field {
            Some(field) => json_time(&document, field)?,
            None => fallback_time,
        };
        Ok(Encoded { datum, time_ms })
    }
}

fn refuse(kind: &'static str, message: String) -> Refusal {
    Refusal { kind, message }
}

fn avro_time(value: &Avro, field: &str) -> Result<i64, Refusal> {
    let Avro::Record(fields) = value else {
        return Err(refuse(
            "schema-mismatch",
            format!("timestamp_field `{field}`: the record is not an Avro record"),
        ));
    };
    let found = fields.iter().find(|(name, _)| name == field).map(|(_, v)| v);
    let value = match found {
        Some(Avro::Union(_, inner)) => &**inner,
        Some(value) => value,
        None => {
            return Err(refuse("schema-mismatch", format!("timestamp_field `{field}` is not in the record")));
        }
    };
    match value {
        Avro::TimestampMillis(ms) | Avro::Long(ms) | Avro::LocalTimestampMillis(ms) => Ok(*ms),
        Avro::TimestampMicros(us) | Avro::LocalTimestampMicros(us) => Ok(us / 1_000),
        Avro::TimestampNanos(ns) | Avro::LocalTimestampNanos(ns) => Ok(ns / 1_000_000),
        other => Err(refuse(
            "schema-mismatch",
            format!("timestamp_field `{field}` holds {other:?}, not a timestamp"),
        )),
    }
}

fn json_time(document: &serde_json::Value, field: &str) -> Result<i64, Refusal> {
    let value = document.get(field).or_else(|| document.pointer(&format!("/{}", field.replace('.', "/"))));
    match value {
        Some(serde_json::Value::Number(n)) => n.as_i64().ok_or_else(|| {
            refuse("schema-mismatch", format!("timestamp_field `{field}`: {n} is not whole milliseconds"))
        }),
        Some(serde_json::Value::String(text)) => {
            chrono::DateTime::parse_from_rfc3339(text).map(|t| t.timestamp_millis()).map_err(|e| {
                refuse(
                    "schema-mismatch",
                    format!("timestamp_field `{field}`: `{text}` is not RFC 3339 ({e})"),
                )
            })
        }
        Some(other) => {
            Err(refuse("schema-mismatch", format!("timestamp_field `{field}` holds {other}, not a time")))
        }
        None => Err(refuse("schema-mismatch", format!("timestamp_field `{field}` is missing"))),
    }
}
