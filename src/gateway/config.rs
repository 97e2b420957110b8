//! Gateway configuration (`mbms-gateway run --config FILE`): strict TOML, every
//! unknown key an error with its line, validated into typed settings before
//! anything is sent. `deploy/gateway.toml` documents every field.

use super::download::DownloadSession;
use super::download::ingest::PushConfig;
use crate::gateway::streaming::ingest_workers::IngestSettings;
use crate::protocol::keys::KeyDomainId;
use crate::protocol::mtk_schedule::MtkTiming;
use crate::protocol::profile::MIKEY_UDP_PORT;
use crate::protocol::sdp::{FlowDescription, SdpError, StreamingDescription};
use crate::protocol::srtp::{RocSettingError, RocTransmission, SrtpConfig};
use crate::runtime::admin::AdminConfig;
use crate::runtime::config_lines;
use crate::runtime::key_service::ConfigError;
use crate::runtime::key_service::MskClientConfig;
use crate::runtime::units;
use anyhow::{Context, Result, bail, ensure};
use serde::Deserialize;
use std::collections::{BTreeMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GatewayConfig {
    /// Directory of the key journal (MTK IDs and MIKEY counters).
    pub state_dir: PathBuf,
    /// Name of this instance, sent to the BM-SC with lease requests.
    pub instance_id: String,
    /// The BM-SC connection; `key_groups` and `client_id` come from the
    /// sessions and `instance_id`.
    pub bmsc: MskClientConfig,
    /// MTK IDs and MIKEY counters leased from the BM-SC per request.
    #[serde(default = "default_lease_block")]
    pub lease_block: u16,
    /// The HTTP endpoint for `/metrics`, `/healthz` and `/readyz`.
    #[serde(default)]
    pub admin: AdminConfig,
    /// The workers that run the streaming sessions' ingest.
    #[serde(default)]
    pub ingest: IngestSettings,
    #[serde(default)]
    pub streaming: Vec<StreamingSession>,
    #[serde(default)]
    pub download: Vec<DownloadSession>,
    /// The HTTP push endpoint of download sessions (none when unset).
    pub push: Option<PushConfig>,
}

/// One streaming session: RTP flows in, SRTP to one multicast destination,
/// MIKEY MTK messages to the same address on UDP 2269 (TS 33.246 §6.3.3.2.2).
/// All flows of a session (e.g. audio and video) share its MTKs, as UEs keep one
/// MTK state per MSK.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StreamingSession {
    pub name: String,
    /// Key Group of the MSK that protects the MTKs (MSK ID bytes 0–1).
    pub key_group: u16,
    /// Destination address (multicast group or unicast) of SRTP and MIKEY.
    pub destination: IpAddr,
    /// Local address of the egress interface (IPv4) or interface index (IPv6).
    pub interface: Option<IpAddr>,
    #[serde(default)]
    pub interface_index: u32,
    /// Multicast TTL / hop limit.
    #[serde(default = "default_ttl")]
    pub ttl: u32,
    /// DSCP (0–63) for SRTP and MIKEY packets.
    #[serde(default)]
    pub dscp: u8,
    #[serde(default)]
    pub mtk: MtkSettings,
    #[serde(default)]
    pub srtp: SrtpSettings,
    #[serde(rename = "flow")]
    pub flows: Vec<Flow>,
}

/// `[streaming.srtp]`: how the session's SRTP packets carry the ROC, so a
/// UE tuning in at any time can decrypt (RFC 4771; the profile's choice is
/// [`crate::protocol::profile::srtp::ROC_TRANSMISSION`]).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SrtpSettings {
    /// "none", "rccm1", "rccm2" or "rccm3" (default: the profile's, rccm2).
    pub roc_transmission: Option<String>,
    /// R: a packet whose SEQ is 0 mod R carries the ROC (default 16).
    pub roc_rate: Option<u16>,
}

impl SrtpSettings {
    /// The ROC transmission these settings name.
    pub fn roc(&self) -> Result<RocTransmission, RocSettingError> {
        RocTransmission::from_setting(self.roc_transmission.as_deref(), self.roc_rate)
    }

    /// The session's SRTP configuration: the MBMS profile with this ROC
    /// transmission, for `max_streams` SSRCs.
    pub fn srtp_config(&self, max_streams: usize) -> Result<SrtpConfig, RocSettingError> {
        Ok(SrtpConfig {
            roc: self.roc()?,
            max_streams,
            ..SrtpConfig::mbms()
        })
    }
}

fn default_ttl() -> u32 {
    16
}

/// One RTP flow of a streaming session.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Flow {
    /// Name in metrics (`input` label); `flow0`, `flow1`, ... when unset.
    pub name: Option<String>,
    /// Where the encoder sends RTP: a local `addr:port`, or a multicast
    /// `group:port` to join.
    pub ingest: SocketAddr,
    /// Source address for source-specific multicast ingest.
    pub ingest_source: Option<IpAddr>,
    /// Local interface address for multicast ingest (IPv4).
    pub ingest_interface: Option<IpAddr>,
    /// Egress UDP port at the session's destination.
    pub port: u16,
    /// How the flow is announced in the session's SDP
    /// (`/sessions/NAME/sdp`, `mbms-gateway sdp`).
    pub sdp: Option<FlowSdp>,
}

/// `sdp = { ... }` of a flow: what the gateway cannot learn from the RTP it
/// forwards (see [`crate::protocol::sdp`]).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FlowSdp {
    /// `audio`, `video`, `text` or `application`.
    pub media: String,
    /// The RTP payload type the encoder sends (0–127).
    pub payload_type: u8,
    /// `a=rtpmap` after the payload type, e.g. "H264/90000".
    pub rtpmap: Option<String>,
    /// `a=fmtp` after the payload type.
    pub fmtp: Option<String>,
    /// The flow's bitrate (`b=AS`), e.g. "4Mbit".
    #[serde(deserialize_with = "units::bitrate")]
    pub bitrate: u64,
    /// `a=lang`, e.g. "en".
    pub language: Option<String>,
}

impl FlowSdp {
    /// The media section of the flow sent to `port`.
    pub fn describe(&self, port: u16) -> FlowDescription {
        FlowDescription {
            media: self.media.clone(),
            port,
            payload_type: self.payload_type,
            rtpmap: self.rtpmap.clone(),
            fmtp: self.fmtp.clone(),
            bitrate: self.bitrate,
            language: self.language.clone(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MtkSettings {
    #[serde(default = "d_period", deserialize_with = "units::duration")]
    pub period: Duration,
    pub max_packets: Option<u64>,
    #[serde(default = "d_lead", deserialize_with = "units::duration")]
    pub lead: Duration,
    #[serde(default = "d_resend", deserialize_with = "units::duration")]
    pub resend: Duration,
    #[serde(default = "d_retire", deserialize_with = "units::duration")]
    pub retire_after: Duration,
}

fn default_lease_block() -> u16 {
    64
}

fn d_period() -> Duration {
    Duration::from_secs(60)
}
fn d_lead() -> Duration {
    Duration::from_secs(3)
}
fn d_resend() -> Duration {
    Duration::from_secs(1)
}
fn d_retire() -> Duration {
    Duration::from_secs(2)
}

impl Default for MtkSettings {
    fn default() -> Self {
        Self {
            period: d_period(),
            max_packets: None,
            lead: d_lead(),
            resend: d_resend(),
            retire_after: d_retire(),
        }
    }
}

impl MtkSettings {
    pub fn timing(&self) -> MtkTiming {
        MtkTiming {
            period: self.period,
            max_packets: self.max_packets,
            lead: self.lead,
            resend: self.resend,
            retire_after: self.retire_after,
            retry: Duration::from_millis(500),
        }
    }
}

impl MtkSettings {
    /// Checks the schedule; `at` names the session in errors.
    pub fn validate(&self, at: &str) -> Result<()> {
        ensure!(!self.period.is_zero(), "{at}.mtk.period: must be above 0");
        ensure!(
            self.lead < self.period,
            "{at}.mtk.lead: must be shorter than mtk.period"
        );
        ensure!(!self.resend.is_zero(), "{at}.mtk.resend: must be above 0");
        ensure!(
            self.max_packets != Some(0),
            "{at}.mtk.max_packets: must be above 0"
        );
        Ok(())
    }
}

/// Checks the egress settings every session kind has.
pub fn validate_egress(at: &str, destination: IpAddr, ttl: u32, dscp: u8) -> Result<()> {
    ensure!(dscp < 64, "{at}.dscp: {dscp} is not a DSCP value (0-63)");
    ensure!(ttl <= 255, "{at}.ttl: {ttl} is over 255");
    ensure!(
        !destination.is_unspecified(),
        "{at}.destination: unspecified address"
    );
    Ok(())
}

/// Why a streaming session has no SDP description.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DescribeError {
    #[error("`{0}` is a download session; only streaming sessions have an SDP description")]
    Download(String),
    #[error("no streaming session `{name}` (there are: {})", known.join(", "))]
    Unknown { name: String, known: Vec<String> },
    #[error(
        "flow `{0}` has no `sdp` table: its media, payload type and bitrate are not configured"
    )]
    Undescribed(String),
    #[error(transparent)]
    Sdp(#[from] SdpError),
    #[error(transparent)]
    Roc(#[from] RocSettingError),
}

impl GatewayConfig {
    /// The streaming session `name`, to describe.
    pub fn streaming_session(&self, name: &str) -> Result<&StreamingSession, DescribeError> {
        if self.download.iter().any(|s| s.name == name) {
            return Err(DescribeError::Download(name.into()));
        }
        self.streaming
            .iter()
            .find(|s| s.name == name)
            .ok_or_else(|| DescribeError::Unknown {
                name: name.into(),
                known: self.streaming.iter().map(|s| s.name.clone()).collect(),
            })
    }
}

impl StreamingSession {
    /// The session as an SDP description at `version` (see
    /// [`crate::protocol::sdp`]); the sending address is `interface`.
    pub fn description(
        &self,
        key_domain: KeyDomainId,
        version: u64,
    ) -> Result<StreamingDescription, DescribeError> {
        let flows = self
            .flows
            .iter()
            .enumerate()
            .map(|(i, f)| match &f.sdp {
                Some(sdp) => Ok(sdp.describe(f.port)),
                None => Err(DescribeError::Undescribed(f.label(i))),
            })
            .collect::<Result<_, _>>()?;
        Ok(StreamingDescription {
            name: self.name.clone(),
            version,
            destination: self.destination,
            ttl: self.ttl,
            source: self.interface,
            key_domain,
            key_group: self.key_group,
            srtp: self.srtp.srtp_config(1)?,
            flows,
        })
    }

    /// The session as SDP text at `version`.
    pub fn sdp(&self, key_domain: KeyDomainId, version: u64) -> Result<String, DescribeError> {
        Ok(self.description(key_domain, version)?.to_sdp()?)
    }

    /// A session describes all its flows or none; what it describes must be
    /// writable as SDP. Errors name the field.
    fn validate_description(&self, at: &str, key_domain: KeyDomainId) -> Result<()> {
        let described = self.flows.iter().filter(|f| f.sdp.is_some()).count();
        if described == 0 {
            return Ok(());
        }
        for (j, f) in self.flows.iter().enumerate() {
            match &f.sdp {
                Some(sdp) => sdp
                    .describe(f.port)
                    .validate()
                    .map_err(|e| anyhow::anyhow!("{at}.flow[{j}].sdp: {e}"))?,
                None => bail!(
                    "{at}.flow[{j}].sdp: missing; when one flow of a session is described, every flow must be"
                ),
            }
        }
        match self.sdp(key_domain, 0) {
            Ok(_) => Ok(()),
            Err(e @ DescribeError::Sdp(SdpError::SsmWithoutSource(_))) => {
                bail!("{at}.interface: {e}")
            }
            Err(e) => bail!("{at}: {e}"),
        }
    }
}

impl Flow {
    /// The `input` label of the flow at `index`.
    pub fn label(&self, index: usize) -> String {
        self.name.clone().unwrap_or_else(|| format!("flow{index}"))
    }
}

impl GatewayConfig {
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading config {}", path.display()))?;
        Self::parse(&text).with_context(|| format!("config {}", path.display()))
    }

    /// Parses and validates; errors name the field and its line (toml's span
    /// for syntax, type and unknown-key errors; the field path looked up in
    /// the document for validation errors, see [`config_lines`]).
    pub fn parse(text: &str) -> Result<Self> {
        let mut config: Self = toml::from_str(text).map_err(|e| anyhow::anyhow!("{e}"))?;
        // Both are derived below; a value written in the file would be
        // silently replaced, so it is refused instead.
        if !config.bmsc.key_groups.is_empty() {
            bail!(config_lines::with_line(
                text,
                "bmsc.key_groups: not set here; it is the set of the sessions' key_group"
            ));
        }
        if !config.bmsc.client_id.is_empty() {
            bail!(config_lines::with_line(
                text,
                "bmsc.client_id: not set here; the gateway sends instance_id"
            ));
        }
        config.bmsc.client_id = config.instance_id.clone();
        config.bmsc.key_groups = config
            .streaming
            .iter()
            .map(|s| s.key_group)
            .chain(config.download.iter().map(|d| d.key_group))
            .collect();
        config
            .validate()
            .map_err(|e| anyhow::anyhow!(config_lines::with_line(text, &e.to_string())))?;
        Ok(config)
    }

    fn validate(&self) -> Result<()> {
        ensure!(
            !self.instance_id.is_empty(),
            "instance_id: must not be empty"
        );
        ensure!(self.lease_block > 0, "lease_block: must be at least 1");
        self.ingest.validate().map_err(anyhow::Error::msg)?;
        let mut names = HashSet::new();
        let mut groups: BTreeMap<u16, &str> = BTreeMap::new();
        let mut egress = HashSet::new();
        let mut ingest = HashSet::new();
        for (i, s) in self.streaming.iter().enumerate() {
            let at = format!("streaming[{i}]");
            ensure!(!s.name.is_empty(), "streaming[{i}].name: must not be empty");
            ensure!(
                names.insert(s.name.as_str()),
                "{at}.name: duplicate session name `{}`",
                s.name
            );
            if let Some(other) = groups.insert(s.key_group, &s.name) {
                bail!(
                    "{at}.key_group: {} is also used by session `{other}`; UEs keep one MTK state per MSK, so put both flows in one session",
                    s.key_group
                );
            }
            validate_egress(&at, s.destination, s.ttl, s.dscp)?;
            ensure!(
                !s.flows.is_empty(),
                "{at}.flow: a session needs at least one flow"
            );
            s.mtk.validate(&at)?;
            s.srtp.roc().map_err(|e| {
                let field = match e {
                    RocSettingError::UnknownMode(_) => "roc_transmission",
                    RocSettingError::ZeroRate | RocSettingError::RateWithoutRcc => "roc_rate",
                };
                anyhow::anyhow!("{at}.srtp.{field}: {e}")
            })?;
            ensure!(
                egress.insert((s.destination, MIKEY_UDP_PORT)),
                "{at}.destination: {}:{MIKEY_UDP_PORT} (MIKEY) is used by another session",
                s.destination
            );
            s.validate_description(&at, self.bmsc.key_domain_id)?;
            let mut labels = HashSet::new();
            for (j, f) in s.flows.iter().enumerate() {
                // The label names the flow's metrics and carries its counters
                // across a restart: two flows must not share one.
                let label = f.label(j);
                ensure!(
                    labels.insert(label.clone()),
                    "{at}.flow[{j}].name: `{label}` names another flow of the session"
                );
                ensure!(f.port != 0, "{at}.flow[{j}].port: must not be 0");
                ensure!(
                    f.port != MIKEY_UDP_PORT,
                    "{at}.flow[{j}].port: {MIKEY_UDP_PORT} is reserved for MIKEY"
                );
                ensure!(
                    egress.insert((s.destination, f.port)),
                    "{at}.flow[{j}].port: duplicate destination {}:{}",
                    s.destination,
                    f.port
                );
                ensure!(
                    f.ingest.port() != 0,
                    "{at}.flow[{j}].ingest: port must not be 0"
                );
                ensure!(
                    ingest.insert(f.ingest),
                    "{at}.flow[{j}].ingest: {} is used twice",
                    f.ingest
                );
                if f.ingest_source.is_some() {
                    ensure!(
                        f.ingest.ip().is_multicast(),
                        "{at}.flow[{j}].ingest_source: only for a multicast ingest address"
                    );
                }
            }
        }
        for (i, d) in self.download.iter().enumerate() {
            let at = format!("download[{i}]");
            d.validate(&at)?;
            ensure!(
                names.insert(d.name.as_str()),
                "{at}.name: duplicate session name `{}`",
                d.name
            );
            if let Some(other) = groups.insert(d.key_group, &d.name) {
                bail!(
                    "{at}.key_group: {} is also used by session `{other}`; MTK IDs under one MSK must rise across everything a UE receives, so each Key Group belongs to one session",
                    d.key_group
                );
            }
            ensure!(
                egress.insert((d.destination, d.port)),
                "{at}.port: duplicate destination {}:{}",
                d.destination,
                d.port
            );
        }
        self.admin.validate()?;
        if let Some(push) = &self.push {
            push.load_token()
                .map_err(|e| anyhow::anyhow!("push: {e}"))?;
        }
        self.bmsc.validate().map_err(|e| match e {
            ConfigError::Invalid { field, reason } => anyhow::anyhow!("bmsc.{field}: {reason}"),
            other => anyhow::anyhow!("bmsc: {other}"),
        })?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
state_dir = "/tmp/x"
instance_id = "gw-a"
[bmsc]
endpoint = "http://127.0.0.1:50051"
key_domain_id = "64f000"
[[streaming]]
name = "tv"
key_group = 1
destination = "239.1.1.1"
interface = "127.0.0.1"
mtk = { period = "10s", lead = "2s", resend = "500ms" }
[[streaming.flow]]
ingest = "127.0.0.1:5004"
port = 5004
"#;

    fn err(text: &str) -> String {
        format!("{:#}", GatewayConfig::parse(text).unwrap_err())
    }

    #[test]
    fn deploy_example_parses() {
        let c = GatewayConfig::parse(include_str!("../../deploy/gateway.example.toml")).unwrap();
        assert_eq!(c.streaming[0].flows.len(), 2);
        assert_eq!(c.bmsc.key_groups, vec![1, 2]);
        assert_eq!(c.download[0].bitrate, 20_000_000);
        assert_eq!(c.download[0].max_object_size, 2 << 30);
        assert!(c.download[0].watch.is_some() && c.push.is_some());
        assert!(c.bmsc.tls.as_ref().unwrap().cert_file.is_some());
        let sdp = c.streaming[0].sdp(c.bmsc.key_domain_id, 1).unwrap();
        assert!(sdp.contains("\r\nm=video 5004 RTP/SAVP 96\r\n"), "{sdp}");
        assert!(sdp.contains("\r\nm=audio 5006 RTP/SAVP 97\r\n"), "{sdp}");
    }

    #[test]
    fn good_config_parses() {
        let c = GatewayConfig::parse(GOOD).unwrap();
        assert_eq!(c.bmsc.key_domain_id.0, [0x64, 0xf0, 0]);
        assert_eq!(c.bmsc.key_groups, vec![1]);
        assert_eq!(c.bmsc.client_id, "gw-a");
        assert_eq!(c.streaming[0].mtk.period, Duration::from_secs(10));
        assert_eq!(c.streaming[0].mtk.resend, Duration::from_millis(500));
        assert_eq!(c.streaming[0].flows[0].port, 5004);
    }

    #[test]
    fn unknown_key_names_key_and_line() {
        let e = err(&GOOD.replace("port = 5004", "port = 5004\nprot = 1"));
        assert!(e.contains("prot") && e.contains("line 16"), "{e}");
    }

    #[test]
    fn bad_address_names_field() {
        let e = err(&GOOD.replace("239.1.1.1", "239.1.1"));
        assert!(e.contains("destination") && e.contains("line"), "{e}");
    }

    #[test]
    fn bad_period_names_the_value() {
        let e = err(&GOOD.replace("\"10s\"", "\"10\""));
        assert!(e.contains("no unit") && e.contains("period"), "{e}");
        let e = err(&GOOD.replace("lead = \"2s\"", "lead = \"20s\""));
        assert!(e.contains("mtk.lead"), "{e}");
    }

    #[test]
    fn duplicate_destination_and_key_group_are_rejected() {
        let two_flows =
            GOOD.to_string() + "[[streaming.flow]]\ningest = \"127.0.0.1:5006\"\nport = 5004\n";
        let e = err(&two_flows);
        assert!(e.contains("duplicate destination 239.1.1.1:5004"), "{e}");
        let second = GOOD.to_string()
            + "[[streaming]]\nname = \"radio\"\nkey_group = 1\ndestination = \"239.1.1.2\"\n[[streaming.flow]]\ningest = \"127.0.0.1:5008\"\nport = 5004\n";
        let e = err(&second);
        assert!(e.contains("key_group") && e.contains("`tv`"), "{e}");
    }

    #[test]
    fn bad_key_domain_id() {
        let e = err(&GOOD.replace("64f000", "64f0"));
        assert!(e.contains("a Key Domain ID is 3"), "{e}");
    }
}
