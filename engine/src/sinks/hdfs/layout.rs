//! How the lake sink names its files.
//!
//! A committed file is `{topic}+{partition}+{first}+{last}.avro`, offsets
//! zero-padded to 20 digits so names sort in offset order. The names are
//! the sink's only state: recovery reads them back to find where each
//! partition's data ends. A file being written is hidden (`.` prefix, as
//! Hadoop, Hive and Spark readers skip), carries its writer's id, and has
//! a `.tmp` suffix: `.{topic}+{partition}+{first}+w{writer}.avro.tmp`. The
//! writer id lets recovery tell its own leftovers from a file another
//! engine may still be about to rename.

/// A committed file's name.
pub fn committed_name(topic: &str, partition: i32, first: i64, last: i64) -> String {
    format!("{topic}+{partition}+{first:020}+{last:020}.avro")
}

/// The hidden name a file has while `writer` writes it.
pub fn temporary_name(topic: &str, partition: i32, first: i64, writer: &str) -> String {
    format!(".{topic}+{partition}+{first:020}+w{writer}.avro.tmp")
}

/// What a file name in the lake says about its partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LakeFile {
    Committed {
        topic: String,
        partition: i32,
        first: i64,
        last: i64,
    },
    /// `writer` is `None` for names written before writers were named.
    Temporary {
        topic: String,
        partition: i32,
        writer: Option<String>,
    },
}

impl LakeFile {
    pub fn parse(name: &str) -> Option<LakeFile> {
        if let Some(stem) = name.strip_prefix('.').and_then(|n| n.strip_suffix(".avro.tmp")) {
            let (stem, writer) = match stem.rsplit_once("+w") {
                Some((rest, writer)) if writer.bytes().all(|b| b.is_ascii_alphanumeric()) => {
                    (rest, Some(writer.to_string()))
                }
                _ => (stem, None),
            };
            let mut parts = stem.rsplitn(3, '+');
            let _first: i64 = parts.next()?.parse().ok()?;
            let partition = parts.next()?.parse().ok()?;
            return Some(LakeFile::Temporary { partition, topic: parts.next()?.to_string(), writer });
        }
        let stem = name.strip_suffix(".avro")?;
        let mut parts = stem.rsplitn(4, '+');
        let last = parts.next()?.parse().ok()?;
        let first = parts.next()?.parse().ok()?;
        let partition = parts.next()?.parse().ok()?;
        Some(LakeFile::Committed { topic: parts.next()?.to_string(), partition, first, last })
    }
}

/// Whether a reader of the lake should skip a file: hidden files (being
/// written) and anything that is not Avro.
pub fn is_data_file(name: &str) -> bool {
    !name.starts_with('.') && !name.starts_with('_') && name.ends_with(".avro")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_round_trip_and_sort_by_offset() {
        let name = committed_name("web.logs-1", 3, 9, 1_000);
        assert_eq!(
            LakeFile::parse(&name),
            Some(LakeFile::Committed { topic: "web.logs-1".into(), partition: 3, first: 9, last: 1_000 })
        );
        assert!(committed_name("t", 0, 9, 9) < committed_name("t", 0, 10, 10));
        assert_eq!(
            LakeFile::parse(&temporary_name("t", 1, 5, "3fa9")),
            Some(LakeFile::Temporary { topic: "t".into(), partition: 1, writer: Some("3fa9".into()) })
        );
        assert_eq!(
            LakeFile::parse(".t+1+00000000000000000005.avro.tmp"),
            Some(LakeFile::Temporary { topic: "t".into(), partition: 1, writer: None })
        );
        assert_eq!(LakeFile::parse("notes.txt"), None);
        assert!(is_data_file(&name) && !is_data_file(&temporary_name("t", 1, 5, "3fa9")));
    }
}
