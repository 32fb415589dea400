//! Strict checking of binary Avro datums against a schema.
//!
//! Records that arrive already encoded are appended to lake files as they
//! are, so they must be checked first: a datum that is cut short or has
//! bytes left over would corrupt every record after it in its block.
//! `apache_avro`'s decoder is lenient here (a string cut short decodes as
//! null) and copies every byte into values; this walks the bytes instead,
//! allocating nothing, and says where a datum went wrong.

use std::collections::HashMap;

use apache_avro::Schema;
use apache_avro::schema::Name;

pub struct DatumChecker {
    schema: Schema,
    names: HashMap<Name, Schema>,
}

struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
    /// How deep the walk is: a recursive schema (a record that holds
    /// itself) could otherwise take a crafted datum past the stack.
    depth: usize,
}

/// Values nested deeper than this are refused.
const MAX_DEPTH: usize = 128;

impl DatumChecker {
    pub fn new(schema: Schema) -> anyhow::Result<Self> {
        let names = apache_avro::schema::ResolvedSchema::try_from(&schema)?
            .get_names()
            .iter()
            .map(|(name, schema)| (name.clone(), (*schema).clone()))
            .collect();
        Ok(DatumChecker { schema, names })
    }

    /// Checks that `datum` is exactly one value of the schema.
    pub fn check(&self, datum: &[u8]) -> Result<(), String> {
        let mut cursor = Cursor { bytes: datum, pos: 0, depth: 0 };
        self.skip(&self.schema, &mut cursor, &mut Vec::new())?;
        match datum.len() - cursor.pos {
            0 => Ok(()),
            extra => Err(format!("{extra} bytes left over after the record")),
        }
    }

    fn skip(&self, schema: &Schema, cursor: &mut Cursor<'_>, path: &mut Vec<String>) -> Result<(), String> {
        let at = |path: &Vec<String>, message: String| match path.concat().strip_prefix('.') {
            Some(field) => format!("field `{field}`: {message}"),
            None => message,
        };
        if cursor.depth >= MAX_DEPTH {
            return Err(at(path, format!("values nested more than {MAX_DEPTH} deep")));
        }
        cursor.depth += 1;
        let checked = self.skip_value(schema, cursor, path, at);
        cursor.depth -= 1;
        checked
    }

    fn skip_value(
        &self,
        schema: &Schema,
        cursor: &mut Cursor<'_>,
        path: &mut Vec<String>,
        at: impl Fn(&Vec<String>, String) -> String,
    ) -> Result<(), String> {
        match schema {
            Schema::Null => {}
            Schema::Boolean => match cursor.take(1).map(|b| b[0]) {
                Some(0 | 1) => {}
                Some(other) => return Err(at(path, format!("boolean byte {other} is neither 0 nor 1"))),
                None => return Err(at(path, "cut short".into())),
            },
            Schema::Int | Schema::Date | Schema::TimeMillis => {
                let n = cursor.long().ok_or_else(|| at(path, "cut short or malformed int".into()))?;
                if i32::try_from(n).is_err() {
                    return Err(at(path, format!("{n} does not fit an int")));
                }
            }
            Schema::Long
            | Schema::TimeMicros
            | Schema::TimestampMillis
            | Schema::TimestampMicros
            | Schema::TimestampNanos
            | Schema::LocalTimestampMillis
            | Schema::LocalTimestampMicros
            | Schema::LocalTimestampNanos => {
                cursor.long().ok_or_else(|| at(path, "cut short or malformed long".into()))?;
            }
            Schema::Float => cursor.skip(4).ok_or_else(|| at(path, "cut short".into()))?,
            Schema::Double => cursor.skip(8).ok_or_else(|| at(path, "cut short".into()))?,
            Schema::Bytes | Schema::BigDecimal => {
                cursor.sized().ok_or_else(|| at(path, "length runs past the end of the datum".into()))?;
            }
            Schema::String | Schema::Uuid => {
                let text =
                    cursor.sized().ok_or_else(|| at(path, "length runs past the end of the datum".into()))?;
                std::str::from_utf8(text).map_err(|e| at(path, format!("string is not UTF-8: {e}")))?;
            }
            Schema::Fixed(fixed) => cursor.skip(fixed.size).ok_or_else(|| at(path, "cut short".into()))?,
            Schema::Duration => cursor.skip(12).ok_or_else(|| at(path, "cut short".into()))?,
            Schema::Decimal(decimal) => self.skip(&decimal.inner, cursor, path)?,
            Schema::Enum(enumeration) => {
                let index = cursor.long().ok_or_else(|| at(path, "cut short".into()))?;
                if usize::try_from(index).map_or(true, |i| i >= enumeration.symbols.len()) {
                    return Err(at(path, format!("enum index {index} out of range")));
                }
            }
            Schema::Union(union) => {
                let index = cursor.long().ok_or_else(|| at(path, "cut short".into()))?;
                let branch = usize::try_from(index)
                    .ok()
                    .and_then(|i| union.variants().get(i))
                    .ok_or_else(|| at(path, format!("union branch {index} out of range")))?;
                self.skip(branch, cursor, path)?;
            }
            Schema::Array(array) => {
                self.blocks(cursor, path, |checker, cursor, path| checker.skip(&array.items, cursor, path))?
            }
            Schema::Map(map) => self.blocks(cursor, path, |checker, cursor, path| {
                checker.skip(&Schema::String, cursor, path)?;
                checker.skip(&map.types, cursor, path)
            })?,
            Schema::Record(record) => {
                for field in &record.fields {
                    path.push(format!(".{}", field.name));
                    self.skip(&field.schema, cursor, path)?;
                    path.pop();
                }
            }
            Schema::Ref { name } => {
                let named = self.names.get(name).ok_or_else(|| at(path, format!("unknown type {name}")))?;
                self.skip(named, cursor, path)?;
            }
        }
        Ok(())
    }

    /// Array and map items: blocks of `count` items (a negative count is
    /// followed by the block's size in bytes), ending with a zero count.
    fn blocks(
        &self,
        cursor: &mut Cursor<'_>,
        path: &mut Vec<String>,
        mut item: impl FnMut(&Self, &mut Cursor<'_>, &mut Vec<String>) -> Result<(), String>,
    ) -> Result<(), String> {
        let mut index = 0usize;
        loop {
            let count = cursor.long().ok_or_else(|| "cut short in an array or map".to_string())?;
            if count == 0 {
                return Ok(());
            }
            if count < 0 {
                cursor.long().ok_or_else(|| "cut short in an array or map".to_string())?;
            }
            // Items take at least a byte, except nulls and empty records; a
            // bogus count must not keep the walk busy for ages on those.
            let count = count.unsigned_abs();
            if count > cursor.remaining() as u64 + (1 << 20) {
                return Err(format!("an array or map claims {count} items, more than the datum can hold"));
            }
            for _ in 0..count {
                path.push(format!("[{index}]"));
                item(self, cursor, path)?;
                path.pop();
                index += 1;
            }
        }
    }
}

impl<'a> Cursor<'a> {
    fn remaining(&self) -> usize {
        self.bytes.len() - self.pos
    }

    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let end = self.pos.checked_add(n).filter(|end| *end <= self.bytes.len())?;
        let slice = &self.bytes[self.pos..end];
        self.pos = end;
        Some(slice)
    }

    fn skip(&mut self, n: usize) -> Option<()> {
        self.take(n).map(|_| ())
    }

    /// A zig-zag varint `long` (at most 10 bytes).
    fn long(&mut self) -> Option<i64> {
        let mut value = 0u64;
        for shift in (0..70).step_by(7) {
            let byte = *self.bytes.get(self.pos)?;
            self.pos += 1;
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Some((value >> 1) as i64 ^ -((value & 1) as i64));
            }
        }
        None
    }

    /// A length-prefixed byte run.
    fn sized(&mut self) -> Option<&'a [u8]> {
        let len = usize::try_from(self.long()?).ok()?;
        self.take(len)
    }
}

#[cfg(test)]
mod tests {
    use apache_avro::types::Value;

    use super::*;

    const SCHEMA: &str = r#"{"type":"record","name":"R","fields":[
        {"name":"id","type":"string"},
        {"name":"n","type":"int"},
        {"name":"tags","type":{"type":"array","items":"string"}},
        {"name":"attrs","type":{"type":"map","values":"long"}},
        {"name":"kind","type":{"type":"enum","name":"K","symbols":["A","B"]}},
        {"name":"thumb","type":["null","bytes"]},
        {"name":"ok","type":"boolean"},
        {"name":"ratio","type":"double"}
    ]}"#;

    #[test]
    fn a_deeply_nested_datum_of_a_recursive_schema_is_refused_not_a_stack_overflow() {
        let schema = Schema::parse_str(
            r#"{"type":"record","name":"Node","fields":[{"name":"next","type":["null","Node"]}]}"#,
        )
        .unwrap();
        let checker = DatumChecker::new(schema).unwrap();
        // Union branch 1 (zigzag 2) a million times: a chain a million deep.
        let mut deep = vec![2u8; 1_000_000];
        deep.push(0);
        let error = checker.check(&deep).unwrap_err();
        assert!(error.contains("nested more than 128 deep"), "{error}");
        // A shallow chain is fine.
        assert_eq!(checker.check(&[2, 2, 2, 0]), Ok(()));
    }

    fn datum() -> Vec<u8> {
        let schema = Schema::parse_str(SCHEMA).unwrap();
        let value = Value::Record(vec![
            ("id".into(), Value::String("abc".into())),
            ("n".into(), Value::Int(-5)),
            ("tags".into(), Value::Array(vec![Value::String("x".into()), Value::String("yz".into())])),
            ("attrs".into(), Value::Map([("k".to_string(), Value::Long(1 << 40))].into())),
            ("kind".into(), Value::Enum(1, "B".into())),
            ("thumb".into(), Value::Union(1, Box::new(Value::Bytes(vec![1, 2, 3])))),
            ("ok".into(), Value::Boolean(true)),
            ("ratio".into(), Value::Double(0.5)),
        ]);
        apache_avro::to_avro_datum(&schema, value).unwrap()
    }

    fn checker() -> DatumChecker {
        DatumChecker::new(Schema::parse_str(SCHEMA).unwrap()).unwrap()
    }

    #[test]
    fn a_whole_datum_passes() {
        assert_eq!(checker().check(&datum()), Ok(()));
    }

    #[test]
    fn every_cut_and_any_extra_byte_is_caught() {
        let datum = datum();
        for len in 0..datum.len() {
            assert!(checker().check(&datum[..len]).is_err(), "cut at {len} passed");
        }
        let extra = [&datum[..], &[0]].concat();
        assert_eq!(checker().check(&extra), Err("1 bytes left over after the record".into()));
    }

    #[test]
    fn errors_name_the_field() {
        let mut bad_enum = datum();
        // id (4 bytes) n (1) tags (1+2+3+1) attrs (1+2+6+1) → kind at 22.
        assert_eq!(bad_enum[22], 2, "kind index B");
        bad_enum[22] = 8;
        assert_eq!(checker().check(&bad_enum), Err("field `kind`: enum index 4 out of range".into()));
        let mut bad_utf8 = datum();
        bad_utf8[1] = 0xff;
        assert!(checker().check(&bad_utf8).unwrap_err().starts_with("field `id`: string is not UTF-8"));
    }
}
