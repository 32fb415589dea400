//! `/api/pipelines/{name}/tap`: a live sample of the records entering or
//! leaving a stage, as server-sent events.
//!
//! Bounded on every side: at most 20 records per second per stage and
//! side are sampled, values are cut to 4 KiB, a stream ends after `limit`
//! records (default 100, at most 1000) or 5 minutes, and a slow reader
//! skips records rather than holding the pipeline back.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::stream::Stream;
use serde::Deserialize;
use tokio::sync::broadcast::error::RecvError;
use utoipa::IntoParams;

use super::{ApiError, ApiState};
use crate::pipeline::controls::TapSide;

#[derive(Deserialize, IntoParams)]
pub struct TapParams {
    /// The stage to watch.
    stage: String,
    /// `in` (entering the stage) or `out` (leaving it); both when absent.
    side: Option<TapSide>,
    /// Records to send before the stream ends (default 100, at most 1000).
    limit: Option<usize>,
}

const MAX_DURATION: Duration = Duration::from_secs(300);

/// Streams `record` events (JSON: stage, side, record, truncated); a
/// `skipped` event says how many records a slow reader missed.
#[utoipa::path(get, path = "/api/pipelines/{name}/tap", tag = "pipelines",
    params(("name" = String, Path), TapParams),
    responses((status = 200, content_type = "text/event-stream", description = "server-sent events"), (status = 404), (status = 409, description = "not running")))]
pub async fn tap(
    State(state): State<Arc<ApiState>>,
    Path(name): Path<String>,
    Query(params): Query<TapParams>,
    headers: HeaderMap,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    state.check_read(&headers)?;
    let managed = state
        .supervisor
        .get(&name)
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, format!("no pipeline named `{name}`")))?;
    let controls = managed
        .snapshot_controls()
        .ok_or_else(|| ApiError::new(StatusCode::CONFLICT, format!("pipeline `{name}` is not running")))?;
    let stage = controls.stage(&params.stage).ok_or_else(|| {
        let stages: Vec<&str> = controls.stages.iter().map(|s| s.name.as_str()).collect();
        ApiError::new(
            StatusCode::NOT_FOUND,
            format!("pipeline `{name}` has no stage `{}` (stages: {})", params.stage, stages.join(", ")),
        )
    })?;
    let mut receiver = stage.tap.subscribe();
    let limit = params.limit.unwrap_or(100).clamp(1, 1000);
    let side = params.side;
    let stream = async_stream(move |tx| async move {
        let deadline = tokio::time::sleep(MAX_DURATION);
        tokio::pin!(deadline);
        let mut sent = 0;
        while sent < limit {
            let event = tokio::select! {
                _ = &mut deadline => break,
                received = receiver.recv() => match received {
                    Ok(record) if side.is_none_or(|s| s == record.side) => {
                        sent += 1;
                        Event::default().event("record").json_data(&*record).unwrap_or_default()
                    }
                    Ok(_) => continue,
                    Err(RecvError::Lagged(skipped)) => Event::default().event("skipped").data(skipped.to_string()),
                    // The pipeline stopped.
                    Err(RecvError::Closed) => break,
                },
            };
            if tx.send(Ok(event)).await.is_err() {
                break;
            }
        }
        let _ = tx.send(Ok(Event::default().event("end").data("done"))).await;
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(10))))
}

/// A stream fed by a task through a small channel: the task ends when the
/// client goes away (its sends fail).
fn async_stream<F, Fut>(produce: F) -> impl Stream<Item = Result<Event, Infallible>>
where
    F: FnOnce(tokio::sync::mpsc::Sender<Result<Event, Infallible>>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let (tx, mut rx) = tokio::sync::mpsc::channel(16);
    tokio::spawn(produce(tx));
    futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))
}
