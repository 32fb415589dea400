//! The stage configuration handed to [`Transform::init`](crate::Transform::init).

use serde::de::DeserializeOwned;
use serde_json::Value;

/// The stage's `config` table from the pipeline TOML.
#[derive(Debug, Clone)]
pub struct Config {
    value: Value,
}

impl Config {
    /// Parses the JSON the host sends. An empty string is an empty table.
    pub fn from_json(json: &str) -> Result<Self, String> {
        if json.trim().is_empty() {
            return Ok(Config { value: Value::Object(Default::default()) });
        }
        let value: Value =
            serde_json::from_str(json).map_err(|e| format!("config is not valid JSON: {e}"))?;
        if !value.is_object() {
            return Err("config must be a table".to_string());
        }
        Ok(Config { value })
    }

    /// Deserializes the whole table, e.g. into a struct with
    /// `#[serde(deny_unknown_fields)]` so misspelled keys are rejected at deploy.
    pub fn deserialize<T: DeserializeOwned>(&self) -> Result<T, String> {
        serde_json::from_value(self.value.clone()).map_err(|e| format!("invalid config: {e}"))
    }

    pub fn get(&self, key: &str) -> Option<&Value> {
        self.value.get(key)
    }

    /// A string option; an error if present with another type.
    pub fn get_str(&self, key: &str) -> Result<Option<&str>, String> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(other) => Err(format!("config key `{key}`: expected a string, found {other}")),
        }
    }

    pub fn get_bool(&self, key: &str) -> Result<Option<bool>, String> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(other) => Err(format!("config key `{key}`: expected true or false, found {other}")),
        }
    }

    pub fn get_u64(&self, key: &str) -> Result<Option<u64>, String> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v
                .as_u64()
                .map(Some)
                .ok_or_else(|| format!("config key `{key}`: expected a non-negative integer, found {v}")),
        }
    }

    /// The keys present in the table, to reject unknown ones.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.value.as_object().into_iter().flat_map(|m| m.keys().map(String::as_str))
    }

    /// Fails with a clear message if the table has a key not in `known`.
    pub fn expect_keys(&self, known: &[&str]) -> Result<(), String> {
        for key in self.keys() {
            if !known.contains(&key) {
                return Err(format!("unknown config key `{key}`; expected one of: {}", known.join(", ")));
            }
        }
        Ok(())
    }
}
