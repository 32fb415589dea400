//! `/api/pipelines`: create or replace pipelines from TOML, watch them,
//! pause, resume, delete, and deploy or roll back a stage's module.

use std::sync::Arc;

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use serde::Deserialize;
use utoipa::ToSchema;

use super::{ApiError, ApiState, read_body};
use crate::control::history::RateSample;
use crate::control::{PipelineView, StageView};

/// Largest pipeline definition accepted.
const MAX_TOML_BYTES: usize = 1 << 20;

/// Lists every pipeline with its status and counters.
#[utoipa::path(get, path = "/api/pipelines", tag = "pipelines", responses((status = 200, body = Vec<PipelineView>)))]
pub async fn list(
    State(state): State<Arc<ApiState>>,
    headers: HeaderMap,
) -> Result<Json<Vec<PipelineView>>, ApiError> {
    state.check_read(&headers)?;
    let supervisor = &state.supervisor;
    Ok(Json(supervisor.list().iter().map(|m| supervisor.view(m)).collect()))
}

/// One pipeline: definition, status, counters, stages with module versions.
#[utoipa::path(get, path = "/api/pipelines/{name}", tag = "pipelines",
    params(("name" = String, Path)), responses((status = 200, body = PipelineView), (status = 404)))]
pub async fn show(
    State(state): State<Arc<ApiState>>,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> Result<Json<PipelineView>, ApiError> {
    state.check_read(&headers)?;
    let managed = state
        .supervisor
        .get(&name)
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, format!("no pipeline named `{name}`")))?;
    Ok(Json(state.supervisor.view(&managed)))
}

/// The recent rates of a pipeline or of all together.
#[derive(serde::Serialize, ToSchema)]
pub struct History {
    /// Seconds between samples.
    pub interval_seconds: u64,
    /// Oldest first, up to 15 minutes.
    pub samples: Vec<RateSample>,
}

fn history(samples: Vec<RateSample>) -> Json<History> {
    Json(History { interval_seconds: crate::control::history::SAMPLE_EVERY.as_secs(), samples })
}

/// A pipeline's rates over the last 15 minutes (records read, written,
/// dead-lettered and dropped per second), so charts start with the past.
#[utoipa::path(get, path = "/api/pipelines/{name}/history", tag = "pipelines",
    params(("name" = String, Path)), responses((status = 200, body = History), (status = 404)))]
pub async fn pipeline_history(
    State(state): State<Arc<ApiState>>,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> Result<Json<History>, ApiError> {
    state.check_read(&headers)?;
    let managed = state
        .supervisor
        .get(&name)
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, format!("no pipeline named `{name}`")))?;
    Ok(history(managed.history.samples()))
}

/// The rates of all pipelines together over the last 15 minutes.
#[utoipa::path(get, path = "/api/history", tag = "pipelines", responses((status = 200, body = History)))]
pub async fn all_history(
    State(state): State<Arc<ApiState>>,
    headers: HeaderMap,
) -> Result<Json<History>, ApiError> {
    state.check_read(&headers)?;
    let each: Vec<Vec<RateSample>> = state.supervisor.list().iter().map(|m| m.history.samples()).collect();
    Ok(history(crate::control::history::total(&each)))
}

/// Creates or replaces a pipeline from a TOML body (one pipeline, named as
/// in the URL; stages name uploaded modules as `module = "name"` or
/// `"name@version"`). Invalid definitions answer 422 with every error's
/// line, column and key, as `sluice validate` prints them.
#[utoipa::path(put, path = "/api/pipelines/{name}", tag = "pipelines",
    params(("name" = String, Path)),
    request_body(content = String, content_type = "application/toml"),
    responses((status = 201, body = PipelineView, description = "created"), (status = 200, body = PipelineView, description = "replaced"),
        (status = 422, description = "invalid: `errors` lists file, line, column, key and message"),
        (status = 409, description = "defined in a file"), (status = 401), (status = 403)),
    security(("token" = [])))]
pub async fn apply(
    State(state): State<Arc<ApiState>>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<(StatusCode, Json<PipelineView>), ApiError> {
    state.token.check(&headers)?;
    let bytes = read_body(body, MAX_TOML_BYTES, "pipeline definition").await?;
    let toml = std::str::from_utf8(&bytes)
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, format!("the definition is not UTF-8: {e}")))?;
    let (view, created) = state.supervisor.apply(&name, toml).await?;
    Ok((if created { StatusCode::CREATED } else { StatusCode::OK }, Json(view)))
}

/// Stops and removes an API pipeline (its committed offsets stay in Kafka).
#[utoipa::path(delete, path = "/api/pipelines/{name}", tag = "pipelines",
    params(("name" = String, Path)),
    responses((status = 204), (status = 404), (status = 409, description = "defined in a file"), (status = 401), (status = 403)),
    security(("token" = [])))]
pub async fn delete(
    State(state): State<Arc<ApiState>>,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> Result<StatusCode, ApiError> {
    state.token.check(&headers)?;
    state.supervisor.delete(&name).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Drains the pipeline and stops it; it stays paused across restarts.
#[utoipa::path(post, path = "/api/pipelines/{name}/pause", tag = "pipelines",
    params(("name" = String, Path)), responses((status = 200, body = PipelineView), (status = 404), (status = 401), (status = 403)),
    security(("token" = [])))]
pub async fn pause(
    State(state): State<Arc<ApiState>>,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> Result<Json<PipelineView>, ApiError> {
    state.token.check(&headers)?;
    Ok(Json(state.supervisor.pause(&name).await?))
}

/// Starts a paused, finished or failed pipeline again.
#[utoipa::path(post, path = "/api/pipelines/{name}/resume", tag = "pipelines",
    params(("name" = String, Path)), responses((status = 200, body = PipelineView), (status = 404), (status = 422), (status = 401), (status = 403)),
    security(("token" = [])))]
pub async fn resume(
    State(state): State<Arc<ApiState>>,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> Result<Json<PipelineView>, ApiError> {
    state.token.check(&headers)?;
    Ok(Json(state.supervisor.resume(&name).await?))
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DeployRequest {
    /// The uploaded module; defaults to the stage's current one.
    pub module: Option<String>,
    /// Defaults to the latest.
    pub version: Option<u32>,
}

/// Runs another module version in a stage. The new version is compiled
/// and initialised first; the running pipeline swaps it in between two
/// batches, so no record is lost or processed twice.
#[utoipa::path(post, path = "/api/pipelines/{name}/stages/{stage}/deploy", tag = "pipelines",
    params(("name" = String, Path), ("stage" = String, Path)),
    request_body(content = DeployRequest, content_type = "application/json"),
    responses((status = 200, body = StageView), (status = 404), (status = 422, description = "the module cannot run here"), (status = 401), (status = 403)),
    security(("token" = [])))]
pub async fn deploy_stage(
    State(state): State<Arc<ApiState>>,
    Path((name, stage)): Path<(String, String)>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<StageView>, ApiError> {
    state.token.check(&headers)?;
    let bytes = read_body(body, 64 << 10, "request").await?;
    let request: DeployRequest = if bytes.trim_ascii().is_empty() || bytes.trim_ascii() == b"null" {
        DeployRequest::default()
    } else {
        serde_json::from_slice(&bytes)
            .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, format!("invalid request body: {e}")))?
    };
    let view =
        state.supervisor.deploy_stage(&name, &stage, request.module.as_deref(), request.version).await?;
    Ok(Json(view))
}

/// Swaps the stage back to the module version it ran before its last deploy.
#[utoipa::path(post, path = "/api/pipelines/{name}/stages/{stage}/rollback", tag = "pipelines",
    params(("name" = String, Path), ("stage" = String, Path)),
    responses((status = 200, body = StageView), (status = 404), (status = 409, description = "no earlier version"), (status = 401), (status = 403)),
    security(("token" = [])))]
pub async fn rollback_stage(
    State(state): State<Arc<ApiState>>,
    Path((name, stage)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Json<StageView>, ApiError> {
    state.token.check(&headers)?;
    Ok(Json(state.supervisor.rollback_stage(&name, &stage).await?))
}
