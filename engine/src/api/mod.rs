//! The engine's HTTP server: REST ingest and health today; the REST API,
//! `/metrics` and the dashboard join it later.
//!
//! Requests that change anything need `Authorization: Bearer <token>`; the
//! token comes from `SLUICE_API_TOKEN` or is generated at start and printed
//! once. Errors are JSON objects with an `error` message.

mod auth;
pub mod ingest;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::Context as _;
use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use tokio_util::sync::CancellationToken;

pub use auth::Token;

/// What the handlers share.
pub struct ApiState {
    pub token: Token,
    /// `None` when the engine has no Kafka cluster to ingest into.
    pub ingest: Option<ingest::Ingest>,
    pub pipelines: Vec<String>,
    /// False once the engine is stopping: health turns 503 so load
    /// balancers move traffic away while the pipelines drain.
    pub ready: AtomicBool,
}

/// The HTTP server, bound and ready to serve.
pub struct Server {
    listener: tokio::net::TcpListener,
    state: Arc<ApiState>,
}

impl Server {
    pub async fn bind(addr: &str, state: ApiState) -> anyhow::Result<Server> {
        let listener =
            tokio::net::TcpListener::bind(addr).await.with_context(|| format!("cannot listen on {addr}"))?;
        Ok(Server { listener, state: Arc::new(state) })
    }

    pub fn local_addr(&self) -> anyhow::Result<SocketAddr> {
        Ok(self.listener.local_addr()?)
    }

    /// Serves until `shutdown`, then finishes the requests in progress (an
    /// ingest request in flight still gets its answer).
    pub async fn serve(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let state = self.state.clone();
        let app = router(self.state);
        axum::serve(self.listener, app)
            .with_graceful_shutdown(async move {
                shutdown.cancelled().await;
                state.ready.store(false, Ordering::Relaxed);
            })
            .await
            .context("HTTP server failed")
    }
}

fn router(state: Arc<ApiState>) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/ingest/{topic}", post(ingest::ingest))
        // Bodies are limited by ingest itself, with a clearer message.
        .layer(axum::extract::DefaultBodyLimit::disable())
        .with_state(state)
}

async fn health(State(state): State<Arc<ApiState>>) -> Response {
    let ready = state.ready.load(Ordering::Relaxed);
    let body = serde_json::json!({
        "status": if ready { "ready" } else { "stopping" },
        "pipelines": state.pipelines,
        "ingest_topics": state.ingest.as_ref().map(|i| i.topics()).unwrap_or_default(),
    });
    let status = if ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (status, Json(body)).into_response()
}

/// An error answer: a status and a JSON body with at least `error`.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub body: serde_json::Value,
    pub retry_after: Option<u64>,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError { status, body: serde_json::json!({ "error": message.into() }), retry_after: None }
    }

    /// Adds a field to the body.
    pub fn with(mut self, field: &str, value: impl serde::Serialize) -> Self {
        if let Some(object) = self.body.as_object_mut() {
            object.insert(field.to_string(), serde_json::to_value(value).unwrap_or_default());
        }
        self
    }

    pub fn retry_after(mut self, seconds: u64) -> Self {
        self.retry_after = Some(seconds);
        self
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.status, Json(self.body)).into_response();
        if let Some(seconds) = self.retry_after {
            response.headers_mut().insert(axum::http::header::RETRY_AFTER, seconds.into());
        }
        response
    }
}
