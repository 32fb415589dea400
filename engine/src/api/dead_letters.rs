//! `/api/pipelines/{name}/dead-letters`: browse the dead letters the engine
//! keeps for a pipeline and replay them through its current version.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::{ApiError, ApiState};
use crate::control::Managed;
use crate::pipeline::controls::DEAD_LETTERS_KEPT;

#[derive(Deserialize, IntoParams)]
pub struct ListParams {
    /// At most this many (default 100).
    limit: Option<usize>,
    /// Only ids below this one (the next page).
    before: Option<u64>,
}

#[derive(Serialize, ToSchema)]
pub struct DeadLetterPage {
    /// Newest first: id, replayed, and the envelope written to the
    /// dead-letter destination (stage, module, error, origin, record).
    #[schema(value_type = Vec<Object>)]
    pub dead_letters: Vec<serde_json::Value>,
    /// Kept and not replayed.
    pub pending: u64,
    /// How many the engine keeps per pipeline (the destination has them all).
    pub kept_at_most: usize,
}

fn pipeline(state: &ApiState, name: &str) -> Result<Arc<Managed>, ApiError> {
    state
        .supervisor
        .get(name)
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, format!("no pipeline named `{name}`")))
}

/// Recent dead letters, newest first.
#[utoipa::path(get, path = "/api/pipelines/{name}/dead-letters", tag = "dead letters",
    params(("name" = String, Path), ListParams), responses((status = 200, body = DeadLetterPage), (status = 404)))]
pub async fn list(
    State(state): State<Arc<ApiState>>,
    Path(name): Path<String>,
    Query(params): Query<ListParams>,
    headers: HeaderMap,
) -> Result<Json<DeadLetterPage>, ApiError> {
    state.check_read(&headers)?;
    let managed = pipeline(&state, &name)?;
    let letters =
        managed.dead_letters.list(params.limit.unwrap_or(100).min(DEAD_LETTERS_KEPT), params.before);
    Ok(Json(DeadLetterPage {
        dead_letters: letters.into_iter().map(|l| serde_json::to_value(l).unwrap_or_default()).collect(),
        pending: managed.dead_letters.pending(),
        kept_at_most: DEAD_LETTERS_KEPT,
    }))
}

/// One dead letter.
#[utoipa::path(get, path = "/api/pipelines/{name}/dead-letters/{id}", tag = "dead letters",
    params(("name" = String, Path), ("id" = u64, Path)), responses((status = 200, body = Object), (status = 404)))]
pub async fn show(
    State(state): State<Arc<ApiState>>,
    Path((name, id)): Path<(String, u64)>,
    headers: HeaderMap,
) -> Result<Json<serde_json::Value>, ApiError> {
    state.check_read(&headers)?;
    let letter = pipeline(&state, &name)?.dead_letters.get(id).ok_or_else(|| {
        ApiError::new(StatusCode::NOT_FOUND, format!("no dead letter {id} is kept for `{name}`"))
    })?;
    Ok(Json(serde_json::to_value(letter).unwrap_or_default()))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReplayRequest {
    pub ids: Vec<u64>,
}

/// Sends the chosen dead letters through the pipeline's current stages and
/// sink; answers when each is written (or dead-lettered again).
#[utoipa::path(post, path = "/api/pipelines/{name}/dead-letters/replay", tag = "dead letters",
    params(("name" = String, Path)),
    request_body(content = ReplayRequest, content_type = "application/json"),
    responses((status = 200, body = Object, description = "`replayed`, `dead_lettered_again`"), (status = 404),
        (status = 409, description = "not running, already replayed, or a lake sink"), (status = 401), (status = 403)),
    security(("token" = [])))]
pub async fn replay(
    State(state): State<Arc<ApiState>>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: axum::body::Body,
) -> Result<Json<serde_json::Value>, ApiError> {
    state.token.check(&headers)?;
    let bytes = super::read_body(body, 1 << 20, "request").await?;
    let request: ReplayRequest = serde_json::from_slice(&bytes)
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, format!("invalid request body: {e}")))?;
    let outcome = state.supervisor.replay(&name, &request.ids).await?;
    Ok(Json(serde_json::to_value(outcome).unwrap_or_default()))
}
