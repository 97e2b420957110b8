//! The streaming path end to end on loopback: a reference BM-SC over real gRPC,
//! the gateway's ingest, SRTP and MIKEY on real multicast sockets, and what a
//! receiver captures from the group.

mod common;

use common::gateway::*;
use common::libsrtp::{MasterKey, open_mbms_capture, run_peer};
use mbms_gateway::gateway::Gateway;
use mbms_gateway::gateway::config::GatewayConfig;
use mbms_gateway::gateway::streaming::SessionState;
use mbms_gateway::protocol::profile::MIKEY_UDP_PORT;
use mbms_gateway::protocol::srtp::AuthTag;
use mbms_gateway::runtime::metrics::labels::DropReason;
use std::net::{Ipv4Addr, UdpSocket};
use std::time::Duration;

struct Running {
    bmsc: mbms_gateway::bmsc::RunningBmsc,
    gateway: Gateway,
    ingest: std::net::SocketAddr,
}

async fn start(name: &str, group: Ipv4Addr, egress_port: u16, period: &'static str) -> Running {
    let dir = temp_dir(name);
    let bmsc = start_bmsc(&bmsc_config(
        "127.0.0.1:0".parse().unwrap(),
        &dir.join("bmsc"),
        3600,
        7200,
    ))
    .await;
    let setup = GatewaySetup {
        state_dir: dir.join("gw"),
        bmsc: bmsc.local_addr,
        group,
        ingest_port: free_udp_port(),
        egress_port,
        period,
        lead: "300ms",
        resend: "200ms",
    };
    let config = GatewayConfig::parse(&setup.toml()).unwrap();
    let gateway = Gateway::start(&config).unwrap();
    let state = gateway.streaming[0].state.clone();
    wait_for("the session to go on air", Duration::from_secs(10), || {
        matches!(*state.borrow(), SessionState::OnAir { .. })
    })
    .await;
    let ingest = gateway.streaming[0].ingest_addrs()[0];
    Running {
        bmsc,
        gateway,
        ingest,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn libsrtp_decrypts_captured_srtp_with_mtks_from_captured_mikey() {
    let group = Ipv4Addr::new(239, 255, 20, 1);
    let port = free_udp_port();
    let srtp = Capture::start(group, port);
    let srtcp = Capture::start(group, port + 1);
    let mikey = Capture::start(group, MIKEY_UDP_PORT);
    let run = start("libsrtp-e2e", group, port, "700ms").await;

    let encoder = UdpSocket::bind("127.0.0.1:0").unwrap();
    let sent: Vec<Vec<u8>> = (0..900u16)
        .map(|i| rtp_packet(60_000u16.wrapping_add(i), 0xfeed_0001, 1316))
        .collect();
    let mut reports = Vec::new();
    for (i, packet) in sent.iter().enumerate() {
        encoder.send_to(packet, run.ingest).unwrap();
        if i % 100 == 50 {
            // An RTCP sender report, multiplexed on the RTP port (RFC 5761).
            let mut sr = vec![0x80, 200, 0, 6, 0xfe, 0xed, 0, 1];
            sr.extend((0..20).map(|b| (b + i) as u8));
            encoder.send_to(&sr, run.ingest).unwrap();
            reports.push(sr);
        }
        tokio::time::sleep(Duration::from_micros(3000)).await;
    }
    wait_for("every packet to arrive", Duration::from_secs(5), || {
        srtp.count() >= sent.len()
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let captured = srtp.finish();
    let captured_rtcp = srtcp.finish();
    let announced = mikey.finish();
    let stats = run.gateway.streaming[0].stats.clone();
    let msks = run.bmsc.control.msks();
    run.gateway.stop().await;
    run.bmsc.stop().await.unwrap();

    assert_eq!(
        captured.len(),
        sent.len(),
        "every RTP packet leaves as SRTP"
    );
    let keys = mtks_from_mikey(&announced, &msks);
    let used: std::collections::BTreeSet<_> = captured
        .iter()
        .map(|(_, p)| p[p.len() - 16..p.len() - 10].to_vec())
        .collect();
    assert!(
        used.len() >= 3,
        "the stream crossed at least two MTK switches: {} MKIs",
        used.len()
    );
    for mki in &used {
        assert!(
            keys.contains_key(&<[u8; 6]>::try_from(mki.as_slice()).unwrap()),
            "MKI {} was announced in MIKEY",
            hex::encode(mki)
        );
    }
    // The session carries the ROC (RFC 4771 RCCm2): libsrtp opens every
    // packet under the default transform, our receiver every packet.
    let key_list: Vec<MasterKey> = keys.into_values().collect();
    let packets: Vec<Vec<u8>> = captured.iter().map(|(_, p)| p.clone()).collect();
    let opened = open_mbms_capture(&key_list, &packets);
    for (i, (plain, original)) in opened.iter().zip(&sent).enumerate() {
        assert_eq!(
            plain, original,
            "packet {i} decrypts to what the encoder sent"
        );
    }
    assert!(stats.mikey_sent.load(std::sync::atomic::Ordering::Relaxed) >= 3);

    // Sender reports leave as SRTCP to port + 1, and libsrtp opens them.
    assert_eq!(captured_rtcp.len(), reports.len());
    let records: Vec<(u8, Vec<u8>)> = captured_rtcp.iter().map(|(_, p)| (0, p.clone())).collect();
    let results = run_peer("unprotect-rtcp", AuthTag::HmacSha1_80, &key_list, &records);
    for ((status, plain), original) in results.iter().zip(&reports) {
        assert_eq!(*status, 0, "libsrtp refused an SRTCP packet");
        assert_eq!(plain, original);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_ingest_is_counted_and_dropped_and_the_good_stream_loses_nothing() {
    let group = Ipv4Addr::new(239, 255, 20, 2);
    let port = free_udp_port();
    let srtp = Capture::start(group, port);
    let run = start("bad-ingest", group, port, "10s").await;
    let encoder = UdpSocket::bind("127.0.0.1:0").unwrap();
    let mut truncated = rtp_packet(1, 9, 4);
    truncated[0] |= 0x0f; // 15 CSRCs announced, 4 bytes present
    let junk: [(&str, Vec<u8>); 5] = [
        ("malformed", b"\x17garbage that is not RTP".to_vec()),
        ("malformed", truncated),
        ("oversize", rtp_packet(2, 9, 2000)),
        ("rtcp_malformed", vec![0x80, 201, 0]),
        ("empty", rtp_packet(3, 9, 0)),
    ];
    let good: Vec<Vec<u8>> = (0..300u16)
        .map(|i| rtp_packet(i, 0x600d, 188 * 7))
        .collect();
    for (i, packet) in good.iter().enumerate() {
        encoder.send_to(packet, run.ingest).unwrap();
        let (_, bad) = &junk[i % junk.len()];
        encoder.send_to(bad, run.ingest).unwrap();
        tokio::time::sleep(Duration::from_micros(500)).await;
    }
    wait_for("the good packets", Duration::from_secs(5), || {
        srtp.count() >= good.len()
    })
    .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let captured = srtp.finish();
    let stats = run.gateway.streaming[0].stats.clone();
    run.gateway.stop().await;
    run.bmsc.stop().await.unwrap();

    assert_eq!(captured.len(), good.len(), "exactly the good packets leave");
    for (reason, expected) in [
        (DropReason::Malformed, 120),
        (DropReason::Oversize, 60),
        (DropReason::RtcpMalformed, 60),
        (DropReason::Empty, 60),
    ] {
        assert_eq!(
            stats.dropped(reason),
            expected,
            "drops counted as {reason:?}"
        );
    }
    // SRTP packets keep the encoder's header: sequence numbers in order.
    for (i, (_, p)) in captured.iter().enumerate() {
        assert_eq!(u16::from_be_bytes([p[2], p[3]]), i as u16);
        assert_eq!(p.len(), 12 + 188 * 7 + 16, "MKI (6) and tag (10) appended");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bmsc_outage_sends_while_the_msk_is_valid_halts_after_and_resumes() {
    let group = Ipv4Addr::new(239, 255, 20, 3);
    let port = free_udp_port();
    let dir = temp_dir("bmsc-outage");
    // MSKs live 4 s; a new one every 2 s.
    let bmsc_cfg = bmsc_config("127.0.0.1:0".parse().unwrap(), &dir.join("bmsc"), 2, 4);
    let bmsc = start_bmsc(&bmsc_cfg).await;
    let bmsc_addr = bmsc.local_addr;
    let setup = GatewaySetup {
        state_dir: dir.join("gw"),
        bmsc: bmsc_addr,
        group,
        ingest_port: free_udp_port(),
        egress_port: port,
        period: "1s",
        lead: "300ms",
        resend: "200ms",
    };
    let gateway = Gateway::start(&GatewayConfig::parse(&setup.toml()).unwrap()).unwrap();
    let state = gateway.streaming[0].state.clone();
    wait_for("on air", Duration::from_secs(10), || {
        matches!(*state.borrow(), SessionState::OnAir { .. })
    })
    .await;
    let ingest = gateway.streaming[0].ingest_addrs()[0];
    let srtp = Capture::start(group, port);

    // An encoder that never stops.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let encoder = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
            let mut seq = 0u16;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                socket
                    .send_to(&rtp_packet(seq, 0xabcd, 200), ingest)
                    .unwrap();
                seq = seq.wrapping_add(1);
                std::thread::sleep(Duration::from_millis(5));
            }
        })
    };

    // Outage: the held MSKs stay valid for a while, so sending goes on.
    bmsc.stop().await.unwrap();
    let at_outage = srtp.count();
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert!(
        srtp.count() > at_outage + 50,
        "sending goes on while the MSK is valid"
    );
    assert!(matches!(*state.borrow(), SessionState::OnAir { .. }));

    // Once every held MSK has expired the session halts and says why.
    wait_for("the session to halt", Duration::from_secs(8), || {
        matches!(*state.borrow(), SessionState::Halted { .. })
    })
    .await;
    let SessionState::Halted { reason } = state.borrow().clone() else {
        unreachable!()
    };
    assert!(
        reason.contains("MSK") || reason.contains("Key Group"),
        "{reason}"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    let halted_at = srtp.count();
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(
        srtp.count(),
        halted_at,
        "nothing is sent without a valid MSK"
    );
    assert!(gateway.streaming[0].stats.dropped(DropReason::NoKey) > 0);

    // The BM-SC comes back on the same address: new MSKs, traffic resumes.
    let mut back_cfg = bmsc_cfg.clone();
    back_cfg.listen = bmsc_addr;
    let bmsc = start_bmsc(&back_cfg).await;
    wait_for("the session to resume", Duration::from_secs(10), || {
        matches!(*state.borrow(), SessionState::OnAir { .. })
    })
    .await;
    let resumed_at = srtp.count();
    wait_for("SRTP after the outage", Duration::from_secs(5), || {
        srtp.count() > resumed_at + 50
    })
    .await;

    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    encoder.join().unwrap();
    srtp.finish();
    gateway.stop().await;
    bmsc.stop().await.unwrap();
}

/// The demo is the whole chain: BM-SC, encoder, packager, gateway and probes
/// acting as UEs. It must decrypt every packet across several MTK switches and
/// one MSK change, and deliver every file byte-identical.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probe_decrypts_every_packet_across_mtk_switches_and_an_msk_change() {
    let summary = mbms_gateway::demo::run_demo(&Default::default())
        .await
        .unwrap();
    assert!(summary.passed, "{summary}");
    assert_eq!(summary.probe.srtp.decrypted, summary.encoder_packets);
    assert!(summary.probe.mtk_switches() >= 3, "{summary}");
    assert!(summary.msks_used >= 2, "{summary}");
    assert_eq!(summary.probe.srtp.auth_failures, 0);
    assert_eq!(summary.probe.lost(), 0);
    assert!(summary.files_written >= 8, "{summary}");
    assert_eq!(summary.files_verified, summary.files_written, "{summary}");
}

/// IPv6 egress (unicast to ::1; `lo` does not loop IPv6 multicast back) and
/// multicast ingest: the encoder sends to a group the gateway joins.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ipv6_egress_and_multicast_ingest() {
    let dir = temp_dir("ipv6-mcast-ingest");
    let bmsc = start_bmsc(&bmsc_config(
        "127.0.0.1:0".parse().unwrap(),
        &dir.join("bmsc"),
        3600,
        7200,
    ))
    .await;
    let sink = UdpSocket::bind("[::1]:0").unwrap();
    sink.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let mikey = UdpSocket::bind("[::1]:2269").unwrap();
    let ingest_group = Ipv4Addr::new(239, 255, 20, 6);
    let ingest_port = free_udp_port();
    let config = format!(
        r#"
state_dir = "{state}"
instance_id = "gw-v6"
[bmsc]
endpoint = "http://{bmsc}"
key_domain_id = "09f107"
[[streaming]]
name = "v6"
key_group = 1
destination = "::1"
mtk = {{ period = "10s", lead = "1s", resend = "1s" }}
[[streaming.flow]]
ingest = "{ingest_group}:{ingest_port}"
ingest_interface = "127.0.0.1"
port = {port}
"#,
        state = dir.join("gw").display(),
        bmsc = bmsc.local_addr,
        port = sink.local_addr().unwrap().port(),
    );
    let gateway = Gateway::start(&GatewayConfig::parse(&config).unwrap()).unwrap();
    let state = gateway.streaming[0].state.clone();
    wait_for("on air", Duration::from_secs(10), || {
        matches!(*state.borrow(), SessionState::OnAir { .. })
    })
    .await;

    let encoder = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::DGRAM, None).unwrap();
    encoder.set_multicast_if_v4(&Ipv4Addr::LOCALHOST).unwrap();
    encoder.set_multicast_ttl_v4(0).unwrap();
    let encoder: UdpSocket = encoder.into();
    let mut buf = [0u8; 2048];
    for seq in 0..50u16 {
        encoder
            .send_to(&rtp_packet(seq, 0x66, 500), (ingest_group, ingest_port))
            .unwrap();
        let n = sink.recv(&mut buf).expect("SRTP over IPv6");
        assert_eq!(n, 12 + 500 + 16);
        assert_eq!(u16::from_be_bytes([buf[2], buf[3]]), seq);
    }
    mikey
        .set_read_timeout(Some(Duration::from_secs(3)))
        .unwrap();
    assert!(mikey.recv(&mut buf).is_ok(), "MIKEY reaches [::1]:2269");
    gateway.stop().await;
    bmsc.stop().await.unwrap();
}
