//! Where the lake sink puts a record, and how its files are named.
//!
//! Directories come from a template such as the default
//! `topics/{topic}/date={yyyy-MM-dd}`: `{topic}`, `{partition}`, and date
//! patterns (`yyyy`, `MM`, `dd`, `HH`, `mm`, as Kafka Connect and Hive users
//! write them) taken from the record's time in UTC.
//!
//! A committed file is `{topic}+{partition}+{first}+{last}.avro`, offsets
//! zero-padded to 20 digits so names sort in offset order. The names are
//! the sink's only state: recovery reads them back to find where each
//! partition's data ends. A file being written is hidden (`.` prefix, as
//! Hadoop, Hive and Spark readers skip) with a `.tmp` suffix.

use chrono::{DateTime, Utc};

#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Text(String),
    Topic,
    Partition,
    /// A chrono format string.
    Time(String),
}

/// A parsed directory template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    pieces: Vec<Piece>,
}

impl Layout {
    pub fn parse(template: &str) -> Result<Layout, String> {
        let mut pieces = Vec::new();
        let mut rest = template.trim_matches('/');
        while let Some(open) = rest.find('{') {
            if open > 0 {
                pieces.push(Piece::Text(rest[..open].to_string()));
            }
            let close =
                rest[open..].find('}').ok_or_else(|| format!("`{{` at {open} is never closed"))? + open;
            let name = &rest[open + 1..close];
            pieces.push(match name {
                "topic" => Piece::Topic,
                "partition" => Piece::Partition,
                pattern => Piece::Time(time_format(pattern)?),
            });
            rest = &rest[close + 1..];
        }
        if !rest.is_empty() {
            pieces.push(Piece::Text(rest.to_string()));
        }
        for piece in &pieces {
            if let Piece::Text(text) = piece
                && (text.contains('}') || text.split('/').any(|segment| segment == ".." || segment == "."))
            {
                return Err(format!("`{text}` is not allowed in a path template"));
            }
        }
        Ok(Layout { pieces })
    }

    /// The directory (relative to the lake's root) for a record.
    pub fn directory(&self, topic: &str, partition: i32, time_ms: i64) -> String {
        let time = DateTime::<Utc>::from_timestamp_millis(time_ms).unwrap_or_default();
        let mut out = String::new();
        for piece in &self.pieces {
            match piece {
                Piece::Text(text) => out.push_str(text),
                Piece::Topic => out.push_str(topic),
                Piece::Partition => out.push_str(&partition.to_string()),
                Piece::Time(format) => out.push_str(&time.format(format).to_string()),
            }
        }
        out
    }

    /// The directory under which every file of `topic` lies: what recovery
    /// has to list.
    pub fn topic_root(&self, topic: &str) -> String {
        let mut out = String::new();
        for piece in &self.pieces {
            match piece {
                Piece::Text(text) => out.push_str(text),
                Piece::Topic => out.push_str(topic),
                Piece::Partition | Piece::Time(_) => {
                    // Only whole directories are fixed.
                    out.truncate(out.rfind('/').unwrap_or(0));
                    return out;
                }
            }
        }
        out
    }
}

/// Translates `yyyy-MM-dd`-style patterns to chrono's format.
fn time_format(pattern: &str) -> Result<String, String> {
    let mut out = String::new();
    let mut rest = pattern;
    while !rest.is_empty() {
        let token = ["yyyy", "MM", "dd", "HH", "mm"].into_iter().find(|t| rest.starts_with(t));
        match token {
            Some(token) => {
                out.push_str(match token {
                    "yyyy" => "%Y",
                    "MM" => "%m",
                    "dd" => "%d",
                    "HH" => "%H",
                    _ => "%M",
                });
                rest = &rest[token.len()..];
            }
            None => {
                let c = rest.chars().next().unwrap_or_default();
                if c.is_ascii_alphanumeric() || c == '%' || c == '/' {
                    return Err(format!(
                        "`{{{pattern}}}` is not a known placeholder: use {{topic}}, {{partition}} or a date pattern of yyyy, MM, dd, HH, mm"
                    ));
                }
                out.push(c);
                rest = &rest[c.len_utf8()..];
            }
        }
    }
    Ok(out)
}

/// A committed file's name.
pub fn committed_name(topic: &str, partition: i32, first: i64, last: i64) -> String {
    format!("{topic}+{partition}+{first:020}+{last:020}.avro")
}

/// The hidden name a file has while it is written.
pub fn temporary_name(topic: &str, partition: i32, first: i64) -> String {
    format!(".{topic}+{partition}+{first:020}.avro.tmp")
}

/// What a file name in the lake says about its partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LakeFile {
    Committed { topic: String, partition: i32, first: i64, last: i64 },
    Temporary { topic: String, partition: i32 },
}

impl LakeFile {
    pub fn parse(name: &str) -> Option<LakeFile> {
        if let Some(stem) = name.strip_prefix('.').and_then(|n| n.strip_suffix(".avro.tmp")) {
            let mut parts = stem.rsplitn(3, '+');
            let _first: i64 = parts.next()?.parse().ok()?;
            let partition = parts.next()?.parse().ok()?;
            return Some(LakeFile::Temporary { partition, topic: parts.next()?.to_string() });
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
    fn the_default_layout_partitions_by_topic_and_utc_day() {
        let layout = Layout::parse("topics/{topic}/date={yyyy-MM-dd}/").unwrap();
        // 2024-03-01T23:59:59.999Z and one millisecond later.
        assert_eq!(layout.directory("images", 2, 1_709_337_599_999), "topics/images/date=2024-03-01");
        assert_eq!(layout.directory("images", 2, 1_709_337_600_000), "topics/images/date=2024-03-02");
        assert_eq!(layout.topic_root("images"), "topics/images");
        let hourly = Layout::parse("{topic}/p{partition}/{yyyy}/{MM}/{dd}/{HH}").unwrap();
        assert_eq!(hourly.directory("t", 7, 0), "t/p7/1970/01/01/00");
        assert_eq!(hourly.topic_root("t"), "t");
        assert_eq!(Layout::parse("{yyyy}/{topic}").unwrap().topic_root("t"), "");
    }

    #[test]
    fn bad_templates_are_refused_with_the_reason() {
        assert!(Layout::parse("x/{date}").unwrap_err().contains("not a known placeholder"));
        assert!(Layout::parse("x/{topic").unwrap_err().contains("never closed"));
        assert!(Layout::parse("../{topic}").unwrap_err().contains("not allowed"));
        assert!(Layout::parse("{yyyy-MM-ddTHH}").is_err());
    }

    #[test]
    fn file_names_round_trip_and_sort_by_offset() {
        let name = committed_name("web.logs-1", 3, 9, 1_000);
        assert_eq!(
            LakeFile::parse(&name),
            Some(LakeFile::Committed { topic: "web.logs-1".into(), partition: 3, first: 9, last: 1_000 })
        );
        assert!(committed_name("t", 0, 9, 9) < committed_name("t", 0, 10, 10));
        assert_eq!(
            LakeFile::parse(&temporary_name("t", 1, 5)),
            Some(LakeFile::Temporary { topic: "t".into(), partition: 1 })
        );
        assert_eq!(LakeFile::parse("notes.txt"), None);
        assert!(is_data_file(&name) && !is_data_file(&temporary_name("t", 1, 5)));
    }
}
