//! The stage configuration: which log format, how long a line may be and
//! what to do with lines that do not parse.
//!
//! ```toml
//! [[stage]]
//! name = "parse"
//! module = "transforms/log_parse.wasm"
//! [stage.config]
//! format = "apache_combined"
//! max_line_bytes = 65536
//! on_parse_failure = "error"
//! ```

use sluice_guest::Config;

/// Parsed and validated stage config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseConfig {
    /// `format`: the layout of each line. Default `apache_combined`.
    pub format: Format,
    /// `max_line_bytes`: longer records fail with kind `too-long` before any
    /// parsing. Default 65536.
    pub max_line_bytes: usize,
    /// `on_parse_failure`: `error` (default) dead-letters a failed line;
    /// `tag` emits a `_parse_failure` document instead.
    pub on_parse_failure: OnParseFailure,
}

/// The input line formats. Adding one is a variant here, a name in
/// [`Format::NAMES`] and an arm in `parse_event`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `%h %l %u %t "%r" %>s %b "%{Referer}i" "%{User-agent}i"`; also
    /// nginx's default `combined` log format, which has the same layout.
    ApacheCombined,
    /// `%h %l %u %t "%r" %>s %b`.
    ApacheCommon,
    /// The original API server's JSON lines:
    /// `{ip, datetime, method, url, responseCode, responseTime, sessionID}`.
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnParseFailure {
    /// Return the error: the engine dead-letters the record with its reason.
    Error,
    /// Emit `{"event":{"original":…},"tags":["_parse_failure"],"error":{…}}`.
    Tag,
}

impl Format {
    /// Config names, in the order error messages list them.
    pub const NAMES: &[(&str, Format)] = &[
        ("apache_combined", Format::ApacheCombined),
        ("apache_common", Format::ApacheCommon),
        ("nginx", Format::ApacheCombined),
        ("json", Format::Json),
    ];

    pub fn from_name(name: &str) -> Option<Format> {
        Self::NAMES.iter().find(|(n, _)| *n == name).map(|&(_, format)| format)
    }
}

impl Default for ParseConfig {
    fn default() -> Self {
        ParseConfig {
            format: Format::ApacheCombined,
            max_line_bytes: 65_536,
            on_parse_failure: OnParseFailure::Error,
        }
    }
}

impl ParseConfig {
    pub const KEYS: &[&str] = &["format", "max_line_bytes", "on_parse_failure"];

    /// Validates the stage's config table. Reports every problem at once,
    /// one per line, so a deploy needs one round trip to fix them all.
    pub fn from_config(config: &Config) -> Result<ParseConfig, String> {
        let mut parsed = ParseConfig::default();
        let mut problems = Vec::new();
        for key in config.keys() {
            if !Self::KEYS.contains(&key) {
                problems
                    .push(format!("unknown config key `{key}`; expected one of: {}", Self::KEYS.join(", ")));
            }
        }
        match config.get_str("format") {
            Ok(None) => {}
            Ok(Some(name)) => match Format::from_name(name) {
                Some(format) => parsed.format = format,
                None => problems.push(format!(
                    "config key `format`: unknown format \"{name}\"; expected one of: {}",
                    Self::format_names()
                )),
            },
            Err(e) => problems.push(e),
        }
        match config.get_u64("max_line_bytes") {
            Ok(None) => {}
            Ok(Some(0)) => problems.push("config key `max_line_bytes`: must be at least 1".to_string()),
            // Saturate on 32-bit targets: no record can be longer than memory.
            Ok(Some(max)) => parsed.max_line_bytes = usize::try_from(max).unwrap_or(usize::MAX),
            Err(e) => problems.push(e),
        }
        match config.get_str("on_parse_failure") {
            Ok(None) => {}
            Ok(Some("error")) => parsed.on_parse_failure = OnParseFailure::Error,
            Ok(Some("tag")) => parsed.on_parse_failure = OnParseFailure::Tag,
            Ok(Some(other)) => problems.push(format!(
                "config key `on_parse_failure`: unknown value \"{other}\"; expected \"error\" or \"tag\""
            )),
            Err(e) => problems.push(e),
        }
        if problems.is_empty() { Ok(parsed) } else { Err(problems.join("\n")) }
    }

    /// Parses a config table given as JSON, as the host sends it; handy for
    /// benchmarks and tests that do not go through the SDK.
    pub fn from_json(json: &str) -> Result<ParseConfig, String> {
        Self::from_config(&Config::from_json(json)?)
    }

    fn format_names() -> String {
        let quoted: Vec<String> = Format::NAMES.iter().map(|(name, _)| format!("\"{name}\"")).collect();
        quoted.join(", ")
    }
}
