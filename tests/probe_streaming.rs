//! The streaming probe against a sender built from the protocol core: MTK
//! messages to the MIKEY port and SRTP of synthetic-encoder payloads to the
//! session port, over loopback multicast pinned to 127.0.0.1 with TTL 0.

use mbms_gateway::bmsc::{Bmsc, BmscConfig, KeySource};
use mbms_gateway::protocol::keys::{KeyDomainId, Mki, Msk, MskId, Mtk, MtkId, MtkKey, MtkSalt};
use mbms_gateway::protocol::mikey::{MtkMessageParams, build_mtk_message};
use mbms_gateway::protocol::srtp::{SrtpConfig, SrtpSender};
use mbms_gateway::runtime::key_service::{MskClientConfig, MskRecord};
use mbms_gateway::runtime::synthetic::{SYNTHETIC_RTP_LEN, SyntheticPacket, build_synthetic_rtp};
use mbms_gateway::runtime::udp::{EgressOptions, egress_socket};
use mbms_gateway::ue::probe::{
    ProbeExpect, ProbeHandle, ProbeKeySource, ProbeReport, StreamingProbeConfig,
    run_streaming_probe, start_streaming_probe,
};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

const LOOPBACK: Ipv4Addr = Ipv4Addr::LOCALHOST;
const DOMAIN: KeyDomainId = KeyDomainId([0x09, 0xf1, 0x07]);
const MSK_ID: MskId = MskId::new(1, 1);
const MSK: [u8; 16] = [0x5a; 16];
const SSRC: u32 = 0x5eed_0001;

fn msk_record(msk_id: MskId, key: [u8; 16]) -> MskRecord {
    MskRecord {
        key_domain_id: DOMAIN,
        msk_id,
        key: Msk::new(key),
        validity: (MtkId(1), MtkId(0xffff)),
        not_before: 0,
        not_after: i64::MAX,
    }
}

/// A free UDP port number on loopback (the probe binds the group address).
fn free_port() -> u16 {
    UdpSocket::bind((LOOPBACK, 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn mtk(id: u16) -> Mtk {
    Mtk {
        key: MtkKey::new([id as u8; 16]),
        salt: MtkSalt::new([0x80 | id as u8; 14]),
    }
}

/// The sending side of one session, built from the protocol core.
struct Sender {
    socket: UdpSocket,
    mikey_dest: SocketAddr,
    srtp_dest: SocketAddr,
    srtp: SrtpSender,
    ssrc: u32,
    counter: u32,
    seq: u16,
    packets: u64,
}

impl Sender {
    fn new(group: Ipv4Addr, srtp_port: u16, mikey_port: u16) -> Self {
        let socket = egress_socket(
            false,
            &EgressOptions {
                interface: Some(IpAddr::V4(LOOPBACK)),
                interface_index: 0,
                ttl: 0,
                dscp: 0,
            },
        )
        .unwrap();
        Self {
            socket,
            mikey_dest: SocketAddr::new(group.into(), mikey_port),
            srtp_dest: SocketAddr::new(group.into(), srtp_port),
            srtp: SrtpSender::new(SrtpConfig::mbms()).unwrap(),
            ssrc: SSRC,
            counter: 100,
            seq: 65_500, // wraps during the longer tests
            packets: 0,
        }
    }

    /// An MTK message for MTK `mtk_id` under `msk`, with a fresh counter.
    fn mtk_message(&mut self, msk_id: MskId, msk: [u8; 16], mtk_id: u16) -> Vec<u8> {
        self.counter += 1;
        let key = mtk(mtk_id);
        let params = MtkMessageParams {
            key_domain_id: DOMAIN,
            msk_id,
            mtk_id: MtkId(mtk_id),
            counter: self.counter,
            mtk: &key,
            rand: [self.counter as u8; 16],
            csb_id: 7,
        };
        let mut out = Vec::new();
        build_mtk_message(&Msk::new(msk), &params, &mut out);
        out
    }

    fn send_mikey(&self, message: &[u8]) {
        self.socket.send_to(message, self.mikey_dest).unwrap();
    }

    /// Installs MTK `mtk_id` on the sender and makes it the active key.
    fn use_mtk(&mut self, mtk_id: u16) {
        let mki = Mki {
            msk_id: MSK_ID,
            mtk_id: MtkId(mtk_id),
        }
        .to_bytes();
        self.srtp.add_master_key(&mki, &mtk(mtk_id)).unwrap();
        self.srtp.set_active_key(&mki).unwrap();
    }

    /// The next SRTP packet of the synthetic stream.
    fn next_packet(&mut self) -> Vec<u8> {
        self.next_packet_with(|_| {})
    }

    /// The next SRTP packet, with `edit` applied to the RTP packet before protection.
    fn next_packet_with(&mut self, edit: impl FnOnce(&mut [u8])) -> Vec<u8> {
        let mut buf = vec![0u8; SYNTHETIC_RTP_LEN + SrtpConfig::mbms().rtp_overhead()];
        let rtp_len = build_synthetic_rtp(
            &SyntheticPacket {
                ssrc: self.ssrc,
                sequence_number: self.seq,
                timestamp: self.seq as u32 * 3000,
                payload_type: 33,
                counter: self.packets,
            },
            &mut buf,
        );
        edit(&mut buf[..rtp_len]);
        let len = self.srtp.protect(&mut buf, rtp_len).unwrap();
        buf.truncate(len);
        self.seq = self.seq.wrapping_add(1);
        self.packets += 1;
        buf
    }

    fn send_srtp(&self, packet: &[u8]) {
        self.socket.send_to(packet, self.srtp_dest).unwrap();
        // Keep well under the receive buffer of the probe socket.
        std::thread::sleep(Duration::from_micros(300));
    }

    fn send_packets(&mut self, n: usize) {
        for _ in 0..n {
            let packet = self.next_packet();
            self.send_srtp(&packet);
        }
    }
}

fn probe(group: Ipv4Addr, srtp_port: u16, mikey_port: u16, hold: Duration) -> ProbeHandle {
    let mut config = StreamingProbeConfig::new(
        group.into(),
        vec![srtp_port],
        DOMAIN,
        ProbeKeySource::Static(vec![msk_record(MSK_ID, MSK)]),
    );
    config.interface = Some(IpAddr::V4(LOOPBACK));
    config.mikey_port = mikey_port;
    config.unknown_mki_hold = hold;
    start_streaming_probe(config).unwrap()
}

/// Waits until `done` holds for a snapshot (or 10 s pass), returns the snapshot.
fn wait_for(handle: &ProbeHandle, done: impl Fn(&ProbeReport) -> bool) -> ProbeReport {
    let give_up = Instant::now() + Duration::from_secs(10);
    loop {
        let report = handle.snapshot();
        if done(&report) || Instant::now() > give_up {
            return report;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn session(group_octet: u8) -> (Ipv4Addr, u16, u16) {
    (
        Ipv4Addr::new(239, 255, 91, group_octet),
        free_port(),
        free_port(),
    )
}

#[test]
fn decrypts_every_packet_across_two_mtk_switches() {
    let (group, srtp_port, mikey_port) = session(1);
    let handle = probe(group, srtp_port, mikey_port, Duration::from_secs(2));
    let mut sender = Sender::new(group, srtp_port, mikey_port);

    for mtk_id in 1..=3u16 {
        // Announce, see it accepted, then switch: the order a gateway keeps.
        let message = sender.mtk_message(MSK_ID, MSK, mtk_id);
        sender.send_mikey(&message);
        wait_for(&handle, |r| r.mikey.accepted == u64::from(mtk_id));
        sender.use_mtk(mtk_id);
        sender.send_packets(100);
    }
    // A periodic re-send of the current MTK: a repeat, not a rejection.
    let resend = sender.mtk_message(MSK_ID, MSK, 3);
    sender.send_mikey(&resend);

    wait_for(&handle, |r| r.srtp.decrypted == 300 && r.mikey.repeats == 1);
    let report = handle.stop();
    println!("{report}");
    assert_eq!(report.srtp.decrypted, 300, "{report}");
    assert_eq!(report.srtp.received, 300);
    assert_eq!(report.mikey.accepted, 3);
    assert_eq!(report.mikey.repeats, 1);
    assert_eq!(report.mikey.rejected(), 0);
    assert_eq!(report.streams.len(), 1);
    let stream = &report.streams[0];
    assert_eq!((stream.port, stream.ssrc), (srtp_port, SSRC));
    assert_eq!(stream.mtk_switches, 2);
    assert_eq!(
        stream.mkis,
        ["000100010001", "000100010002", "000100010003"],
        "MKI = MSK ID ‖ MTK ID"
    );
    assert_eq!(stream.payloads_checked, 300);
    let expect = ProbeExpect {
        min_packets: Some(300),
        max_auth_failures: Some(0),
        max_lost: Some(0),
        max_mikey_rejected: Some(0),
        min_mtk_switches: Some(2),
        max_payload_errors: Some(0),
    };
    assert_eq!(expect.check(&report), Ok(()));
    let json: serde_json::Value = serde_json::from_str(&report.to_json()).unwrap();
    assert_eq!(json["srtp"]["decrypted"], 300);
}

#[test]
fn packets_before_their_mtk_message_are_held_and_decrypted() {
    let (group, srtp_port, mikey_port) = session(2);
    let handle = probe(group, srtp_port, mikey_port, Duration::from_secs(1));
    let mut sender = Sender::new(group, srtp_port, mikey_port);

    sender.use_mtk(1);
    sender.send_packets(20);
    let report = wait_for(&handle, |r| r.srtp.received == 20);
    assert_eq!(report.srtp.decrypted, 0, "no MTK yet");
    let message = sender.mtk_message(MSK_ID, MSK, 1);
    sender.send_mikey(&message);
    let report = wait_for(&handle, |r| r.srtp.decrypted == 20);
    assert_eq!(report.srtp.held_then_decrypted, 20, "{report}");
    assert_eq!(report.srtp.unknown_mki, 0);
    assert_eq!(report.lost(), 0);

    // An MTK that is never announced: held, then counted once the hold expires.
    sender.use_mtk(2);
    sender.send_packets(5);
    wait_for(&handle, |r| r.srtp.unknown_mki == 5);
    let report = handle.stop();
    assert_eq!(report.srtp.unknown_mki, 5, "{report}");
    assert_eq!(report.srtp.decrypted, 20);
    assert_eq!(report.srtp.auth_failures, 0);
}

#[test]
fn bad_mikey_messages_are_counted_and_the_stream_goes_on() {
    let (group, srtp_port, mikey_port) = session(3);
    let handle = probe(group, srtp_port, mikey_port, Duration::from_millis(200));
    let mut sender = Sender::new(group, srtp_port, mikey_port);

    let good = sender.mtk_message(MSK_ID, MSK, 1);
    sender.send_mikey(&good);
    wait_for(&handle, |r| r.mikey.accepted == 1);
    sender.send_mikey(&good); // replayed: same counter
    let unknown_msk = MskId::new(1, 9);
    let missed = sender.mtk_message(unknown_msk, MSK, 2);
    sender.send_mikey(&missed);
    let forged = sender.mtk_message(MSK_ID, [0xee; 16], 2);
    sender.send_mikey(&forged);
    sender.send_mikey(&good[..good.len() / 2]);
    sender.send_mikey(b"not MIKEY at all");
    let report = wait_for(&handle, |r| r.mikey.received == 6);
    assert_eq!(report.mikey.replayed, 1, "{report}");
    assert_eq!(report.mikey.missed_key, 1);
    assert_eq!(report.mikey.missed_msk_ids, ["00010009"]);
    assert_eq!(report.mikey.bad_mac, 1);
    assert_eq!(report.mikey.malformed, 2);
    assert_eq!(report.mikey.rejected(), 5);
    assert_eq!(report.mikey.accepted, 1);

    sender.use_mtk(1);
    sender.send_packets(10);
    wait_for(&handle, |r| r.srtp.decrypted == 10);
    let report = handle.stop();
    assert_eq!(report.srtp.decrypted, 10, "{report}");
    assert_eq!(
        ProbeExpect {
            max_mikey_rejected: Some(0),
            ..ProbeExpect::default()
        }
        .check(&report),
        Err(vec![
            "rejected MIKEY messages: 5, expected at most 0".into()
        ])
    );
}

#[test]
fn tampered_packet_is_an_auth_failure_and_the_stream_continues() {
    let (group, srtp_port, mikey_port) = session(4);
    let handle = probe(group, srtp_port, mikey_port, Duration::from_millis(200));
    let mut sender = Sender::new(group, srtp_port, mikey_port);
    let message = sender.mtk_message(MSK_ID, MSK, 1);
    sender.send_mikey(&message);
    wait_for(&handle, |r| r.mikey.accepted == 1);
    sender.use_mtk(1);

    sender.send_packets(10);
    let mut tampered = sender.next_packet();
    tampered[40] ^= 0x04; // one ciphertext bit
    sender.send_srtp(&tampered);
    sender.send_packets(10);
    // Content damaged before protection: authentic, but not what was encoded.
    let bad_content = sender.next_packet_with(|rtp| rtp[12 + 3 * 188 + 50] ^= 0x10);
    sender.send_srtp(&bad_content);
    wait_for(&handle, |r| r.srtp.received == 22);
    let report = handle.stop();
    assert_eq!(report.srtp.auth_failures, 1, "{report}");
    assert_eq!(report.srtp.decrypted, 21);
    assert_eq!(
        report.lost(),
        1,
        "the tampered packet's SEQ never decrypted"
    );
    assert_eq!(report.payloads_checked(), 21);
    assert_eq!(report.payload_errors(), 1);
    assert_eq!(report.srtp.stream_resets, 0);
}

#[test]
fn restarted_sender_is_picked_up_after_repeated_failures() {
    let (group, srtp_port, mikey_port) = session(5);
    let handle = probe(group, srtp_port, mikey_port, Duration::from_millis(200));
    let mut sender = Sender::new(group, srtp_port, mikey_port);
    let message = sender.mtk_message(MSK_ID, MSK, 1);
    sender.send_mikey(&message);
    wait_for(&handle, |r| r.mikey.accepted == 1);
    sender.use_mtk(1);
    sender.send_packets(50);
    wait_for(&handle, |r| r.srtp.decrypted == 50);

    // A new sender with a new MTK and the SEQ jumped back by 1000.
    let counter = sender.counter;
    let seq = sender.seq.wrapping_sub(1000);
    let mut sender = Sender::new(group, srtp_port, mikey_port);
    (sender.counter, sender.seq) = (counter, seq);
    let message = sender.mtk_message(MSK_ID, MSK, 2);
    sender.send_mikey(&message);
    wait_for(&handle, |r| r.mikey.accepted == 2);
    sender.use_mtk(2);
    sender.send_packets(30);
    wait_for(&handle, |r| r.srtp.received == 80);
    let report = handle.stop();
    let failures = u64::from(mbms_gateway::ue::probe::RESET_AFTER_FAILURES);
    assert_eq!(report.srtp.replayed, failures, "{report}");
    assert_eq!(report.srtp.stream_resets, 1);
    assert_eq!(report.srtp.decrypted, 50 + 30 - failures);
    assert_eq!(report.streams[0].mtk_switches, 1);
    assert_eq!(report.srtp.auth_failures, 0);
}

/// Writes a key file in the reference BM-SC's format holding the test MSK.
fn write_key_file(dir: &std::path::Path) -> std::path::PathBuf {
    let text = format!(
        "key_domain_id = \"{}\"\n[[msk]]\nmsk_id = {:#010x}\nkey = \"{}\"\n\
         seq_l = 1\nseq_u = 65535\nnot_before = 0\nnot_after = 4000000000\n",
        hex::encode(DOMAIN.0),
        MSK_ID.0,
        hex::encode(MSK),
    );
    let path = dir.join("keys.toml");
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn probes_with_a_key_file_and_with_a_bmsc_share_the_group() {
    let dir = tempfile::tempdir().unwrap();
    let keys = write_key_file(dir.path());
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let bmsc = runtime.block_on(async {
        let config = BmscConfig::plaintext(
            "127.0.0.1:0".parse().unwrap(),
            DOMAIN,
            vec![1],
            KeySource::File { path: keys.clone() },
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        Bmsc::from_config(&config).unwrap().spawn(listener).unwrap()
    });

    let (group, srtp_port, mikey_port) = session(6);
    let config = |key_source| {
        let mut config =
            StreamingProbeConfig::new(group.into(), vec![srtp_port], DOMAIN, key_source);
        config.interface = Some(IpAddr::V4(LOOPBACK));
        config.mikey_port = mikey_port;
        config
    };
    let from_file = start_streaming_probe(config(ProbeKeySource::KeyFile {
        path: keys,
        key_groups: vec![1],
    }))
    .unwrap();
    let mut client = MskClientConfig::new(
        format!("http://{}", bmsc.local_addr),
        DOMAIN,
        vec![1],
        "probe",
    );
    client.backoff_initial_ms = 20;
    let from_bmsc = start_streaming_probe(config(ProbeKeySource::Bmsc(client))).unwrap();

    // The BM-SC's MSKs arrive in the background: re-send the MTK message, as a
    // gateway does periodically, until the BM-SC probe has opened one.
    let mut sender = Sender::new(group, srtp_port, mikey_port);
    let mut mtk_id = 0;
    let give_up = Instant::now() + Duration::from_secs(15);
    while from_bmsc.snapshot().mikey.accepted == 0 && Instant::now() < give_up {
        mtk_id += 1;
        let message = sender.mtk_message(MSK_ID, MSK, mtk_id);
        sender.send_mikey(&message);
        std::thread::sleep(Duration::from_millis(50));
    }
    wait_for(&from_file, |r| r.mikey.accepted == u64::from(mtk_id));
    sender.use_mtk(mtk_id);
    sender.send_packets(50);
    wait_for(&from_file, |r| r.srtp.decrypted == 50);
    wait_for(&from_bmsc, |r| r.srtp.decrypted == 50);
    let (from_file, from_bmsc) = (from_file.stop(), from_bmsc.stop());
    runtime.block_on(bmsc.stop()).unwrap();

    assert_eq!(from_file.mikey.accepted, u64::from(mtk_id), "{from_file}");
    assert_eq!(from_file.mikey.rejected(), 0);
    assert_eq!(from_file.srtp.decrypted, 50);
    assert!(from_bmsc.mikey.accepted >= 1, "{from_bmsc}");
    assert_eq!(
        from_bmsc.mikey.missed_key + from_bmsc.mikey.accepted,
        u64::from(mtk_id),
        "before its MSKs arrived, the BM-SC probe missed the key"
    );
    assert_eq!(from_bmsc.srtp.decrypted, 50);
    assert_eq!(from_bmsc.srtp.auth_failures, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_probe_runs_until_the_stop_signal() {
    let (group, srtp_port, mikey_port) = session(7);
    let mut config = StreamingProbeConfig::new(
        group.into(),
        vec![srtp_port],
        DOMAIN,
        ProbeKeySource::Static(vec![msk_record(MSK_ID, MSK)]),
    );
    config.interface = Some(IpAddr::V4(LOOPBACK));
    config.mikey_port = mikey_port;
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let probe = tokio::spawn(run_streaming_probe(config, stopped));

    // A live session: the MTK re-announced every 10 packets, packets until told to stop.
    let sending = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let flag = std::sync::Arc::clone(&sending);
    let session = std::thread::spawn(move || {
        let mut sender = Sender::new(group, srtp_port, mikey_port);
        sender.use_mtk(1);
        while flag.load(std::sync::atomic::Ordering::Relaxed) {
            let message = sender.mtk_message(MSK_ID, MSK, 1);
            sender.send_mikey(&message);
            std::thread::sleep(Duration::from_millis(2));
            sender.send_packets(10);
        }
        sender.packets
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.send(true).unwrap();
    let report = probe.await.unwrap().unwrap();
    sending.store(false, std::sync::atomic::Ordering::Relaxed);
    let sent = session.join().unwrap();

    assert!(report.srtp.decrypted > 0, "{report}");
    assert!(report.srtp.decrypted <= sent);
    assert_eq!(report.mikey.accepted, 1, "one MTK, re-announced");
    assert!(report.mikey.repeats > 0);
    let expect = ProbeExpect {
        max_auth_failures: Some(0),
        max_lost: Some(0),
        max_mikey_rejected: Some(0),
        max_payload_errors: Some(0),
        ..ProbeExpect::default()
    };
    assert_eq!(expect.check(&report), Ok(()), "{report}");
}

#[test]
fn senders_restarting_under_new_ssrcs_do_not_exhaust_the_stream_table() {
    let (group, srtp_port, mikey_port) = session(8);
    let handle = probe(group, srtp_port, mikey_port, Duration::from_millis(200));
    let mut announcer = Sender::new(group, srtp_port, mikey_port);
    let message = announcer.mtk_message(MSK_ID, MSK, 1);
    announcer.send_mikey(&message);
    wait_for(&handle, |r| r.mikey.accepted == 1);

    let restarts = 2 * SrtpConfig::mbms().max_streams as u32;
    for i in 0..restarts {
        let mut sender = Sender::new(group, srtp_port, mikey_port);
        sender.ssrc = SSRC + i;
        sender.use_mtk(1);
        sender.send_packets(3);
        wait_for(&handle, |r| r.srtp.received == 3 * u64::from(i + 1));
    }
    let report = handle.stop();
    assert_eq!(report.srtp.decrypted, 3 * u64::from(restarts), "{report}");
    assert_eq!(report.streams.len(), restarts as usize);
    assert_eq!(
        report.srtp.stream_resets,
        u64::from(restarts) - SrtpConfig::mbms().max_streams as u64,
        "one silent SSRC dropped per new one beyond the table"
    );
    assert_eq!(report.srtp.malformed, 0);
}

/// Protects `n` packets without sending them: the session went on before
/// the probe tuned in.
fn run_unheard(sender: &mut Sender, n: usize) {
    for _ in 0..n {
        sender.next_packet();
    }
}

/// A UE tunes in after the session's SEQ wrapped twice (RFC 4771, RCCm2
/// every 16th packet): the packets before the first one that carries the
/// ROC wait for it, and every packet from that one on decrypts, across an
/// MTK switch, with no authentication failure and no ROC search.
#[test]
fn a_probe_joining_after_two_wraps_decrypts_everything_from_the_first_rcc_packet() {
    let (group, srtp_port, mikey_port) = session(9);
    let mut sender = Sender::new(group, srtp_port, mikey_port);
    for mtk_id in 1..=2 {
        sender.use_mtk(mtk_id);
        run_unheard(&mut sender, 35_000);
    }
    let joined_at_seq = sender.seq;
    assert_eq!(
        sender.srtp.highest_index(SSRC).unwrap() >> 16,
        2,
        "two wraps"
    );
    let handle = probe(group, srtp_port, mikey_port, Duration::from_secs(2));
    let message = sender.mtk_message(MSK_ID, MSK, 2);
    sender.send_mikey(&message);
    wait_for(&handle, |r| r.mikey.accepted == 1);
    sender.send_packets(300);
    let message = sender.mtk_message(MSK_ID, MSK, 3);
    sender.send_mikey(&message);
    wait_for(&handle, |r| r.mikey.accepted == 2);
    sender.use_mtk(3);
    sender.send_packets(300);

    let before_rcc = (0..600u16)
        .take_while(|&i| !joined_at_seq.wrapping_add(i).is_multiple_of(16))
        .count() as u64;
    wait_for(&handle, |r| r.srtp.received == 600);
    let report = handle.stop();
    assert_eq!(report.srtp.awaiting_roc, before_rcc, "{report}");
    assert_eq!(report.srtp.decrypted, 600 - before_rcc, "{report}");
    assert_eq!(report.srtp.auth_failures, 0);
    assert_eq!(report.lost(), 0);
    let stream = &report.streams[0];
    assert_eq!(stream.roc_learned, Some("carried"));
    assert_eq!(
        stream.first_seq,
        Some(joined_at_seq.wrapping_add(before_rcc as u16))
    );
    assert!(
        stream.first_seq.unwrap().is_multiple_of(16),
        "an RCC packet"
    );
    assert_eq!(stream.highest_index, sender.srtp.highest_index(SSRC));
    assert_eq!(stream.rcc_packets, (600 - before_rcc).div_ceil(16));
    assert_eq!(stream.mtk_switches, 1);
    assert_eq!(stream.payload_errors, 0);
    assert_eq!(stream.payloads_checked, 600 - before_rcc);
}

/// Bad input on a stream that carries the ROC: an RCC packet whose ROC was
/// corrupted and one whose tag was cut short are refused and counted, and
/// neither gives the stream a ROC: the packets after them still wait, until
/// a genuine RCC packet comes.
#[test]
fn damaged_rcc_packets_are_counted_and_install_no_roc() {
    let (group, srtp_port, mikey_port) = session(10);
    let mut sender = Sender::new(group, srtp_port, mikey_port);
    sender.use_mtk(1);
    run_unheard(&mut sender, 70_000);
    while !sender.seq.is_multiple_of(16) {
        sender.next_packet();
    }
    let handle = probe(group, srtp_port, mikey_port, Duration::from_millis(200));
    let message = sender.mtk_message(MSK_ID, MSK, 1);
    sender.send_mikey(&message);
    wait_for(&handle, |r| r.mikey.accepted == 1);

    let rcc = sender.next_packet();
    let tag_at = rcc.len() - 10;
    let mut wrong_roc = rcc.clone();
    wrong_roc[tag_at + 3] ^= 0x01;
    sender.send_srtp(&wrong_roc);
    sender.send_srtp(&rcc[..rcc.len() - 3]);
    sender.send_packets(15); // SEQ 1..=15 after it: no ROC yet
    // Cut short, the packet's MKI is read from the wrong bytes: held for a
    // key that never comes, then counted.
    let report = wait_for(&handle, |r| {
        r.srtp.received == 17 && r.srtp.unknown_mki == 1
    });
    assert_eq!(report.srtp.auth_failures, 1, "{report}");
    assert_eq!(report.srtp.unknown_mki, 1);
    assert_eq!(report.srtp.awaiting_roc, 15);
    assert_eq!(report.srtp.decrypted, 0);
    sender.send_packets(20); // the next RCC packet, then the rest
    wait_for(&handle, |r| r.srtp.received == 37);
    let report = handle.stop();
    assert_eq!(report.srtp.decrypted, 20, "{report}");
    assert_eq!(report.srtp.auth_failures, 1);
    assert_eq!(report.streams[0].roc_learned, Some("carried"));
}
