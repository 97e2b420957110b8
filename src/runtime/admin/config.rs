//! Admin endpoint settings. Loopback by default; any other address exposes the
//! endpoint to the network, so a bearer token is then mandatory.

use serde::Deserialize;
use std::net::{Ipv4Addr, SocketAddr};

/// `[admin]` in the gateway configuration.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminConfig {
    /// Address of the HTTP endpoint (`/metrics`, `/healthz`, `/readyz`).
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// Required as `Authorization: Bearer <token>` on every request when set.
    #[serde(default)]
    pub token: Option<String>,
}

/// A configuration the endpoint refuses to start with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AdminConfigError {
    #[error("admin.listen {listen} is not a loopback address: set admin.token")]
    TokenRequired { listen: SocketAddr },
    #[error("admin.token must be at least {min} characters")]
    TokenTooShort { min: usize },
    #[error("admin.token must be visible ASCII without spaces (an HTTP header value)")]
    TokenNotVisibleAscii,
}

/// Default port, the one commonly used for an in-process Prometheus endpoint.
pub const DEFAULT_ADMIN_PORT: u16 = 9464;

/// Short tokens are guessable; 16 characters is a floor, not a recommendation.
pub const MIN_TOKEN_LEN: usize = 16;

fn default_listen() -> SocketAddr {
    SocketAddr::from((Ipv4Addr::LOCALHOST, DEFAULT_ADMIN_PORT))
}

impl Default for AdminConfig {
    fn default() -> Self {
        Self {
            listen: default_listen(),
            token: None,
        }
    }
}

impl std::fmt::Debug for AdminConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminConfig")
            .field("listen", &self.listen)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

impl AdminConfig {
    pub fn validate(&self) -> Result<(), AdminConfigError> {
        match &self.token {
            None if !self.listen.ip().is_loopback() => Err(AdminConfigError::TokenRequired {
                listen: self.listen,
            }),
            None => Ok(()),
            Some(token) if token.len() < MIN_TOKEN_LEN => {
                Err(AdminConfigError::TokenTooShort { min: MIN_TOKEN_LEN })
            }
            Some(token) if !token.bytes().all(|b| b.is_ascii_graphic()) => {
                Err(AdminConfigError::TokenNotVisibleAscii)
            }
            Some(_) => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<AdminConfig, toml::de::Error> {
        toml::from_str(text)
    }

    #[test]
    fn loopback_by_default() {
        let config = parse("").unwrap();
        assert_eq!(config.listen, "127.0.0.1:9464".parse().unwrap());
        assert_eq!(config.validate(), Ok(()));
    }

    #[test]
    fn non_loopback_needs_a_token() {
        for listen in ["0.0.0.0:9464", "192.0.2.1:9464", "[::]:9464"] {
            let config = parse(&format!("listen = \"{listen}\"")).unwrap();
            assert_eq!(
                config.validate(),
                Err(AdminConfigError::TokenRequired {
                    listen: listen.parse().unwrap()
                })
            );
        }
        let config = parse("listen = \"0.0.0.0:9464\"\ntoken = \"0123456789abcdef0123\"").unwrap();
        assert_eq!(config.validate(), Ok(()));
        let config = parse("listen = \"[::1]:1\"").unwrap();
        assert_eq!(config.validate(), Ok(()));
    }

    #[test]
    fn weak_or_unusable_tokens_are_refused() {
        let config = parse("token = \"short\"").unwrap();
        assert_eq!(
            config.validate(),
            Err(AdminConfigError::TokenTooShort { min: MIN_TOKEN_LEN })
        );
        let config = parse("token = \"0123456789 abcdef\"").unwrap();
        assert_eq!(
            config.validate(),
            Err(AdminConfigError::TokenNotVisibleAscii)
        );
    }

    #[test]
    fn unknown_keys_and_debug_redaction() {
        assert!(parse("bind = \"127.0.0.1:1\"").is_err());
        let config = parse("token = \"0123456789abcdef-secret\"").unwrap();
        assert!(!format!("{config:?}").contains("secret"));
    }
}
