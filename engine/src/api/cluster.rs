//! `/api/cluster`: the engines of the cluster and who reads which
//! partitions of each pipeline.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::HeaderMap;

use super::{ApiError, ApiState};
use crate::control::cluster::ClusterView;

/// The members (id, address, version, uptime, alive) and, per pipeline, the
/// partitions each member owns with their lag. An engine running on its
/// own shows itself alone.
#[utoipa::path(get, path = "/api/cluster", tag = "engine", responses((status = 200, body = ClusterView)))]
pub async fn cluster(
    State(state): State<Arc<ApiState>>,
    headers: HeaderMap,
) -> Result<Json<ClusterView>, ApiError> {
    state.check_read(&headers)?;
    Ok(Json(state.supervisor.cluster_view()))
}
