//! Emits `copies` records for each input `{"id": N}`: `{"id": N, "copy": K}`
//! for K in 0..copies. Every output keeps its input's offset, so this is
//! what tests of sinks under fan-out run.

use sluice_guest::{Config, Error, Output, Record, Transform};

struct Fanout {
    copies: u64,
}

impl Transform for Fanout {
    fn init(config: &Config) -> Result<Self, String> {
        config.expect_keys(&["copies"])?;
        Ok(Fanout { copies: config.get_u64("copies")?.unwrap_or(2) })
    }

    fn process(&mut self, record: &Record<'_>, out: &mut Output) -> Result<(), Error> {
        let input: serde_json::Value = serde_json::from_slice(record.value())
            .map_err(|e| Error::invalid_input(format!("not JSON: {e}")))?;
        let id = input["id"].as_u64().ok_or_else(|| Error::invalid_input("no numeric `id`"))?;
        for copy in 0..self.copies {
            out.push(format!(r#"{{"id":{id},"copy":{copy}}}"#)).timestamp(record.timestamp());
        }
        Ok(())
    }
}

sluice_guest::export_transform!(Fanout);
