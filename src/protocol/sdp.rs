//! SDP (RFC 4566) descriptions of the streaming sessions the gateway sends, for
//! whoever writes the service announcement (TS 26.346 §5.2.2: the User Service
//! Description points at one SDP per session).
//!
//! What goes in, following TS 26.346's SDP rules for MBMS sessions:
//! - one source in the session part, `a=source-filter: incl` with `*` as the
//!   destination (RFC 4570; TS 26.346 §7.3.2 asks for exactly this form for
//!   download sessions, §8.3.1 carries the rule over to streaming);
//!   required when the destination is a source-specific multicast group;
//! - per flow a media section `m=<media> <port> RTP/SAVP <payload type>`
//!   (RFC 3711 §12) with `c=` on the session's destination (TTL for IPv4);
//! - `b=AS` per flow and for the session, `b=RR:0` and `b=RS:` per flow
//!   (RFC 3556): MBMS switches RTCP receiver reports off (TS 26.346 §8.2),
//!   senders keep RTCP SR at the sender share of RFC 3550 §6.2 (1.25 % of the
//!   flow's bitrate);
//! - the key parameters a UE needs. TS 26.346 carries them in the User Service
//!   Description's security description, not in SDP, and RFC 6064 registers
//!   no 3GPP SDP attribute for them, so they go in two attributes of this
//!   gateway (receivers ignore attributes they do not know, RFC 4566 §5.13):
//!   `a=mbms-gateway-keys:` (Key Domain ID, Key Group, MIKEY port) in the
//!   session part and `a=mbms-gateway-srtp:` (suite, MKI length, ROC
//!   transmission) per flow.
//!
//! No `a=mbms-mode` (TS 26.346 §7.3.2.7): the TMGI is assigned by the MBMS
//! bearer set-up, which the gateway does not see.

use crate::protocol::keys::KeyDomainId;
use crate::protocol::profile::MIKEY_UDP_PORT;
use crate::protocol::srtp::{AuthTag, RocTransmission, SrtpConfig};
use core::net::IpAddr;
use std::fmt::Write;
use thiserror::Error;

/// Everything the description of one streaming session says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamingDescription {
    /// The session's name (`s=`).
    pub name: String,
    /// `o=` sess-version: must grow whenever the description changes
    /// (RFC 4566 §5.2); NTP seconds of the change are customary.
    pub version: u64,
    /// Multicast (or unicast) destination of every flow.
    pub destination: IpAddr,
    /// IPv4 multicast TTL (`c=` address suffix).
    pub ttl: u32,
    /// The address the gateway sends from, when known.
    pub source: Option<IpAddr>,
    pub key_domain: KeyDomainId,
    /// Key Group of the MSKs protecting the session's MTKs.
    pub key_group: u16,
    pub srtp: SrtpConfig,
    pub flows: Vec<FlowDescription>,
}

/// One RTP flow as a media section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlowDescription {
    /// `audio`, `video`, `text` or `application`.
    pub media: String,
    /// Destination UDP port (RTCP on port + 1, RFC 4566 §5.14).
    pub port: u16,
    /// RTP payload type, 0–127.
    pub payload_type: u8,
    /// `a=rtpmap` value after the payload type, e.g. `H264/90000`.
    pub rtpmap: Option<String>,
    /// `a=fmtp` value after the payload type.
    pub fmtp: Option<String>,
    /// Media bitrate in bit/s (`b=AS` in kbit/s, rounded up).
    pub bitrate: u64,
    /// `a=lang` (TS 26.346: service language per media).
    pub language: Option<String>,
}

/// Why a session cannot be described.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SdpError {
    #[error(
        "destination {0} is a source-specific multicast group: the description needs the sending address (set `interface`)"
    )]
    SsmWithoutSource(IpAddr),
    #[error("{field}: {value:?} cannot be written in SDP ({reason})")]
    BadText {
        field: &'static str,
        value: String,
        reason: &'static str,
    },
    #[error("payload_type: {0} is out of range (0–127)")]
    PayloadType(u8),
    #[error("media: {0:?} is not one of audio, video, text, application")]
    Media(String),
    #[error("a session needs at least one flow")]
    NoFlow,
}

/// Media types an RTP flow may be announced as (RFC 4566 §5.14).
pub const MEDIA_TYPES: [&str; 4] = ["audio", "video", "text", "application"];

/// SRTP crypto-suite names of RFC 4568 §6.2.
pub const fn suite_name(tag: AuthTag) -> &'static str {
    match tag {
        AuthTag::HmacSha1_80 => "AES_CM_128_HMAC_SHA1_80",
        AuthTag::HmacSha1_32 => "AES_CM_128_HMAC_SHA1_32",
    }
}

/// Whether `address` is in a source-specific multicast range (RFC 4607:
/// 232.0.0.0/8, FF3x::/32).
pub fn is_ssm(address: IpAddr) -> bool {
    match address {
        IpAddr::V4(a) => a.octets()[0] == 232,
        IpAddr::V6(a) => a.segments()[0] & 0xfff0 == 0xff30,
    }
}

/// `o=` sess-id: the same for a session name across restarts and reloads
/// (FNV-1a), so a UE sees one session whose version changes.
pub fn session_id(name: &str) -> u32 {
    name.bytes().fold(0x811c_9dc5_u32, |hash, byte| {
        (hash ^ u32::from(byte)).wrapping_mul(0x0100_0193)
    })
}

fn address_type(address: IpAddr) -> &'static str {
    match address {
        IpAddr::V4(_) => "IP4",
        IpAddr::V6(_) => "IP6",
    }
}

/// RFC 4566 `text`: no NUL, CR or LF; the single-token fields also no space.
fn checked<'a>(field: &'static str, value: &'a str, token: bool) -> Result<&'a str, SdpError> {
    let bad = |reason| SdpError::BadText {
        field,
        value: value.to_owned(),
        reason,
    };
    if value.is_empty() {
        return Err(bad("empty"));
    }
    if value.contains(['\0', '\r', '\n']) {
        return Err(bad("it holds a NUL, CR or LF"));
    }
    if token && value.contains(char::is_whitespace) {
        return Err(bad("it holds white space"));
    }
    Ok(value)
}

/// `b=AS` is in kilobits per second (RFC 4566 §5.8).
fn kbps(bits_per_second: u64) -> u64 {
    bits_per_second.div_ceil(1000)
}

/// RTCP SR bandwidth (`b=RS`, bit/s): RFC 3550 §6.2 gives RTCP 5 % of the
/// session bandwidth and senders a quarter of it.
pub fn rtcp_sender_bitrate(bitrate: u64) -> u64 {
    bitrate.div_ceil(80)
}

fn roc_parameters(roc: RocTransmission) -> String {
    match roc.rate() {
        Some(rate) => format!("roc={} roc-rate={rate}", roc.mode_name()),
        None => "roc=none".to_owned(),
    }
}

impl FlowDescription {
    /// Whether the media section can be written: a known media type, a
    /// payload type in range, text fields SDP can carry.
    pub fn validate(&self) -> Result<(), SdpError> {
        let media = checked("media", &self.media, true)?;
        if !MEDIA_TYPES.contains(&media) {
            return Err(SdpError::Media(media.to_owned()));
        }
        if self.payload_type > 127 {
            return Err(SdpError::PayloadType(self.payload_type));
        }
        if let Some(rtpmap) = &self.rtpmap {
            checked("rtpmap", rtpmap, true)?;
        }
        if let Some(fmtp) = &self.fmtp {
            checked("fmtp", fmtp, false)?;
        }
        if let Some(language) = &self.language {
            checked("language", language, true)?;
        }
        Ok(())
    }
}

impl StreamingDescription {
    /// The description as SDP text (CRLF line ends, RFC 4566 §5).
    pub fn to_sdp(&self) -> Result<String, SdpError> {
        if self.flows.is_empty() {
            return Err(SdpError::NoFlow);
        }
        for flow in &self.flows {
            flow.validate()?;
        }
        let name = checked("name", &self.name, false)?;
        let (source, destination) = (self.source, self.destination);
        if source.is_none() && is_ssm(destination) {
            return Err(SdpError::SsmWithoutSource(destination));
        }
        let connection = match destination {
            IpAddr::V4(a) if a.is_multicast() => format!("IN IP4 {a}/{}", self.ttl),
            a => format!("IN {} {a}", address_type(a)),
        };
        let origin = source.unwrap_or(match destination {
            IpAddr::V4(_) => IpAddr::from([0, 0, 0, 0]),
            IpAddr::V6(_) => IpAddr::from([0u16; 8]),
        });
        let mut sdp = String::new();
        let mut line = |text: std::fmt::Arguments| {
            sdp.write_fmt(text).expect("writing to a String");
            sdp.push_str("\r\n");
        };
        line(format_args!("v=0"));
        line(format_args!(
            "o=- {} {} IN {} {origin}",
            session_id(&self.name),
            self.version,
            address_type(origin)
        ));
        line(format_args!("s={name}"));
        line(format_args!(
            "i=MBMS streaming: SRTP under MTKs, MIKEY MTK messages to UDP port {MIKEY_UDP_PORT}"
        ));
        line(format_args!("c={connection}"));
        let total: u64 = self.flows.iter().map(|f| f.bitrate).sum();
        line(format_args!("b=AS:{}", kbps(total)));
        line(format_args!("t=0 0"));
        if let Some(source) = source {
            line(format_args!(
                "a=source-filter: incl IN {} * {source}",
                address_type(source)
            ));
        }
        let [a, b, c] = self.key_domain.0;
        line(format_args!(
            "a=mbms-gateway-keys:key-domain={a:02x}{b:02x}{c:02x} key-group={} mikey=udp/{MIKEY_UDP_PORT}",
            self.key_group
        ));
        for flow in &self.flows {
            let pt = flow.payload_type;
            line(format_args!("m={} {} RTP/SAVP {pt}", flow.media, flow.port));
            line(format_args!("b=AS:{}", kbps(flow.bitrate)));
            line(format_args!("b=RR:0"));
            line(format_args!("b=RS:{}", rtcp_sender_bitrate(flow.bitrate)));
            if let Some(rtpmap) = &flow.rtpmap {
                line(format_args!("a=rtpmap:{pt} {rtpmap}"));
            }
            if let Some(fmtp) = &flow.fmtp {
                line(format_args!("a=fmtp:{pt} {fmtp}"));
            }
            if let Some(language) = &flow.language {
                line(format_args!("a=lang:{language}"));
            }
            line(format_args!(
                "a=mbms-gateway-srtp:{} mki-length={} {}",
                suite_name(self.srtp.tag),
                self.srtp.mki_len,
                roc_parameters(self.srtp.roc)
            ));
        }
        Ok(sdp)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tv() -> StreamingDescription {
        StreamingDescription {
            name: "tv".into(),
            version: 3_974_000_000,
            destination: "232.1.2.3".parse().unwrap(),
            ttl: 16,
            source: Some("192.0.2.10".parse().unwrap()),
            key_domain: KeyDomainId([0x09, 0xf1, 0x07]),
            key_group: 1,
            srtp: SrtpConfig::mbms(),
            flows: vec![
                FlowDescription {
                    media: "video".into(),
                    port: 5004,
                    payload_type: 96,
                    rtpmap: Some("H264/90000".into()),
                    fmtp: Some("profile-level-id=42e01f; packetization-mode=1".into()),
                    bitrate: 4_000_000,
                    language: None,
                },
                FlowDescription {
                    media: "audio".into(),
                    port: 5006,
                    payload_type: 97,
                    rtpmap: Some("MP4A-LATM/48000/2".into()),
                    fmtp: None,
                    bitrate: 128_000,
                    language: Some("en".into()),
                },
            ],
        }
    }

    #[test]
    fn a_two_flow_ssm_session() {
        let expected = [
            "v=0",
            &format!("o=- {} 3974000000 IN IP4 192.0.2.10", session_id("tv")),
            "s=tv",
            "i=MBMS streaming: SRTP under MTKs, MIKEY MTK messages to UDP port 2269",
            "c=IN IP4 232.1.2.3/16",
            "b=AS:4128",
            "t=0 0",
            "a=source-filter: incl IN IP4 * 192.0.2.10",
            "a=mbms-gateway-keys:key-domain=09f107 key-group=1 mikey=udp/2269",
            "m=video 5004 RTP/SAVP 96",
            "b=AS:4000",
            "b=RR:0",
            "b=RS:50000",
            "a=rtpmap:96 H264/90000",
            "a=fmtp:96 profile-level-id=42e01f; packetization-mode=1",
            "a=mbms-gateway-srtp:AES_CM_128_HMAC_SHA1_80 mki-length=6 roc=rccm2 roc-rate=16",
            "m=audio 5006 RTP/SAVP 97",
            "b=AS:128",
            "b=RR:0",
            "b=RS:1600",
            "a=rtpmap:97 MP4A-LATM/48000/2",
            "a=lang:en",
            "a=mbms-gateway-srtp:AES_CM_128_HMAC_SHA1_80 mki-length=6 roc=rccm2 roc-rate=16",
            "",
        ]
        .join("\r\n");
        assert_eq!(tv().to_sdp().unwrap(), expected);
    }

    #[test]
    fn ipv6_and_plain_srtp() {
        let mut d = tv();
        d.destination = "ff3e::8000:1".parse().unwrap();
        d.source = Some("2001:db8::10".parse().unwrap());
        d.srtp.roc = RocTransmission::None;
        let sdp = d.to_sdp().unwrap();
        assert!(sdp.contains("\r\nc=IN IP6 ff3e::8000:1\r\n"), "{sdp}");
        assert!(sdp.contains("\r\na=source-filter: incl IN IP6 * 2001:db8::10\r\n"));
        assert!(sdp.contains("mki-length=6 roc=none\r\n"));
    }

    #[test]
    fn any_source_multicast_may_omit_the_source() {
        let mut d = tv();
        d.destination = "239.255.1.1".parse().unwrap();
        d.source = None;
        let sdp = d.to_sdp().unwrap();
        assert!(sdp.contains("\r\no=- "), "{sdp}");
        assert!(sdp.contains(" IN IP4 0.0.0.0\r\n"));
        assert!(!sdp.contains("source-filter"));
    }

    #[test]
    fn what_cannot_be_described_is_refused_by_name() {
        let mut d = tv();
        d.source = None;
        assert_eq!(
            d.to_sdp(),
            Err(SdpError::SsmWithoutSource("232.1.2.3".parse().unwrap()))
        );
        let mut d = tv();
        d.flows[0].fmtp = Some("a=1\r\na=evil".into());
        assert!(matches!(
            d.to_sdp(),
            Err(SdpError::BadText { field: "fmtp", .. })
        ));
        let mut d = tv();
        d.flows[1].rtpmap = Some("MP4A LATM".into());
        assert!(matches!(
            d.to_sdp(),
            Err(SdpError::BadText {
                field: "rtpmap",
                ..
            })
        ));
        let mut d = tv();
        d.flows[0].payload_type = 128;
        assert_eq!(d.to_sdp(), Err(SdpError::PayloadType(128)));
        let mut d = tv();
        d.flows[0].media = "image".into();
        assert_eq!(d.to_sdp(), Err(SdpError::Media("image".into())));
        let mut d = tv();
        d.flows.clear();
        assert_eq!(d.to_sdp(), Err(SdpError::NoFlow));
    }

    #[test]
    fn ssm_ranges() {
        for ssm in ["232.0.0.1", "232.255.255.255", "ff3e::1", "ff35::8000:1"] {
            assert!(is_ssm(ssm.parse().unwrap()), "{ssm}");
        }
        for asm in ["239.255.1.1", "224.0.0.1", "ff0e::1", "192.0.2.1"] {
            assert!(!is_ssm(asm.parse().unwrap()), "{asm}");
        }
    }
}
