//! What every Kafka client of the engine shares: where the cluster is, how
//! to authenticate to it, and the embedded broker the demo runs on.
//!
//! Sources, sinks and REST ingest each build their own rdkafka client from
//! a [`Connection`]. A pipeline that names no `brokers` uses the engine's
//! cluster (`sluice run --brokers`, `embedded` unless told otherwise).

pub mod embedded;
pub mod group;
mod security;
pub mod topics;

use std::collections::BTreeMap;

use rdkafka::ClientConfig;
pub use security::Security;

/// Connection settings shared by the Kafka source, sink and dead-letter
/// destination. Their config structs carry these keys flat in the
/// component's table:
///
/// ```toml
/// [source]
/// type = "kafka"
/// brokers = "kafka-1:9092,kafka-2:9092"   # optional: the engine's cluster
/// [source.security]                        # optional: SASL / TLS
/// protocol = "sasl_ssl"
/// [source.options]                         # any librdkafka property
/// "fetch.min.bytes" = "65536"
/// ```
#[derive(Debug, Clone, Default)]
pub struct Connection {
    /// Bootstrap brokers, `host:port[,host:port…]`. Unset: the engine's
    /// cluster.
    pub brokers: Option<String>,
    pub security: Option<Security>,
    /// Any librdkafka property, passed through as is; applied last, so it
    /// can override what sluice sets.
    pub options: BTreeMap<String, String>,
}

impl Connection {
    /// The librdkafka configuration for this connection: bootstrap servers,
    /// security (secrets read from the environment now), then `defaults`
    /// (what the component needs for its guarantees) and the user's
    /// `options` over them.
    pub fn client_config(&self, client_id: &str, defaults: &[(&str, &str)]) -> anyhow::Result<ClientConfig> {
        let Some(brokers) = &self.brokers else {
            anyhow::bail!("no Kafka brokers: set `brokers` or run with `sluice run --brokers HOST:PORT`");
        };
        let mut config = ClientConfig::new();
        config.set("bootstrap.servers", brokers).set("client.id", client_id);
        if let Some(security) = &self.security {
            security.apply(&mut config)?;
        }
        for (key, value) in defaults {
            config.set(*key, *value);
        }
        for (key, value) in &self.options {
            config.set(key, value);
        }
        Ok(config)
    }
}

/// Whether `name` is a valid Kafka topic name (what brokers accept).
pub fn valid_topic_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 249
        && name != "."
        && name != ".."
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// Why the brokers refused to take a record for good: retrying the same
/// record cannot succeed. Everything else (timeouts, brokers down, leaders
/// moving) is transient, and librdkafka retries it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Larger than the topic or broker accepts.
    TooLarge,
    /// A record the brokers judge malformed (or a policy refuses).
    Invalid,
    /// The topic or partition does not exist.
    UnknownTopic,
    /// The credentials may not write there.
    NotAuthorized,
}

impl Refusal {
    pub fn of(code: rdkafka::types::RDKafkaErrorCode) -> Option<Refusal> {
        use rdkafka::types::RDKafkaErrorCode as E;
        Some(match code {
            E::MessageSizeTooLarge | E::InvalidMessageSize | E::MessageBatchTooLarge => Refusal::TooLarge,
            E::InvalidMessage | E::InvalidRecord | E::InvalidTimestamp | E::PolicyViolation => {
                Refusal::Invalid
            }
            E::UnknownTopicOrPartition | E::UnknownTopic | E::UnknownPartition | E::InvalidTopic => {
                Refusal::UnknownTopic
            }
            E::TopicAuthorizationFailed | E::ClusterAuthorizationFailed | E::SaslAuthenticationFailed => {
                Refusal::NotAuthorized
            }
            _ => return None,
        })
    }
}
