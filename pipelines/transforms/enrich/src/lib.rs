//! `enrich`: a sluice transform that adds derived fields to the Elastic
//! Common Schema documents `log-parse` writes.
//!
//! - [`user_agent`]: `user_agent.name/version/os/device` from
//!   `user_agent.original`, parsed inside the module, and the `user_agent.bot`
//!   flag;
//! - `client.geo.*` / `client.as.*`: `client.ip` looked up in a table the
//!   host loads and the pipeline grants (`capabilities = ["lookup:geoip"]`,
//!   config `geoip_table = "geoip"`); the row is merged under `client`;
//! - [`url`]: `url.extension`, and `url.scheme`/`url.domain`/`url.port` for
//!   absolute request targets (proxy requests);
//! - [`visitor`]: `visitor.id`, a stable key for one client (the session id
//!   when the log has one, else address + user agent), to count visitors.
//!
//! A document that is not a JSON object is refused (`invalid-json`); fields
//! a document lacks are simply not derived, so `_parse_failure` documents
//! pass through unchanged.

pub mod config;
mod document;
pub mod url;
pub mod user_agent;
pub mod visitor;

use serde_json::{Map, Value};
use sluice_guest::lookup::Table;
use sluice_guest::{Config, Error, Output, Record, Transform};

pub use config::EnrichConfig;
use document::Document;

pub struct Enrich {
    config: EnrichConfig,
    geoip: Option<Table>,
    agents: user_agent::Parser,
}

impl Enrich {
    /// Builds the transform; opens the geo table now so a stage that was
    /// not granted it fails at deploy, not on the first record.
    pub fn new(config: EnrichConfig) -> Result<Enrich, String> {
        let geoip = match &config.geoip_table {
            Some(name) => Some(Table::open(name)?),
            None => None,
        };
        Ok(Enrich { config, geoip, agents: user_agent::Parser::new() })
    }

    /// Adds the derived fields to `document`.
    pub fn enrich(&self, document: &mut Map<String, Value>) {
        if self.config.user_agent
            && let Some(original) = get_str(document, &["user_agent", "original"]).map(str::to_owned)
        {
            let fields = self.agents.parse(&original);
            merge(object_at(document, "user_agent"), fields);
        }
        if let Some(geoip) = &self.geoip
            && let Some(ip) = get_str(document, &["client", "ip"])
            && let Some(row) = geoip.get(ip)
            && let Ok(Value::Object(row)) = serde_json::from_str::<Value>(&row)
        {
            merge(object_at(document, "client"), row);
        }
        if self.config.url
            && let Some(original) = get_str(document, &["url", "original"]).map(str::to_owned)
        {
            merge(object_at(document, "url"), url::derived(&original));
        }
        if self.config.visitor
            && let Some(id) = visitor::id(document)
        {
            object_at(document, "visitor").insert("id".into(), Value::String(id));
        }
    }
}

impl Transform for Enrich {
    fn init(config: &Config) -> Result<Self, String> {
        Enrich::new(config.deserialize()?)
    }

    fn process(&mut self, record: &Record<'_>, out: &mut Output) -> Result<(), Error> {
        let document = Document::parse(record.value())?;
        let value = document.enrich_with(self).map_err(|e| Error::new("invalid-json", e.to_string()))?;
        out.push(value).key(record.key()).timestamp(record.timestamp()).headers_from(record);
        Ok(())
    }
}

sluice_guest::export_transform!(Enrich);

sluice_guest::declare_config!(
    r#"{
  "geoip_table": {"type": "string",
    "description": "The lookup table mapping client addresses to geo.* and as.* columns; the stage must be granted lookup:NAME. Unset: no geography."},
  "user_agent": {"type": "boolean", "default": true, "description": "Parse user_agent.original into name, version, OS and device, and flag bots."},
  "url": {"type": "boolean", "default": true, "description": "Derive url.path, url.query and url.extension, and scheme, domain and port of absolute targets."},
  "visitor": {"type": "boolean", "default": true, "description": "Add visitor.id, a stable hash of the client address and user agent."}
}"#
);

/// The string at `path`, if every step is an object and the end a string.
pub fn get_str<'a>(document: &'a Map<String, Value>, path: &[&str]) -> Option<&'a str> {
    let (last, parents) = path.split_last()?;
    let mut object = document;
    for part in parents {
        object = object.get(*part)?.as_object()?;
    }
    object.get(*last)?.as_str()
}

/// The object at `key`, created (or replacing a non-object) if need be.
fn object_at<'a>(document: &'a mut Map<String, Value>, key: &str) -> &'a mut Map<String, Value> {
    let entry = document.entry(key).or_insert_with(|| Value::Object(Map::new()));
    if !entry.is_object() {
        *entry = Value::Object(Map::new());
    }
    entry.as_object_mut().expect("just made an object")
}

/// Deep-merges `fields` into `into`; existing leaves are overwritten.
fn merge(into: &mut Map<String, Value>, fields: Map<String, Value>) {
    for (key, value) in fields {
        match (into.get_mut(&key), value) {
            (Some(Value::Object(existing)), Value::Object(nested)) => merge(existing, nested),
            (_, value) => {
                into.insert(key, value);
            }
        }
    }
}

fn kind_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// The fields enrich touches become small maps and strings, so allocation
/// is a large part of the work. wasi-libc's dlmalloc sits behind four calls that
/// Cranelift cannot inline (each with its interruption check); talc is
/// Rust, inlined by LTO: measured 4-5 % more documents per second.
// SAFETY: a component instance is single-threaded wasm, which is what
// `new_global` asks; talc claims only the pages it grows itself, so it
// coexists with wasi-libc's own allocator.
#[cfg(target_arch = "wasm32")]
#[global_allocator]
static ALLOCATOR: talc::TalckWasm = unsafe { talc::TalckWasm::new_global() };
