//! The `_bulk` protocol: one action line and one document line per item,
//! and a response whose items say, one by one, what became of them.
//!
//! Items are kept as separate byte runs so the ones that must be retried
//! can be sent again without rebuilding the others.

use bytes::Bytes;
use serde::Deserialize;

/// One document ready to send: its action and source lines.
#[derive(Debug, Clone)]
pub struct BulkItem {
    /// `{"index":{…}}\n{document}\n`
    pub lines: Bytes,
}

impl BulkItem {
    /// An `index` action (create or overwrite) for `document`, which must be
    /// one line of JSON.
    pub fn index(index: &str, id: Option<&str>, document: &[u8]) -> BulkItem {
        let mut action = serde_json::Map::new();
        action.insert("_index".into(), index.into());
        if let Some(id) = id {
            action.insert("_id".into(), id.into());
        }
        let mut lines = Vec::with_capacity(document.len() + 96);
        lines.extend_from_slice(b"{\"index\":");
        serde_json::to_writer(&mut lines, &action).expect("a map of strings serializes");
        lines.extend_from_slice(b"}\n");
        lines.extend_from_slice(document);
        lines.push(b'\n');
        BulkItem { lines: lines.into() }
    }
}

/// The request body for `items`.
pub fn body<'a>(items: impl IntoIterator<Item = &'a BulkItem>) -> Bytes {
    let mut body = Vec::new();
    for item in items {
        body.extend_from_slice(&item.lines);
    }
    body.into()
}

/// What became of one item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ItemOutcome {
    Indexed,
    /// Worth sending again later (429, 5xx): the cluster was busy or broken.
    Retry(String),
    /// Will fail again however often it is sent (mapping errors, 4xx).
    Rejected {
        kind: String,
        reason: String,
    },
}

#[derive(Deserialize)]
struct BulkResponse {
    items: Vec<std::collections::HashMap<String, ItemResult>>,
}

#[derive(Deserialize)]
struct ItemResult {
    status: u16,
    #[serde(default)]
    error: Option<ItemError>,
}

#[derive(Deserialize)]
struct ItemError {
    #[serde(rename = "type", default)]
    kind: String,
    #[serde(default)]
    reason: String,
    #[serde(default)]
    caused_by: Option<Box<ItemError>>,
}

/// Whether a status is worth retrying: the cluster is overloaded (429) or
/// failing (5xx), not the request.
pub fn retryable(status: u16) -> bool {
    status == 429 || status >= 500
}

/// The outcome of each item, in request order.
pub fn outcomes(response: &[u8], sent: usize) -> Result<Vec<ItemOutcome>, String> {
    let parsed: BulkResponse = serde_json::from_slice(response)
        .map_err(|e| format!("the _bulk response is not what OpenSearch sends: {e}"))?;
    if parsed.items.len() != sent {
        return Err(format!("the _bulk response has {} items for {sent} sent", parsed.items.len()));
    }
    Ok(parsed
        .items
        .into_iter()
        .map(|item| {
            let Some(result) = item.into_values().next() else {
                return ItemOutcome::Retry("an empty item in the _bulk response".into());
            };
            match result.status {
                200..=299 => ItemOutcome::Indexed,
                status => {
                    let (kind, reason) = match result.error {
                        Some(error) => {
                            let cause =
                                error.caused_by.as_ref().map(|c| format!(" ({}: {})", c.kind, c.reason));
                            (error.kind, format!("{}{}", error.reason, cause.unwrap_or_default()))
                        }
                        None => ("unknown".to_string(), format!("status {status}")),
                    };
                    if retryable(status) {
                        ItemOutcome::Retry(format!("{status} {kind}: {reason}"))
                    } else {
                        ItemOutcome::Rejected { kind, reason: format!("{status}: {reason}") }
                    }
                }
            }
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_item_is_an_action_line_and_a_document_line() {
        let item = BulkItem::index("weblogs-2024.03.01", Some("t-0-7"), br#"{"a":1}"#);
        assert_eq!(
            &item.lines[..],
            b"{\"index\":{\"_id\":\"t-0-7\",\"_index\":\"weblogs-2024.03.01\"}}\n{\"a\":1}\n"
        );
        let bare = BulkItem::index("i", None, b"{}");
        assert_eq!(
            &body([&bare, &bare])[..],
            b"{\"index\":{\"_index\":\"i\"}}\n{}\n{\"index\":{\"_index\":\"i\"}}\n{}\n"
        );
    }

    #[test]
    fn item_results_are_classified_as_opensearch_documents_them() {
        // The shape osmem-server and OpenSearch return.
        let response = br#"{"errors":true,"took":1,"items":[
            {"index":{"_id":"x1","_index":"w","result":"created","status":201}},
            {"index":{"_id":"x2","_index":"w","status":400,"error":{"type":"mapper_parsing_exception","reason":"failed to parse field [bytes] of type [long]","caused_by":{"type":"illegal_argument_exception","reason":"For input string: \"zzz\""}}}},
            {"index":{"_id":"x3","_index":"w","status":429,"error":{"type":"es_rejected_execution_exception","reason":"rejected execution"}}},
            {"index":{"_id":"x4","_index":"w","status":503,"error":{"type":"unavailable_shards_exception","reason":"primary shard is not active"}}},
            {"index":{"_id":"x5","_index":"w","result":"updated","status":200}}]}"#;
        let outcomes = outcomes(response, 5).unwrap();
        assert_eq!(outcomes[0], ItemOutcome::Indexed);
        assert_eq!(
            outcomes[1],
            ItemOutcome::Rejected {
                kind: "mapper_parsing_exception".into(),
                reason: "400: failed to parse field [bytes] of type [long] (illegal_argument_exception: For input string: \"zzz\")".into()
            }
        );
        assert!(
            matches!(&outcomes[2], ItemOutcome::Retry(m) if m.starts_with("429 es_rejected_execution_exception"))
        );
        assert!(matches!(&outcomes[3], ItemOutcome::Retry(_)));
        assert_eq!(outcomes[4], ItemOutcome::Indexed);
        assert!(super::outcomes(response, 4).unwrap_err().contains("5 items for 4 sent"));
    }
}
