//! The SDP the gateway writes, read by an independent parser (Mozilla's
//! `webrtc-sdp`, the one Firefox uses): every line parses, and what it reads
//! back is what the configuration says.

use mbms_gateway::gateway::config::GatewayConfig;
use webrtc_sdp::attribute_type::SdpAttributeType;
use webrtc_sdp::media_type::{SdpFormatList, SdpMediaValue, SdpProtocolValue};
use webrtc_sdp::parse_sdp;

#[test]
fn the_example_sessions_sdp_parses_and_reads_back() {
    let config = GatewayConfig::parse(include_str!("../deploy/gateway.example.toml")).unwrap();
    let text = config.streaming[0]
        .sdp(config.bmsc.key_domain_id, 4_005_660_295)
        .unwrap();
    let sdp = parse_sdp(&text, false).unwrap_or_else(|e| panic!("{e}\n{text}"));
    // The only lines it skips are attributes it does not implement: the two
    // of this gateway, and RFC 4570 source filters and RFC 4566 `lang`,
    // which a WebRTC stack has no use for.
    let unknown = [
        "mbms-gateway-keys",
        "mbms-gateway-srtp",
        "source-filter",
        "lang",
    ];
    for warning in &sdp.warnings {
        let line = warning.to_string();
        assert!(unknown.iter().any(|a| line.contains(a)), "{line}");
    }
    assert_eq!(sdp.get_session_text(), "news");
    assert_eq!(sdp.get_origin().session_version, 4_005_660_295);
    let connection = sdp.get_connection().as_ref().expect("a session c= line");
    assert_eq!(connection.address.to_string(), "IN IP4 239.10.0.1");
    assert_eq!(connection.ttl, Some(16));

    assert_eq!(sdp.media.len(), 2);
    let expected = [
        (SdpMediaValue::Video, 5004, 96, 4000, 50_000),
        (SdpMediaValue::Audio, 5006, 97, 128, 1_600),
    ];
    for (media, (kind, port, pt, kbit, rs)) in sdp.media.iter().zip(expected) {
        assert_eq!(*media.get_type(), kind);
        assert_eq!(media.get_port(), port);
        assert_eq!(*media.get_proto(), SdpProtocolValue::RtpSavp);
        assert!(
            matches!(media.get_formats(), SdpFormatList::Integers(f) if *f == [pt]),
            "{:?}",
            media.get_formats()
        );
        let bandwidth: Vec<String> = media
            .get_bandwidth()
            .iter()
            .map(|b| b.to_string())
            .collect();
        assert_eq!(
            bandwidth,
            [format!("AS:{kbit}"), "RR:0".into(), format!("RS:{rs}")]
        );
        let rtpmap = media.get_attribute(SdpAttributeType::Rtpmap).unwrap();
        assert!(
            rtpmap.to_string().starts_with(&format!("rtpmap:{pt} ")),
            "{rtpmap}"
        );
    }
}
