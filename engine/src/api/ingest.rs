//! REST ingest: `POST /ingest/{topic}` turns a request body into Kafka
//! records and answers only once the brokers acknowledged all of them
//! (`acks=all`), with their partitions and offsets.
//!
//! Bodies, by `Content-Type`:
//! - `application/json`: one record (the document, validated);
//! - `application/x-ndjson`: one record per non-empty line, each validated;
//! - `text/plain`: one record per non-empty line (UTF-8, `\r\n` or `\n`);
//! - `application/octet-stream`: one record, the bytes as they are;
//! - `multipart/form-data`: one record per file part, with `filename` and
//!   `content-type` headers and the file name as the key.
//!
//! Parsing is all-or-nothing: a request with one bad line (or an oversized
//! record) is rejected whole, naming the lines, and nothing is produced.
//! Producing can fail part-way (a broker failing mid-request); then the
//! answer is an error that lists which records were written and which not.
//! Optional: a key for every record with `?key=` (or the `Sluice-Key`
//! header), record headers with `Sluice-Header-<name>: <value>`.
//!
//! Overload never buffers without bound: when the producer already holds
//! `max_in_flight` records, or requests in flight hold `max_in_flight_bytes`
//! of bodies, the answer is 429; when no broker is reachable, 503; both
//! with `Retry-After`. A record the brokers refuse for good (too large for
//! the topic, invalid, a topic that does not exist) gets a 4xx or 500
//! without `Retry-After`: retrying it cannot help.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context as _;
use axum::Json;
use axum::body::Body;
use axum::extract::{FromRequest, Multipart, Path, Query, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use bytes::Bytes;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header as KafkaHeader, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::{ClientConfig, ClientContext};
use serde::Deserialize;
use tokio::sync::Mutex;
use tokio::time::Instant;

use super::{ApiError, ApiState};

/// Limits and routing of REST ingest (`sluice run --ingest-*` flags).
#[derive(Debug, Clone)]
pub struct IngestConfig {
    /// Topics that accept ingest; others answer 404.
    pub topics: Vec<String>,
    pub max_body_bytes: usize,
    pub max_records: usize,
    pub max_record_bytes: usize,
    /// Records the producer may hold unacknowledged, across requests,
    /// before new requests get 429.
    pub max_in_flight: usize,
    /// Bytes of request bodies being read, parsed or produced, across
    /// requests, before new requests get 429.
    pub max_in_flight_bytes: usize,
    /// How long a record may wait for the brokers before the request fails.
    pub delivery_timeout: Duration,
}

impl Default for IngestConfig {
    fn default() -> Self {
        IngestConfig {
            topics: Vec::new(),
            max_body_bytes: 64 << 20,
            max_records: 10_000,
            // Apache Kafka brokers accept batches of about 1 MiB by default
            // (message.max.bytes); a bigger record would only be refused there.
            max_record_bytes: 1_000_000,
            max_in_flight: 100_000,
            max_in_flight_bytes: 256 << 20,
            delivery_timeout: Duration::from_secs(30),
        }
    }
}

pub struct Ingest {
    producer: FutureProducer<IngestContext>,
    config: IngestConfig,
    /// Open topics: the configured ones, plus those pipelines deployed later read.
    topics: std::sync::RwLock<Vec<String>>,
    /// Set by the producer's error callback when every broker is down, and
    /// when a request's records time out; cleared by a successful probe.
    brokers_down: Arc<AtomicBool>,
    /// When the brokers were last probed while marked down; probes are
    /// rate-limited through this.
    last_probe: Mutex<Option<Instant>>,
    /// Bytes of request bodies admitted and not answered yet.
    body_bytes: Arc<tokio::sync::Semaphore>,
}

/// Watches librdkafka's global errors for "all brokers down".
struct IngestContext {
    brokers_down: Arc<AtomicBool>,
}

impl ClientContext for IngestContext {
    fn error(&self, error: KafkaError, reason: &str) {
        if error.rdkafka_error_code() == Some(RDKafkaErrorCode::AllBrokersDown) {
            self.brokers_down.store(true, Ordering::Relaxed);
        }
        tracing::warn!("ingest producer: {error}: {reason}");
    }
}

/// One record parsed from a request.
#[derive(Debug)]
struct IngestRecord {
    key: Option<Bytes>,
    value: Bytes,
    headers: Vec<(String, Bytes)>,
}

#[derive(Deserialize)]
pub struct IngestParams {
    key: Option<String>,
}

impl Ingest {
    pub fn new(brokers: &str, config: IngestConfig) -> anyhow::Result<Ingest> {
        let brokers_down = Arc::new(AtomicBool::new(false));
        let context = IngestContext { brokers_down: brokers_down.clone() };
        let producer = ClientConfig::new()
            .set("bootstrap.servers", brokers)
            .set("client.id", "sluice-ingest")
            .set("acks", "all")
            .set("enable.idempotence", "true")
            .set("linger.ms", "2")
            .set("message.timeout.ms", config.delivery_timeout.as_millis().to_string())
            .set("queue.buffering.max.messages", (config.max_in_flight + config.max_records).to_string())
            // Room for the largest record plus its headers and framing.
            .set("message.max.bytes", (config.max_record_bytes + (64 << 10)).to_string())
            .create_with_context(context)
            .context("cannot create the ingest producer")?;
        let topics = std::sync::RwLock::new(config.topics.clone());
        let body_bytes = Arc::new(tokio::sync::Semaphore::new(config.max_in_flight_bytes));
        Ok(Ingest { producer, config, topics, brokers_down, last_probe: Mutex::new(None), body_bytes })
    }

    pub fn topics(&self) -> Vec<String> {
        self.topics.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Opens more topics for ingest (a pipeline deployed through the API reads them).
    pub fn open_topics(&self, more: &[String]) {
        let mut topics = self.topics.write().unwrap_or_else(|e| e.into_inner());
        for topic in more {
            if !topics.contains(topic) {
                topics.push(topic.clone());
            }
        }
        topics.sort();
    }

    /// Reserves room for a body of `bytes` among the requests in flight;
    /// the room is given back when the permit is dropped (the answer).
    fn admit(&self, bytes: usize) -> Result<tokio::sync::OwnedSemaphorePermit, ApiError> {
        let bytes = bytes.clamp(1, self.config.max_in_flight_bytes).min(u32::MAX as usize);
        self.body_bytes.clone().try_acquire_many_owned(bytes as u32).map_err(|_| {
            let held = self.config.max_in_flight_bytes - self.body_bytes.available_permits();
            ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                format!(
                    "ingest is saturated ({held} bytes of requests in flight, limit {}); retry later",
                    self.config.max_in_flight_bytes
                ),
            )
            .retry_after(1)
        })
    }

    fn check_topic(&self, topic: &str) -> Result<(), ApiError> {
        if !crate::kafka::valid_topic_name(topic) {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                format!("`{topic}` is not a valid topic name (1-249 of a-z, A-Z, 0-9, `.`, `_`, `-`)"),
            ));
        }
        let topics = self.topics();
        if !topics.iter().any(|t| t == topic) {
            return Err(ApiError::new(
                StatusCode::NOT_FOUND,
                format!("topic `{topic}` is not open for ingest; open topics: {}", topics.join(", ")),
            ));
        }
        Ok(())
    }

    /// Refuses quickly while no broker is reachable, instead of holding the
    /// request for the whole delivery timeout. Checks again at most once a
    /// second, so service resumes by itself.
    async fn check_brokers(&self) -> Result<(), ApiError> {
        let down = &self.brokers_down;
        if !down.load(Ordering::Relaxed) {
            return Ok(());
        }
        let mut last_probe = self.last_probe.lock().await;
        if last_probe.is_some_and(|t| t.elapsed() < Duration::from_secs(1)) {
            return Err(unavailable());
        }
        *last_probe = Some(Instant::now());
        let producer = self.producer.clone();
        let reachable = tokio::task::spawn_blocking(move || {
            producer.client().fetch_metadata(None, Duration::from_millis(1000)).is_ok()
        })
        .await
        .unwrap_or(false);
        if reachable {
            down.store(false, Ordering::Relaxed);
            Ok(())
        } else {
            Err(unavailable())
        }
    }

    async fn produce(&self, topic: &str, records: Vec<IngestRecord>) -> Result<serde_json::Value, ApiError> {
        self.check_brokers().await?;
        let in_flight = self.producer.in_flight_count().max(0) as usize;
        if in_flight + records.len() > self.config.max_in_flight {
            return Err(ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                format!("ingest is saturated ({in_flight} records waiting for the brokers); retry later"),
            )
            .retry_after(1));
        }
        let mut deliveries = Vec::with_capacity(records.len());
        for record in &records {
            let mut headers = OwnedHeaders::new_with_capacity(record.headers.len());
            for (name, value) in &record.headers {
                headers = headers.insert(KafkaHeader { key: name, value: Some(value.as_ref()) });
            }
            let mut message = FutureRecord::to(topic).payload(record.value.as_ref()).headers(headers);
            if let Some(key) = &record.key {
                message = message.key(key.as_ref());
            }
            deliveries.push(self.producer.send_result(message).map_err(|(error, _)| error));
        }
        let mut written = Vec::new();
        let mut failed = Vec::new();
        let mut saturated = true;
        let mut permanent: Option<(StatusCode, String)> = None;
        for (index, delivery) in deliveries.into_iter().enumerate() {
            let error = match delivery {
                Ok(future) => match future.await {
                    Ok(Ok(delivery)) => {
                        written.push(serde_json::json!({
                            "index": index, "partition": delivery.partition, "offset": delivery.offset,
                        }));
                        continue;
                    }
                    Ok(Err((error, _))) => error,
                    Err(_) => KafkaError::Canceled,
                },
                Err(error) => error,
            };
            let code = error.rdkafka_error_code();
            saturated &= code == Some(RDKafkaErrorCode::QueueFull);
            let refused = code.and_then(refused_for_good);
            failed.push(serde_json::json!({
                "index": index, "error": error.to_string(), "retryable": refused.is_none(),
            }));
            if let Some(status) = refused {
                permanent.get_or_insert((status, error.to_string()));
            }
        }
        if failed.is_empty() {
            return Ok(serde_json::json!({ "topic": topic, "count": written.len(), "records": written }));
        }
        tracing::warn!(topic, written = written.len(), failed = failed.len(), "ingest request partly failed");
        let total = failed.len() + written.len();
        if let Some((status, reason)) = permanent {
            // No Retry-After: sending the same records again cannot succeed.
            return Err(ApiError::new(
                status,
                format!(
                    "{} of {total} records were not written: the brokers refused them ({reason}); \
                     records marked retryable may be sent again, the others cannot be written as they are",
                    failed.len()
                ),
            )
            .with("written", written)
            .with("failed", failed));
        }
        let (status, retry) = if saturated {
            (StatusCode::TOO_MANY_REQUESTS, 1)
        } else {
            // Records the brokers did not acknowledge within the delivery
            // timeout mean they are out of reach as far as ingest can tell,
            // whether or not librdkafka has reported "all brokers down" yet
            // (it only does once every broker handle it knows is down).
            // The next request probes, at most once a second, instead of
            // waiting out the timeout again.
            self.brokers_down.store(true, Ordering::Relaxed);
            (StatusCode::SERVICE_UNAVAILABLE, 5)
        };
        Err(ApiError::new(
            status,
            format!("{} of {total} records were not written; retry those", failed.len()),
        )
        .with("written", written)
        .with("failed", failed)
        .retry_after(retry))
    }
}

/// The answer for a produce error that retrying cannot fix, or `None`
/// when the error is transient.
fn refused_for_good(code: RDKafkaErrorCode) -> Option<StatusCode> {
    use crate::kafka::Refusal;
    Refusal::of(code).map(|refusal| match refusal {
        Refusal::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        Refusal::Invalid => StatusCode::BAD_REQUEST,
        Refusal::UnknownTopic => StatusCode::NOT_FOUND,
        Refusal::NotAuthorized => StatusCode::INTERNAL_SERVER_ERROR,
    })
}

fn unavailable() -> ApiError {
    ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "no Kafka broker is reachable; retry later").retry_after(5)
}

pub async fn ingest(
    State(state): State<Arc<ApiState>>,
    Path(topic): Path<String>,
    Query(params): Query<IngestParams>,
    request: Request,
) -> Result<Json<serde_json::Value>, ApiError> {
    state.token.check(request.headers())?;
    let ingest = state.ingest.as_ref().ok_or_else(|| {
        ApiError::new(StatusCode::NOT_FOUND, "this engine has no Kafka cluster to ingest into")
    })?;
    ingest.check_topic(&topic)?;
    let config = &ingest.config;
    let (parts, body) = request.into_parts();
    let too_large = || {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("request body is larger than the limit of {} bytes", config.max_body_bytes),
        )
    };
    let declared =
        parts.headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<usize>().ok());
    if declared.is_some_and(|n| n > config.max_body_bytes) {
        return Err(too_large());
    }
    // Room among the requests in flight: for the declared length, or the
    // largest body accepted when the client streams without one.
    let _room = ingest.admit(declared.unwrap_or(config.max_body_bytes))?;
    let bytes = axum::body::to_bytes(body, config.max_body_bytes).await.map_err(|error| {
        if std::error::Error::source(&error).is_some_and(|e| e.is::<http_body_util::LengthLimitError>()) {
            too_large()
        } else {
            ApiError::new(StatusCode::BAD_REQUEST, format!("cannot read the request body: {error}"))
        }
    })?;
    let mut records = parse_body(&parts.headers, bytes, config).await?;

    let key =
        params.key.map(Bytes::from).or_else(|| parts.headers.get("sluice-key").map(|v| copy(v.as_bytes())));
    let extra: Vec<(String, Bytes)> = parts
        .headers
        .iter()
        .filter_map(|(name, value)| {
            let name = name.as_str().strip_prefix("sluice-header-")?;
            Some((name.to_string(), copy(value.as_bytes())))
        })
        .collect();
    for record in &mut records {
        if key.is_some() {
            record.key = key.clone();
        }
        record.headers.extend(extra.iter().cloned());
    }
    ingest.produce(&topic, records).await.map(Json)
}

fn copy(bytes: &[u8]) -> Bytes {
    Bytes::copy_from_slice(bytes)
}

async fn parse_body(
    headers: &HeaderMap,
    body: Bytes,
    config: &IngestConfig,
) -> Result<Vec<IngestRecord>, ApiError> {
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    let essence = content_type.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    let records = match essence.as_str() {
        "application/json" => {
            if let Err(error) = serde_json::from_slice::<serde::de::IgnoredAny>(&body) {
                return Err(ApiError::new(StatusCode::BAD_REQUEST, format!("invalid JSON body: {error}")));
            }
            vec![plain(body)]
        }
        "application/x-ndjson" | "application/ndjson" | "application/jsonl" => lines(&body, Line::Json)?,
        "text/plain" => lines(&body, Line::Text)?,
        "application/octet-stream" => {
            if body.is_empty() {
                return Err(ApiError::new(StatusCode::BAD_REQUEST, "the body is empty"));
            }
            vec![plain(body)]
        }
        "multipart/form-data" => multipart(headers, body).await?,
        _ => {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                format!(
                    "unsupported Content-Type `{content_type}`; use application/json, application/x-ndjson, \
                     text/plain, application/octet-stream or multipart/form-data"
                ),
            ));
        }
    };
    if records.is_empty() {
        return Err(ApiError::new(StatusCode::BAD_REQUEST, "the request holds no records"));
    }
    if records.len() > config.max_records {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("{} records in one request; the limit is {}", records.len(), config.max_records),
        ));
    }
    let oversized: Vec<usize> = records
        .iter()
        .enumerate()
        .filter(|(_, r)| r.value.len() > config.max_record_bytes)
        .map(|(i, _)| i)
        .collect();
    if !oversized.is_empty() {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "{} records are larger than the limit of {} bytes",
                oversized.len(),
                config.max_record_bytes
            ),
        )
        .with("records", oversized));
    }
    Ok(records)
}

fn plain(value: Bytes) -> IngestRecord {
    IngestRecord { key: None, value, headers: Vec::new() }
}

#[derive(Clone, Copy, PartialEq)]
enum Line {
    Json,
    Text,
}

/// Splits a body into one record per non-empty line; every bad line is
/// reported (up to 100), and then none is produced.
fn lines(body: &Bytes, kind: Line) -> Result<Vec<IngestRecord>, ApiError> {
    let mut records = Vec::new();
    let mut problems = Vec::new();
    let mut start = 0;
    for (index, line) in body.split(|&b| b == b'\n').enumerate() {
        let end = start + line.len();
        let trimmed = line.strip_suffix(b"\r").unwrap_or(line);
        let range = start..start + trimmed.len();
        start = end + 1;
        if trimmed.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let problem = match kind {
            Line::Json => {
                serde_json::from_slice::<serde::de::IgnoredAny>(trimmed).err().map(|e| e.to_string())
            }
            Line::Text => std::str::from_utf8(trimmed).err().map(|e| format!("invalid UTF-8: {e}")),
        };
        match problem {
            Some(message) if problems.len() < 100 => {
                problems.push(serde_json::json!({ "line": index + 1, "error": message }))
            }
            Some(_) => {}
            None => records.push(plain(body.slice(range))),
        }
    }
    if problems.is_empty() {
        return Ok(records);
    }
    let what = if kind == Line::Json { "invalid JSON" } else { "invalid text" };
    Err(ApiError::new(
        StatusCode::BAD_REQUEST,
        format!("{} lines hold {what}; nothing was written", problems.len()),
    )
    .with("lines", problems))
}

async fn multipart(headers: &HeaderMap, body: Bytes) -> Result<Vec<IngestRecord>, ApiError> {
    let mut request = Request::new(Body::from(body));
    *request.headers_mut() = headers.clone();
    let mut form = Multipart::from_request(request, &())
        .await
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, format!("malformed multipart body: {e}")))?;
    let mut records = Vec::new();
    loop {
        let field = form
            .next_field()
            .await
            .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, format!("malformed multipart body: {e}")))?;
        let Some(field) = field else { break };
        // Plain form fields are not files; only file parts become records.
        let Some(filename) = field.file_name().map(str::to_string) else { continue };
        let content_type = field.content_type().unwrap_or("application/octet-stream").to_string();
        let value = field.bytes().await.map_err(|e| {
            ApiError::new(StatusCode::BAD_REQUEST, format!("malformed multipart part `{filename}`: {e}"))
        })?;
        records.push(IngestRecord {
            key: Some(Bytes::from(filename.clone())),
            value,
            headers: vec![
                ("filename".into(), Bytes::from(filename)),
                ("content-type".into(), Bytes::from(content_type)),
            ],
        });
    }
    if records.is_empty() {
        return Err(ApiError::new(StatusCode::BAD_REQUEST, "the multipart body has no file parts"));
    }
    Ok(records)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_skip_blanks_strip_cr_and_report_every_bad_line() {
        let body = Bytes::from_static(b"{\"a\":1}\r\n\n{\"b\":2}\n");
        let records = lines(&body, Line::Json).unwrap();
        assert_eq!(
            records.iter().map(|r| &r.value[..]).collect::<Vec<_>>(),
            vec![&b"{\"a\":1}"[..], b"{\"b\":2}"]
        );

        let body = Bytes::from_static(b"{\"a\":1}\nnot json\n{\"b\":\n");
        let error = lines(&body, Line::Json).unwrap_err();
        assert_eq!(error.status, StatusCode::BAD_REQUEST);
        let lines_reported: Vec<u64> =
            error.body["lines"].as_array().unwrap().iter().map(|l| l["line"].as_u64().unwrap()).collect();
        assert_eq!(lines_reported, vec![2, 3]);

        let body = Bytes::from_static(b"ok\n\xff\xfe\n");
        let error = lines(&body, Line::Text).unwrap_err();
        assert_eq!(error.body["lines"][0]["line"], 2);
    }
}
