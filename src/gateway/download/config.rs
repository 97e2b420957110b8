//! Configuration of one download session (`[[download]]` in the gateway
//! config): objects in from a watch folder or HTTP push, each protected as an
//! OMA DCF and sent over FLUTE to one destination (TS 26.346 §7, TS 33.246
//! §6.6).

use super::ingest::WatchConfig;
use crate::gateway::config::{MtkSettings, validate_egress};
use crate::protocol::dcf::EncryptionMethod;
use crate::protocol::flute::carousel::CarouselConfig;
use crate::protocol::flute::fdt::FdtTemplate;
use crate::protocol::flute::fec::FecScheme;
use crate::protocol::flute::object_sender::DEFAULT_MAX_SOURCE_BLOCK_LENGTH;
use crate::protocol::flute::toi::DEFAULT_MAX_TOI;
use crate::runtime::units;
use anyhow::{Context, Result, ensure};
use serde::Deserialize;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The FDT template used when a session names none.
pub const DEFAULT_FDT_TEMPLATE: &str = include_str!("../../../fdt-templates/3gpp-rel12.xml");

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DownloadSession {
    pub name: String,
    /// Key Group of the MSK that protects the MTKs (MSK ID bytes 0–1).
    pub key_group: u16,
    /// Destination address (multicast group or unicast) of the FLUTE session.
    pub destination: IpAddr,
    /// Destination UDP port.
    pub port: u16,
    /// Transport Session Identifier (16 bits in the MBMS profile).
    pub tsi: u16,
    /// Local address of the egress interface (IPv4) or interface index (IPv6).
    pub interface: Option<IpAddr>,
    #[serde(default)]
    pub interface_index: u32,
    /// Multicast TTL / hop limit.
    #[serde(default = "default_ttl")]
    pub ttl: u32,
    /// DSCP (0–63).
    #[serde(default)]
    pub dscp: u8,
    /// Sending rate of the session (every packet: FDT, MIKEY and objects).
    #[serde(deserialize_with = "units::bitrate")]
    pub bitrate: u64,
    /// Largest UDP payload sent, e.g. 1428 for a 1500-byte MTU with headroom.
    #[serde(default = "default_max_packet")]
    pub max_packet: usize,
    #[serde(default)]
    pub fec: FecSettings,
    #[serde(default)]
    pub carousel: CarouselSettings,
    /// FDT-Instance template; the built-in 3GPP Rel-12 one when unset.
    pub fdt_template: Option<PathBuf>,
    /// Content encryption of the DCF (`aes-128-cbc`, the OMA DRM v2 default,
    /// or `aes-128-ctr`).
    #[serde(default)]
    pub encryption: Encryption,
    /// Content-MD5 of each object in the FDT (RFC 3926 §3.4.2: optional). It
    /// lets receivers check what they reassembled; computing it costs a pass
    /// over every byte, so a session at the edge of its CPU may turn it off.
    #[serde(default = "default_true")]
    pub content_md5: bool,
    /// Largest object accepted (source bytes); larger ones are refused.
    #[serde(default = "default_max_object", deserialize_with = "units::size")]
    pub max_object_size: u64,
    /// The MTK schedule; only the period matters (no packet count).
    #[serde(default)]
    pub mtk: MtkSettings,
    /// Files completed in this folder go on air.
    pub watch: Option<WatchConfig>,
    /// Accept objects over the gateway's HTTP push endpoint (`[push]`).
    #[serde(default = "default_true")]
    pub push: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Encryption {
    #[default]
    #[serde(rename = "aes-128-cbc")]
    Aes128Cbc,
    #[serde(rename = "aes-128-ctr")]
    Aes128Ctr,
}

impl Encryption {
    pub fn method(self) -> EncryptionMethod {
        match self {
            Self::Aes128Cbc => EncryptionMethod::Aes128Cbc,
            Self::Aes128Ctr => EncryptionMethod::Aes128Ctr,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FecKind {
    /// Compact No-Code (FEC Encoding ID 0): source symbols only.
    #[default]
    NoCode,
    /// Raptor (FEC Encoding ID 1, RFC 5053), the scheme TS 26.346 mandates.
    Raptor,
    /// RaptorQ (FEC Encoding ID 6, RFC 6330).
    Raptorq,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FecSettings {
    #[serde(default)]
    pub scheme: FecKind,
    /// Repair symbols per block as a fraction of its source symbols
    /// (Raptor, RaptorQ).
    #[serde(default = "default_overhead")]
    pub repair_overhead: f32,
    /// Encoding symbol length; the largest that fits `max_packet` when unset.
    pub symbol_length: Option<u16>,
    /// Symbols per source block at most.
    #[serde(default = "default_block_length")]
    pub max_source_block_length: u32,
}

impl Default for FecSettings {
    fn default() -> Self {
        Self {
            scheme: FecKind::NoCode,
            repair_overhead: default_overhead(),
            symbol_length: None,
            max_source_block_length: default_block_length(),
        }
    }
}

impl FecSettings {
    pub fn scheme(&self) -> FecScheme {
        let repair_overhead = self.repair_overhead;
        match self.scheme {
            FecKind::NoCode => FecScheme::CompactNoCode,
            FecKind::Raptor => FecScheme::Raptor { repair_overhead },
            FecKind::Raptorq => FecScheme::RaptorQ { repair_overhead },
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CarouselSettings {
    /// Longest time between two FDT Instances.
    #[serde(default = "default_fdt_interval", deserialize_with = "units::duration")]
    pub fdt_interval: Duration,
    /// FDT `Expires` = now + this; more than twice `fdt_interval`.
    #[serde(default = "default_fdt_lifetime", deserialize_with = "units::duration")]
    pub fdt_lifetime: Duration,
    /// Times each FDT Instance is sent in a row: on a lossy path an object
    /// sent once with FEC is only usable if its FDT entry arrives.
    #[serde(default = "default_fdt_copies")]
    pub fdt_copies: u32,
    /// Transmissions of each object (a repeat recovers loss with any FEC).
    #[serde(default = "default_repetitions")]
    pub repetitions: u32,
    /// Instead of a count: each object stays on air this long (e.g. a DASH
    /// segment for its time-shift window).
    #[serde(default, deserialize_with = "optional_duration")]
    pub object_lifetime: Option<Duration>,
    /// Largest TOI before wrapping to 1.
    #[serde(default = "default_max_toi")]
    pub max_toi: u64,
}

impl Default for CarouselSettings {
    fn default() -> Self {
        Self {
            fdt_interval: default_fdt_interval(),
            fdt_lifetime: default_fdt_lifetime(),
            fdt_copies: default_fdt_copies(),
            repetitions: default_repetitions(),
            object_lifetime: None,
            max_toi: default_max_toi(),
        }
    }
}

impl CarouselSettings {
    pub fn carousel_config(&self) -> CarouselConfig {
        CarouselConfig {
            fdt_interval: self.fdt_interval,
            fdt_lifetime_s: self.fdt_lifetime.as_secs().min(u64::from(u32::MAX)) as u32,
            max_toi: u128::from(self.max_toi),
            first_fdt_instance_id: 0,
        }
    }
}

fn optional_duration<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    units::duration(d).map(Some)
}

fn default_ttl() -> u32 {
    16
}
fn default_max_packet() -> usize {
    1428
}
fn default_max_object() -> u64 {
    4 << 30
}
fn default_true() -> bool {
    true
}
fn default_overhead() -> f32 {
    0.25
}
fn default_block_length() -> u32 {
    DEFAULT_MAX_SOURCE_BLOCK_LENGTH
}
fn default_fdt_interval() -> Duration {
    Duration::from_secs(1)
}
fn default_fdt_lifetime() -> Duration {
    Duration::from_secs(60)
}
fn default_fdt_copies() -> u32 {
    2
}
fn default_repetitions() -> u32 {
    3
}
fn default_max_toi() -> u64 {
    DEFAULT_MAX_TOI as u64
}

impl DownloadSession {
    /// The FDT template: the configured file, or the built-in one.
    pub fn load_template(&self) -> Result<FdtTemplate> {
        match &self.fdt_template {
            Some(path) => load_template(path),
            None => Ok(FdtTemplate::parse(
                "3gpp-rel12.xml (built in)",
                DEFAULT_FDT_TEMPLATE,
            )?),
        }
    }

    /// Checks what serde cannot; `at` names the session in errors.
    pub fn validate(&self, at: &str) -> Result<()> {
        ensure!(!self.name.is_empty(), "{at}.name: must not be empty");
        ensure!(self.port != 0, "{at}.port: must not be 0");
        ensure!(
            self.port != crate::protocol::profile::MIKEY_UDP_PORT,
            "{at}.port: {} is reserved for MIKEY",
            self.port
        );
        ensure!(self.bitrate > 0, "{at}.bitrate: must be above 0");
        validate_egress(at, self.destination, self.ttl, self.dscp)?;
        ensure!(
            (576..=65_507).contains(&self.max_packet),
            "{at}.max_packet: {} is outside 576..=65507",
            self.max_packet
        );
        ensure!(
            self.max_object_size > 0,
            "{at}.max_object_size: must be above 0"
        );
        let f = &self.fec;
        ensure!(
            f.repair_overhead.is_finite() && (0.0..=10.0).contains(&f.repair_overhead),
            "{at}.fec.repair_overhead: {} is not in 0..=10",
            f.repair_overhead
        );
        ensure!(
            f.symbol_length != Some(0),
            "{at}.fec.symbol_length: must be above 0"
        );
        ensure!(
            f.max_source_block_length > 0,
            "{at}.fec.max_source_block_length: must be above 0"
        );
        let c = &self.carousel;
        ensure!(
            c.repetitions > 0,
            "{at}.carousel.repetitions: must be above 0"
        );
        ensure!(c.max_toi > 0, "{at}.carousel.max_toi: must be above 0");
        ensure!(
            c.object_lifetime.is_none_or(|d| !d.is_zero()),
            "{at}.carousel.object_lifetime: must be above 0"
        );
        crate::protocol::flute::carousel::Carousel::new(
            c.carousel_config(),
            std::time::Instant::now(),
        )
        .map_err(|e| anyhow::anyhow!("{at}.carousel: {e}"))?;
        self.mtk.validate(at)?;
        let m = &self.mtk;
        ensure!(
            m.max_packets.is_none(),
            "{at}.mtk.max_packets: a download session switches MTKs by period only"
        );
        self.load_template()
            .with_context(|| format!("{at}.fdt_template"))?;
        Ok(())
    }
}

fn load_template(path: &Path) -> Result<FdtTemplate> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading FDT template {}", path.display()))?;
    Ok(FdtTemplate::parse(&path.display().to_string(), &text)?)
}
