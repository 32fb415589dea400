//! Talking to the cluster: one `opensearch` client per configured host, so a
//! host that cannot be reached is left for the next one (the crate's own
//! connection pools do not fail over), basic auth from environment
//! variables, and TLS options.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::Context as _;
use bytes::Bytes;
use opensearch::OpenSearch;
use opensearch::auth::Credentials;
use opensearch::cert::{Certificate, CertificateValidation};
use opensearch::http::headers::{CONTENT_TYPE, HeaderMap, HeaderValue};
use opensearch::http::transport::{SingleNodeConnectionPool, TransportBuilder};
use opensearch::http::{Method, Url};

use super::OpenSearchSinkConfig;

/// What a request came back with.
pub enum Reply {
    /// The cluster answered (any status).
    Answered { status: u16, body: Bytes },
    /// No answer: connection refused, reset, timed out.
    Unreachable(String),
}

pub struct Cluster {
    nodes: Vec<(String, OpenSearch)>,
    /// The node requests go to until it fails (shared by the requests in flight).
    current: AtomicUsize,
}

impl Cluster {
    pub fn connect(config: &OpenSearchSinkConfig, base: &std::path::Path) -> anyhow::Result<Cluster> {
        let credentials = match (&config.username_env, &config.password_env) {
            (Some(user), Some(password)) => Some(Credentials::Basic(
                std::env::var(user)
                    .with_context(|| format!("environment variable {user} (username_env) is not set"))?,
                std::env::var(password)
                    .with_context(|| format!("environment variable {password} (password_env) is not set"))?,
            )),
            (None, None) => None,
            _ => anyhow::bail!("username_env and password_env go together"),
        };
        let ca = match &config.tls.ca_file {
            Some(file) => {
                let path = base.join(file);
                let pem = std::fs::read(&path)
                    .with_context(|| format!("cannot read CA file {}", path.display()))?;
                Certificate::from_pem(&pem)
                    .with_context(|| format!("{} is not a PEM certificate", path.display()))?;
                Some(pem)
            }
            None => None,
        };
        // Built per node: the crate's validation settings cannot be cloned.
        let validation = || -> Option<CertificateValidation> {
            match (&ca, config.tls.skip_verify) {
                (_, true) => Some(CertificateValidation::None),
                (Some(pem), false) => Certificate::from_pem(pem).ok().map(CertificateValidation::Full),
                (None, false) => None,
            }
        };
        let mut nodes = Vec::new();
        for host in &config.hosts {
            let url = Url::parse(host).with_context(|| format!("`{host}` is not a URL"))?;
            let mut transport = TransportBuilder::new(SingleNodeConnectionPool::new(url))
                .timeout(Duration::from_millis(config.request_timeout_ms))
                .disable_proxy();
            if let Some(credentials) = &credentials {
                transport = transport.auth(credentials.clone());
            }
            if let Some(validation) = validation() {
                transport = transport.cert_validation(validation);
            }
            let transport =
                transport.build().with_context(|| format!("cannot set up a client for {host}"))?;
            nodes.push((host.clone(), OpenSearch::new(transport)));
        }
        anyhow::ensure!(!nodes.is_empty(), "no hosts configured");
        Ok(Cluster { nodes, current: AtomicUsize::new(0) })
    }

    /// The host requests go to now.
    pub fn host(&self) -> &str {
        &self.nodes[self.current()].0
    }

    fn current(&self) -> usize {
        self.current.load(Ordering::Relaxed) % self.nodes.len()
    }

    /// Moves past `failed` (a host a request could not reach). Requests in
    /// flight that saw the same host fail move on only once.
    pub fn fail_over(&self, failed: &str) {
        let current = self.current();
        if self.nodes[current].0 == failed {
            let _ = self.current.compare_exchange(
                current,
                (current + 1) % self.nodes.len(),
                Ordering::Relaxed,
                Ordering::Relaxed,
            );
        }
    }

    pub async fn bulk(&self, body: Bytes) -> Reply {
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/x-ndjson"));
        self.send(Method::Post, "/_bulk", headers, body).await
    }

    pub async fn put(&self, path: &str, json: Bytes) -> Reply {
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        self.send(Method::Put, path, headers, json).await
    }

    async fn send(&self, method: Method, path: &str, headers: HeaderMap, body: Bytes) -> Reply {
        let client = &self.nodes[self.current()].1;
        let response = match client.send(method, path, headers, Option::<&()>::None, Some(body), None).await {
            Ok(response) => response,
            Err(error) => return Reply::Unreachable(describe(&error)),
        };
        let status = response.status_code().as_u16();
        match response.bytes().await {
            Ok(body) => Reply::Answered { status, body },
            Err(error) => Reply::Unreachable(describe(&error)),
        }
    }
}

/// The error and its causes on one line ("error sending request … :
/// connection refused").
fn describe(error: &opensearch::Error) -> String {
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
