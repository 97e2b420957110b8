//! SRTP/SRTCP interoperability with libsrtp (Debian `libsrtp2-dev`), an
//! independent RFC 3711 implementation: a 6-byte MKI, two master keys with an
//! MKI switch mid-stream and a ROC rollover, in both directions. The libsrtp
//! side is `tests/interop/srtp_peer.c`, compiled here with `cc`.

use mbms_gateway::protocol::codec::Codec;
use mbms_gateway::protocol::keys::{Mki, MskId, Mtk, MtkId, MtkKey, MtkSalt};
use mbms_gateway::protocol::srtp::{
    AuthTag, RocTransmission, RtcpHeader, RtpExtension, RtpHeader, SrtpConfig, SrtpReceiver,
    SrtpSender,
};

mod common;
use common::libsrtp::{MasterKey, run_peer};

const PACKETS: usize = 240;
/// The first SEQ: the ROC rolls over after 100 packets.
const FIRST_SEQ: u16 = 65436;
/// Packets protected under the first master key before the switch.
const SWITCH_AT: usize = 120;
const SSRC: u32 = 0x4d42_4d53;

fn master_keys() -> [MasterKey; 2] {
    let key = |mtk_id: u16, seed: u8| {
        let mki = Mki {
            msk_id: MskId::new(0x00a1, 0x0002),
            mtk_id: MtkId(mtk_id),
        };
        let mtk = Mtk {
            key: MtkKey::new(std::array::from_fn(|i| {
                seed.wrapping_mul(31).wrapping_add(i as u8)
            })),
            salt: MtkSalt::new(std::array::from_fn(|i| seed ^ (i as u8 * 7))),
        };
        (mki.to_bytes(), mtk)
    };
    [key(0x0100, 1), key(0x0101, 2)]
}

/// The encoder's RTP: varied payload sizes, CSRCs, header extensions and
/// padding, so both sides must agree on where the payload starts.
fn rtp_stream() -> Vec<Vec<u8>> {
    let csrcs = [0x11u8; 8];
    let extension = [0xbe, 0xde, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06];
    (0..PACKETS)
        .map(|i| {
            let header = RtpHeader {
                padding: i % 7 == 3,
                marker: i % 10 == 0,
                payload_type: 96,
                sequence_number: FIRST_SEQ.wrapping_add(i as u16),
                timestamp: 90_000 + i as u32 * 3003,
                ssrc: SSRC,
                csrcs: if i % 5 == 1 { &csrcs } else { &[] },
                extension: (i % 4 == 2).then_some(RtpExtension {
                    profile: 0xbede,
                    data: &extension,
                }),
            };
            let mut packet = header.to_vec();
            let payload_len = [0, 1, 17, 160, 1316][i % 5] + i;
            packet.extend((0..payload_len).map(|b| (b * 13 + i) as u8));
            if header.padding {
                packet.extend_from_slice(&[0, 0, 3]);
            }
            packet
        })
        .collect()
}

fn key_number(i: usize) -> u8 {
    u8::from(i >= SWITCH_AT)
}

/// The MBMS profile (6-byte MKI) with the given SRTP tag and the RFC 3711
/// default transform on every packet (`libsrtp_late_join.rs` covers the ROC
/// on air).
fn config(tag: AuthTag) -> SrtpConfig {
    SrtpConfig {
        tag,
        roc: RocTransmission::None,
        ..SrtpConfig::mbms()
    }
}

fn our_sender(keys: &[MasterKey], tag: AuthTag) -> SrtpSender {
    let mut tx = SrtpSender::new(config(tag)).unwrap();
    tx.add_master_key(&keys[0].0, &keys[0].1).unwrap();
    tx.set_active_key(&keys[0].0).unwrap();
    tx
}

fn our_receiver(keys: &[MasterKey], tag: AuthTag) -> SrtpReceiver {
    let mut rx = SrtpReceiver::new(config(tag)).unwrap();
    for (mki, mtk) in keys {
        rx.add_master_key(mki, mtk).unwrap();
    }
    rx
}

/// Protects the stream with our sender, installing and switching to the
/// second key at [`SWITCH_AT`] and retiring the first.
fn our_srtp(keys: &[MasterKey], tag: AuthTag, plain: &[Vec<u8>]) -> Vec<Vec<u8>> {
    let mut tx = our_sender(keys, tag);
    plain
        .iter()
        .enumerate()
        .map(|(i, packet)| {
            if i == SWITCH_AT {
                tx.add_master_key(&keys[1].0, &keys[1].1).unwrap();
                tx.set_active_key(&keys[1].0).unwrap();
                tx.remove_master_key(&keys[0].0).unwrap();
            }
            let mut buf = packet.clone();
            buf.resize(packet.len() + tx.config().rtp_overhead(), 0);
            let len = tx.protect(&mut buf, packet.len()).unwrap();
            buf.truncate(len);
            buf
        })
        .collect()
}

const TAGS: [AuthTag; 2] = [AuthTag::HmacSha1_80, AuthTag::HmacSha1_32];

#[test]
fn libsrtp_unprotects_our_srtp_across_key_switch_and_rollover() {
    let keys = master_keys();
    let plain = rtp_stream();
    for tag in TAGS {
        let protected = our_srtp(&keys, tag, &plain);
        let mki_at = |p: &Vec<u8>| p[p.len() - tag.size() - 6..][..6].to_vec();
        assert_eq!(mki_at(&protected[SWITCH_AT - 1]), keys[0].0);
        assert_eq!(mki_at(&protected[SWITCH_AT]), keys[1].0);
        let records: Vec<_> = protected.into_iter().map(|p| (0, p)).collect();
        let results = run_peer("unprotect", tag, &keys, &records);
        for (i, ((status, out), original)) in results.iter().zip(&plain).enumerate() {
            assert_eq!(*status, 0, "{tag:?}: libsrtp refused packet {i}");
            assert_eq!(
                out, original,
                "{tag:?}: packet {i} differs after libsrtp unprotect"
            );
        }
    }
}

#[test]
fn we_unprotect_libsrtp_srtp_and_produce_identical_bytes() {
    let keys = master_keys();
    let plain = rtp_stream();
    let records: Vec<_> = plain
        .iter()
        .enumerate()
        .map(|(i, p)| (key_number(i), p.clone()))
        .collect();
    for tag in TAGS {
        let theirs = run_peer("protect", tag, &keys, &records);
        let ours = our_srtp(&keys, tag, &plain);
        let mut rx = our_receiver(&keys, tag);
        for (i, ((status, packet), original)) in theirs.into_iter().zip(&plain).enumerate() {
            assert_eq!(status, 0, "{tag:?}: libsrtp could not protect packet {i}");
            assert_eq!(
                packet, ours[i],
                "{tag:?}: packet {i}: our SRTP differs from libsrtp's"
            );
            let mut buf = packet;
            let len = rx
                .unprotect(&mut buf)
                .unwrap_or_else(|e| panic!("{tag:?}: packet {i}: {e}"));
            assert_eq!(&buf[..len], &original[..], "{tag:?}: packet {i}");
        }
        assert_eq!(
            rx.highest_index(SSRC),
            Some(0x1_0000 + u64::from(FIRST_SEQ.wrapping_add(PACKETS as u16 - 1)))
        );
    }
}

/// A key libsrtp does not hold: its unknown-MKI refusal (status 25).
#[test]
fn libsrtp_refuses_unknown_mki() {
    let keys = master_keys();
    let plain = rtp_stream();
    let tag = AuthTag::HmacSha1_80;
    let protected = our_srtp(&keys, tag, &plain[..SWITCH_AT + 1]);
    let records = [(0, protected[SWITCH_AT].clone())];
    let results = run_peer("unprotect", tag, &keys[..1], &records);
    assert_eq!(results[0].0, 25, "srtp_err_status_bad_mki");
}

fn rtcp_stream() -> Vec<Vec<u8>> {
    (0..40u8)
        .map(|i| {
            let words = 6 + u16::from(i % 3);
            let mut packet = RtcpHeader {
                padding: false,
                count: 0,
                packet_type: 200,
                length: words,
                ssrc: SSRC,
            }
            .to_vec();
            packet.extend((0..usize::from(words) * 4 - 4).map(|b| b as u8 ^ i));
            packet
        })
        .collect()
}

/// SRTCP with the MBMS profile. Only with the `_80` suite: libsrtp 2.x locates
/// the MKI of an SRTCP packet using the *SRTP* tag length
/// (`srtp_get_session_keys`), so with `_32`, an MKI and the 80-bit SRTCP tag of
/// RFC 4568 §6.2.1 it refuses every SRTCP packet as "bad MKI" (status 25).
#[test]
fn srtcp_interoperates_both_ways() {
    let tag = AuthTag::HmacSha1_80;
    let keys = master_keys();
    let plain = rtcp_stream();
    let switch = plain.len() / 2;

    // Ours → libsrtp.
    let mut tx = our_sender(&keys, tag);
    tx.add_master_key(&keys[1].0, &keys[1].1).unwrap();
    let records: Vec<_> = plain
        .iter()
        .enumerate()
        .map(|(i, packet)| {
            if i == switch {
                tx.set_active_key(&keys[1].0).unwrap();
            }
            let mut buf = packet.clone();
            buf.resize(packet.len() + tx.config().rtcp_overhead(), 0);
            let len = tx.protect_rtcp(&mut buf, packet.len()).unwrap();
            buf.truncate(len);
            (0, buf)
        })
        .collect();
    for (i, ((status, out), original)) in run_peer("unprotect-rtcp", tag, &keys, &records)
        .iter()
        .zip(&plain)
        .enumerate()
    {
        assert_eq!(*status, 0, "libsrtp refused SRTCP packet {i}");
        assert_eq!(out, original, "SRTCP packet {i}");
    }

    // libsrtp → ours.
    let records: Vec<_> = plain
        .iter()
        .enumerate()
        .map(|(i, p)| (u8::from(i >= switch), p.clone()))
        .collect();
    let mut rx = our_receiver(&keys, tag);
    for (i, ((status, packet), original)) in run_peer("protect-rtcp", tag, &keys, &records)
        .into_iter()
        .zip(&plain)
        .enumerate()
    {
        assert_eq!(status, 0, "libsrtp could not protect SRTCP packet {i}");
        let mut buf = packet;
        let len = rx
            .unprotect_rtcp(&mut buf)
            .unwrap_or_else(|e| panic!("SRTCP packet {i}: {e}"));
        assert_eq!(&buf[..len], &original[..], "SRTCP packet {i}");
    }
}
