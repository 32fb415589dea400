//! A parsed pipeline file that remembers where every key and value came
//! from, and turns sections of it into typed config structs.
//!
//! Config structs are plain serde types living next to the component they
//! configure. They are deserialized one section at a time from the spanned
//! TOML tree, so a serde error carries the position of the value it failed
//! on; unknown keys are found before serde runs, so every one of them is
//! reported with a did-you-mean instead of only the first.

use std::ops::Range;
use std::path::{Path, PathBuf};

use serde::de::{self, DeserializeOwned, Visitor};
use toml::Spanned;
use toml::de::{DeTable, DeValue, ValueDeserializer};

use super::diagnostic::{Diagnostic, did_you_mean};

pub type Value<'i> = Spanned<DeValue<'i>>;

pub struct Document<'i> {
    path: PathBuf,
    text: &'i str,
    pub diagnostics: Vec<Diagnostic>,
}

impl<'i> Document<'i> {
    /// Parses `text`; a syntax error is returned as the only diagnostic.
    pub fn parse(path: &Path, text: &'i str) -> Result<(Document<'i>, Spanned<DeTable<'i>>), Diagnostic> {
        let mut document = Document { path: path.to_path_buf(), text, diagnostics: Vec::new() };
        match DeTable::parse(text) {
            Ok(root) => Ok((document, root)),
            Err(error) => {
                let span = error.span().unwrap_or(0..0);
                let message = error.message().trim().to_string();
                Err(document.diagnostic(span, None, format!("invalid TOML: {message}")))
            }
        }
    }

    /// The 1-based line and column of a byte offset.
    pub fn line_column(&self, offset: usize) -> (usize, usize) {
        line_column(self.text, offset)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Builds a diagnostic at `span` without recording it.
    pub fn diagnostic(&mut self, span: Range<usize>, key: Option<&str>, message: String) -> Diagnostic {
        let (line, column) = line_column(self.text, span.start);
        Diagnostic { file: self.path.clone(), line, column, key: key.map(str::to_string), message }
    }

    /// Records a problem at `span`.
    pub fn error(&mut self, span: Range<usize>, key: &str, message: impl Into<String>) {
        let diagnostic = self.diagnostic(span, Some(key), message.into());
        self.diagnostics.push(diagnostic);
    }

    /// Deserializes the table `value` (found at `key`) into `T`. Keys in
    /// `skip` were already consumed by the caller (a `type` tag, say).
    /// Problems are recorded; `None` means the section is unusable.
    pub fn section<T: DeserializeOwned>(&mut self, value: &Value<'_>, key: &str, skip: &[&str]) -> Option<T> {
        let Some(table) = value.get_ref().as_table() else {
            self.error(value.span(), key, format!("expected a table, found {}", value.get_ref().type_str()));
            return None;
        };
        let fields = struct_fields::<T>();
        let mut known = DeTable::new();
        let mut clean = true;
        for (name, item) in table {
            let name_str = name.get_ref().as_ref();
            if skip.contains(&name_str) {
                continue;
            }
            if fields.contains(&name_str) {
                known.insert(name.clone(), item.clone());
                continue;
            }
            clean = false;
            let hint = match did_you_mean(name_str, fields.iter().copied()) {
                Some(close) => format!("did you mean `{close}`?"),
                None => format!("expected one of: {}", fields.join(", ")),
            };
            self.error(name.span(), &join(key, name_str), format!("unknown key; {hint}"));
        }
        let deserializer = ValueDeserializer::from(Spanned::new(value.span(), DeValue::Table(known)));
        match T::deserialize(deserializer) {
            Ok(config) => clean.then_some(config),
            Err(error) => {
                let span = error.span().unwrap_or(value.span());
                let field =
                    key_at(table, span.clone()).map(|k| join(key, &k)).unwrap_or_else(|| key.to_string());
                self.error(span, &field, error.message().trim().to_string());
                None
            }
        }
    }
}

/// `key` and `child` as a dotted path.
pub fn join(key: &str, child: &str) -> String {
    if key.is_empty() { child.to_string() } else { format!("{key}.{child}") }
}

/// The (nested) key of `table` whose value contains `span`.
fn key_at(table: &DeTable<'_>, span: Range<usize>) -> Option<String> {
    for (name, value) in table {
        let vs = value.span();
        let inside = vs.start <= span.start && span.end <= vs.end.max(vs.start + 1);
        if name.span() == span || inside {
            let name = name.get_ref().to_string();
            let nested = value.get_ref().as_table().and_then(|t| key_at(t, span.clone()));
            return Some(match nested {
                Some(child) => join(&name, &child),
                None => name,
            });
        }
    }
    None
}

/// Line and column (1-based) of byte `offset` in `text`.
pub fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

/// The field names of a struct deserialized by serde-derive, read by
/// asking it to deserialize from a probe that records what it is told.
pub fn struct_fields<T: DeserializeOwned>() -> &'static [&'static str] {
    struct Probe<'a>(&'a mut &'static [&'static str]);

    impl<'de> de::Deserializer<'de> for Probe<'_> {
        type Error = de::value::Error;

        fn deserialize_any<V: Visitor<'de>>(self, _visitor: V) -> Result<V::Value, Self::Error> {
            Err(de::Error::custom("probe"))
        }

        fn deserialize_struct<V: Visitor<'de>>(
            self,
            _name: &'static str,
            fields: &'static [&'static str],
            _visitor: V,
        ) -> Result<V::Value, Self::Error> {
            *self.0 = fields;
            Err(de::Error::custom("probe"))
        }

        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
            bytes byte_buf option unit unit_struct newtype_struct seq tuple
            tuple_struct map enum identifier ignored_any
        }
    }

    let mut fields: &'static [&'static str] = &[];
    let _ = T::deserialize(Probe(&mut fields));
    fields
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)] // Only its field list and types matter here.
    struct Example {
        name: String,
        #[serde(default)]
        max_records: u64,
    }

    #[test]
    fn reports_every_unknown_key_and_the_first_type_error_with_positions() {
        let text = "[x]\nname = 1\nmax_recods = 5\ncolour = 2\n";
        let (mut doc, root) = Document::parse(Path::new("p.toml"), text).unwrap();
        let section = root.get_ref().get("x").unwrap();
        assert!(doc.section::<Example>(section, "x", &[]).is_none());
        doc.diagnostics.sort_by_key(|d| (d.line, d.column));
        let messages: Vec<String> = doc.diagnostics.iter().map(|d| d.to_string()).collect();
        assert!(
            messages[0].starts_with("p.toml:2:8: key `x.name`: invalid type: integer `1`, expected a string")
        );
        assert_eq!(messages[1], "p.toml:3:1: key `x.max_recods`: unknown key; did you mean `max_records`?");
        assert_eq!(
            messages[2],
            "p.toml:4:1: key `x.colour`: unknown key; expected one of: name, max_records"
        );
    }

    #[test]
    fn syntax_errors_have_positions() {
        let err = Document::parse(Path::new("p.toml"), "a = 1\nb = [1,\n").err().unwrap();
        assert_eq!((err.line, err.column), (2, 8), "{err}");
    }
}
