//! The config a module declares it takes: its keys, each with a type, a
//! default and a description. A module carries the declaration as a custom
//! section named [`SECTION`] holding JSON, anywhere in the component (at the
//! top, where `sluice build` appends it, or inside a core module, where the
//! Rust SDK's `declare_config!` puts it). Modules without one take any
//! config, as before.
//!
//! A custom section rather than a WIT export: it is read without
//! instantiating (so `validate`, uploads and the dashboard see it without
//! running guest code), every toolchain can produce it, and modules built
//! before it existed keep working.
//!
//! ```json
//! {"emails": {"type": "boolean", "default": true, "description": "Hash email addresses."},
//!  "salt":   {"type": "string", "required": true, "description": "Mixed into every hash."}}
//! ```

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::config::{KeyPosition, did_you_mean};

/// The custom section's name.
pub const SECTION: &str = "sluice-config";

/// The declared keys, in name order.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ConfigSpec(pub BTreeMap<String, KeySpec>);

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeySpec {
    #[serde(rename = "type")]
    pub kind: KeyType,
    /// Used when the stage leaves the key out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<serde_json::Value>,
    /// The stage must set it (a key with a default never needs to).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub required: bool,
    #[serde(default)]
    pub description: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KeyType {
    String,
    Integer,
    /// Any number; an integer is a float too.
    Float,
    Boolean,
    Array,
    Table,
    /// Anything; the module checks it itself.
    Any,
}

impl KeyType {
    fn accepts(self, value: &toml::Value) -> bool {
        use toml::Value as V;
        match self {
            KeyType::String => matches!(value, V::String(_)),
            KeyType::Integer => matches!(value, V::Integer(_)),
            KeyType::Float => matches!(value, V::Float(_) | V::Integer(_)),
            KeyType::Boolean => matches!(value, V::Boolean(_)),
            KeyType::Array => matches!(value, V::Array(_)),
            KeyType::Table => matches!(value, V::Table(_)),
            KeyType::Any => true,
        }
    }

    fn accepts_json(self, value: &serde_json::Value) -> bool {
        use serde_json::Value as V;
        match self {
            KeyType::String => value.is_string(),
            KeyType::Integer => value.is_i64() || value.is_u64(),
            KeyType::Float => value.is_number(),
            KeyType::Boolean => value.is_boolean(),
            KeyType::Array => value.is_array(),
            KeyType::Table => value.is_object(),
            KeyType::Any => !matches!(value, V::Null),
        }
    }

    fn article(self) -> &'static str {
        match self {
            KeyType::String => "a string",
            KeyType::Integer => "an integer",
            KeyType::Float => "a number",
            KeyType::Boolean => "a boolean",
            KeyType::Array => "an array",
            KeyType::Table => "a table",
            KeyType::Any => "any value",
        }
    }
}

fn toml_kind(value: &toml::Value) -> &'static str {
    match value {
        toml::Value::String(_) => "a string",
        toml::Value::Integer(_) => "an integer",
        toml::Value::Float(_) => "a float",
        toml::Value::Boolean(_) => "a boolean",
        toml::Value::Datetime(_) => "a date-time",
        toml::Value::Array(_) => "an array",
        toml::Value::Table(_) => "a table",
    }
}

/// One way a stage's config does not fit the declaration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigProblem {
    /// The key at fault; `None` when it is one the stage left out.
    pub key: Option<String>,
    pub message: String,
    /// Where the key is written, when known.
    pub position: Option<KeyPosition>,
}

impl std::fmt::Display for ConfigProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.position {
            Some(position) => write!(f, "{} ({position})", self.message),
            None => f.write_str(&self.message),
        }
    }
}

impl ConfigSpec {
    /// Parses a declaration, checking that defaults have their key's type.
    pub fn parse(json: &[u8]) -> Result<ConfigSpec, String> {
        let spec: ConfigSpec = serde_json::from_slice(json)
            .map_err(|e| format!("its `{SECTION}` section is not a valid declaration: {e}"))?;
        for (key, declared) in &spec.0 {
            if let Some(default) = &declared.default
                && !declared.kind.accepts_json(default)
            {
                return Err(format!(
                    "its `{SECTION}` section declares `{key}` as {} with a default of {default}",
                    declared.kind.article()
                ));
            }
        }
        Ok(spec)
    }

    /// The declaration in a component's bytes, if it has one. When there
    /// are several (a nested module's and one appended at the top), the
    /// last, the one at the top, wins.
    pub fn find(component: &[u8]) -> Result<Option<ConfigSpec>, String> {
        let mut found = None;
        for payload in wasmparser::Parser::new(0).parse_all(component) {
            // A malformed component is reported by the compiler, with detail.
            let Ok(payload) = payload else { break };
            if let wasmparser::Payload::CustomSection(section) = payload
                && section.name() == SECTION
            {
                found = Some(section.data().to_vec());
            }
        }
        found.map(|json| ConfigSpec::parse(&json)).transpose()
    }

    /// `config` with the declared defaults of the keys it leaves out.
    pub fn with_defaults(&self, config: &toml::Table) -> toml::Table {
        let mut filled = config.clone();
        for (key, declared) in &self.0 {
            if let Some(default) = &declared.default
                && !filled.contains_key(key)
                && let Ok(value) = toml::Value::try_from(default)
            {
                filled.insert(key.clone(), value);
            }
        }
        filled
    }

    /// Every way `config` (a stage's `[stage.config]`) does not fit.
    pub fn check(&self, config: &toml::Table) -> Vec<ConfigProblem> {
        let mut problems = Vec::new();
        for (key, value) in config {
            let Some(declared) = self.0.get(key) else {
                let hint = match did_you_mean(key, self.0.keys().map(String::as_str)) {
                    Some(close) => format!("did you mean `{close}`?"),
                    None if self.0.is_empty() => "the module takes no config".to_string(),
                    None => format!(
                        "it takes: {}",
                        self.0.keys().map(|k| format!("`{k}`")).collect::<Vec<_>>().join(", ")
                    ),
                };
                problems.push(ConfigProblem {
                    key: Some(key.clone()),
                    message: format!("unknown key `{key}`; {hint}"),
                    position: None,
                });
                continue;
            };
            if !declared.kind.accepts(value) {
                problems.push(ConfigProblem {
                    key: Some(key.clone()),
                    message: format!(
                        "`{key}` must be {}, found {}",
                        declared.kind.article(),
                        toml_kind(value)
                    ),
                    position: None,
                });
            }
        }
        for (key, declared) in &self.0 {
            if declared.required && !config.contains_key(key) {
                let about = if declared.description.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", declared.description)
                };
                problems.push(ConfigProblem {
                    key: None,
                    message: format!("missing required key `{key}`{about}"),
                    position: None,
                });
            }
        }
        problems
    }
}

/// Appends `spec` to a component as its [`SECTION`] custom section (a
/// custom section may follow the last section of a component).
pub fn embed(component: &mut Vec<u8>, spec: &ConfigSpec) {
    let json = serde_json::to_vec(spec).unwrap_or_default();
    let mut name = Vec::new();
    leb128(&mut name, SECTION.len() as u64);
    name.extend_from_slice(SECTION.as_bytes());
    component.push(0); // custom section id
    leb128(component, (name.len() + json.len()) as u64);
    component.extend_from_slice(&name);
    component.extend_from_slice(&json);
}

fn leb128(out: &mut Vec<u8>, mut value: u64) {
    loop {
        let byte = (value & 0x7f) as u8;
        value >>= 7;
        if value == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> ConfigSpec {
        ConfigSpec::parse(
            br#"{"emails": {"type": "boolean", "default": true, "description": "Hash emails."},
                 "salt": {"type": "string", "required": true, "description": "Mixed into hashes."},
                 "ratio": {"type": "float"}}"#,
        )
        .unwrap()
    }

    fn table(toml: &str) -> toml::Table {
        toml.parse().unwrap()
    }

    #[test]
    fn a_fitting_config_has_no_problems() {
        assert!(spec().check(&table("salt = \"x\"\nemails = false\nratio = 1")).is_empty());
    }

    #[test]
    fn unknown_keys_get_a_suggestion_wrong_types_and_missing_keys_are_named() {
        let problems = spec().check(&table("emials = true\nratio = \"high\""));
        let messages: Vec<&str> = problems.iter().map(|p| p.message.as_str()).collect();
        assert_eq!(
            messages,
            [
                "unknown key `emials`; did you mean `emails`?",
                "`ratio` must be a number, found a string",
                "missing required key `salt` (Mixed into hashes.)",
            ]
        );
        assert_eq!(problems[0].key.as_deref(), Some("emials"));
        assert_eq!(problems[2].key, None);
        let far = spec().check(&table("salt = \"x\"\nzzzzzzzz = 1"));
        assert_eq!(far[0].message, "unknown key `zzzzzzzz`; it takes: `emails`, `ratio`, `salt`");
    }

    #[test]
    fn defaults_fill_what_the_stage_leaves_out() {
        let filled = spec().with_defaults(&table("salt = \"x\""));
        assert_eq!(filled, table("salt = \"x\"\nemails = true"));
        let kept = spec().with_defaults(&table("emails = false"));
        assert_eq!(kept["emails"], toml::Value::Boolean(false));
    }

    #[test]
    fn a_default_of_the_wrong_type_or_an_unknown_field_is_refused() {
        assert!(
            ConfigSpec::parse(br#"{"n": {"type": "integer", "default": "x"}}"#)
                .unwrap_err()
                .contains("default")
        );
        assert!(ConfigSpec::parse(br#"{"n": {"type": "integer", "defualt": 1}}"#).is_err());
        assert!(ConfigSpec::parse(br#"{"n": {"type": "int"}}"#).is_err());
    }

    #[test]
    fn an_embedded_declaration_is_found_again_and_the_last_one_wins() {
        // The smallest component: magic and the component layer/version.
        let mut component = b"\0asm\x0d\x00\x01\x00".to_vec();
        assert_eq!(ConfigSpec::find(&component).unwrap(), None);
        embed(&mut component, &ConfigSpec::default());
        embed(&mut component, &spec());
        wasmparser::Validator::new().validate_all(&component).expect("still a valid component");
        assert_eq!(ConfigSpec::find(&component).unwrap(), Some(spec()));
    }
}
