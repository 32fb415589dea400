//! `/api/modules`: upload, list, show and delete transform modules.

use std::sync::Arc;

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use serde::Serialize;
use utoipa::ToSchema;

use super::{ApiError, ApiState, read_body};
use crate::control::ModuleVersion;

/// A module with its versions and the pipelines that run it.
#[derive(Serialize, ToSchema)]
pub struct ModuleView {
    pub name: String,
    #[schema(value_type = Vec<Object>)]
    pub versions: Vec<ModuleVersion>,
    /// Pipelines with a stage running some version of it.
    pub used_by: Vec<String>,
    /// What every sluice module implements (`init`, `process`) and imports.
    pub world: &'static str,
    /// The config keys the latest version declares: each with `type`,
    /// `default`, `required` and `description`. Absent: it declares none.
    #[schema(value_type = Option<Object>)]
    pub config: Option<crate::wasm::config_spec::ConfigSpec>,
}

const WORLD: &str = "sluice:transform/transform@0.1.0";

fn view(state: &ApiState, name: String, versions: Vec<ModuleVersion>) -> ModuleView {
    let used_by = state.supervisor.users_of(&name);
    let config = versions.last().and_then(|v| v.config.clone());
    ModuleView { name, versions, used_by, world: WORLD, config }
}

/// Lists the uploaded modules.
#[utoipa::path(get, path = "/api/modules", tag = "modules", responses((status = 200, body = Vec<ModuleView>)))]
pub async fn list(
    State(state): State<Arc<ApiState>>,
    headers: HeaderMap,
) -> Result<Json<Vec<ModuleView>>, ApiError> {
    state.check_read(&headers)?;
    let modules = state.supervisor.modules.list();
    Ok(Json(modules.into_iter().map(|(name, versions)| view(&state, name, versions)).collect()))
}

/// Shows one module: its versions (number, SHA-256, size, upload time) and users.
#[utoipa::path(get, path = "/api/modules/{name}", tag = "modules",
    params(("name" = String, Path, description = "module name")),
    responses((status = 200, body = ModuleView), (status = 404, description = "no such module")))]
pub async fn show(
    State(state): State<Arc<ApiState>>,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> Result<Json<ModuleView>, ApiError> {
    state.check_read(&headers)?;
    let versions = state.supervisor.modules.versions(&name);
    if versions.is_empty() {
        return Err(ApiError::new(StatusCode::NOT_FOUND, format!("no module named `{name}`")));
    }
    Ok(Json(view(&state, name, versions)))
}

/// Uploads a `.wasm` component as the next version of `name`. The body is
/// the component itself. It is validated (a component implementing the
/// sluice transform world) before it is stored; uploading the latest
/// version's bytes again creates nothing and answers 200.
#[utoipa::path(put, path = "/api/modules/{name}", tag = "modules",
    params(("name" = String, Path, description = "module name: lowercase letters, digits, `-`, `_`")),
    request_body(content = Vec<u8>, content_type = "application/wasm"),
    responses((status = 201, description = "a new version", body = Object),
        (status = 200, description = "same bytes as the latest version", body = Object),
        (status = 400, description = "bad name"), (status = 401), (status = 403),
        (status = 413, description = "too large"), (status = 422, description = "not a sluice transform component")),
    security(("token" = [])))]
pub async fn upload(
    State(state): State<Arc<ApiState>>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<(StatusCode, Json<ModuleVersion>), ApiError> {
    state.token.check(&headers)?;
    let registry = &state.supervisor.modules;
    crate::control::modules::validate_name("module", &name)
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, e))?;
    let bytes = read_body(body, registry.max_bytes, "module").await?;
    let supervisor = state.supervisor.clone();
    let (version, created) = tokio::task::spawn_blocking(move || supervisor.modules.upload(&name, &bytes))
        .await
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))??;
    tracing::info!(module = %version.reference(), sha256 = %version.sha256, created, "module uploaded");
    Ok((if created { StatusCode::CREATED } else { StatusCode::OK }, Json(version)))
}

/// Deletes every version of a module; refused while a pipeline runs it.
#[utoipa::path(delete, path = "/api/modules/{name}", tag = "modules",
    params(("name" = String, Path, description = "module name")),
    responses((status = 204), (status = 404), (status = 409, description = "in use"), (status = 401), (status = 403)),
    security(("token" = [])))]
pub async fn delete(
    State(state): State<Arc<ApiState>>,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> Result<StatusCode, ApiError> {
    state.token.check(&headers)?;
    let users = state.supervisor.users_of(&name);
    if !users.is_empty() {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            format!(
                "module `{name}` is in use by {}; deploy another module there or delete them first",
                users.join(", ")
            ),
        )
        .with("used_by", users));
    }
    state.supervisor.modules.delete(&name)?;
    Ok(StatusCode::NO_CONTENT)
}
