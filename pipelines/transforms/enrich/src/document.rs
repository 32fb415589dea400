//! A log document read only as deeply as enrich needs it.
//!
//! Enrich reads and writes a handful of top-level fields (`client`,
//! `labels`, `url`, `user_agent`, `visitor`). Those are parsed into
//! `serde_json` values; every other field is kept as the exact JSON text it
//! arrived as and written back unchanged. Building a full `Value` tree and
//! printing it again was most of enrich's time, in allocations above all.
//!
//! The whole document is still checked to be valid JSON, and the output has
//! its top-level keys in order, as before. Inside a field enrich does not
//! touch, the input's own key order is kept.

use std::collections::BTreeMap;

use serde_json::value::RawValue;
use serde_json::{Map, Value};
use sluice_guest::Error;

use crate::{Enrich, kind_of};

/// The top-level fields enrich reads or adds; the rest stay text.
const TOUCHED: &[&str] = &["client", "labels", "url", "user_agent", "visitor"];

pub(crate) struct Document<'a> {
    /// The fields in [`TOUCHED`], parsed.
    parsed: Map<String, Value>,
    /// Every other field, as its JSON text.
    raw: BTreeMap<String, &'a RawValue>,
}

impl<'a> Document<'a> {
    /// Reads a JSON object; anything else is `invalid-json`.
    pub(crate) fn parse(bytes: &'a [u8]) -> Result<Document<'a>, Error> {
        let mut raw: BTreeMap<String, &'a RawValue> = match serde_json::from_slice(bytes) {
            Ok(fields) => fields,
            Err(_) => return Err(not_an_object(bytes)),
        };
        let mut parsed = Map::new();
        for &key in TOUCHED {
            if let Some((key, text)) = raw.remove_entry(key) {
                let value = serde_json::from_str(text.get())
                    .map_err(|e| Error::new("invalid-json", format!("the record is not JSON: {e}")))?;
                parsed.insert(key, value);
            }
        }
        Ok(Document { parsed, raw })
    }

    /// The document with enrich's fields added, as JSON.
    pub(crate) fn enrich_with(mut self, enrich: &Enrich) -> serde_json::Result<Vec<u8>> {
        enrich.enrich(&mut self.parsed);
        let text_len: usize = self.raw.iter().map(|(k, v)| k.len() + v.get().len() + 4).sum();
        let mut out = Vec::with_capacity(text_len + 1024);
        out.push(b'{');
        // Both maps are sorted and share no key: merge them in order.
        let mut parsed = self.parsed.iter().peekable();
        let mut raw = self.raw.iter().peekable();
        let mut first = true;
        loop {
            let take_parsed = match (parsed.peek(), raw.peek()) {
                (Some((p, _)), Some((r, _))) => p < r,
                (Some(_), None) => true,
                (None, Some(_)) => false,
                (None, None) => break,
            };
            if !first {
                out.push(b',');
            }
            first = false;
            if take_parsed {
                let (key, value) = parsed.next().expect("peeked");
                serde_json::to_writer(&mut out, key)?;
                out.push(b':');
                serde_json::to_writer(&mut out, value)?;
            } else {
                let (key, text) = raw.next().expect("peeked");
                serde_json::to_writer(&mut out, key)?;
                out.push(b':');
                out.extend_from_slice(text.get().as_bytes());
            }
        }
        out.push(b'}');
        Ok(out)
    }
}

/// Why `bytes` is not a JSON object, in the words of a full parse (this is
/// the rare path, so it may parse again).
#[cold]
fn not_an_object(bytes: &[u8]) -> Error {
    match serde_json::from_slice::<Value>(bytes) {
        Ok(other) => Error::new("invalid-json", format!("expected a JSON object, found {}", kind_of(&other))),
        Err(e) => Error::new("invalid-json", format!("the record is not JSON: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::EnrichConfig;

    fn enrich(text: &str) -> Result<Value, Error> {
        let config = EnrichConfig { geoip_table: None, user_agent: true, url: true, visitor: true };
        let enrich = Enrich::new(config).unwrap();
        let out = Document::parse(text.as_bytes())?.enrich_with(&enrich).unwrap();
        Ok(serde_json::from_slice(&out).expect("the output is JSON"))
    }

    #[test]
    fn untouched_fields_are_kept_as_they_were_and_the_result_equals_a_full_parse() {
        let text = r#"{"z":{"b":1,"a":[1.50,"\u00e9"]},"url":{"original":"/a.PNG"},"@timestamp":"t","http":{"version":"1.1"}}"#;
        let out = enrich(text).unwrap();
        assert_eq!(out["z"], serde_json::json!({"a": [1.5, "é"], "b": 1}));
        assert_eq!(out["url"]["extension"], "png");
        assert_eq!(out["http"]["version"], "1.1");
        let keys: Vec<&String> = out.as_object().unwrap().keys().collect();
        assert_eq!(keys, ["@timestamp", "http", "url", "z"]);
    }

    #[test]
    fn the_text_of_untouched_fields_is_copied_verbatim_in_key_order() {
        let config = EnrichConfig { geoip_table: None, user_agent: false, url: false, visitor: false };
        let enrich = Enrich::new(config).unwrap();
        let text = br#"{"b":{"y":1,"x":2},"a":"\u00e9"}"#;
        let out = Document::parse(text).unwrap().enrich_with(&enrich).unwrap();
        assert_eq!(out, br#"{"a":"\u00e9","b":{"y":1,"x":2}}"#);
    }

    #[test]
    fn pretty_printed_documents_are_read_and_give_valid_json() {
        let text = "{\n  \"b\" : [ 1, 2 ] ,\n  \"url\": { \"original\": \"/x.gz\" },\n  \"a\":\t\"s\"\n}\n";
        let out = enrich(text).unwrap();
        assert_eq!(out["b"], serde_json::json!([1, 2]));
        assert_eq!(out["a"], "s");
        assert_eq!(out["url"]["extension"], "gz");
    }

    #[test]
    fn what_is_not_an_object_is_refused_with_the_reason() {
        for (text, reason) in [
            ("[1]", "expected a JSON object, found an array"),
            ("\"s\"", "expected a JSON object, found a string"),
            ("{\"a\":", "the record is not JSON"),
            ("{\"a\":1} x", "the record is not JSON"),
            ("{\"url\":{\"original\":}}", "the record is not JSON"),
        ] {
            let error = enrich(text).unwrap_err();
            assert_eq!(error.kind(), "invalid-json");
            assert!(error.message().starts_with(reason), "{text}: {}", error.message());
        }
    }
}
