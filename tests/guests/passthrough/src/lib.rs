//! Emits every record unchanged: the baseline for ABI tests and for
//! measuring what the host/guest boundary costs.

use sluice_guest::{Config, Error, Output, Record, Transform};

pub struct Passthrough;

impl Transform for Passthrough {
    fn init(config: &Config) -> Result<Self, String> {
        config.expect_keys(&[])?;
        Ok(Passthrough)
    }

    // Inlined natively too, as LTO inlines it in the component: the
    // boundary benchmark's native side is this loop at its fastest.
    #[inline]
    fn process(&mut self, record: &Record<'_>, out: &mut Output) -> Result<(), Error> {
        out.forward(record);
        Ok(())
    }
}

sluice_guest::export_transform!(Passthrough);
