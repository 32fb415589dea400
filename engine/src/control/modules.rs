//! The module registry: uploaded transform components, each upload a new
//! numbered version stored by content hash.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::store::StateStore;
use crate::wasm::config_spec::ConfigSpec;
use crate::wasm::{LoadError, Module, WasmHost};

/// Largest module accepted by default (the `enrich` example is 1.5 MB).
pub const DEFAULT_MAX_MODULE_BYTES: usize = 32 << 20;

/// One uploaded version of a module.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModuleVersion {
    pub name: String,
    /// 1 for the first upload, then one more per upload with new content.
    pub version: u32,
    /// SHA-256 of the component, hex.
    pub sha256: String,
    pub size: u64,
    /// RFC 3339.
    pub uploaded_at: String,
    /// The config keys the module declares (see [`ConfigSpec`]); absent
    /// when it declares none and takes any config.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<ConfigSpec>,
}

impl ModuleVersion {
    /// `name@version`, as modules are shown and referenced.
    pub fn reference(&self) -> String {
        format!("{}@{}", self.name, self.version)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ModuleError {
    #[error("{0}")]
    BadName(String),
    #[error("the module is {size} bytes; the limit is {limit} bytes")]
    TooLarge { size: usize, limit: usize },
    #[error("not a usable transform: {0}")]
    Invalid(#[from] LoadError),
    #[error("no module named `{0}`")]
    NotFound(String),
    #[error("module `{name}` has no version {version} (versions: {known})")]
    NoSuchVersion { name: String, version: u32, known: String },
    #[error(transparent)]
    Store(#[from] anyhow::Error),
}

/// Checks a module or pipeline name: it appears in URLs, metrics labels and
/// references, so it is kept to lowercase letters, digits, `-` and `_`.
pub fn validate_name(what: &str, name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
        && name.as_bytes()[0].is_ascii_alphanumeric();
    if ok {
        Ok(())
    } else {
        Err(format!(
            "invalid {what} name `{}`: use 1–64 lowercase letters, digits, `-` or `_`, starting with a letter or digit",
            name.escape_debug()
        ))
    }
}

pub struct ModuleRegistry {
    store: Arc<StateStore>,
    host: WasmHost,
    pub max_bytes: usize,
}

impl ModuleRegistry {
    pub fn new(store: Arc<StateStore>, host: WasmHost) -> Self {
        ModuleRegistry { store, host, max_bytes: DEFAULT_MAX_MODULE_BYTES }
    }

    /// Validates `bytes` as a transform component and stores them as the
    /// next version of `name`. Uploading the latest version's bytes again
    /// returns that version (`false`: nothing new).
    pub fn upload(&self, name: &str, bytes: &[u8]) -> Result<(ModuleVersion, bool), ModuleError> {
        validate_name("module", name).map_err(ModuleError::BadName)?;
        if bytes.len() > self.max_bytes {
            return Err(ModuleError::TooLarge { size: bytes.len(), limit: self.max_bytes });
        }
        let versions = self.versions(name);
        let next = versions.last().map_or(1, |v| v.version + 1);
        let module = self.host.load(&format!("{name}@{next}"), bytes, false)?;
        if let Some(latest) = versions.last().filter(|v| v.sha256 == module.hash) {
            return Ok((latest.clone(), false));
        }
        let sha256 = self.store.put_blob(bytes)?;
        let version = ModuleVersion {
            name: name.to_string(),
            version: next,
            sha256,
            size: bytes.len() as u64,
            uploaded_at: humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
            config: module.config_spec.as_deref().cloned(),
        };
        self.store.put(&key(name, next), &version)?;
        Ok((version, true))
    }

    /// Every version of `name`, oldest first.
    pub fn versions(&self, name: &str) -> Vec<ModuleVersion> {
        self.store.scan(&format!("module/{name}/")).into_iter().map(|(_, v)| v).collect()
    }

    /// All modules by name, each with its versions.
    pub fn list(&self) -> BTreeMap<String, Vec<ModuleVersion>> {
        let mut modules: BTreeMap<String, Vec<ModuleVersion>> = BTreeMap::new();
        for (_, version) in self.store.scan::<ModuleVersion>("module/") {
            modules.entry(version.name.clone()).or_default().push(version);
        }
        modules
    }

    /// A version of `name`: the given one, or the latest.
    pub fn version(&self, name: &str, version: Option<u32>) -> Result<ModuleVersion, ModuleError> {
        let versions = self.versions(name);
        if versions.is_empty() {
            return Err(ModuleError::NotFound(name.to_string()));
        }
        match version {
            None => Ok(versions.last().cloned().expect("not empty")),
            Some(wanted) => versions.iter().find(|v| v.version == wanted).cloned().ok_or_else(|| {
                ModuleError::NoSuchVersion {
                    name: name.to_string(),
                    version: wanted,
                    known: versions.iter().map(|v| v.version.to_string()).collect::<Vec<_>>().join(", "),
                }
            }),
        }
    }

    /// Resolves a stage's `module = "name"` or `"name@N"`; `None` when the
    /// reference is a file path rather than a registry name.
    pub fn parse_reference(reference: &str) -> Option<(&str, Option<u32>)> {
        let (name, version) = match reference.split_once('@') {
            Some((name, version)) => (name, Some(version.parse().ok()?)),
            None => (reference, None),
        };
        validate_name("module", name).ok().map(|()| (name, version))
    }

    /// The compiled module of a version (compiled once, then cached).
    pub fn load(&self, version: &ModuleVersion, metered: bool) -> Result<Arc<Module>, ModuleError> {
        let path = self.store.blob_path(&version.sha256).map_err(ModuleError::Store)?;
        let bytes = std::fs::read(&path).map_err(|e| {
            ModuleError::Store(anyhow::anyhow!(
                "module {} is missing from the store: {e}",
                version.reference()
            ))
        })?;
        Ok(self.host.load(&version.reference(), &bytes, metered)?)
    }

    /// Deletes every version of `name` (the caller checks it is unused).
    pub fn delete(&self, name: &str) -> Result<Vec<ModuleVersion>, ModuleError> {
        let versions = self.versions(name);
        if versions.is_empty() {
            return Err(ModuleError::NotFound(name.to_string()));
        }
        for version in &versions {
            self.store.delete(&key(name, version.version))?;
        }
        // A blob may be shared by another module with the same bytes.
        let still_used: Vec<String> = self.list().values().flatten().map(|v| v.sha256.clone()).collect();
        for version in &versions {
            if !still_used.contains(&version.sha256) {
                self.store.remove_blob(&version.sha256);
            }
        }
        Ok(versions)
    }
}

/// Versions are zero-padded so the store's key order is version order.
fn key(name: &str, version: u32) -> String {
    format!("module/{name}/{version:010}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_cannot_escape_or_surprise() {
        for bad in ["", "../x", "a/b", "A", "-x", "x y", "x.wasm", "é", &"a".repeat(65)] {
            assert!(validate_name("module", bad).is_err(), "{bad:?}");
        }
        for good in ["log-parse", "enrich_v2", "0x"] {
            assert!(validate_name("module", good).is_ok(), "{good:?}");
        }
    }

    #[test]
    fn references_name_registry_modules_not_paths() {
        assert_eq!(ModuleRegistry::parse_reference("log-parse"), Some(("log-parse", None)));
        assert_eq!(ModuleRegistry::parse_reference("log-parse@3"), Some(("log-parse", Some(3))));
        assert_eq!(ModuleRegistry::parse_reference("transforms/log_parse.wasm"), None);
        assert_eq!(ModuleRegistry::parse_reference("log-parse@x"), None);
    }

    #[test]
    fn rejects_what_is_not_a_component_before_storing() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(StateStore::open(dir.path()).unwrap());
        let registry = ModuleRegistry::new(store, WasmHost::new());
        assert!(matches!(registry.upload("x", b"hello"), Err(ModuleError::Invalid(LoadError::NotWasm))));
        let core = b"\0asm\x01\0\0\0";
        assert!(matches!(registry.upload("x", core), Err(ModuleError::Invalid(LoadError::CoreModule))));
        assert!(matches!(registry.upload("../x", core), Err(ModuleError::BadName(_))));
        assert!(registry.list().is_empty());
    }
}
