//! {{name}}: sets a field on each JSON document. A starting point: change
//! `process`, declare new config keys in transform.toml, then `sluice test`.

use sluice_guest::{Config, Error, Output, Record, Transform};

pub struct Tag {
    field: String,
    value: String,
}

impl Transform for Tag {
    fn init(config: &Config) -> Result<Self, String> {
        // transform.toml's defaults are filled in by the engine.
        let field = config.get_str("field")?.ok_or("`field` is required")?.to_string();
        let value = config.get_str("value")?.unwrap_or("yes").to_string();
        Ok(Tag { field, value })
    }

    fn process(&mut self, record: &Record<'_>, out: &mut Output) -> Result<(), Error> {
        let document: serde_json::Value = serde_json::from_slice(record.value())
            .map_err(|e| Error::new("invalid-json", format!("value is not JSON: {e}")))?;
        let serde_json::Value::Object(mut document) = document else {
            return Err(Error::invalid_input("expected a JSON object"));
        };
        document.insert(self.field.clone(), self.value.clone().into());
        out.push(serde_json::to_vec(&document).map_err(|e| Error::new("encode", e.to_string()))?);
        Ok(())
    }
}

sluice_guest::export_transform!(Tag);
