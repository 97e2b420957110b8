//! Late joiners with libsrtp (Debian `libsrtp2-dev`) as the standard SRTP
//! receiver: the ROC on air of RFC 4771. A session runs through three
//! sequence wraps and two MTK switches; a libsrtp receiver created after the
//! second wrap reads the ROC from the tag of the first RCC packet it sees
//! (as RFC 4771 lays it out: ROC_sender ‖ MAC_tr), sets it with
//! `srtp_set_stream_roc`, and decrypts every later packet that uses the
//! default transform. Our receiver, created at the same moment, verifies the
//! RCC packets too.

use mbms_gateway::protocol::codec::Codec;
use mbms_gateway::protocol::keys::{Mki, MskId, Mtk, MtkId, MtkKey, MtkSalt};
use mbms_gateway::protocol::srtp::{
    AuthTag, ROC_LEN, RccMode, RocTransmission, RtpHeader, SrtpConfig, SrtpError, SrtpReceiver,
    SrtpSender,
};
use std::num::NonZeroU16;

mod common;
use common::libsrtp::{MasterKey, PeerRecord, run_peer_on_ssrc};

const SSRC: u32 = 0x4c41_5445;
const FIRST_SEQ: u16 = 65_000;
/// Wraps after 536, 66 072 and 131 608 packets.
const PACKETS: usize = 150_000;
/// MTK switches.
const SWITCHES: [usize; 2] = [40_000, 100_000];
/// The late joiners start here: after the second wrap, before the second switch.
const JOIN_AT: usize = 70_000;
const RATE: u16 = 16;
/// libsrtp's `srtp_err_status_auth_fail` and `srtp_err_status_bad_mki`.
const AUTH_FAIL: i32 = 7;
const BAD_MKI: i32 = 25;

fn master_keys() -> [MasterKey; 3] {
    std::array::from_fn(|k| {
        let mki = Mki {
            msk_id: MskId::new(0x0007, 0x0003),
            mtk_id: MtkId(0x0200 + k as u16),
        };
        let mtk = Mtk {
            key: MtkKey::new(std::array::from_fn(|i| (k * 41 + i * 3) as u8)),
            salt: MtkSalt::new(std::array::from_fn(|i| (k * 17 + i) as u8 ^ 0xa5)),
        };
        (mki.to_bytes(), mtk)
    })
}

fn config(mode: RccMode) -> SrtpConfig {
    SrtpConfig {
        roc: RocTransmission::Rcc {
            mode,
            rate: NonZeroU16::new(RATE).unwrap(),
        },
        ..SrtpConfig::mbms()
    }
}

fn seq_of(i: usize) -> u16 {
    FIRST_SEQ.wrapping_add(i as u16)
}

fn rtp(i: usize) -> Vec<u8> {
    let mut packet = RtpHeader {
        padding: false,
        marker: false,
        payload_type: 33,
        sequence_number: seq_of(i),
        timestamp: i as u32 * 900,
        ssrc: SSRC,
        csrcs: &[],
        extension: None,
    }
    .to_vec();
    packet.extend((0..24 + i % 7).map(|b| (b + i) as u8));
    packet
}

/// The whole session as our sender protects it, MTK switches included.
fn session(mode: RccMode, keys: &[MasterKey]) -> Vec<Vec<u8>> {
    let mut tx = SrtpSender::new(config(mode)).unwrap();
    tx.add_master_key(&keys[0].0, &keys[0].1).unwrap();
    tx.set_active_key(&keys[0].0).unwrap();
    (0..PACKETS)
        .map(|i| {
            if let Some(k) = SWITCHES.iter().position(|&at| at == i) {
                let (mki, mtk) = &keys[k + 1];
                tx.add_master_key(mki, mtk).unwrap();
                tx.set_active_key(mki).unwrap();
            }
            let plain = rtp(i);
            let mut buf = plain.clone();
            buf.resize(plain.len() + tx.config().rtp_overhead(), 0);
            let len = tx.protect(&mut buf, plain.len()).unwrap();
            buf.truncate(len);
            buf
        })
        .collect()
}

/// The ROC an RCC packet carries: the first 4 bytes of its tag (RFC 4771),
/// which is the last `tag_len` bytes of the packet.
fn carried_roc(packet: &[u8], tag_len: usize) -> u32 {
    let tag = &packet[packet.len() - tag_len..];
    u32::from_be_bytes(tag[..ROC_LEN].try_into().unwrap())
}

/// Runs the late join for `mode` against libsrtp (SRTP integrity
/// `libsrtp_tag`) and our receiver, and checks every count exactly.
fn late_join(mode: RccMode, libsrtp_tag: Option<AuthTag>) {
    let keys = master_keys();
    let protected = session(mode, &keys);
    let late = &protected[JOIN_AT..];
    let is_rcc = |i: usize| seq_of(JOIN_AT + i).is_multiple_of(RATE);
    let first_rcc = (0..late.len()).find(|&i| is_rcc(i)).unwrap();
    let tag_len = AuthTag::HmacSha1_80.size();
    let roc = carried_roc(&late[first_rcc], tag_len);
    let true_roc = (u64::from(FIRST_SEQ) + JOIN_AT as u64) >> 16;
    assert_eq!(u64::from(roc), true_roc, "the ROC on air after two wraps");
    assert_eq!(roc, 2);

    // libsrtp, created at the join: the packets from the first RCC packet
    // on, the ROC set from it before the first of them.
    let records: Vec<PeerRecord> = late[first_rcc..]
        .iter()
        .enumerate()
        .map(|(n, packet)| PeerRecord {
            key_number: 0,
            set_roc: (n == 0).then_some(roc),
            packet: packet.clone(),
        })
        .collect();
    let results = run_peer_on_ssrc("unprotect", libsrtp_tag, SSRC, &keys, &records);
    let mut decrypted = 0;
    let mut refused_rcc = 0;
    for (n, (status, out)) in results.iter().enumerate() {
        let i = first_rcc + n;
        if is_rcc(i) {
            // RCC packets carry ROC ‖ MAC_tr where libsrtp expects its own
            // tag (RCCm2) or no tag at all (RCCm1): refused, never accepted.
            let expected = if libsrtp_tag.is_some() {
                AUTH_FAIL
            } else {
                BAD_MKI
            };
            assert_eq!(*status, expected, "{mode:?}: RCC packet {i}");
            refused_rcc += 1;
        } else {
            assert_eq!(*status, 0, "{mode:?}: libsrtp refused packet {i}");
            assert_eq!(out, &rtp(JOIN_AT + i), "{mode:?}: packet {i}");
            decrypted += 1;
        }
    }
    let after_first = late.len() - first_rcc;
    let rcc_after_first = (first_rcc..late.len()).filter(|&i| is_rcc(i)).count();
    assert_eq!(decrypted, after_first - rcc_after_first, "{mode:?}");
    assert_eq!(refused_rcc, rcc_after_first, "{mode:?}");
    assert_eq!(
        (after_first, rcc_after_first),
        (79_992, 5_000),
        "exact counts of the late part"
    );

    // Our receiver, created at the same moment, sees every late packet.
    let mut rx = SrtpReceiver::new(config(mode)).unwrap();
    for (mki, mtk) in &keys {
        rx.add_master_key(mki, mtk).unwrap();
    }
    let (mut awaiting, mut verified_rcc, mut ours) = (0, 0, 0);
    for (i, packet) in late.iter().enumerate() {
        let mut buf = packet.clone();
        match rx.unprotect_packet(&mut buf) {
            Err(SrtpError::AwaitingRoc { .. }) => {
                assert!(i < first_rcc);
                awaiting += 1;
            }
            Ok(out) => {
                assert!(
                    i >= first_rcc,
                    "{mode:?}: packet {i} before the ROC was known"
                );
                assert_eq!(&buf[..out.rtp_len], &rtp(JOIN_AT + i)[..]);
                verified_rcc += usize::from(out.carried_roc);
                ours += 1;
            }
            Err(e) => panic!("{mode:?}: packet {i}: {e}"),
        }
    }
    assert_eq!(awaiting, first_rcc);
    assert_eq!(ours, after_first);
    assert_eq!(verified_rcc, rcc_after_first);
    assert_eq!(
        rx.highest_index(SSRC),
        Some(u64::from(FIRST_SEQ) + PACKETS as u64 - 1)
    );
}

#[test]
fn libsrtp_joins_late_on_rccm2_and_decrypts_every_default_transform_packet() {
    late_join(RccMode::Rccm2, Some(AuthTag::HmacSha1_80));
}

/// RCCm1: the packets between RCC packets carry no tag, so libsrtp takes
/// them with null authentication; the RCC packets verify with our receiver.
#[test]
fn libsrtp_joins_late_on_rccm1_and_decrypts_every_untagged_packet() {
    late_join(RccMode::Rccm1, None);
}

/// The RCC tag checked against libsrtp's own protection of the same packet
/// at ROC 5: everything up to the tag is identical, and the tag is ROC ‖ the
/// first 6 bytes of libsrtp's HMAC-SHA1-80 tag (RFC 4771).
#[test]
fn rcc_packets_are_libsrtp_packets_with_the_roc_in_the_tag() {
    let keys = master_keys();
    let key = &keys[..1];
    let mut tx = SrtpSender::new(config(RccMode::Rccm2)).unwrap();
    tx.add_master_key(&key[0].0, &key[0].1).unwrap();
    tx.set_active_key(&key[0].0).unwrap();
    // Walk our sender to ROC 5 in steps its index estimate follows.
    let target: u64 = 5 << 16 | 0x0130;
    let mut index = 0u64;
    let mut ours = Vec::new();
    while index <= target {
        let mut plain = rtp(0);
        plain[2..4].copy_from_slice(&(index as u16).to_be_bytes());
        let mut buf = plain.clone();
        buf.resize(plain.len() + tx.config().rtp_overhead(), 0);
        let len = tx.protect(&mut buf, plain.len()).unwrap();
        buf.truncate(len);
        ours.push((index, plain, buf));
        index = if index == target {
            target + 1
        } else {
            (index + 30_000).min(target)
        };
    }
    let (_, plain, rcc_packet) = ours.pop().unwrap();
    assert_eq!(plain[2..4], [0x01, 0x30]);
    let theirs = run_peer_on_ssrc(
        "protect",
        Some(AuthTag::HmacSha1_80),
        SSRC,
        key,
        &[PeerRecord {
            key_number: 0,
            set_roc: Some(5),
            packet: plain,
        }],
    );
    let (status, libsrtp_packet) = &theirs[0];
    assert_eq!(*status, 0);
    assert_eq!(libsrtp_packet.len(), rcc_packet.len());
    let tag_at = rcc_packet.len() - 10;
    assert_eq!(rcc_packet[..tag_at], libsrtp_packet[..tag_at]);
    assert_eq!(rcc_packet[tag_at..tag_at + 4], 5u32.to_be_bytes());
    assert_eq!(rcc_packet[tag_at + 4..], libsrtp_packet[tag_at..tag_at + 6]);
}
