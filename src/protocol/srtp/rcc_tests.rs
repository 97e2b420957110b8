//! Packet-level tests of the ROC-carrying transform (RFC 4771): a vector
//! derived from RFC 4771 and libsrtp's published `srtp_validate_mki` packet,
//! a computed vector at a non-zero ROC, late joins, each mode, and the
//! packets a receiver must refuse without taking their ROC.

use super::*;
use crate::protocol::codec::Codec;
use crate::protocol::keys::{Mtk, MtkKey, MtkSalt};
use proptest::prelude::*;
use std::num::NonZeroU16;

/// The RFC 3711 B.3 master key and salt of libsrtp's `srtp_validate*`.
fn libsrtp_mtk() -> Mtk {
    Mtk {
        key: MtkKey::from_slice(&hex::decode("e1f97a0d3e018be0d64fa32c06de4139").unwrap()).unwrap(),
        salt: MtkSalt::from_slice(&hex::decode("0ec675ad498afeebb6960b3aabe6").unwrap()).unwrap(),
    }
}

/// libsrtp's `srtp_validate_mki` plaintext: SEQ 0x1234, SSRC cafebabe.
const LIBSRTP_RTP: &str = "800f1234decafbadcafebabeabababababababababababababababab";
const LIBSRTP_MKI: &str = "e1f97a0d";
const SSRC: u32 = 0xcafe_babe;

fn rcc(mode: RccMode, rate: u16) -> RocTransmission {
    RocTransmission::Rcc {
        mode,
        rate: NonZeroU16::new(rate).unwrap(),
    }
}

fn config(roc: RocTransmission) -> SrtpConfig {
    SrtpConfig {
        tag: AuthTag::HmacSha1_80,
        mki_len: 4,
        max_streams: 4,
        roc,
    }
}

fn sender(roc: RocTransmission) -> SrtpSender {
    let mki = hex::decode(LIBSRTP_MKI).unwrap();
    let mut tx = SrtpSender::new(config(roc)).unwrap();
    tx.add_master_key(&mki, &libsrtp_mtk()).unwrap();
    tx.set_active_key(&mki).unwrap();
    tx
}

fn receiver(roc: RocTransmission) -> SrtpReceiver {
    let mut rx = SrtpReceiver::new(config(roc)).unwrap();
    rx.add_master_key(&hex::decode(LIBSRTP_MKI).unwrap(), &libsrtp_mtk())
        .unwrap();
    rx
}

/// libsrtp's plaintext with sequence number `seq`, protected by `tx`.
fn protect(tx: &mut SrtpSender, seq: u16) -> Vec<u8> {
    let mut buf = hex::decode(LIBSRTP_RTP).unwrap();
    buf[2..4].copy_from_slice(&seq.to_be_bytes());
    let len = buf.len();
    buf.resize(len + tx.config().rtp_overhead(), 0);
    let srtp_len = tx.protect(&mut buf, len).unwrap();
    buf.truncate(srtp_len);
    buf
}

/// Walks `tx` forward in steps the index estimate follows, so that its next
/// packet with the SEQ of `target` is protected at index `target`.
fn advance_to(tx: &mut SrtpSender, target: u64) {
    let mut next = tx.highest_index(SSRC).map_or(0, |i| i + 1);
    while next < target {
        protect(tx, next as u16);
        next = (next + 30_000).min(target);
    }
}

/// RFC 4771 (the transform) on libsrtp's published packet: SEQ 0x1234 is 0 mod 4, so with
/// R = 4 it is an RCC packet, and its tag is ROC (0) followed by the first
/// 6 bytes of the tag libsrtp publishes for it (b78d6acc99ea179b8dbb): the
/// same HMAC over the same bytes, truncated by the 32 bits the ROC takes.
#[test]
fn libsrtp_vector_as_an_rcc_packet() {
    let expected = concat!(
        "800f1234decafbadcafebabe",
        "4e55dc4ce79978d88ca4d215949d2402",
        "e1f97a0d",
        "00000000",
        "b78d6acc99ea",
    );
    for mode in [RccMode::Rccm1, RccMode::Rccm2] {
        let packet = protect(&mut sender(rcc(mode, 4)), 0x1234);
        assert_eq!(hex::encode(&packet), expected, "{mode:?}");
        let mut rx = receiver(rcc(mode, 4));
        let mut buf = packet.clone();
        let out = rx.unprotect_packet(&mut buf).unwrap();
        assert_eq!(hex::encode(&buf[..out.rtp_len]), LIBSRTP_RTP);
        assert_eq!((out.index, out.carried_roc), (0x1234, true));
        assert_eq!(rx.roc_source(SSRC), Some(RocSource::Carried));
    }
    // RCCm3: the tag is the ROC alone.
    let packet = protect(&mut sender(rcc(RccMode::Rccm3, 4)), 0x1234);
    assert_eq!(
        hex::encode(&packet),
        &expected[..expected.len() - 12],
        "RCCm3 carries no MAC"
    );
}

/// A computed vector at ROC 5 (checked against libsrtp in
/// `tests/libsrtp_interop.rs`): the RCC tag is ROC ‖ the first 6 bytes of the
/// default tag of the same packet, and the rest of the packet is identical.
#[test]
fn rcc_tag_at_roc_5_is_the_roc_and_the_truncated_default_tag() {
    let mut plain = sender(RocTransmission::None);
    let mut carrying = sender(rcc(RccMode::Rccm2, 16));
    let seq = 0x0130; // 304 = 19 · 16
    advance_to(&mut plain, 5 << 16 | seq as u64);
    advance_to(&mut carrying, 5 << 16 | seq as u64);
    let default = protect(&mut plain, seq);
    let rcc_packet = protect(&mut carrying, seq);
    assert_eq!(default.len(), rcc_packet.len());
    let tag_at = default.len() - 10;
    assert_eq!(default[..tag_at], rcc_packet[..tag_at]);
    assert_eq!(&rcc_packet[tag_at..tag_at + 4], &5u32.to_be_bytes());
    assert_eq!(&rcc_packet[tag_at + 4..], &default[tag_at..tag_at + 6]);
    assert_eq!(
        hex::encode(&rcc_packet),
        concat!(
            "800f0130decafbadcafebabe",
            "416936935523bd84a0e7f3d6145d4a22",
            "e1f97a0d",
            "00000005",
            "48f243bba8f3",
        )
    );
    // Between RCC packets RCCm2 sends exactly the default transform.
    assert_eq!(
        protect(&mut plain, seq + 1),
        protect(&mut carrying, seq + 1)
    );
}

/// A receiver that joins at ROC 3: refuses every packet until the first RCC
/// packet, takes its ROC, then decrypts everything, across the next wrap.
#[test]
fn late_joiner_learns_the_roc_from_the_first_rcc_packet() {
    for mode in [RccMode::Rccm1, RccMode::Rccm2, RccMode::Rccm3] {
        let mut tx = sender(rcc(mode, 16));
        let first = 0xfff0u16 - 7; // 7 packets before the RCC packet 0xfff0
        advance_to(&mut tx, 3 << 16 | u64::from(first));
        let mut rx = receiver(rcc(mode, 16));
        let mut learned_at = None;
        for step in 0..64u16 {
            let seq = first.wrapping_add(step);
            let mut packet = protect(&mut tx, seq);
            match rx.unprotect_packet(&mut packet) {
                Err(SrtpError::AwaitingRoc { ssrc }) => {
                    assert_eq!(ssrc, SSRC);
                    assert!(learned_at.is_none(), "{mode:?}: refused after sync");
                }
                Ok(out) => {
                    let expected_roc = if seq >= first { 3 } else { 4 };
                    assert_eq!(out.index, expected_roc << 16 | u64::from(seq), "{mode:?}");
                    assert_eq!(out.carried_roc, seq % 16 == 0);
                    learned_at.get_or_insert(seq);
                }
                Err(e) => panic!("{mode:?}: {e}"),
            }
        }
        assert_eq!(learned_at, Some(0xfff0), "{mode:?}");
        assert_eq!(rx.roc_source(SSRC), Some(RocSource::Carried));
        assert_eq!(rx.highest_index(SSRC), Some(4 << 16 | 0x28));
    }
}

/// A receiver there from the start of the session: in RCCm2 the first
/// packet authenticates at ROC 0 and nothing is lost; in RCCm1 and RCCm3
/// nothing can confirm ROC 0, so the stream starts at the first RCC packet.
#[test]
fn a_receiver_from_the_start_begins_at_roc_0_when_a_tag_confirms_it() {
    let mut tx = sender(rcc(RccMode::Rccm2, 16));
    let mut rx = receiver(rcc(RccMode::Rccm2, 16));
    for seq in 5..40 {
        let mut packet = protect(&mut tx, seq);
        assert_eq!(
            rx.unprotect_packet(&mut packet).unwrap().index,
            u64::from(seq)
        );
    }
    assert_eq!(rx.roc_source(SSRC), Some(RocSource::Zero));

    for mode in [RccMode::Rccm1, RccMode::Rccm3] {
        let mut tx = sender(rcc(mode, 16));
        let mut rx = receiver(rcc(mode, 16));
        let refused = (5..40)
            .filter(|&seq| {
                let mut packet = protect(&mut tx, seq);
                rx.unprotect_packet(&mut packet) == Err(SrtpError::AwaitingRoc { ssrc: SSRC })
            })
            .count();
        assert_eq!(
            refused, 11,
            "{mode:?}: SEQ 5..16 wait for the RCC packet 16"
        );
        assert_eq!(rx.roc_source(SSRC), Some(RocSource::Carried));
    }
}

/// What each mode puts on the wire between RCC packets.
#[test]
fn packet_lengths_per_mode() {
    let rtp_len = LIBSRTP_RTP.len() / 2;
    for (mode, rcc_tag, other_tag) in [
        (RccMode::Rccm1, 10, 0),
        (RccMode::Rccm2, 10, 10),
        (RccMode::Rccm3, 4, 0),
    ] {
        let mut tx = sender(rcc(mode, 8));
        let config = *tx.config();
        for seq in 0..17u16 {
            let packet = protect(&mut tx, seq);
            let tag = if seq % 8 == 0 { rcc_tag } else { other_tag };
            assert_eq!(packet.len(), rtp_len + 4 + tag, "{mode:?} seq {seq}");
            assert_eq!(config.rtp_trailer(seq), 4 + tag);
            assert_eq!(
                config.mki_of(&packet),
                Some(&hex::decode(LIBSRTP_MKI).unwrap()[..])
            );
        }
    }
}

/// A corrupted ROC or a truncated tag is refused and installs nothing: the
/// stream still waits for a ROC, and the genuine packet is accepted after.
#[test]
fn damaged_rcc_packets_never_install_a_roc() {
    let mut tx = sender(rcc(RccMode::Rccm2, 16));
    advance_to(&mut tx, 0x2_0100);
    let packet = protect(&mut tx, 0x0100);
    let tag_at = packet.len() - 10;
    let mut rx = receiver(rcc(RccMode::Rccm2, 16));

    let mut wrong_roc = packet.clone();
    wrong_roc[tag_at + 3] ^= 0x01; // ROC 3 instead of 2
    assert_eq!(
        rx.unprotect_packet(&mut wrong_roc),
        Err(SrtpError::AuthenticationFailed { ssrc: SSRC })
    );
    let mut truncated = packet[..packet.len() - 1].to_vec();
    assert!(rx.unprotect_packet(&mut truncated).is_err());
    let mut no_tag = packet[..tag_at].to_vec();
    assert!(rx.unprotect_packet(&mut no_tag).is_err());
    assert_eq!(rx.roc_source(SSRC), None);
    assert_eq!(rx.highest_index(SSRC), None);
    let mut next = protect(&mut tx, 0x0101);
    assert_eq!(
        rx.unprotect_packet(&mut next),
        Err(SrtpError::AwaitingRoc { ssrc: SSRC })
    );

    let mut genuine = packet.clone();
    assert_eq!(rx.unprotect_packet(&mut genuine).unwrap().index, 0x2_0100);
    // Once synchronized, a forged ROC on a later RCC packet is still refused.
    let mut later = protect(&mut tx, 0x0110);
    later[tag_at + 3] ^= 0x04;
    assert_eq!(
        rx.unprotect_packet(&mut later),
        Err(SrtpError::AuthenticationFailed { ssrc: SSRC })
    );
    assert_eq!(rx.highest_index(SSRC), Some(0x2_0100));
}

/// In RCCm2 the packets between RCC packets keep their full tag: tampering
/// is caught on every packet, not only on those that carry the ROC.
#[test]
fn rccm2_authenticates_every_packet() {
    let mut tx = sender(rcc(RccMode::Rccm2, 16));
    let mut rx = receiver(rcc(RccMode::Rccm2, 16));
    let mut first = protect(&mut tx, 0);
    rx.unprotect(&mut first).unwrap();
    let mut tampered = protect(&mut tx, 1);
    tampered[20] ^= 0x80;
    assert_eq!(
        rx.unprotect(&mut tampered),
        Err(SrtpError::AuthenticationFailed { ssrc: SSRC })
    );
}

/// The rate counts on the 16-bit SEQ, and a sender crossing a wrap puts the
/// new ROC in the next RCC packet.
#[test]
fn rcc_packets_carry_the_roc_after_a_wrap() {
    let mut tx = sender(rcc(RccMode::Rccm2, 16));
    advance_to(&mut tx, 0xffe0);
    let mut rx = receiver(rcc(RccMode::Rccm2, 16));
    for seq in (0xffe0u16..=0xffff).chain(0..0x20) {
        let mut packet = protect(&mut tx, seq);
        let tag_at = packet.len() - 10;
        if seq % 16 == 0 {
            let roc = u32::from_be_bytes(packet[tag_at..tag_at + 4].try_into().unwrap());
            assert_eq!(roc, u32::from(seq < 0x8000));
        }
        if !(0x8000..0xfff0).contains(&seq) {
            rx.unprotect(&mut packet).unwrap();
        }
    }
    assert_eq!(rx.highest_index(SSRC), Some(0x1_001f));
}

/// RCCm1 and RCCm2 need room for a MAC after the 4-byte ROC; RCCm3 does not.
#[test]
fn a_tag_too_short_for_the_roc_is_refused() {
    for mode in [RccMode::Rccm1, RccMode::Rccm2] {
        let short = SrtpConfig {
            tag: AuthTag::HmacSha1_32,
            ..config(rcc(mode, 16))
        };
        assert_eq!(
            SrtpSender::new(short).unwrap_err(),
            SrtpError::RccTagTooShort {
                mode: mode.name(),
                tag: 4
            }
        );
        assert!(SrtpReceiver::new(short).is_err());
    }
    let m3 = SrtpConfig {
        tag: AuthTag::HmacSha1_32,
        ..config(rcc(RccMode::Rccm3, 16))
    };
    assert!(SrtpSender::new(m3).is_ok());
}

/// Without RFC 4771 nothing changes: ROC 0, or the search when enabled.
#[test]
fn without_rcc_the_roc_is_zero_or_searched() {
    let mut tx = sender(RocTransmission::None);
    let mut rx = receiver(RocTransmission::None);
    let mut packet = protect(&mut tx, 7);
    rx.unprotect(&mut packet).unwrap();
    assert_eq!(rx.roc_source(SSRC), Some(RocSource::Zero));

    let mut tx = sender(RocTransmission::None);
    advance_to(&mut tx, 0x2_0007);
    let mut rx = receiver(RocTransmission::None);
    rx.set_max_initial_roc(3);
    let mut packet = protect(&mut tx, 7);
    assert_eq!(rx.unprotect_packet(&mut packet).unwrap().index >> 16, 2);
    assert_eq!(rx.roc_source(SSRC), Some(RocSource::Searched));
    // A header that does not parse is malformed, whatever the mode.
    let mut bad = RtpHeader {
        padding: false,
        marker: false,
        payload_type: 0,
        sequence_number: 16,
        timestamp: 0,
        ssrc: SSRC,
        csrcs: &[],
        extension: None,
    }
    .to_vec();
    bad[0] = 0x40; // version 1
    bad.extend([0u8; 20]);
    let mut rx = receiver(rcc(RccMode::Rccm2, 16));
    assert!(matches!(
        rx.unprotect(&mut bad),
        Err(SrtpError::MalformedRtp(_))
    ));
}

proptest! {
    /// RCCm2 (the MBMS profile's mode): once a receiver took the ROC from an
    /// RCC packet, any single bit flip in a later packet, RCC or not, is
    /// refused, and the genuine packet still goes through.
    #[test]
    fn any_bit_flip_after_sync_is_refused(seq in 16u16..u16::MAX, bit in any::<proptest::sample::Index>()) {
        let mut tx = sender(rcc(RccMode::Rccm2, 16));
        let mut rx = receiver(rcc(RccMode::Rccm2, 16));
        let sync_seq = (seq - 1) / 16 * 16;
        let mut sync = protect(&mut tx, sync_seq);
        rx.unprotect(&mut sync).unwrap();
        let packet = protect(&mut tx, seq);
        let mut bad = packet.clone();
        let bit = bit.index(bad.len() * 8);
        bad[bit / 8] ^= 1 << (bit % 8);
        prop_assert!(rx.unprotect(&mut bad).is_err(), "flipped bit {} accepted", bit);
        let mut good = packet;
        prop_assert_eq!(rx.unprotect(&mut good), Ok(LIBSRTP_RTP.len() / 2));
    }
}
