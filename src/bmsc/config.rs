//! TOML configuration of the reference BM-SC (`mbms-gateway bmsc --config
//! FILE`). Strict: unknown keys are errors, and [`BmscConfig::validate`]
//! rejects inconsistent values with the field name.

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::Deserialize;

use crate::protocol::keys::KeyDomainId;
use crate::runtime::key_service::config::{
    ConfigError, de_key_domain_id, invalid, validate_key_groups,
};
pub use crate::runtime::tls::ServerTlsFiles;

/// Reference BM-SC configuration (`mbms-gateway bmsc --config FILE`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BmscConfig {
    /// gRPC listen address, e.g. "127.0.0.1:50051".
    pub listen: SocketAddr,
    /// TLS for the gRPC endpoint; absent means plaintext (labs on loopback only).
    #[serde(default)]
    pub tls: Option<ServerTlsFiles>,
    /// Key Domain ID served, 6 hex digits (MCC ‖ MNC).
    #[serde(deserialize_with = "de_key_domain_id")]
    pub key_domain_id: KeyDomainId,
    /// Key Groups served (16-bit each).
    pub key_groups: Vec<u16>,
    /// Where the MSKs come from.
    pub keys: KeySource,
    /// Directory for the lease high-water marks; without it a restarted BM-SC starts
    /// leasing from SEQl again, so set it whenever gateways outlive the BM-SC.
    #[serde(default)]
    pub state_dir: Option<PathBuf>,
    /// Seconds between heartbeats on idle watch streams.
    #[serde(default = "default_heartbeat_interval_s")]
    pub heartbeat_interval_s: u32,
    /// The UE-facing Key Request and Key Distribution functions; absent: the
    /// BM-SC serves gateways only.
    #[serde(default)]
    pub key_management: Option<super::key_management::KeyManagementConfig>,
}

fn default_heartbeat_interval_s() -> u32 {
    10
}

/// The MSK source of the reference BM-SC.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(tag = "source", rename_all = "snake_case", deny_unknown_fields)]
pub enum KeySource {
    /// MSKs from a TOML key file (see `server::load_key_file`).
    File { path: PathBuf },
    /// Fresh random MSKs per Key Group on a rotation schedule.
    Generate(GenerateConfig),
}

/// Rotation schedule of generated MSKs: MSK n of a group becomes valid at
/// `start + (n - 1) · rotate_every_s`, lives `lifetime_s`, and is announced
/// `announce_ahead_s` before it becomes valid, so gateways (and, through them, UEs)
/// hold it before it is needed.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GenerateConfig {
    pub rotate_every_s: u32,
    pub lifetime_s: u32,
    pub announce_ahead_s: u32,
    /// Key validity window of every generated MSK, SEQl.
    #[serde(default = "default_seq_l")]
    pub seq_l: u16,
    /// Key validity window of every generated MSK, SEQu.
    #[serde(default = "default_seq_u")]
    pub seq_u: u16,
}

fn default_seq_l() -> u16 {
    1
}

fn default_seq_u() -> u16 {
    0xFFFF
}

impl GenerateConfig {
    /// A new MSK every `rotate_every_s`, living `lifetime_s`, announced
    /// `announce_ahead_s` ahead, with the full MTK ID window.
    pub fn every(rotate_every_s: u32, lifetime_s: u32, announce_ahead_s: u32) -> Self {
        Self {
            rotate_every_s,
            lifetime_s,
            announce_ahead_s,
            seq_l: default_seq_l(),
            seq_u: default_seq_u(),
        }
    }
}

impl BmscConfig {
    /// A plaintext BM-SC on `listen` serving the MSKs of `key_groups` from
    /// `keys` to gateways only, heartbeats every second, no state directory:
    /// the lab set-up of the demo, the load test and the tests.
    pub fn plaintext(
        listen: SocketAddr,
        key_domain_id: KeyDomainId,
        key_groups: Vec<u16>,
        keys: KeySource,
    ) -> Self {
        Self {
            listen,
            tls: None,
            key_domain_id,
            key_groups,
            keys,
            state_dir: None,
            heartbeat_interval_s: 1,
            key_management: None,
        }
    }

    pub fn from_toml(text: &str) -> Result<Self, ConfigError> {
        let config: Self = toml::from_str(text)?;
        config.validate()?;
        Ok(config)
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        validate_key_groups(&self.key_groups)?;
        if self.heartbeat_interval_s == 0 {
            return Err(invalid("heartbeat_interval_s", "must be at least 1"));
        }
        if let KeySource::Generate(g) = &self.keys {
            if g.rotate_every_s == 0 {
                return Err(invalid("keys.rotate_every_s", "must be at least 1"));
            }
            if g.lifetime_s < g.rotate_every_s {
                return Err(invalid(
                    "keys.lifetime_s",
                    "shorter than rotate_every_s: a Key Group would have no valid MSK between two",
                ));
            }
            if g.announce_ahead_s > g.rotate_every_s {
                return Err(invalid(
                    "keys.announce_ahead_s",
                    "longer than rotate_every_s",
                ));
            }
            if g.seq_l > g.seq_u {
                return Err(invalid(
                    "keys.seq_l",
                    "above keys.seq_u: the window would be empty",
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BMSC: &str = r#"
        listen = "127.0.0.1:50051"
        key_domain_id = "09f107"
        key_groups = [1, 2]
        state_dir = "/var/lib/bmsc"
        [keys]
        source = "generate"
        rotate_every_s = 3600
        lifetime_s = 7200
        announce_ahead_s = 600
    "#;

    #[test]
    fn bmsc_config_parses() {
        let c = BmscConfig::from_toml(BMSC).unwrap();
        assert_eq!(c.key_domain_id, KeyDomainId([0x09, 0xf1, 0x07]));
        assert_eq!(c.heartbeat_interval_s, 10);
        assert_eq!(
            c.keys,
            KeySource::Generate(GenerateConfig {
                rotate_every_s: 3600,
                lifetime_s: 7200,
                announce_ahead_s: 600,
                seq_l: 1,
                seq_u: 0xFFFF
            })
        );
        let file = BMSC.replace(
            "source = \"generate\"\n        rotate_every_s = 3600\n        lifetime_s = 7200\n        announce_ahead_s = 600",
            "source = \"file\"\n        path = \"keys.toml\"",
        );
        let c = BmscConfig::from_toml(&file).unwrap();
        assert_eq!(
            c.keys,
            KeySource::File {
                path: "keys.toml".into()
            }
        );
    }

    #[test]
    fn bmsc_config_rejects_bad_values_by_name() {
        let err = |text: String| BmscConfig::from_toml(&text).unwrap_err().to_string();
        assert!(err(BMSC.replace("state_dir", "stat_dir")).contains("unknown field `stat_dir`"));
        assert!(
            err(BMSC.replace("lifetime_s = 7200", "lifetime_s = 7200\nextra = 1"))
                .contains("unknown field `extra`")
        );
        assert!(err(BMSC.replace("09f107", "09f1")).contains("2 bytes, a Key Domain ID is 3"));
        assert_eq!(
            err(BMSC.replace("7200", "60")),
            "config field keys.lifetime_s: shorter than rotate_every_s: a Key Group would have no valid MSK between two"
        );
        assert_eq!(
            err(BMSC.replace("[1, 2]", "[1, 1]")),
            "config field key_groups: a Key Group is listed twice"
        );
        assert!(err(BMSC.replace("[1, 2]", "[70000]")).contains("key_groups"));
    }

    #[test]
    fn deploy_examples_parse() {
        let bmsc = BmscConfig::from_toml(include_str!("../../deploy/bmsc.example.toml")).unwrap();
        assert!(bmsc.tls.unwrap().client_ca_file.is_some());
    }
}
