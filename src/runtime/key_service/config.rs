//! TOML configuration of a BM-SC client (the gateway's `[bmsc]`, a probe's
//! MSK source) and the rules every BM-SC configuration shares. Strict:
//! unknown keys are errors, and [`MskClientConfig::validate`] rejects
//! inconsistent values with the field name.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Deserializer};

use super::backoff::Backoff;
use crate::protocol::keys::KeyDomainId;

/// A configuration that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("config: {0}")]
    Toml(#[from] toml::de::Error),
    #[error("config field {field}: {reason}")]
    Invalid { field: &'static str, reason: String },
}

pub(crate) fn invalid(field: &'static str, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        field,
        reason: reason.into(),
    }
}

/// Reads a Key Domain ID written as 6 hex digits (MCC ‖ MNC bytes, e.g. "09f107").
pub fn parse_key_domain_id(text: &str) -> Result<KeyDomainId, String> {
    let bytes = hex::decode(text).map_err(|e| format!("{text:?} is not hex: {e}"))?;
    <[u8; 3]>::try_from(bytes.as_slice())
        .map(KeyDomainId)
        .map_err(|_| format!("{text:?} is {} bytes, a Key Domain ID is 3", bytes.len()))
}

pub(crate) fn de_key_domain_id<'de, D: Deserializer<'de>>(d: D) -> Result<KeyDomainId, D::Error> {
    let text = String::deserialize(d)?;
    parse_key_domain_id(&text).map_err(serde::de::Error::custom)
}

pub(crate) fn validate_key_groups(groups: &[u16]) -> Result<BTreeSet<u16>, ConfigError> {
    let set: BTreeSet<u16> = groups.iter().copied().collect();
    if set.is_empty() {
        return Err(invalid("key_groups", "at least one Key Group is needed"));
    }
    if set.len() != groups.len() {
        return Err(invalid("key_groups", "a Key Group is listed twice"));
    }
    Ok(set)
}

/// The gateway's connection to the BM-SC.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MskClientConfig {
    /// `http://host:port` or `https://host:port`.
    pub endpoint: String,
    /// Required for `https://`: trust anchor and, for mutual TLS, the client identity.
    #[serde(default)]
    pub tls: Option<ClientTlsFiles>,
    /// Key Domain ID, 6 hex digits.
    #[serde(deserialize_with = "de_key_domain_id")]
    pub key_domain_id: KeyDomainId,
    /// Key Groups whose MSKs this gateway needs (in a gateway config: filled in
    /// from its sessions).
    #[serde(default)]
    pub key_groups: Vec<u16>,
    /// Name of this gateway instance, sent with every request (in a gateway
    /// config: its `instance_id`).
    #[serde(default)]
    pub client_id: String,
    /// First reconnect delay ceiling, milliseconds.
    #[serde(default = "default_backoff_initial_ms")]
    pub backoff_initial_ms: u64,
    /// Largest reconnect delay ceiling, milliseconds.
    #[serde(default = "default_backoff_max_ms")]
    pub backoff_max_ms: u64,
    /// A watch stream silent this long (no event, no heartbeat) is taken as dead.
    #[serde(default = "default_stream_idle_timeout_s")]
    pub stream_idle_timeout_s: u64,
    /// Deadline of unary calls (lease, current MSK) and of connection set-up.
    #[serde(default = "default_request_timeout_s")]
    pub request_timeout_s: u64,
}

fn default_backoff_initial_ms() -> u64 {
    200
}
fn default_backoff_max_ms() -> u64 {
    10_000
}
fn default_stream_idle_timeout_s() -> u64 {
    35
}
fn default_request_timeout_s() -> u64 {
    10
}

/// Client TLS material (PEM files).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientTlsFiles {
    /// CA that signed the BM-SC's certificate.
    pub ca_file: PathBuf,
    /// Client certificate for mutual TLS (with `key_file`).
    #[serde(default)]
    pub cert_file: Option<PathBuf>,
    /// Client private key for mutual TLS (with `cert_file`).
    #[serde(default)]
    pub key_file: Option<PathBuf>,
    /// Name to verify in the server certificate, if not the endpoint's host.
    #[serde(default)]
    pub domain_name: Option<String>,
}

impl MskClientConfig {
    /// A config with the default timings.
    pub fn new(
        endpoint: impl Into<String>,
        key_domain_id: KeyDomainId,
        key_groups: Vec<u16>,
        client_id: impl Into<String>,
    ) -> Self {
        Self {
            endpoint: endpoint.into(),
            tls: None,
            key_domain_id,
            key_groups,
            client_id: client_id.into(),
            backoff_initial_ms: default_backoff_initial_ms(),
            backoff_max_ms: default_backoff_max_ms(),
            stream_idle_timeout_s: default_stream_idle_timeout_s(),
            request_timeout_s: default_request_timeout_s(),
        }
    }

    pub fn from_toml(text: &str) -> Result<Self, ConfigError> {
        let config: Self = toml::from_str(text)?;
        config.validate()?;
        Ok(config)
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        validate_key_groups(&self.key_groups)?;
        let https = self.endpoint.starts_with("https://");
        if !https && !self.endpoint.starts_with("http://") {
            return Err(invalid("endpoint", "must start with http:// or https://"));
        }
        match &self.tls {
            None if https => return Err(invalid("tls", "https:// endpoint needs tls.ca_file")),
            Some(_) if !https => return Err(invalid("tls", "set, but the endpoint is http://")),
            Some(tls) if tls.cert_file.is_some() != tls.key_file.is_some() => {
                return Err(invalid("tls", "cert_file and key_file go together"));
            }
            _ => {}
        }
        if self.backoff_initial_ms == 0 || self.backoff_max_ms < self.backoff_initial_ms {
            return Err(invalid(
                "backoff_initial_ms",
                "must be at least 1 and not above backoff_max_ms",
            ));
        }
        if self.stream_idle_timeout_s == 0 || self.request_timeout_s == 0 {
            return Err(invalid(
                "stream_idle_timeout_s",
                "timeouts must be at least 1 s",
            ));
        }
        Ok(())
    }

    pub fn backoff(&self) -> Backoff {
        Backoff {
            initial: Duration::from_millis(self.backoff_initial_ms),
            max: Duration::from_millis(self.backoff_max_ms),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_config_checks_tls_against_scheme() {
        let base = MskClientConfig::new(
            "https://bmsc:50051",
            KeyDomainId([1, 2, 3]),
            vec![1],
            "gw-a",
        );
        assert_eq!(
            base.validate().unwrap_err().to_string(),
            "config field tls: https:// endpoint needs tls.ca_file"
        );
        let mut plain = base.clone();
        plain.endpoint = "grpc://x".into();
        assert!(
            plain
                .validate()
                .unwrap_err()
                .to_string()
                .contains("endpoint")
        );
        let mut half = base;
        half.tls = Some(ClientTlsFiles {
            ca_file: "ca.pem".into(),
            cert_file: Some("c.pem".into()),
            key_file: None,
            domain_name: None,
        });
        assert!(
            half.validate()
                .unwrap_err()
                .to_string()
                .contains("go together")
        );
        let parsed = MskClientConfig::from_toml(
            "endpoint = \"http://127.0.0.1:1\"\nkey_domain_id = \"010203\"\nkey_groups = [4]\nclient_id = \"gw\"\n",
        )
        .unwrap();
        assert_eq!(parsed.backoff().max, Duration::from_secs(10));
    }
}
