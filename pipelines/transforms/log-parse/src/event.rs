//! The parsed form of a line: the one shape every input format produces and
//! [`json_out`](crate::json_out) writes.

use std::borrow::Cow;

use crate::time::Timestamp;

/// One access-log entry. Text fields borrow from the input line where they
/// can, so the Apache path allocates nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event<'a> {
    /// `@timestamp`, already converted to UTC.
    pub timestamp: Timestamp,
    /// Written as `client.ip` when it is an IP address, else as
    /// `client.domain` (Apache logs host names with `HostnameLookups On`).
    pub client: Cow<'a, str>,
    /// `user.name`; `None` for `-`.
    pub user_name: Option<Cow<'a, str>>,
    /// `http.request.method`; `None` when the request line was `-`.
    pub method: Option<Cow<'a, str>>,
    /// `url.original`; `url.path` and `url.query` are derived from it.
    pub url: Option<Cow<'a, str>>,
    /// `http.version`, e.g. `1.1` from `HTTP/1.1`.
    pub http_version: Option<Cow<'a, str>>,
    /// `http.response.status_code`.
    pub status: u16,
    /// `http.response.body.bytes`; `None` for `-`.
    pub body_bytes: Option<u64>,
    /// `http.request.referrer`; `None` for `-`.
    pub referrer: Option<Cow<'a, str>>,
    /// `user_agent.original`; `None` for `-`.
    pub user_agent: Option<Cow<'a, str>>,
    /// `event.duration` in nanoseconds (the `json` format's `responseTime`).
    pub duration_nanos: Option<u64>,
    /// `labels.session_id` (the `json` format's `sessionID`).
    pub session_id: Option<Cow<'a, str>>,
    /// How the text fields are escaped in the input.
    pub escaping: Escaping,
}

/// Whether text fields still carry the input format's escapes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Escaping {
    /// Plain text (the `json` format, after serde_json unescaped it).
    None,
    /// Apache's: `\"` and `\\` stand for `"` and `\`; other sequences such
    /// as `\x16` are kept as written, since decoding them could produce
    /// bytes that are not UTF-8. Keeping the escapes in the event lets the
    /// parser borrow the line instead of copying each field.
    Apache,
}

impl Event<'_> {
    /// An event with only the mandatory fields; formats fill in the rest.
    pub fn new(timestamp: Timestamp, client: Cow<'_, str>, status: u16, escaping: Escaping) -> Event<'_> {
        Event {
            timestamp,
            client,
            user_name: None,
            method: None,
            url: None,
            http_version: None,
            status,
            body_bytes: None,
            referrer: None,
            user_agent: None,
            duration_nanos: None,
            session_id: None,
            escaping,
        }
    }
}

/// `url.path` and `url.query` of a request target: split at the first `?`;
/// an empty query counts as none.
pub fn split_url(url: &str) -> (&str, Option<&str>) {
    // 16 bytes at a time in wasm too; `str::split_once` uses core's
    // word-at-a-time search, 4 bytes at a time on wasm32.
    match crate::chunk16::find(url.as_bytes(), b'?') {
        Some(at) if at + 1 < url.len() => (&url[..at], Some(&url[at + 1..])),
        Some(at) => (&url[..at], None),
        None => (url, None),
    }
}
