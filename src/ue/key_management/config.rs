//! A UE's provisioning (`--ue-file` of the probe): its GBA security
//! association with the BM-SC, the User Services to register to, and the
//! Service Announcement's key information. Strict TOML; secrets never printed.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use serde::Deserialize;
use zeroize::Zeroize;

use crate::protocol::key_request::{BackOff, KsNaf, UeSecurityAssociation};
use crate::protocol::keys::KeyDomainId;
use crate::runtime::key_service::config::parse_key_domain_id;

/// Everything a UE agent needs.
#[derive(Debug, Clone)]
pub struct UeConfig {
    /// `https://host:port/path` of the BM-SC Key Request function
    /// (`http://` only on loopback).
    pub key_request_url: String,
    /// The CA that signed the Key Request function's certificate (for
    /// `https://`).
    pub ca_file: Option<PathBuf>,
    pub sa: UeSecurityAssociation,
    /// Where MSK messages arrive (the port provisioned at the BM-SC).
    pub mikey_listen: SocketAddr,
    pub key_domain_id: KeyDomainId,
    /// MBMS User Services to register to.
    pub services: Vec<String>,
    /// Key Groups of the MSKs the services need (Service Announcement; the
    /// UE asks for Key Number 0, the current MSK).
    pub key_groups: Vec<u16>,
    pub backoff: BackOff,
    /// Wait this long for a requested MSK before asking again (doubling).
    pub retry: Duration,
    pub max_retry: Duration,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UeFile {
    key_request_url: String,
    #[serde(default)]
    ca_file: Option<PathBuf>,
    b_tid: String,
    impi: String,
    ks_naf: String,
    mikey_listen: SocketAddr,
    key_domain_id: String,
    services: Vec<String>,
    key_groups: Vec<u16>,
    #[serde(default = "default_backoff_offset_ms")]
    backoff_offset_ms: u64,
    #[serde(default)]
    backoff_random_ms: u64,
    #[serde(default = "default_retry_ms")]
    retry_ms: u64,
    #[serde(default = "default_max_retry_ms")]
    max_retry_ms: u64,
}

impl Drop for UeFile {
    fn drop(&mut self) {
        self.ks_naf.zeroize();
    }
}

fn default_backoff_offset_ms() -> u64 {
    1000
}
fn default_retry_ms() -> u64 {
    2000
}
fn default_max_retry_ms() -> u64 {
    30_000
}

impl UeConfig {
    /// Reads a UE file:
    ///
    /// ```toml
    /// key_request_url = "https://bmsc.example.org:8443/keymanagement"
    /// ca_file = "/etc/mbms/bmsc-ca.pem"   # trust anchor of https://
    /// b_tid = "cmFuZDE=@bsf.example.org"
    /// impi = "001010000000001@ims.example.org"
    /// ks_naf = "…"                 # 64 hex digits
    /// mikey_listen = "0.0.0.0:2269"
    /// key_domain_id = "09f107"
    /// services = ["urn:example:tv"]
    /// key_groups = [1]
    /// backoff_offset_ms = 1000     # Service Announcement back-off: offset
    /// backoff_random_ms = 0        # … and random period
    /// retry_ms = 2000
    /// max_retry_ms = 30000
    /// ```
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let context = || format!("UE file {}", path.display());
        let mut text = std::fs::read_to_string(path).with_context(context)?;
        let parsed = Self::from_toml(&text);
        text.zeroize();
        parsed.with_context(context)
    }

    pub fn from_toml(text: &str) -> anyhow::Result<Self> {
        let file: UeFile = toml::from_str(text)?;
        let mut bytes =
            hex::decode(&file.ks_naf).map_err(|e| anyhow::anyhow!("ks_naf: not hex: {e}"))?;
        let ks_naf = KsNaf::from_slice(&bytes);
        bytes.zeroize();
        let ks_naf =
            ks_naf.ok_or_else(|| anyhow::anyhow!("ks_naf: must be 32 bytes (64 hex digits)"))?;
        let key_domain_id = parse_key_domain_id(&file.key_domain_id)
            .map_err(|e| anyhow::anyhow!("key_domain_id: {e}"))?;
        anyhow::ensure!(
            !file.services.is_empty(),
            "services: at least one User Service"
        );
        anyhow::ensure!(
            !file.key_groups.is_empty(),
            "key_groups: at least one Key Group"
        );
        anyhow::ensure!(
            !file.key_request_url.starts_with("https://") || file.ca_file.is_some(),
            "key_request_url: https:// needs ca_file (the CA of the BM-SC's certificate)"
        );
        Ok(Self {
            key_request_url: file.key_request_url.clone(),
            ca_file: file.ca_file.clone(),
            sa: UeSecurityAssociation {
                b_tid: file.b_tid.clone(),
                impi: file.impi.clone(),
                ks_naf,
            },
            mikey_listen: file.mikey_listen,
            key_domain_id,
            services: file.services.clone(),
            key_groups: file.key_groups.clone(),
            backoff: BackOff {
                offset: Duration::from_millis(file.backoff_offset_ms),
                random_period: Duration::from_millis(file.backoff_random_ms),
            },
            retry: Duration::from_millis(file.retry_ms.max(1)),
            max_retry: Duration::from_millis(file.max_retry_ms.max(1)),
        })
    }
}
