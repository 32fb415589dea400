//! SASL and TLS settings for Kafka clients. Secrets are named by the
//! environment variable that holds them, never written in the TOML.

use rdkafka::ClientConfig;
use serde::{Deserialize, Serialize};

/// `[source.security]` / `[sink.security]`:
///
/// ```toml
/// protocol = "sasl_ssl"            # plaintext | ssl | sasl_plaintext | sasl_ssl
/// sasl_mechanism = "SCRAM-SHA-512" # PLAIN | SCRAM-SHA-256 | SCRAM-SHA-512
/// username = "sluice"
/// password_env = "KAFKA_PASSWORD"  # the variable holding the password
/// ca_file = "/etc/kafka/ca.pem"
/// ```
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Security {
    pub protocol: Protocol,
    pub sasl_mechanism: Option<String>,
    pub username: Option<String>,
    /// Environment variable holding the SASL password.
    pub password_env: Option<String>,
    /// CA certificate(s) to verify the brokers with (PEM).
    pub ca_file: Option<String>,
    /// Client certificate and key for mutual TLS (PEM).
    pub certificate_file: Option<String>,
    pub key_file: Option<String>,
    /// Environment variable holding the client key's password.
    pub key_password_env: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Protocol {
    Plaintext,
    Ssl,
    SaslPlaintext,
    SaslSsl,
}

impl Security {
    pub fn apply(&self, config: &mut ClientConfig) -> anyhow::Result<()> {
        let protocol = match self.protocol {
            Protocol::Plaintext => "plaintext",
            Protocol::Ssl => "ssl",
            Protocol::SaslPlaintext => "sasl_plaintext",
            Protocol::SaslSsl => "sasl_ssl",
        };
        config.set("security.protocol", protocol);
        if let Some(mechanism) = &self.sasl_mechanism {
            config.set("sasl.mechanism", mechanism);
        }
        if let Some(username) = &self.username {
            config.set("sasl.username", username);
        }
        if let Some(var) = &self.password_env {
            config.set("sasl.password", secret(var, "password_env")?);
        }
        if let Some(path) = &self.ca_file {
            config.set("ssl.ca.location", path);
        }
        if let Some(path) = &self.certificate_file {
            config.set("ssl.certificate.location", path);
        }
        if let Some(path) = &self.key_file {
            config.set("ssl.key.location", path);
        }
        if let Some(var) = &self.key_password_env {
            config.set("ssl.key.password", secret(var, "key_password_env")?);
        }
        Ok(())
    }
}

fn secret(var: &str, key: &str) -> anyhow::Result<String> {
    std::env::var(var).map_err(|_| anyhow::anyhow!("security.{key}: environment variable `{var}` is not set"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_come_from_the_environment_and_a_missing_one_is_named() {
        let security = Security {
            protocol: Protocol::SaslSsl,
            sasl_mechanism: Some("SCRAM-SHA-512".into()),
            username: Some("sluice".into()),
            password_env: Some("SLUICE_TEST_SURELY_UNSET_PASSWORD".into()),
            ca_file: None,
            certificate_file: None,
            key_file: None,
            key_password_env: None,
        };
        let error = security.apply(&mut ClientConfig::new()).unwrap_err().to_string();
        assert_eq!(
            error,
            "security.password_env: environment variable `SLUICE_TEST_SURELY_UNSET_PASSWORD` is not set"
        );

        let with_path = Security { password_env: Some("PATH".into()), ..security };
        let mut config = ClientConfig::new();
        with_path.apply(&mut config).unwrap();
        assert_eq!(config.get("security.protocol"), Some("sasl_ssl"));
        assert_eq!(config.get("sasl.password").map(str::to_string), std::env::var("PATH").ok());
    }
}
