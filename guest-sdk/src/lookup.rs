//! Lookup tables the host loads for the pipeline (`[lookup.NAME]`) and
//! grants to a stage (`capabilities = ["lookup:NAME"]`).
//!
//! ```ignore
//! let geoip = sluice_guest::lookup::Table::open("geoip")?; // in `init`
//! if let Some(row) = geoip.get("192.0.2.7") { /* a JSON object */ }
//! ```
//!
//! Open tables in `init`: a stage that was not granted the table then fails
//! to deploy, with a message saying how to grant it. Natively (in `cargo
//! test`) tables come from [`crate::testing::grant_lookup`].

/// An open table.
#[derive(Debug, Clone, Copy)]
pub struct Table {
    handle: u32,
}

impl Table {
    /// Opens the table named `name`; fails unless the stage was granted it.
    pub fn open(name: &str) -> Result<Table, String> {
        imp::open(name).map(|handle| Table { handle })
    }

    /// The row for `key`, a JSON object, or `None` when no row matches.
    pub fn get(&self, key: &str) -> Option<String> {
        imp::get(self.handle, key)
    }
}

#[cfg(target_arch = "wasm32")]
mod imp {
    use crate::bindings::sluice::transform::lookup;

    pub fn open(name: &str) -> Result<u32, String> {
        lookup::open(name)
    }

    pub fn get(handle: u32, key: &str) -> Option<String> {
        lookup::get(handle, key)
    }
}

/// Native builds (tests, benchmarks) have no host: tables are granted per
/// thread by the test.
#[cfg(not(target_arch = "wasm32"))]
pub(crate) mod imp {
    use std::cell::RefCell;

    type Lookup = Box<dyn Fn(&str) -> Option<String>>;

    thread_local! {
        static TABLES: RefCell<Vec<(String, Lookup)>> = const { RefCell::new(Vec::new()) };
    }

    pub fn grant(name: &str, lookup: Lookup) {
        TABLES.with_borrow_mut(|tables| {
            tables.retain(|(n, _)| n != name);
            tables.push((name.to_string(), lookup));
        });
    }

    pub fn open(name: &str) -> Result<u32, String> {
        TABLES.with_borrow(|tables| {
            tables.iter().position(|(n, _)| n == name).map(|i| i as u32).ok_or_else(|| {
                format!("lookup table `{name}` is not granted (natively: testing::grant_lookup)")
            })
        })
    }

    pub fn get(handle: u32, key: &str) -> Option<String> {
        TABLES.with_borrow(|tables| tables.get(handle as usize).and_then(|(_, lookup)| lookup(key)))
    }
}
