//! Admin endpoint settings. Loopback by default; any other address exposes the
//! endpoint to the network, so a bearer token is then mandatory.

use crate::runtime::bearer_token::{self, TokenError};
use serde::Deserialize;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;

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
    /// The same, read from a file at start (e.g. a mounted Secret), so the
    /// configuration itself holds no secret. Not with `token`.
    #[serde(default)]
    pub token_file: Option<PathBuf>,
}

/// A configuration the endpoint refuses to start with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AdminConfigError {
    #[error("admin.listen {listen} is not a loopback address: set admin.token or admin.token_file")]
    TokenRequired { listen: SocketAddr },
    #[error("admin.token_file: set either admin.token or admin.token_file, not both")]
    TwoTokens,
    #[error("admin.token: {0}")]
    Token(TokenError),
    #[error("admin.token_file {path}: {source}")]
    TokenFile { path: PathBuf, source: TokenError },
}

/// Default port, the one commonly used for an in-process Prometheus endpoint.
pub const DEFAULT_ADMIN_PORT: u16 = 9464;

fn default_listen() -> SocketAddr {
    SocketAddr::from((Ipv4Addr::LOCALHOST, DEFAULT_ADMIN_PORT))
}

impl Default for AdminConfig {
    fn default() -> Self {
        Self {
            listen: default_listen(),
            token: None,
            token_file: None,
        }
    }
}

impl std::fmt::Debug for AdminConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminConfig")
            .field("listen", &self.listen)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("token_file", &self.token_file)
            .finish()
    }
}

impl AdminConfig {
    /// Checks the settings and returns the token (`None`: no token, only
    /// allowed on loopback), reading `token_file` if set.
    pub fn load_token(&self) -> Result<Option<String>, AdminConfigError> {
        match (&self.token, &self.token_file) {
            (Some(_), Some(_)) => Err(AdminConfigError::TwoTokens),
            (Some(token), None) => bearer_token::check(token)
                .map(|()| Some(token.clone()))
                .map_err(AdminConfigError::Token),
            (None, Some(path)) => {
                bearer_token::read(path)
                    .map(Some)
                    .map_err(|source| AdminConfigError::TokenFile {
                        path: path.clone(),
                        source,
                    })
            }
            (None, None) if !self.listen.ip().is_loopback() => {
                Err(AdminConfigError::TokenRequired {
                    listen: self.listen,
                })
            }
            (None, None) => Ok(None),
        }
    }

    pub fn validate(&self) -> Result<(), AdminConfigError> {
        self.load_token().map(|_| ())
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
            Err(AdminConfigError::Token(TokenError::TooShort))
        );
        let config = parse("token = \"0123456789 abcdef\"").unwrap();
        assert_eq!(
            config.validate(),
            Err(AdminConfigError::Token(TokenError::NotVisibleAscii))
        );
    }

    #[test]
    fn a_token_file_off_loopback() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("admin.token");
        let text = format!(
            "listen = \"0.0.0.0:9464\"\ntoken_file = \"{}\"",
            path.display()
        );
        let config = parse(&text).unwrap();
        assert!(matches!(
            config.load_token(),
            Err(AdminConfigError::TokenFile {
                source: TokenError::Unreadable(_),
                ..
            })
        ));
        std::fs::write(&path, "short\n").unwrap();
        assert_eq!(
            config.load_token(),
            Err(AdminConfigError::TokenFile {
                path: path.clone(),
                source: TokenError::TooShort
            })
        );
        std::fs::write(&path, "0123456789abcdef-admin\n").unwrap();
        assert_eq!(
            config.load_token(),
            Ok(Some("0123456789abcdef-admin".to_owned()))
        );
        let both = parse(&format!("{text}\ntoken = \"0123456789abcdef0123\"")).unwrap();
        assert_eq!(both.load_token(), Err(AdminConfigError::TwoTokens));
    }

    #[test]
    fn unknown_keys_and_debug_redaction() {
        assert!(parse("bind = \"127.0.0.1:1\"").is_err());
        let config = parse("token = \"0123456789abcdef-secret\"").unwrap();
        assert!(!format!("{config:?}").contains("secret"));
    }
}
