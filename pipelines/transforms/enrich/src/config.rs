//! The stage config: which fields to derive, and which lookup table holds
//! the networks.

use serde::Deserialize;

/// `[stage.config]` of an `enrich` stage.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EnrichConfig {
    /// The lookup table mapping client addresses to `geo.*` / `as.*`
    /// columns; the stage must be granted `lookup:<name>`. Unset: no geo.
    pub geoip_table: Option<String>,
    /// Parse `user_agent.original` (and flag bots).
    pub user_agent: bool,
    /// Derive `url.extension` and, for absolute targets, scheme/domain/port.
    pub url: bool,
    /// Add `visitor.id`.
    pub visitor: bool,
}

impl Default for EnrichConfig {
    fn default() -> Self {
        EnrichConfig { geoip_table: None, user_agent: true, url: true, visitor: true }
    }
}
