//! Templates that place a record by its origin and time: lake directories
//! (`topics/{topic}/date={yyyy-MM-dd}`) and search index names
//! (`weblogs-{yyyy.MM.dd}`). `{topic}`, `{partition}`, and date patterns
//! (`yyyy`, `MM`, `dd`, `HH`, `mm`, as Kafka Connect, Hive and Logstash
//! users write them) taken from the record's time in UTC.

use chrono::{DateTime, Utc};

#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Text(String),
    Topic,
    Partition,
    /// A chrono format string.
    Time(String),
}

/// A parsed template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    pieces: Vec<Piece>,
}

impl Template {
    pub fn parse(template: &str) -> Result<Template, String> {
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
        Ok(Template { pieces })
    }

    /// The template filled in for a record.
    pub fn render(&self, topic: &str, partition: i32, time_ms: i64) -> String {
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

    /// The fixed directories every rendering for `topic` starts with (what
    /// lake recovery has to list).
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_layout_partitions_by_topic_and_utc_day() {
        let layout = Template::parse("topics/{topic}/date={yyyy-MM-dd}/").unwrap();
        // 2024-03-01T23:59:59.999Z and one millisecond later.
        assert_eq!(layout.render("images", 2, 1_709_337_599_999), "topics/images/date=2024-03-01");
        assert_eq!(layout.render("images", 2, 1_709_337_600_000), "topics/images/date=2024-03-02");
        assert_eq!(layout.topic_root("images"), "topics/images");
        let hourly = Template::parse("{topic}/p{partition}/{yyyy}/{MM}/{dd}/{HH}").unwrap();
        assert_eq!(hourly.render("t", 7, 0), "t/p7/1970/01/01/00");
        assert_eq!(hourly.topic_root("t"), "t");
        assert_eq!(Template::parse("{yyyy}/{topic}").unwrap().topic_root("t"), "");
    }

    #[test]
    fn bad_templates_are_refused_with_the_reason() {
        assert!(Template::parse("x/{date}").unwrap_err().contains("not a known placeholder"));
        assert!(Template::parse("x/{topic").unwrap_err().contains("never closed"));
        assert!(Template::parse("../{topic}").unwrap_err().contains("not allowed"));
        assert!(Template::parse("{yyyy-MM-ddTHH}").is_err());
    }
}
