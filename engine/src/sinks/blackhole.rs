//! The `blackhole` sink: counts records and discards them.
//!
//! For measuring and trying out the rest of a pipeline (a transform's
//! throughput without a destination's cost), as Vector's `blackhole` and
//! Fluent Bit's `null` output are. Records count as written and their
//! acks are released at once, so a Kafka source commits past them.
//!
//! ```toml
//! [sink]
//! type = "blackhole"
//! ```

use serde::Deserialize;

use super::{Sink, SinkContext};
use crate::ack::Ack;
use crate::pipeline::stats::add;
use crate::record::Batch;

/// No settings: `type = "blackhole"` is all there is.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BlackholeSinkConfig {}

pub struct BlackholeSink {
    ctx: SinkContext,
}

impl BlackholeSink {
    pub fn new(ctx: SinkContext) -> Self {
        BlackholeSink { ctx }
    }
}

#[async_trait::async_trait]
impl Sink for BlackholeSink {
    async fn write(&mut self, batch: Batch) -> anyhow::Result<()> {
        add(&self.ctx.stats.written, batch.len());
        Ack::all_done(batch.acks);
        Ok(())
    }

    async fn close(self: Box<Self>) -> anyhow::Result<()> {
        Ok(())
    }
}
