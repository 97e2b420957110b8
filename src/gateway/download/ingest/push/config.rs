//! HTTP push settings. Loopback by default; on any other address the endpoint
//! accepts objects from the network, so a bearer token is then mandatory (the
//! same rule as the admin endpoint).

use super::super::DEFAULT_MAX_OBJECT_BYTES;
use crate::runtime::bearer_token::{self, TokenError};
use crate::runtime::units;
use serde::Deserialize;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Default port: next to the admin endpoint's.
pub const DEFAULT_PUSH_PORT: u16 = 9465;

/// Spool folder below the gateway `state_dir` unless configured.
pub const DEFAULT_SPOOL_SUBDIR: &str = "push-spool";

/// `[push]` in the gateway configuration: one listener for every download
/// session.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PushConfig {
    /// Address of the HTTP endpoint.
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// File holding the token required as `Authorization: Bearer <token>`
    /// (surrounding whitespace ignored). Required unless `listen` is loopback.
    #[serde(default)]
    pub token_file: Option<PathBuf>,
    /// Larger uploads are refused with 413.
    #[serde(default = "default_max_object_bytes")]
    pub max_object_bytes: u64,
    /// Where uploads are written until sent; default `<state_dir>/push-spool`.
    /// Files left there by a previous run are removed at start.
    #[serde(default)]
    pub spool_dir: Option<PathBuf>,
    /// Longest time to receive one request body (slow or stalled clients are
    /// answered 408).
    #[serde(
        default = "default_request_timeout",
        deserialize_with = "units::duration"
    )]
    pub request_timeout: Duration,
}

fn default_listen() -> SocketAddr {
    SocketAddr::from((Ipv4Addr::LOCALHOST, DEFAULT_PUSH_PORT))
}

fn default_max_object_bytes() -> u64 {
    DEFAULT_MAX_OBJECT_BYTES
}

fn default_request_timeout() -> Duration {
    Duration::from_secs(60)
}

impl Default for PushConfig {
    fn default() -> Self {
        Self {
            listen: default_listen(),
            token_file: None,
            max_object_bytes: default_max_object_bytes(),
            spool_dir: None,
            request_timeout: default_request_timeout(),
        }
    }
}

/// A configuration the endpoint refuses to start with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PushConfigError {
    #[error("push.listen {listen} is not a loopback address: set push.token_file")]
    TokenRequired { listen: SocketAddr },
    #[error("push.token_file {path}: {source}")]
    TokenFile { path: PathBuf, source: TokenError },
    #[error("push.request_timeout must be longer than zero")]
    ZeroTimeout,
}

impl PushConfig {
    /// Checks the settings and reads the token file (`None`: no token, only
    /// allowed on loopback).
    pub fn load_token(&self) -> Result<Option<String>, PushConfigError> {
        if self.request_timeout.is_zero() {
            return Err(PushConfigError::ZeroTimeout);
        }
        let Some(path) = &self.token_file else {
            return if self.listen.ip().is_loopback() {
                Ok(None)
            } else {
                Err(PushConfigError::TokenRequired {
                    listen: self.listen,
                })
            };
        };
        bearer_token::read(path)
            .map(Some)
            .map_err(|source| PushConfigError::TokenFile {
                path: path.clone(),
                source,
            })
    }

    /// The spool folder: configured, or below the gateway's `state_dir`.
    pub fn spool_dir(&self, state_dir: &Path) -> PathBuf {
        self.spool_dir
            .clone()
            .unwrap_or_else(|| state_dir.join(DEFAULT_SPOOL_SUBDIR))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<PushConfig, toml::de::Error> {
        toml::from_str(text)
    }

    #[test]
    fn loopback_without_token_by_default() {
        let config = parse("").unwrap();
        assert_eq!(config, PushConfig::default());
        assert_eq!(config.listen, "127.0.0.1:9465".parse().unwrap());
        assert_eq!(config.load_token(), Ok(None));
        assert_eq!(
            config.spool_dir(Path::new("/var/lib/gw")),
            Path::new("/var/lib/gw/push-spool")
        );
        let config = parse("request_timeout = \"5s\"\nspool_dir = \"/spool\"").unwrap();
        assert_eq!(config.request_timeout, Duration::from_secs(5));
        assert_eq!(config.spool_dir(Path::new("/x")), Path::new("/spool"));
    }

    #[test]
    fn non_loopback_needs_a_readable_strong_token() {
        let config = parse("listen = \"0.0.0.0:9465\"").unwrap();
        assert_eq!(
            config.load_token(),
            Err(PushConfigError::TokenRequired {
                listen: "0.0.0.0:9465".parse().unwrap()
            })
        );
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        let with_file = PushConfig {
            token_file: Some(path.clone()),
            ..config
        };
        let refused = |source| PushConfigError::TokenFile {
            path: path.clone(),
            source,
        };
        assert!(matches!(
            with_file.load_token(),
            Err(PushConfigError::TokenFile {
                source: TokenError::Unreadable(_),
                ..
            })
        ));
        std::fs::write(&path, "short\n").unwrap();
        assert_eq!(with_file.load_token(), Err(refused(TokenError::TooShort)));
        std::fs::write(&path, "0123456789 abcdef\n").unwrap();
        assert_eq!(
            with_file.load_token(),
            Err(refused(TokenError::NotVisibleAscii))
        );
        std::fs::write(&path, "  0123456789abcdef-push\n").unwrap();
        assert_eq!(
            with_file.load_token(),
            Ok(Some("0123456789abcdef-push".to_owned()))
        );
    }

    #[test]
    fn unknown_keys_and_zero_timeout_are_refused() {
        assert!(parse("token = \"x\"").is_err());
        assert!(parse("request_timeout = \"30\"").is_err());
        let config = parse("request_timeout = \"0s\"").unwrap();
        assert_eq!(config.load_token(), Err(PushConfigError::ZeroTimeout));
    }
}
