//! `[key_management]` of the reference BM-SC and its UE provisioning file.
//! Strict TOML (unknown keys are errors); secrets are zeroized and never printed.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::Deserialize;
use zeroize::Zeroize;

use crate::protocol::key_request::{Algorithm, KsNaf, UeSecurityAssociation};
use crate::protocol::profile::key_management as profile;
use crate::runtime::tls::ServerTlsFiles;

/// The Key Request and Key Distribution functions (TS 33.246 §6.3.2).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyManagementConfig {
    /// Listen address of the Key Request function. Off loopback it needs
    /// `tls`: UEs send their Digest credentials and requests over it.
    pub listen: SocketAddr,
    /// HTTPS: the function's certificate and key, and with `client_ca_file`
    /// the CA UE certificates must be signed by.
    #[serde(default)]
    pub tls: Option<ServerTlsFiles>,
    /// Local address MSK messages are sent from (port 0: any); verification
    /// messages from UEs come back here.
    #[serde(default = "default_mikey_source")]
    pub mikey_source: SocketAddr,
    /// The BM-SC's NAF-Id (FQDN): the Digest realm and the MIKEY IDi.
    pub naf_id: String,
    /// Digest algorithm offered in challenges: "SHA-256" or "MD5".
    #[serde(default = "default_algorithm")]
    pub digest_algorithm: String,
    /// Seconds a Digest nonce stays valid.
    #[serde(default = "default_nonce_lifetime_s")]
    pub nonce_lifetime_s: u32,
    /// Set the V bit on MSK deliveries: UEs answer with a verification message.
    #[serde(default)]
    pub request_ack: bool,
    /// The provisioned UEs (see [`load_ue_file`]).
    pub ue_file: PathBuf,
    /// The MBMS User Services and the Key Groups whose MSKs protect them.
    #[serde(rename = "service")]
    pub services: Vec<UserServiceConfig>,
}

/// One MBMS User Service.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserServiceConfig {
    pub id: String,
    pub key_groups: Vec<u16>,
}

fn default_mikey_source() -> SocketAddr {
    SocketAddr::from(([0, 0, 0, 0], 0))
}
fn default_algorithm() -> String {
    "SHA-256".into()
}
fn default_nonce_lifetime_s() -> u32 {
    300
}

impl KeyManagementConfig {
    pub fn algorithm(&self) -> anyhow::Result<Algorithm> {
        Algorithm::from_token(&self.digest_algorithm).map_err(|_| {
            anyhow::anyhow!(
                "key_management.digest_algorithm {:?}: use \"SHA-256\" or \"MD5\"",
                self.digest_algorithm
            )
        })
    }

    /// Checks the section against the Key Groups the BM-SC serves.
    pub fn validate(&self, served_groups: &BTreeSet<u16>) -> anyhow::Result<()> {
        self.algorithm()?;
        anyhow::ensure!(
            self.tls.is_some() || self.listen.ip().is_loopback(),
            "key_management.listen {}: plain HTTP only on loopback; set key_management.tls \
             (cert_file, key_file) to serve UEs over HTTPS",
            self.listen
        );
        anyhow::ensure!(!self.naf_id.is_empty(), "key_management.naf_id: empty");
        anyhow::ensure!(
            self.nonce_lifetime_s > 0,
            "key_management.nonce_lifetime_s: must be at least 1"
        );
        anyhow::ensure!(
            !self.services.is_empty(),
            "key_management.service: at least one User Service is needed"
        );
        let mut ids = BTreeSet::new();
        for service in &self.services {
            anyhow::ensure!(
                ids.insert(service.id.as_str()),
                "key_management.service: {:?} is listed twice",
                service.id
            );
            anyhow::ensure!(
                !service.key_groups.is_empty(),
                "key_management.service {:?}: key_groups is empty",
                service.id
            );
            if let Some(g) = service
                .key_groups
                .iter()
                .find(|g| !served_groups.contains(g))
            {
                anyhow::bail!(
                    "key_management.service {:?}: Key Group {g} is not in key_groups of this BM-SC",
                    service.id
                );
            }
        }
        Ok(())
    }

    /// User Service ID → Key Groups.
    pub fn service_map(&self) -> BTreeMap<String, BTreeSet<u16>> {
        self.services
            .iter()
            .map(|s| (s.id.clone(), s.key_groups.iter().copied().collect()))
            .collect()
    }
}

/// One provisioned UE.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProvisionedUe {
    pub sa: UeSecurityAssociation,
    /// Where the UE receives MSK messages (at the address it registers from).
    pub mikey_port: u16,
    /// The User Services the Membership function lets it register to.
    pub services: BTreeSet<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UeFile {
    #[serde(default)]
    ue: Vec<UeEntry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UeEntry {
    b_tid: String,
    impi: String,
    /// 64 hex digits.
    ks_naf: String,
    #[serde(default)]
    mikey_port: Option<u16>,
    #[serde(default)]
    services: Vec<String>,
}

impl Drop for UeEntry {
    fn drop(&mut self) {
        self.ks_naf.zeroize();
    }
}

/// Reads the UE file:
///
/// ```toml
/// [[ue]]
/// b_tid = "cmFuZDE=@bsf.example.org"   # Digest username, MIKEY IDr
/// impi = "001010000000001@ims.example.org"
/// ks_naf = "00112233…"                  # 64 hex digits: Ks_(ext)_NAF
/// mikey_port = 2269                     # optional
/// services = ["urn:example:tv"]         # Membership
/// ```
pub fn load_ue_file(
    path: &Path,
    services: &BTreeMap<String, BTreeSet<u16>>,
) -> anyhow::Result<BTreeMap<String, ProvisionedUe>> {
    let context = || format!("UE file {}", path.display());
    let mut text = std::fs::read_to_string(path).with_context(context)?;
    let parsed = parse_ue_file(&text, services);
    text.zeroize();
    parsed.with_context(context)
}

/// [`load_ue_file`] on the file's text.
pub fn parse_ue_file(
    text: &str,
    services: &BTreeMap<String, BTreeSet<u16>>,
) -> anyhow::Result<BTreeMap<String, ProvisionedUe>> {
    let file: UeFile = toml::from_str(text)?;
    let mut out = BTreeMap::new();
    for (i, entry) in file.ue.iter().enumerate() {
        let mut bytes = hex::decode(&entry.ks_naf)
            .map_err(|e| anyhow::anyhow!("ue[{i}].ks_naf: not hex: {e}"))?;
        let ks_naf = KsNaf::from_slice(&bytes);
        bytes.zeroize();
        let ks_naf = ks_naf
            .ok_or_else(|| anyhow::anyhow!("ue[{i}].ks_naf: must be 32 bytes (64 hex digits)"))?;
        anyhow::ensure!(!entry.b_tid.is_empty(), "ue[{i}].b_tid: empty");
        if let Some(unknown) = entry.services.iter().find(|s| !services.contains_key(*s)) {
            anyhow::bail!("ue[{i}].services: {unknown:?} is not a configured User Service");
        }
        let ue = ProvisionedUe {
            sa: UeSecurityAssociation {
                b_tid: entry.b_tid.clone(),
                impi: entry.impi.clone(),
                ks_naf,
            },
            mikey_port: entry.mikey_port.unwrap_or(profile::UE_MSK_PORT),
            services: entry.services.iter().cloned().collect(),
        };
        anyhow::ensure!(
            out.insert(entry.b_tid.clone(), ue).is_none(),
            "ue[{i}].b_tid {:?} is listed twice",
            entry.b_tid
        );
    }
    Ok(out)
}
