//! Packet-level tests of the SRTP/SRTCP contexts: libsrtp's published vectors
//! byte for byte, then the behaviours RFC 3711 and the design ask for.

use super::*;
use crate::protocol::codec::Codec;
use crate::protocol::keys::{Mki, MskId, Mtk, MtkId, MtkKey, MtkSalt};
use proptest::prelude::*;

/// The RFC 3711 B.3 master key and salt that libsrtp's `srtp_validate*` use.
fn libsrtp_mtk() -> Mtk {
    Mtk {
        key: MtkKey::from_slice(&hex::decode("e1f97a0d3e018be0d64fa32c06de4139").unwrap()).unwrap(),
        salt: MtkSalt::from_slice(&hex::decode("0ec675ad498afeebb6960b3aabe6").unwrap()).unwrap(),
    }
}

fn mtk(seed: u8) -> Mtk {
    Mtk {
        key: MtkKey::new([seed; 16]),
        salt: MtkSalt::new([seed ^ 0x5a; 14]),
    }
}

fn mbms_mki(mtk_id: u16) -> [u8; 6] {
    Mki {
        msk_id: MskId::new(0x0102, 0x0304),
        mtk_id: MtkId(mtk_id),
    }
    .to_bytes()
}

const LIBSRTP_RTP: &str = "800f1234decafbadcafebabeabababababababababababababababab";
const LIBSRTP_RTCP: &str = "81c8000bcafebabeabababababababababababababababab";

fn config(tag: AuthTag, mki_len: usize) -> SrtpConfig {
    SrtpConfig {
        tag,
        mki_len,
        max_streams: 4,
        roc: RocTransmission::None,
    }
}

/// The MBMS profile (HMAC-SHA1-80, 6-byte MKI) with the RFC 3711 default
/// transform on every packet: the mechanics these tests check are those of
/// RFC 3711; `rcc_tests` checks what RFC 4771 changes.
fn rfc3711() -> SrtpConfig {
    SrtpConfig {
        roc: RocTransmission::None,
        ..SrtpConfig::mbms()
    }
}

fn sender(cfg: SrtpConfig, mki: &[u8], key: &Mtk) -> SrtpSender {
    let mut tx = SrtpSender::new(cfg).unwrap();
    tx.add_master_key(mki, key).unwrap();
    tx.set_active_key(mki).unwrap();
    tx
}

fn receiver(cfg: SrtpConfig, mki: &[u8], key: &Mtk) -> SrtpReceiver {
    let mut rx = SrtpReceiver::new(cfg).unwrap();
    rx.add_master_key(mki, key).unwrap();
    rx
}

/// An RTP packet with `payload_len` bytes of payload, in a buffer with room for
/// the SRTP trailer; returns the buffer and the RTP length.
fn rtp_packet(ssrc: u32, seq: u16, payload_len: usize) -> (Vec<u8>, usize) {
    let header = RtpHeader {
        padding: false,
        marker: false,
        payload_type: 33,
        sequence_number: seq,
        timestamp: u32::from(seq) * 3000,
        ssrc,
        csrcs: &[],
        extension: None,
    };
    let mut buf = header.to_vec();
    buf.extend((0..payload_len).map(|i| (i as u8) ^ (seq as u8)));
    let len = buf.len();
    buf.resize(len + 4 + MAX_MKI_LEN + 10 + 10, 0);
    (buf, len)
}

/// Protects with `tx`, unprotects with `rx`, and checks the plaintext survived.
fn round_trip(tx: &mut SrtpSender, rx: &mut SrtpReceiver, ssrc: u32, seq: u16, payload_len: usize) {
    let (mut buf, len) = rtp_packet(ssrc, seq, payload_len);
    let plain = buf[..len].to_vec();
    let srtp_len = tx.protect(&mut buf, len).unwrap();
    assert_eq!(srtp_len, len + tx.config().rtp_overhead());
    if payload_len > 0 {
        assert_ne!(buf[12..len], plain[12..], "payload must be encrypted");
    }
    let out_len = rx.unprotect(&mut buf[..srtp_len]).unwrap();
    assert_eq!(&buf[..out_len], &plain[..]);
}

#[test]
fn libsrtp_validate_vector_without_mki() {
    let mut tx = sender(config(AuthTag::HmacSha1_80, 0), &[], &libsrtp_mtk());
    let mut buf = hex::decode(LIBSRTP_RTP).unwrap();
    let len = buf.len();
    buf.resize(len + 10, 0);
    assert_eq!(tx.protect(&mut buf, len), Ok(38));
    assert_eq!(
        hex::encode(&buf),
        "800f1234decafbadcafebabe4e55dc4ce79978d88ca4d215949d2402b78d6acc99ea179b8dbb"
    );
    let mut rx = receiver(config(AuthTag::HmacSha1_80, 0), &[], &libsrtp_mtk());
    assert_eq!(rx.unprotect(&mut buf), Ok(len));
    assert_eq!(hex::encode(&buf[..len]), LIBSRTP_RTP);
}

/// libsrtp `srtp_validate_mki` (wire reference §4.3): the MKI sits between the
/// ciphertext and the tag, and the tag does not cover it.
#[test]
fn libsrtp_validate_mki_vector() {
    let mki = hex::decode("e1f97a0d").unwrap();
    let cfg = config(AuthTag::HmacSha1_80, 4);
    let mut tx = sender(cfg, &mki, &libsrtp_mtk());
    let mut buf = hex::decode(LIBSRTP_RTP).unwrap();
    let len = buf.len();
    buf.resize(len + 14, 0);
    assert_eq!(tx.protect(&mut buf, len), Ok(42));
    assert_eq!(
        hex::encode(&buf),
        concat!(
            "800f1234decafbadcafebabe",
            "4e55dc4ce79978d88ca4d215949d2402",
            "e1f97a0d",
            "b78d6acc99ea179b8dbb"
        )
    );
    let mut rx = receiver(cfg, &mki, &libsrtp_mtk());
    assert_eq!(rx.unprotect(&mut buf), Ok(len));
    assert_eq!(hex::encode(&buf[..len]), LIBSRTP_RTP);
}

/// libsrtp `srtp_validate` / `srtp_validate_mki` SRTCP vectors. libsrtp's first
/// SRTCP index is 1, ours (RFC 3711 §3.4) is 0, so one packet goes first.
#[test]
fn libsrtp_validate_srtcp_vectors() {
    for mki in [&[][..], &hex::decode("e1f97a0d").unwrap()[..]] {
        let cfg = config(AuthTag::HmacSha1_80, mki.len());
        let mut tx = sender(cfg, mki, &libsrtp_mtk());
        let mut first = hex::decode(LIBSRTP_RTCP).unwrap();
        let len = first.len();
        first.resize(len + cfg.rtcp_overhead(), 0);
        tx.protect_rtcp(&mut first, len).unwrap();
        assert_eq!(hex::encode(&first[len..len + 4]), "80000000");

        let mut buf = hex::decode(LIBSRTP_RTCP).unwrap();
        buf.resize(len + cfg.rtcp_overhead(), 0);
        assert_eq!(
            tx.protect_rtcp(&mut buf, len),
            Ok(len + cfg.rtcp_overhead())
        );
        let expected = format!(
            "81c8000bcafebabe7128035be487b9bdbef89041f977a5a880000001{}993e08cd54d6c1230798",
            hex::encode(mki)
        );
        assert_eq!(hex::encode(&buf), expected);

        let mut rx = receiver(cfg, mki, &libsrtp_mtk());
        assert_eq!(rx.unprotect_rtcp(&mut buf), Ok(len));
        assert_eq!(hex::encode(&buf[..len]), LIBSRTP_RTCP);
    }
}

#[test]
fn round_trips_for_both_tags_with_and_without_mki() {
    for tag in [AuthTag::HmacSha1_80, AuthTag::HmacSha1_32] {
        for mki in [&[][..], &mbms_mki(1)[..]] {
            let cfg = config(tag, mki.len());
            let mut tx = sender(cfg, mki, &mtk(1));
            let mut rx = receiver(cfg, mki, &mtk(1));
            for (seq, payload_len) in [(100, 0), (101, 1), (102, 160), (103, 1316)] {
                round_trip(&mut tx, &mut rx, 0x1234_5678, seq, payload_len);
            }
        }
    }
}

/// An MTK switch: the next key is installed before the switch, the packet
/// index runs on across it, the old key is retired after.
#[test]
fn key_switch_by_mki_keeps_index_running() {
    let cfg = rfc3711();
    let (old, new) = (mbms_mki(7), mbms_mki(8));
    let mut tx = sender(cfg, &old, &mtk(1));
    let mut rx = receiver(cfg, &old, &mtk(1));
    let ssrc = 0xdead_beef;
    for seq in 65530..=65535 {
        round_trip(&mut tx, &mut rx, ssrc, seq, 100);
    }
    tx.add_master_key(&new, &mtk(2)).unwrap();
    rx.add_master_key(&new, &mtk(2)).unwrap();
    tx.set_active_key(&new).unwrap();
    assert_eq!(
        tx.remove_master_key(&new),
        Err(SrtpError::ActiveKeyRemoval(MkiBytes::new(&new).unwrap()))
    );
    tx.remove_master_key(&old).unwrap();

    let (mut buf, len) = rtp_packet(ssrc, 0, 100);
    let srtp_len = tx.protect(&mut buf, len).unwrap();
    assert_eq!(&buf[len..len + 6], &new[..], "new MKI on the wire");
    assert_eq!(
        tx.highest_index(ssrc),
        Some(0x1_0000),
        "ROC 1 after the wrap"
    );
    rx.unprotect(&mut buf[..srtp_len]).unwrap();
    assert_eq!(rx.highest_index(ssrc), Some(0x1_0000));
    for seq in 1..5 {
        round_trip(&mut tx, &mut rx, ssrc, seq, 100);
    }
    // A late packet of the old key still decrypts while the receiver holds it.
    let mut late_tx = sender(cfg, &old, &mtk(1));
    let (mut buf, len) = rtp_packet(ssrc, 70, 10);
    let n = late_tx.protect(&mut buf, len).unwrap();
    assert!(
        matches!(
            rx.unprotect(&mut buf[..n]),
            Err(SrtpError::AuthenticationFailed { .. })
        ),
        "index 70 at ROC 0 is not what the receiver estimates at ROC 1"
    );
}

#[test]
fn receiver_follows_roc_rollover_with_reordering() {
    let cfg = rfc3711();
    let mut tx = sender(cfg, &mbms_mki(1), &mtk(3));
    let mut rx = receiver(cfg, &mbms_mki(1), &mtk(3));
    let ssrc = 42;
    let packets: Vec<(Vec<u8>, usize, Vec<u8>)> = [65533u16, 65534, 65535, 0, 1, 2]
        .iter()
        .map(|&seq| {
            let (mut buf, len) = rtp_packet(ssrc, seq, 50);
            let plain = buf[..len].to_vec();
            let n = tx.protect(&mut buf, len).unwrap();
            buf.truncate(n);
            (buf, len, plain)
        })
        .collect();
    // Deliver out of order across the wrap: 0 before 65535, 65534 last.
    for i in [0, 3, 2, 4, 5, 1] {
        let (mut buf, len, plain) = packets[i].clone();
        assert_eq!(rx.unprotect(&mut buf), Ok(len), "packet {i}");
        assert_eq!(buf[..len], plain[..]);
    }
    assert_eq!(rx.highest_index(ssrc), Some(0x1_0002));
}

#[test]
fn receiver_rejects_replay_and_old_packets() {
    let cfg = rfc3711();
    let mut tx = sender(cfg, &mbms_mki(1), &mtk(4));
    let mut rx = receiver(cfg, &mbms_mki(1), &mtk(4));
    let (mut buf, len) = rtp_packet(9, 1000, 20);
    let n = tx.protect(&mut buf, len).unwrap();
    let copy = buf[..n].to_vec();
    rx.unprotect(&mut buf[..n]).unwrap();
    assert_eq!(
        rx.unprotect(&mut copy.clone()),
        Err(SrtpError::Replayed {
            ssrc: 9,
            index: 1000
        })
    );
    for seq in 1001..1001 + REPLAY_WINDOW as u16 {
        round_trip(&mut tx, &mut rx, 9, seq, 20);
    }
    assert_eq!(
        rx.unprotect(&mut copy.clone()),
        Err(SrtpError::TooOld {
            ssrc: 9,
            index: 1000,
            highest: 1000 + REPLAY_WINDOW
        })
    );
}

#[test]
fn receiver_rejects_tampering_and_unknown_mki() {
    let cfg = rfc3711();
    let mut tx = sender(cfg, &mbms_mki(1), &mtk(5));
    let mut rx = receiver(cfg, &mbms_mki(1), &mtk(5));
    let (mut buf, len) = rtp_packet(77, 5, 40);
    let n = tx.protect(&mut buf, len).unwrap();
    let good = buf[..n].to_vec();
    // Header, payload and tag bytes are all covered.
    for pos in [1, 11, 12, len - 1, n - 1] {
        let mut bad = good.clone();
        bad[pos] ^= 0x01;
        assert!(
            matches!(
                rx.unprotect(&mut bad),
                Err(SrtpError::AuthenticationFailed { .. })
            ),
            "flipped byte {pos}"
        );
    }
    let mut bad = good.clone();
    bad[len + 5] ^= 0xff;
    let mut unknown = mbms_mki(1);
    unknown[5] ^= 0xff;
    assert_eq!(
        rx.unprotect(&mut bad),
        Err(SrtpError::UnknownMki(MkiBytes::new(&unknown).unwrap()))
    );
    // Failed packets left no state behind: the genuine one still goes through.
    assert_eq!(rx.highest_index(77), None);
    assert_eq!(rx.unprotect(&mut good.clone()), Ok(len));
}

/// Design §3: never protect (MTK, SSRC, index) twice, whatever key is active.
#[test]
fn sender_refuses_index_reuse_across_keys() {
    let cfg = rfc3711();
    let mut tx = sender(cfg, &mbms_mki(1), &mtk(6));
    let (mut buf, len) = rtp_packet(1, 500, 10);
    tx.protect(&mut buf, len).unwrap();
    let (mut again, len) = rtp_packet(1, 500, 10);
    let plain = again.clone();
    assert_eq!(
        tx.protect(&mut again, len),
        Err(SrtpError::IndexReused {
            ssrc: 1,
            index: 500
        })
    );
    assert_eq!(again, plain, "a refused packet is left untouched");
    tx.add_master_key(&mbms_mki(2), &mtk(7)).unwrap();
    tx.set_active_key(&mbms_mki(2)).unwrap();
    assert_eq!(
        tx.protect(&mut again, len),
        Err(SrtpError::IndexReused {
            ssrc: 1,
            index: 500
        })
    );
    // Out-of-order inside the window is fine once; behind the window is refused.
    let (mut earlier, len) = rtp_packet(1, 499, 10);
    tx.protect(&mut earlier, len).unwrap();
    let (mut ahead, len) = rtp_packet(1, 500 + REPLAY_WINDOW as u16, 10);
    tx.protect(&mut ahead, len).unwrap();
    let (mut behind, len) = rtp_packet(1, 498, 10);
    assert_eq!(
        tx.protect(&mut behind, len),
        Err(SrtpError::IndexBehindWindow {
            ssrc: 1,
            index: 498,
            highest: 500 + REPLAY_WINDOW
        })
    );
    // Other SSRCs have their own index space.
    let (mut other, len) = rtp_packet(2, 500, 10);
    tx.protect(&mut other, len).unwrap();
}

#[test]
fn key_ring_management_errors() {
    let cfg = rfc3711();
    let mut tx = SrtpSender::new(cfg).unwrap();
    let (mut buf, len) = rtp_packet(1, 1, 1);
    assert_eq!(tx.protect(&mut buf, len), Err(SrtpError::NoActiveKey));
    assert!(matches!(
        tx.add_master_key(&[1, 2, 3], &mtk(1)),
        Err(SrtpError::MkiLength {
            len: 3,
            expected: 6,
            ..
        })
    ));
    for id in 0..MAX_MASTER_KEYS as u16 {
        tx.add_master_key(&mbms_mki(id), &mtk(id as u8)).unwrap();
    }
    assert_eq!(
        tx.add_master_key(&mbms_mki(0), &mtk(9)),
        Err(SrtpError::DuplicateMki(
            MkiBytes::new(&mbms_mki(0)).unwrap()
        ))
    );
    assert_eq!(
        tx.add_master_key(&mbms_mki(99), &mtk(9)),
        Err(SrtpError::KeyRingFull {
            capacity: MAX_MASTER_KEYS
        })
    );
    assert_eq!(
        tx.set_active_key(&mbms_mki(99)),
        Err(SrtpError::UnknownMki(MkiBytes::new(&mbms_mki(99)).unwrap()))
    );
    tx.remove_master_key(&mbms_mki(3)).unwrap();
    assert_eq!(tx.master_keys().count(), MAX_MASTER_KEYS - 1);
    assert!(matches!(
        SrtpSender::new(config(AuthTag::HmacSha1_80, MAX_MKI_LEN + 1)),
        Err(SrtpError::MkiTooLong { .. })
    ));
    // Without an MKI there is nothing to select by: one key only.
    let mut plain = SrtpReceiver::new(config(AuthTag::HmacSha1_80, 0)).unwrap();
    plain.add_master_key(&[], &mtk(1)).unwrap();
    assert!(matches!(
        plain.add_master_key(&[], &mtk(2)),
        Err(SrtpError::DuplicateMki(_))
    ));
}

#[test]
fn protect_checks_buffer_and_header() {
    let cfg = rfc3711();
    let mut tx = sender(cfg, &mbms_mki(1), &mtk(1));
    let (mut buf, len) = rtp_packet(1, 1, 10);
    assert_eq!(
        tx.protect(&mut buf[..len + 3], len),
        Err(SrtpError::BufferTooSmall {
            needed: len + 16,
            available: len + 3
        })
    );
    assert!(matches!(
        tx.protect(&mut buf, 200),
        Err(SrtpError::BufferTooSmall { needed: 216, .. })
    ));
    buf[0] = 0x40;
    assert!(matches!(
        tx.protect(&mut buf, len),
        Err(SrtpError::MalformedRtp(_))
    ));
    let mut rx = receiver(cfg, &mbms_mki(1), &mtk(1));
    assert_eq!(
        rx.unprotect(&mut [0x80; 10]),
        Err(SrtpError::PacketTooShort {
            len: 10,
            needed: 16
        })
    );
}

#[test]
fn stream_table_is_bounded() {
    let cfg = config(AuthTag::HmacSha1_80, 6);
    let mut tx = sender(cfg, &mbms_mki(1), &mtk(1));
    for ssrc in 0..cfg.max_streams as u32 {
        let (mut buf, len) = rtp_packet(ssrc, 1, 1);
        tx.protect(&mut buf, len).unwrap();
    }
    let (mut buf, len) = rtp_packet(99, 1, 1);
    assert_eq!(
        tx.protect(&mut buf, len),
        Err(SrtpError::TooManyStreams {
            ssrc: 99,
            capacity: cfg.max_streams
        })
    );
}

#[test]
fn srtcp_round_trip_replay_and_tamper() {
    let cfg = rfc3711();
    let mut tx = sender(cfg, &mbms_mki(1), &mtk(8));
    let mut rx = receiver(cfg, &mbms_mki(1), &mtk(8));
    let sr = RtcpHeader {
        padding: false,
        count: 0,
        packet_type: 200,
        length: 6,
        ssrc: 0xabcd_0001,
    };
    let mut plain = sr.to_vec();
    plain.extend((0u8..20).collect::<Vec<_>>());
    let mut packets = Vec::new();
    for i in 0..3u32 {
        let mut buf = plain.clone();
        buf.resize(plain.len() + cfg.rtcp_overhead(), 0);
        let n = tx.protect_rtcp(&mut buf, plain.len()).unwrap();
        assert_eq!(n, buf.len());
        assert_eq!(
            buf[plain.len()..plain.len() + 4],
            (0x8000_0000 | i).to_be_bytes()
        );
        assert_ne!(buf[8..plain.len()], plain[8..]);
        packets.push(buf);
    }
    for buf in packets.iter().rev() {
        let mut buf = buf.clone();
        assert_eq!(rx.unprotect_rtcp(&mut buf), Ok(plain.len()));
        assert_eq!(buf[..plain.len()], plain[..]);
    }
    assert_eq!(
        rx.unprotect_rtcp(&mut packets[1].clone()),
        Err(SrtpError::Replayed {
            ssrc: 0xabcd_0001,
            index: 1
        })
    );
    let mut bad = packets[0].clone();
    bad[plain.len() + 3] ^= 0x04; // the index word is authenticated
    assert!(matches!(
        rx.unprotect_rtcp(&mut bad),
        Err(SrtpError::AuthenticationFailed { .. })
    ));
    // SRTP and SRTCP keys differ: an SRTCP packet is no SRTP packet.
    assert!(rx.unprotect(&mut packets[0].clone()).is_err());
}

/// The MBMS profile under each way of carrying the ROC.
fn every_roc_transmission() -> impl Iterator<Item = SrtpConfig> {
    let rate = std::num::NonZeroU16::new(4).unwrap();
    std::iter::once(RocTransmission::None)
        .chain(RccMode::ALL.map(|mode| RocTransmission::Rcc { mode, rate }))
        .map(|roc| SrtpConfig {
            roc,
            ..SrtpConfig::mbms()
        })
}

proptest! {
    #[test]
    fn random_bytes_into_unprotect_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        for cfg in every_roc_transmission() {
            let mut rx = receiver(cfg, &mbms_mki(1), &mtk(1));
            let mut buf = bytes.clone();
            prop_assert!(rx.unprotect(&mut buf).is_err());
            let mut buf = bytes.clone();
            prop_assert!(rx.unprotect_rtcp(&mut buf).is_err());
        }
    }

    #[test]
    fn random_bytes_into_protect_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200), len in 0usize..220) {
        for cfg in every_roc_transmission() {
            let mut tx = sender(cfg, &mbms_mki(1), &mtk(1));
            let _ = tx.protect(&mut bytes.clone(), len);
            let _ = tx.protect_rtcp(&mut bytes.clone(), len);
        }
    }

    #[test]
    fn protect_unprotect_round_trip(
        start in any::<u16>(),
        steps in proptest::collection::vec((1u16..300, 0usize..1400), 1..20),
        short_tag in any::<bool>(),
    ) {
        let tag = if short_tag { AuthTag::HmacSha1_32 } else { AuthTag::HmacSha1_80 };
        let cfg = config(tag, 6);
        let mut tx = sender(cfg, &mbms_mki(1), &mtk(2));
        let mut rx = receiver(cfg, &mbms_mki(1), &mtk(2));
        let mut seq = start;
        for (step, payload_len) in steps {
            round_trip(&mut tx, &mut rx, 0x0bad_cafe, seq, payload_len);
            seq = seq.wrapping_add(step);
        }
        prop_assert_eq!(tx.highest_index(0x0bad_cafe), rx.highest_index(0x0bad_cafe));
    }
}

/// A late joiner: the sender's SEQ has wrapped three times. With the default
/// ROC 0 the receiver cannot authenticate; a ROC search finds ROC 3 and the
/// stream continues from there.
#[test]
fn late_join_finds_roc_by_search() {
    let cfg = rfc3711();
    let mut tx = sender(cfg, &mbms_mki(1), &mtk(9));
    let ssrc = 5;
    let mut seq = 0u16;
    for _ in 0..3 * 65536 + 10 {
        let (mut buf, len) = rtp_packet(ssrc, seq, 0);
        tx.protect(&mut buf, len).unwrap();
        seq = seq.wrapping_add(1);
    }
    let (mut buf, len) = rtp_packet(ssrc, seq, 30);
    let plain = buf[..len].to_vec();
    let n = tx.protect(&mut buf, len).unwrap();
    let packet = buf[..n].to_vec();

    let mut rx = receiver(cfg, &mbms_mki(1), &mtk(9));
    assert_eq!(
        rx.unprotect(&mut packet.clone()),
        Err(SrtpError::AuthenticationFailed { ssrc })
    );
    rx.set_max_initial_roc(2);
    assert_eq!(
        rx.unprotect(&mut packet.clone()),
        Err(SrtpError::AuthenticationFailed { ssrc })
    );
    rx.set_max_initial_roc(8);
    let mut buf = packet;
    assert_eq!(rx.unprotect(&mut buf), Ok(len));
    assert_eq!(buf[..len], plain[..]);
    assert_eq!(rx.highest_index(ssrc), Some(3 << 16 | u64::from(seq)));
    round_trip(&mut tx, &mut rx, ssrc, seq.wrapping_add(1), 30);
}

/// SRTCP with E = 0 (RFC 3711 §3.4): authenticated, payload left in clear.
#[test]
fn srtcp_unencrypted_packet_is_authenticated_only() {
    let cfg = rfc3711();
    let mut rx = receiver(cfg, &mbms_mki(1), &mtk(3));
    let mut packet = hex::decode(LIBSRTP_RTCP).unwrap();
    let len = packet.len();
    packet.extend_from_slice(&7u32.to_be_bytes());
    let tag = rx.keys.get(&mbms_mki(1)).unwrap().rtcp.mac(&[&packet]);
    packet.extend_from_slice(&mbms_mki(1));
    packet.extend_from_slice(&tag[..10]);
    let mut buf = packet.clone();
    assert_eq!(rx.unprotect_rtcp(&mut buf), Ok(len));
    assert_eq!(hex::encode(&buf[..len]), LIBSRTP_RTCP);
    assert_eq!(
        rx.unprotect_rtcp(&mut packet.clone()),
        Err(SrtpError::Replayed {
            ssrc: 0xcafe_babe,
            index: 7
        })
    );
    // Setting E on the same bytes breaks the tag.
    packet[len] |= 0x80;
    let mut fresh = receiver(cfg, &mbms_mki(1), &mtk(3));
    assert!(matches!(
        fresh.unprotect_rtcp(&mut packet),
        Err(SrtpError::AuthenticationFailed { .. })
    ));
}

proptest! {
    /// Any single bit flip in a protected packet is refused, never accepted.
    #[test]
    fn any_bit_flip_is_refused(seq in any::<u16>(), payload_len in 0usize..300, bit in any::<proptest::sample::Index>(), rtcp in any::<bool>()) {
        let cfg = rfc3711();
        let mut tx = sender(cfg, &mbms_mki(1), &mtk(4));
        let mut rx = receiver(cfg, &mbms_mki(1), &mtk(4));
        let (mut buf, len) = rtp_packet(3, seq, payload_len);
        let n = if rtcp {
            buf[0] = 0x80;
            buf[1] = 200;
            tx.protect_rtcp(&mut buf, len).unwrap()
        } else {
            tx.protect(&mut buf, len).unwrap()
        };
        let mut bad = buf[..n].to_vec();
        let bit = bit.index(n * 8);
        bad[bit / 8] ^= 1 << (bit % 8);
        let result = if rtcp { rx.unprotect_rtcp(&mut bad) } else { rx.unprotect(&mut bad) };
        prop_assert!(result.is_err(), "flipped bit {} accepted", bit);
        // The genuine packet still goes through afterwards.
        let mut good = buf[..n].to_vec();
        let result = if rtcp { rx.unprotect_rtcp(&mut good) } else { rx.unprotect(&mut good) };
        prop_assert_eq!(result, Ok(len));
    }
}
