//! Lookup tables: data the host loads once and transforms query by key
//! (IP → geo and network owner, code → name) through the `lookup` import,
//! so modules stay small and pure.
//!
//! A pipeline declares a table and a stage is granted it by name:
//!
//! ```toml
//! [lookup.geoip]
//! file = "lookups/geoip.csv"   # relative to the pipeline file
//! match = "ip"                 # first column: networks (CIDR); "exact" by default
//!
//! [[stage]]
//! capabilities = ["lookup:geoip"]
//! ```
//!
//! The file is CSV with a header row. The first column is the key; the
//! others become the row's JSON object, dotted names nesting
//! (`geo.location.lat` → `{"geo":{"location":{"lat":…}}}`) and a `:type`
//! suffix typing the value (`string` by default, `int`, `float`, `bool`).
//! Empty cells are left out, as GeoIP CSVs leave unknown fields empty;
//! lines starting with `#` are comments.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use toml::Spanned;

/// `[lookup.NAME]`: where a table comes from and how its keys match.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LookupConfig {
    /// The CSV file, relative to the pipeline file.
    pub file: Spanned<String>,
    /// How a key finds its row.
    #[serde(default, rename = "match")]
    pub key_match: KeyMatch,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KeyMatch {
    /// The key equals the first column.
    #[default]
    Exact,
    /// The key is an IP address; the first column holds networks in CIDR
    /// notation (a bare address is a /32 or /128) and the most specific
    /// network containing the address wins.
    Ip,
}

/// A table that could not be loaded; says where in the file.
#[derive(Debug, thiserror::Error)]
pub enum LookupError {
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{path}:{line}: {message}")]
    Bad { path: PathBuf, line: u64, message: String },
}

/// A loaded table. Rows are serialized to JSON once, at load, so a lookup
/// costs a hash probe and a copy.
#[derive(Debug)]
pub struct LookupTable {
    pub name: String,
    rows: Rows,
    /// How many rows were loaded, for logs.
    pub len: usize,
}

#[derive(Debug)]
enum Rows {
    Exact(HashMap<String, Arc<str>>),
    /// Per prefix length, longest first: network address → row. IPv4 and
    /// IPv6 are kept apart; an IPv4-mapped IPv6 address is looked up as IPv4.
    Ip {
        v4: Vec<(u8, HashMap<u32, Arc<str>>)>,
        v6: Vec<(u8, HashMap<u128, Arc<str>>)>,
    },
}

/// The type of a column's values, from its `:type` suffix.
#[derive(Debug, Clone, Copy)]
enum ColumnType {
    String,
    Int,
    Float,
    Bool,
}

impl LookupTable {
    /// Loads `path` as table `name`.
    pub fn load(name: &str, path: &Path, key_match: KeyMatch) -> Result<LookupTable, LookupError> {
        let text =
            std::fs::read(path).map_err(|source| LookupError::Read { path: path.to_path_buf(), source })?;
        Self::parse(name, path, &text, key_match)
    }

    fn parse(name: &str, path: &Path, text: &[u8], key_match: KeyMatch) -> Result<LookupTable, LookupError> {
        let bad = |line: u64, message: String| LookupError::Bad { path: path.to_path_buf(), line, message };
        let mut reader = csv::ReaderBuilder::new().has_headers(true).comment(Some(b'#')).from_reader(text);
        let headers =
            reader.headers().map_err(|e| bad(1, format!("cannot read the header row: {e}")))?.clone();
        if headers.len() < 2 {
            return Err(bad(
                1,
                "expected a header row with a key column and at least one value column".into(),
            ));
        }
        let columns = headers
            .iter()
            .skip(1)
            .map(|header| column(header).map_err(|message| bad(1, message)))
            .collect::<Result<Vec<_>, _>>()?;

        let mut exact = HashMap::new();
        let mut v4: HashMap<u8, HashMap<u32, Arc<str>>> = HashMap::new();
        let mut v6: HashMap<u8, HashMap<u128, Arc<str>>> = HashMap::new();
        let mut len = 0;
        for result in reader.records() {
            let record = result.map_err(|e| {
                let line = e.position().map_or(0, |p| p.line());
                bad(line, format!("not valid CSV: {e}"))
            })?;
            let line = record.position().map_or(0, |p| p.line());
            let key = record.get(0).unwrap_or_default().trim();
            let mut row = Map::new();
            for ((path, ty), cell) in columns.iter().zip(record.iter().skip(1)) {
                if cell.is_empty() {
                    continue;
                }
                let value = typed(cell, *ty)
                    .map_err(|message| bad(line, format!("column `{}`: {message}", path.join("."))))?;
                insert(&mut row, path, value);
            }
            let row: Arc<str> = Value::Object(row).to_string().into();
            let duplicate = match key_match {
                KeyMatch::Exact => exact.insert(key.to_string(), row).is_some(),
                KeyMatch::Ip => match network(key).map_err(|message| bad(line, message))? {
                    Network::V4(address, prefix) => {
                        v4.entry(prefix).or_default().insert(address, row).is_some()
                    }
                    Network::V6(address, prefix) => {
                        v6.entry(prefix).or_default().insert(address, row).is_some()
                    }
                },
            };
            if duplicate {
                return Err(bad(line, format!("`{key}` appears twice")));
            }
            len += 1;
        }
        let rows = match key_match {
            KeyMatch::Exact => Rows::Exact(exact),
            KeyMatch::Ip => Rows::Ip { v4: longest_first(v4), v6: longest_first(v6) },
        };
        Ok(LookupTable { name: name.to_string(), rows, len })
    }

    /// The row for `key` as a JSON object, if any.
    pub fn get(&self, key: &str) -> Option<Arc<str>> {
        match &self.rows {
            Rows::Exact(rows) => rows.get(key).cloned(),
            Rows::Ip { v4, v6 } => match key.trim().parse::<IpAddr>().ok()? {
                IpAddr::V4(address) => longest_match(v4, u32::from(address)),
                IpAddr::V6(address) => match address.to_ipv4_mapped() {
                    Some(mapped) => longest_match(v4, u32::from(mapped)),
                    None => longest_match(v6, u128::from(address)),
                },
            },
        }
    }
}

/// Tables by name, as granted to one stage.
pub type Lookups = HashMap<String, Arc<LookupTable>>;

/// Loads the tables a stage is granted (`lookup:NAME` capabilities) from
/// the pipeline's `[lookup.NAME]` declarations.
pub fn load_granted(
    capabilities: &[String],
    declared: &std::collections::BTreeMap<String, LookupConfig>,
    resolve: impl Fn(&Path) -> PathBuf,
) -> Result<Lookups, LookupError> {
    let mut tables = Lookups::new();
    for name in capabilities.iter().filter_map(|c| c.strip_prefix(CAPABILITY_PREFIX)) {
        // Validation already refused grants of undeclared tables.
        let Some(config) = declared.get(name) else { continue };
        let path = resolve(Path::new(config.file.get_ref()));
        let table = LookupTable::load(name, &path, config.key_match)?;
        tracing::debug!(table = name, rows = table.len, path = %path.display(), "lookup table loaded");
        tables.insert(name.to_string(), Arc::new(table));
    }
    Ok(tables)
}

/// `lookup:NAME` grants table NAME.
pub const CAPABILITY_PREFIX: &str = "lookup:";

fn column(header: &str) -> Result<(Vec<String>, ColumnType), String> {
    let (name, ty) = match header.rsplit_once(':') {
        Some((name, ty)) => (name, ty),
        None => (header, "string"),
    };
    let ty = match ty {
        "string" => ColumnType::String,
        "int" => ColumnType::Int,
        "float" => ColumnType::Float,
        "bool" => ColumnType::Bool,
        other => {
            return Err(format!(
                "column `{header}`: unknown type `{other}`; expected string, int, float or bool"
            ));
        }
    };
    let path: Vec<String> = name.trim().split('.').map(str::to_string).collect();
    if path.iter().any(String::is_empty) {
        return Err(format!("column `{header}`: empty name or name part"));
    }
    Ok((path, ty))
}

fn typed(cell: &str, ty: ColumnType) -> Result<Value, String> {
    Ok(match ty {
        ColumnType::String => Value::String(cell.to_string()),
        ColumnType::Int => {
            cell.trim().parse::<i64>().map_err(|_| format!("`{cell}` is not an integer"))?.into()
        }
        ColumnType::Float => {
            let float = cell.trim().parse::<f64>().map_err(|_| format!("`{cell}` is not a number"))?;
            serde_json::Number::from_f64(float)
                .map(Value::Number)
                .ok_or(format!("`{cell}` is not a finite number"))?
        }
        ColumnType::Bool => match cell.trim() {
            "true" => Value::Bool(true),
            "false" => Value::Bool(false),
            _ => return Err(format!("`{cell}` is not true or false")),
        },
    })
}

fn insert(row: &mut Map<String, Value>, path: &[String], value: Value) {
    let (last, parents) = path.split_last().expect("column names have at least one part");
    let mut object = row;
    for part in parents {
        let entry = object.entry(part.clone()).or_insert_with(|| Value::Object(Map::new()));
        if !entry.is_object() {
            *entry = Value::Object(Map::new());
        }
        object = entry.as_object_mut().expect("just made an object");
    }
    object.insert(last.clone(), value);
}

enum Network {
    V4(u32, u8),
    V6(u128, u8),
}

fn network(text: &str) -> Result<Network, String> {
    let (address, prefix) = match text.split_once('/') {
        Some((address, prefix)) => (address, Some(prefix)),
        None => (text, None),
    };
    let address: IpAddr =
        address.parse().map_err(|_| format!("`{text}` is not an IP network (like 192.0.2.0/24)"))?;
    let bits = if address.is_ipv4() { 32 } else { 128 };
    let prefix = match prefix {
        Some(prefix) => prefix
            .parse::<u8>()
            .ok()
            .filter(|p| *p <= bits)
            .ok_or(format!("`{text}`: the prefix length must be 0 to {bits}"))?,
        None => bits,
    };
    Ok(match address {
        IpAddr::V4(a) => Network::V4(u32::from(a) & mask32(prefix), prefix),
        IpAddr::V6(a) => Network::V6(u128::from(a) & mask128(prefix), prefix),
    })
}

fn mask32(prefix: u8) -> u32 {
    if prefix == 0 { 0 } else { u32::MAX << (32 - u32::from(prefix)) }
}

fn mask128(prefix: u8) -> u128 {
    if prefix == 0 { 0 } else { u128::MAX << (128 - u32::from(prefix)) }
}

fn longest_first<A>(by_prefix: HashMap<u8, HashMap<A, Arc<str>>>) -> Vec<(u8, HashMap<A, Arc<str>>)> {
    let mut list: Vec<_> = by_prefix.into_iter().collect();
    list.sort_by_key(|b| std::cmp::Reverse(b.0));
    list
}

trait Masked: Copy + Eq + std::hash::Hash {
    fn masked(self, prefix: u8) -> Self;
}

impl Masked for u32 {
    fn masked(self, prefix: u8) -> u32 {
        self & mask32(prefix)
    }
}

impl Masked for u128 {
    fn masked(self, prefix: u8) -> u128 {
        self & mask128(prefix)
    }
}

fn longest_match<A: Masked>(by_prefix: &[(u8, HashMap<A, Arc<str>>)], address: A) -> Option<Arc<str>> {
    by_prefix.iter().find_map(|(prefix, rows)| rows.get(&address.masked(*prefix)).cloned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(text: &str, key_match: KeyMatch) -> Result<LookupTable, LookupError> {
        LookupTable::parse("t", Path::new("t.csv"), text.as_bytes(), key_match)
    }

    #[test]
    fn the_most_specific_network_wins_and_columns_nest_with_types() {
        let t = table(
            "network,geo.country_iso_code,geo.location.lat:float,as.number:int,anycast:bool\n\
             192.0.2.0/24,US,37.75,64496,false\n\
             192.0.2.128/25,CA,,64497,\n\
             2001:db8::/32,DE,51.3,,true\n",
            KeyMatch::Ip,
        )
        .unwrap();
        assert_eq!(t.len, 3);
        assert_eq!(
            t.get("192.0.2.7").as_deref(),
            Some(
                r#"{"anycast":false,"as":{"number":64496},"geo":{"country_iso_code":"US","location":{"lat":37.75}}}"#
            )
        );
        // Empty cells are left out; the /25 wins inside the /24.
        assert_eq!(
            t.get("192.0.2.200").as_deref(),
            Some(r#"{"as":{"number":64497},"geo":{"country_iso_code":"CA"}}"#)
        );
        assert!(t.get("2001:db8:1::9").unwrap().contains("\"DE\""));
        assert!(
            t.get("::ffff:192.0.2.9").unwrap().contains("\"US\""),
            "IPv4-mapped addresses match IPv4 networks"
        );
        assert_eq!(t.get("198.51.100.1"), None);
        assert_eq!(t.get("not an address"), None);
    }

    #[test]
    fn exact_tables_match_the_whole_key() {
        let t = table("code,name\n404,Not Found\n", KeyMatch::Exact).unwrap();
        assert_eq!(t.get("404").as_deref(), Some(r#"{"name":"Not Found"}"#));
        assert_eq!(t.get("40"), None);
    }

    #[test]
    fn bad_tables_say_which_line_and_column() {
        let error = |text, m| table(text, m).unwrap_err().to_string();
        assert_eq!(
            error("network,lat:float\n10.0.0.0/8,north\n", KeyMatch::Ip),
            "t.csv:2: column `lat`: `north` is not a number"
        );
        assert_eq!(
            error("network,x\n10.0.0.0/33,a\n", KeyMatch::Ip),
            "t.csv:2: `10.0.0.0/33`: the prefix length must be 0 to 32"
        );
        assert_eq!(
            error("network,x\nten,a\n", KeyMatch::Ip),
            "t.csv:2: `ten` is not an IP network (like 192.0.2.0/24)"
        );
        assert_eq!(error("k,x\na,1\nb,2\na,3\n", KeyMatch::Exact), "t.csv:4: `a` appears twice");
        assert!(error("k,x:date\n", KeyMatch::Exact).contains("unknown type `date`"));
        assert!(error("k\n", KeyMatch::Exact).contains("at least one value column"));
        assert!(error("k,x\na,1,2\n", KeyMatch::Exact).starts_with("t.csv:2: not valid CSV"));
    }
}
