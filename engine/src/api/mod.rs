//! The engine's HTTP server: the REST API (modules, pipelines, dead
//! letters, live tap), REST ingest, `/metrics`, health, the OpenAPI
//! document and the dashboard.
//!
//! Requests that change anything need `Authorization: Bearer <token>`; the
//! token comes from `SLUICE_API_TOKEN` or is generated at start and printed
//! once. Reads are open when the server listens on loopback only, and need
//! the token otherwise. Errors are JSON objects with an `error` message.

mod auth;
mod cluster;
mod dead_letters;
mod errors;
pub mod ingest;
mod modules;
mod pipelines;
mod tap;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::Context as _;
use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use bytes::Bytes;
use tokio_util::sync::CancellationToken;
use utoipa::OpenApi as _;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub use auth::Token;

use crate::control::Supervisor;
use crate::metrics::Metrics;

/// What the handlers share.
pub struct ApiState {
    pub token: Token,
    /// `None` when the engine has no Kafka cluster to ingest into.
    pub ingest: Option<Arc<ingest::Ingest>>,
    /// The embedded broker the engine supervises, if it runs one.
    pub broker: Option<Arc<crate::kafka::embedded::BrokerHealth>>,
    pub supervisor: Arc<Supervisor>,
    pub metrics: Metrics,
    /// The built dashboard (`web-ui/dist`), if there is one.
    pub ui_dir: Option<PathBuf>,
    /// False once the engine is stopping: health turns 503 so load
    /// balancers move traffic away while the pipelines drain.
    pub ready: AtomicBool,
    /// Whether reads need the token too (the server is reachable from
    /// other hosts).
    pub reads_need_token: AtomicBool,
}

impl ApiState {
    /// Lets a read through when reads are open, else checks the token.
    pub fn check_read(&self, headers: &HeaderMap) -> Result<(), ApiError> {
        if self.reads_need_token.load(Ordering::Relaxed) { self.token.check(headers) } else { Ok(()) }
    }
}

/// The HTTP port while the engine starts. It is bound before anything
/// else, so a port already in use fails the start at once; until the
/// engine is ready it answers `/health` (and everything else) with 503
/// `starting`, so operators and scripts can tell starting from stuck.
pub struct Starting {
    /// Kept for the real server; the starting server serves a duplicate.
    listener: std::net::TcpListener,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl Starting {
    pub async fn bind(addr: &str) -> anyhow::Result<Starting> {
        let listener =
            tokio::net::TcpListener::bind(addr).await.with_context(|| format!("cannot listen on {addr}"))?;
        let listener = listener.into_std().context("cannot take over the listening socket")?;
        let early = tokio::net::TcpListener::from_std(
            listener.try_clone().context("cannot share the listening socket")?,
        )?;
        let stop = CancellationToken::new();
        let app = Router::new().fallback(starting);
        let task = tokio::spawn({
            let stop = stop.clone();
            async move {
                let served = axum::serve(early, app).with_graceful_shutdown(stop.cancelled_owned()).await;
                if let Err(error) = served {
                    tracing::warn!("HTTP server (starting): {error}");
                }
            }
        });
        Ok(Starting { listener, stop, task })
    }

    pub fn local_addr(&self) -> anyhow::Result<SocketAddr> {
        Ok(self.listener.local_addr()?)
    }

    /// Stops answering `starting` and hands the port to the real server.
    /// Connections that arrive meanwhile wait in the socket's backlog.
    pub async fn ready(self, state: ApiState) -> anyhow::Result<Server> {
        self.stop.cancel();
        let _ = self.task.await;
        let listener = tokio::net::TcpListener::from_std(self.listener)?;
        let local = listener.local_addr()?;
        state.reads_need_token.store(!local.ip().is_loopback(), Ordering::Relaxed);
        Ok(Server { listener, state: Arc::new(state) })
    }
}

async fn starting() -> Response {
    let body = serde_json::json!({ "status": "starting", "error": "the engine is starting; retry shortly" });
    let mut response = (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response();
    response.headers_mut().insert(header::RETRY_AFTER, 1.into());
    response
}

/// The HTTP server, bound and ready to serve.
pub struct Server {
    listener: tokio::net::TcpListener,
    state: Arc<ApiState>,
}

impl Server {
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

#[derive(utoipa::OpenApi)]
#[openapi(
    info(title = "sluice", description = "Control plane of the sluice stream processor: transform modules, pipelines, dead letters, live tap."),
    modifiers(&BearerToken),
    tags((name = "modules"), (name = "pipelines"), (name = "dead letters"), (name = "engine"))
)]
struct ApiDoc;

struct BearerToken;

impl utoipa::Modify for BearerToken {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "token",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// The API routes with their OpenAPI description, built together so the
/// document cannot miss a route.
pub fn api_router() -> (Router<Arc<ApiState>>, utoipa::openapi::OpenApi) {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(health))
        .routes(routes!(metrics))
        .routes(routes!(cluster::cluster))
        .routes(routes!(modules::list))
        .routes(routes!(modules::show, modules::upload, modules::delete))
        .routes(routes!(pipelines::list))
        .routes(routes!(pipelines::show, pipelines::apply, pipelines::delete))
        .routes(routes!(pipelines::pipeline_history))
        .routes(routes!(pipelines::all_history))
        .routes(routes!(pipelines::pause))
        .routes(routes!(pipelines::resume))
        .routes(routes!(pipelines::deploy_stage))
        .routes(routes!(pipelines::rollback_stage))
        .routes(routes!(tap::tap))
        .routes(routes!(dead_letters::list))
        .routes(routes!(dead_letters::show))
        .routes(routes!(dead_letters::replay))
        .split_for_parts()
}

fn router(state: Arc<ApiState>) -> Router {
    let (api, openapi) = api_router();
    let openapi = Arc::new(openapi);
    let mut app = api
        .route("/api/openapi.json", get(move || async move { Json(openapi.as_ref().clone()) }))
        .route("/ingest/{topic}", post(ingest::ingest));
    app = match &state.ui_dir {
        Some(dir) => app.fallback_service(
            tower_http::services::ServeDir::new(dir)
                .fallback(tower_http::services::ServeFile::new(dir.join("index.html"))),
        ),
        None => app.route("/", get(no_dashboard)),
    };
    // Bodies are limited by each handler, with clearer messages.
    app.layer(axum::extract::DefaultBodyLimit::disable()).with_state(state)
}

async fn no_dashboard() -> Response {
    (
        StatusCode::NOT_FOUND,
        "The dashboard is not built: run `make ui` (or start the engine with --ui-dir pointing at web-ui/dist).\n\
         The API is at /api (see /api/openapi.json), metrics at /metrics.\n",
    )
        .into_response()
}

/// Readiness: 503 while the engine starts (`starting`), drains
/// (`stopping`), or while its embedded broker is down (`broker-down`,
/// restarting it); `kafka` says how the embedded broker is.
#[utoipa::path(get, path = "/health", tag = "engine", responses((status = 200, body = Object), (status = 503)))]
async fn health(State(state): State<Arc<ApiState>>) -> Response {
    let stopping = !state.ready.load(Ordering::Relaxed);
    let broker = state.broker.as_ref().map(|b| b.state());
    let broker_down = broker.as_ref().is_some_and(|b| !b.up);
    let pipelines: Vec<String> = state.supervisor.list().iter().map(|m| m.name.clone()).collect();
    let body = serde_json::json!({
        "status": if stopping { "stopping" } else if broker_down { "broker-down" } else { "ready" },
        "pipelines": pipelines,
        "ingest_topics": state.ingest.as_ref().map(|i| i.topics()).unwrap_or_default(),
        "kafka": broker,
    });
    let status = if stopping || broker_down { StatusCode::SERVICE_UNAVAILABLE } else { StatusCode::OK };
    (status, Json(body)).into_response()
}

/// Prometheus text exposition of every pipeline, stage and sink counter.
#[utoipa::path(get, path = "/metrics", tag = "engine", responses((status = 200, content_type = "text/plain; version=0.0.4")))]
async fn metrics(State(state): State<Arc<ApiState>>, headers: HeaderMap) -> Result<Response, ApiError> {
    state.check_read(&headers)?;
    let text = state.metrics.render();
    Ok(([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], text).into_response())
}

/// Reads a request body of at most `limit` bytes, answering 413 (with the
/// limit) beyond it.
pub(crate) async fn read_body(body: axum::body::Body, limit: usize, what: &str) -> Result<Bytes, ApiError> {
    axum::body::to_bytes(body, limit).await.map_err(|error| {
        if std::error::Error::source(&error).is_some_and(|e| e.is::<http_body_util::LengthLimitError>()) {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("the {what} is larger than the limit of {limit} bytes"),
            )
            .with("limit", limit)
        } else {
            ApiError::new(StatusCode::BAD_REQUEST, format!("cannot read the request body: {error}"))
        }
    })
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
