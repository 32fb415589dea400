//! Avro object container framing: a header with the schema, codec and sync
//! marker, then blocks of datums, each compressed whole and followed by the
//! marker (<https://avro.apache.org/docs/1.11.1/specification/#object-container-files>).
//!
//! The writer produces bytes and leaves moving them to storage to its
//! caller, so the same framing serves local files, HDFS and tests.

use apache_avro::Codec;

const MAGIC: &[u8; 4] = b"Obj\x01";

/// Builds one container file, block by block.
pub struct ContainerWriter {
    codec: Codec,
    sync: [u8; 16],
    /// Target size of a block before compression (the "sync interval").
    block_size: usize,
    block: Vec<u8>,
    block_records: u64,
    /// Framed bytes not yet taken by [`ContainerWriter::take_output`].
    output: Vec<u8>,
    records: u64,
    datum_bytes: u64,
    file_bytes: u64,
}

impl ContainerWriter {
    pub fn new(schema_json: &str, codec: Codec, block_size: usize) -> Self {
        let mut sync = [0u8; 16];
        // A marker that cannot collide with block contents by accident; if
        // the OS has no randomness, a fixed marker is still a valid file.
        let _ = getrandom::fill(&mut sync);
        let mut output = Vec::with_capacity(schema_json.len() + 64);
        output.extend_from_slice(MAGIC);
        let codec_name: &str = codec.into();
        write_long(&mut output, 2);
        write_bytes(&mut output, b"avro.schema");
        write_bytes(&mut output, schema_json.as_bytes());
        write_bytes(&mut output, b"avro.codec");
        write_bytes(&mut output, codec_name.as_bytes());
        write_long(&mut output, 0);
        output.extend_from_slice(&sync);
        let file_bytes = output.len() as u64;
        ContainerWriter {
            codec,
            sync,
            block_size,
            block: Vec::with_capacity(block_size.min(1 << 20)),
            block_records: 0,
            output,
            records: 0,
            datum_bytes: 0,
            file_bytes,
        }
    }

    /// Appends one datum, already encoded with the file's schema. Ends the
    /// block when it reaches the block size.
    pub fn append(&mut self, datum: &[u8]) -> Result<(), apache_avro::Error> {
        self.block.extend_from_slice(datum);
        self.block_records += 1;
        self.records += 1;
        self.datum_bytes += datum.len() as u64;
        if self.block.len() >= self.block_size {
            self.end_block()?;
        }
        Ok(())
    }

    /// Compresses and frames the records appended since the last block.
    pub fn end_block(&mut self) -> Result<(), apache_avro::Error> {
        if self.block_records == 0 {
            return Ok(());
        }
        let mut data = std::mem::take(&mut self.block);
        self.codec.compress(&mut data)?;
        let start = self.output.len();
        write_long(&mut self.output, self.block_records as i64);
        write_long(&mut self.output, data.len() as i64);
        self.output.extend_from_slice(&data);
        self.output.extend_from_slice(&self.sync);
        self.file_bytes += (self.output.len() - start) as u64;
        self.block_records = 0;
        data.clear();
        self.block = data;
        Ok(())
    }

    /// The framed bytes produced so far that the caller has not taken yet.
    pub fn take_output(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.output)
    }

    /// Records appended to the file.
    pub fn records(&self) -> u64 {
        self.records
    }

    /// Encoded size of the records before compression.
    pub fn datum_bytes(&self) -> u64 {
        self.datum_bytes
    }

    /// Size of the file so far: framed blocks plus the open block's records
    /// (not yet compressed, so an upper bound for it).
    pub fn estimated_size(&self) -> u64 {
        self.file_bytes + self.block.len() as u64
    }

    /// Size of the framed bytes (header and finished blocks).
    pub fn framed_bytes(&self) -> u64 {
        self.file_bytes
    }
}

/// Avro `long`: zig-zag, then base-128 varint.
fn write_long(out: &mut Vec<u8>, value: i64) {
    let mut n = ((value << 1) ^ (value >> 63)) as u64;
    while n >= 0x80 {
        out.push((n as u8) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

fn write_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    write_long(out, bytes.len() as i64);
    out.extend_from_slice(bytes);
}

#[cfg(test)]
mod tests {
    use apache_avro::types::Value;
    use apache_avro::{Reader, Schema, ZstandardSettings};

    use super::*;

    const SCHEMA: &str =
        r#"{"type":"record","name":"R","fields":[{"name":"n","type":"long"},{"name":"s","type":"string"}]}"#;

    fn file(codec: Codec, block_size: usize, count: i64) -> Vec<u8> {
        let schema = Schema::parse_str(SCHEMA).unwrap();
        let mut writer = ContainerWriter::new(SCHEMA, codec, block_size);
        let mut bytes = Vec::new();
        for n in 0..count {
            let value = Value::Record(vec![
                ("n".into(), Value::Long(n)),
                ("s".into(), Value::String(format!("r{n}"))),
            ]);
            writer.append(&apache_avro::to_avro_datum(&schema, value).unwrap()).unwrap();
            bytes.extend(writer.take_output());
        }
        writer.end_block().unwrap();
        bytes.extend(writer.take_output());
        assert_eq!(writer.framed_bytes(), bytes.len() as u64);
        bytes
    }

    #[test]
    fn apache_avro_reads_every_codec_back() {
        let codecs = [
            Codec::Null,
            Codec::Snappy,
            Codec::Deflate(apache_avro::DeflateSettings::default()),
            Codec::Zstandard(ZstandardSettings::new(3)),
        ];
        for codec in codecs {
            for block_size in [1, 100, 1 << 20] {
                let bytes = file(codec, block_size, 1000);
                let reader = Reader::new(&bytes[..]).unwrap();
                let values: Vec<Value> = reader.map(Result::unwrap).collect();
                assert_eq!(values.len(), 1000, "{codec:?} block {block_size}");
                assert_eq!(
                    values[999],
                    Value::Record(vec![
                        ("n".into(), Value::Long(999)),
                        ("s".into(), Value::String("r999".into()))
                    ])
                );
            }
        }
    }

    #[test]
    fn an_empty_file_is_a_valid_container() {
        let bytes = file(Codec::Snappy, 100, 0);
        assert_eq!(Reader::new(&bytes[..]).unwrap().count(), 0);
    }

    #[test]
    fn longs_use_zigzag_varints() {
        for (value, encoded) in
            [(0, vec![0]), (-1, vec![1]), (1, vec![2]), (64, vec![0x80, 1]), (-65, vec![0x81, 1])]
        {
            let mut out = Vec::new();
            write_long(&mut out, value);
            assert_eq!(out, encoded, "{value}");
        }
    }
}
