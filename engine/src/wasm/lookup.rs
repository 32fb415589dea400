//! The host side of the `lookup` import: a stage's granted tables, and the
//! handles an instance opened on them.

use std::sync::Arc;

use super::bindings::sluice::transform::lookup::Host;
use super::instance::StoreState;
use crate::lookup::{LookupTable, Lookups};

/// What one instance may look up.
#[derive(Default)]
pub(crate) struct LookupState {
    granted: Arc<Lookups>,
    /// Handle `n` is `opened[n]`.
    opened: Vec<Arc<LookupTable>>,
}

impl LookupState {
    pub(crate) fn new(granted: Arc<Lookups>) -> Self {
        LookupState { granted, opened: Vec::new() }
    }
}

impl Host for StoreState {
    fn open(&mut self, name: String) -> Result<u32, String> {
        let state = self.lookup_state();
        let Some(table) = state.granted.get(&name) else {
            return Err(format!(
                "lookup table `{name}` is not granted to this stage: add \"lookup:{name}\" to the stage's \
                 capabilities and declare [lookup.{name}] with its file in the pipeline"
            ));
        };
        if let Some(handle) = state.opened.iter().position(|t| Arc::ptr_eq(t, table)) {
            return Ok(handle as u32);
        }
        state.opened.push(table.clone());
        Ok(state.opened.len() as u32 - 1)
    }

    fn get(&mut self, table: u32, key: String) -> Option<String> {
        let table = self.lookup_state().opened.get(table as usize)?;
        table.get(&key).map(|row| row.to_string())
    }
}
