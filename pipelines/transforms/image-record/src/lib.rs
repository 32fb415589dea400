//! The Avro image record (`pipelines/schemas/image.avsc`), encoded and
//! decoded by hand in Avro's binary encoding.
//!
//! Both image transforms run inside wasm, where a general Avro library is
//! weight they do not need: the schema is fixed, and its binary encoding is
//! a handful of zig-zag varints and length-prefixed byte strings. The tests
//! check this encoding against `apache-avro` in both directions.

use sluice_guest::Sink;

/// The schema, as shipped in `pipelines/schemas/image.avsc`.
pub const SCHEMA: &str = include_str!("../../../schemas/image.avsc");

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Jpeg,
    Png,
    Gif,
    Webp,
}

impl Format {
    /// In the order of the schema's enum symbols.
    pub const ALL: [Format; 4] = [Format::Jpeg, Format::Png, Format::Gif, Format::Webp];

    pub fn name(self) -> &'static str {
        match self {
            Format::Jpeg => "jpeg",
            Format::Png => "png",
            Format::Gif => "gif",
            Format::Webp => "webp",
        }
    }

    pub fn mime(self) -> &'static str {
        match self {
            Format::Jpeg => "image/jpeg",
            Format::Png => "image/png",
            Format::Gif => "image/gif",
            Format::Webp => "image/webp",
        }
    }

    /// File-name extensions that name this format.
    pub fn extensions(self) -> &'static [&'static str] {
        match self {
            Format::Jpeg => &["jpg", "jpeg", "jpe", "jfif"],
            Format::Png => &["png"],
            Format::Gif => &["gif"],
            Format::Webp => &["webp"],
        }
    }

    fn index(self) -> i64 {
        Format::ALL.iter().position(|f| *f == self).unwrap_or(0) as i64
    }
}

/// One image record; borrows its byte fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageRecord<'a> {
    pub id: &'a str,
    pub filename: Option<&'a str>,
    pub content_type: &'a str,
    pub format: Format,
    pub width: i32,
    pub height: i32,
    pub size: i64,
    pub sha256: &'a str,
    pub ingested_at: i64,
    pub data: &'a [u8],
    pub thumbnail: Option<&'a [u8]>,
}

impl ImageRecord<'_> {
    /// Appends the record's Avro binary encoding to `out`: in a component,
    /// the output buffer itself, so the image is copied once, not first
    /// into a buffer of its own.
    pub fn encode(&self, out: &mut impl Sink) {
        out.reserve(self.data.len() + self.thumbnail.map_or(0, <[u8]>::len) + 256);
        write_bytes(out, self.id.as_bytes());
        match self.filename {
            None => write_long(out, 0),
            Some(name) => {
                write_long(out, 1);
                write_bytes(out, name.as_bytes());
            }
        }
        write_bytes(out, self.content_type.as_bytes());
        write_long(out, self.format.index());
        write_long(out, i64::from(self.width));
        write_long(out, i64::from(self.height));
        write_long(out, self.size);
        write_bytes(out, self.sha256.as_bytes());
        write_long(out, self.ingested_at);
        write_bytes(out, self.data);
        match self.thumbnail {
            None => write_long(out, 0),
            Some(thumbnail) => {
                write_long(out, 1);
                write_bytes(out, thumbnail);
            }
        }
    }
}

/// Why bytes are not an image record; `field` names where it went wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeError {
    pub field: &'static str,
    pub message: String,
}

impl std::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "field `{}`: {}", self.field, self.message)
    }
}

/// Decodes one record that fills `input` exactly.
pub fn decode(input: &[u8]) -> Result<ImageRecord<'_>, DecodeError> {
    let mut reader = Reader { input, at: 0 };
    let id = reader.string("id")?;
    let filename = match reader.union("filename")? {
        0 => None,
        _ => Some(reader.string("filename")?),
    };
    let content_type = reader.string("content_type")?;
    let format_index = reader.long("format")?;
    let format = usize::try_from(format_index)
        .ok()
        .and_then(|i| Format::ALL.get(i).copied())
        .ok_or_else(|| error("format", format!("no enum symbol with index {format_index}")))?;
    let width = reader.int("width")?;
    let height = reader.int("height")?;
    let size = reader.long("size")?;
    let sha256 = reader.string("sha256")?;
    let ingested_at = reader.long("ingested_at")?;
    let data = reader.bytes("data")?;
    let thumbnail = match reader.union("thumbnail")? {
        0 => None,
        _ => Some(reader.bytes("thumbnail")?),
    };
    if reader.at != input.len() {
        return Err(error("thumbnail", format!("{} bytes after the record's end", input.len() - reader.at)));
    }
    Ok(ImageRecord {
        id,
        filename,
        content_type,
        format,
        width,
        height,
        size,
        sha256,
        ingested_at,
        data,
        thumbnail,
    })
}

fn error(field: &'static str, message: impl Into<String>) -> DecodeError {
    DecodeError { field, message: message.into() }
}

fn write_long(out: &mut impl Sink, value: i64) {
    let mut zigzag = ((value << 1) ^ (value >> 63)) as u64;
    loop {
        if zigzag < 0x80 {
            out.put_byte(zigzag as u8);
            return;
        }
        out.put_byte((zigzag as u8 & 0x7f) | 0x80);
        zigzag >>= 7;
    }
}

fn write_bytes(out: &mut impl Sink, bytes: &[u8]) {
    write_long(out, bytes.len() as i64);
    out.put(bytes);
}

struct Reader<'a> {
    input: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn long(&mut self, field: &'static str) -> Result<i64, DecodeError> {
        let mut value: u64 = 0;
        for shift in (0..64).step_by(7) {
            let Some(&byte) = self.input.get(self.at) else {
                return Err(error(field, "the record ends inside a number"));
            };
            self.at += 1;
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok((value >> 1) as i64 ^ -((value & 1) as i64));
            }
        }
        Err(error(field, "a number longer than 10 bytes"))
    }

    fn int(&mut self, field: &'static str) -> Result<i32, DecodeError> {
        let value = self.long(field)?;
        i32::try_from(value).map_err(|_| error(field, format!("{value} does not fit an int")))
    }

    fn union(&mut self, field: &'static str) -> Result<i64, DecodeError> {
        match self.long(field)? {
            branch @ (0 | 1) => Ok(branch),
            other => Err(error(field, format!("union branch {other} does not exist (null or one type)"))),
        }
    }

    fn bytes(&mut self, field: &'static str) -> Result<&'a [u8], DecodeError> {
        let len = self.long(field)?;
        let len = usize::try_from(len).map_err(|_| error(field, format!("negative length {len}")))?;
        let end = self.at.checked_add(len).filter(|&end| end <= self.input.len()).ok_or_else(|| {
            error(field, format!("{len} bytes announced, {} left in the record", self.input.len() - self.at))
        })?;
        let bytes = &self.input[self.at..end];
        self.at = end;
        Ok(bytes)
    }

    fn string(&mut self, field: &'static str) -> Result<&'a str, DecodeError> {
        let bytes = self.bytes(field)?;
        std::str::from_utf8(bytes).map_err(|e| error(field, format!("invalid UTF-8: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use apache_avro::types::Value;
    use apache_avro::{Schema, from_avro_datum, to_avro_datum};

    use super::*;

    fn sample(thumbnail: Option<&[u8]>) -> ImageRecord<'_> {
        ImageRecord {
            id: "rocket.jpg",
            filename: Some("rocket.jpg"),
            content_type: "image/jpeg",
            format: Format::Jpeg,
            width: 640,
            height: -1,
            size: 3,
            sha256: "ab",
            ingested_at: 1_764_000_000_123,
            data: &[0xff, 0xd8, 0xff],
            thumbnail,
        }
    }

    #[test]
    fn apache_avro_reads_what_we_write_and_we_read_what_it_writes() {
        let schema = Schema::parse_str(SCHEMA).unwrap();
        for record in [sample(None), sample(Some(b"thumb"))] {
            let mut ours = Vec::new();
            record.encode(&mut ours);
            let value = from_avro_datum(&schema, &mut &ours[..], None).unwrap();
            let Value::Record(fields) = &value else { panic!("{value:?}") };
            assert_eq!(fields[0], ("id".into(), Value::String("rocket.jpg".into())));
            assert_eq!(fields[3], ("format".into(), Value::Enum(0, "jpeg".into())));
            assert_eq!(fields[5], ("height".into(), Value::Int(-1)));
            assert_eq!(fields[8], ("ingested_at".into(), Value::TimestampMillis(1_764_000_000_123)));
            let theirs = to_avro_datum(&schema, value).unwrap();
            assert_eq!(theirs, ours, "byte-identical encodings");
            assert_eq!(decode(&theirs).unwrap(), record);
        }
    }

    #[test]
    fn truncated_and_padded_records_are_refused_with_the_field() {
        let mut bytes = Vec::new();
        sample(None).encode(&mut bytes);
        for cut in 0..bytes.len() {
            assert!(decode(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        let error = decode(&bytes[..bytes.len() - 3]).unwrap_err();
        assert_eq!(error.field, "data");
        bytes.push(0);
        assert!(decode(&bytes).unwrap_err().message.contains("after the record's end"));
    }
}
