//! The synthetic test signal: RTP carrying MPEG-TS (RFC 2250, payload type
//! 33) whose every payload embeds a packet counter and a pattern derived from
//! it. The demo's encoder writes it; a receiver (the probe) checks after
//! decryption that the content arrived intact ([`verify_synthetic_payload`]).
//! Pure functions over caller-owned buffers.
//!
//! Payload layout: [`TS_PACKETS_PER_RTP`] TS packets of 188 bytes, each with
//! sync byte 0x47, PUSI on the first, PID [`SYNTHETIC_PID`], payload only and
//! a continuity counter that runs on across RTP packets (ISO/IEC 13818-1
//! §2.4.3.2). The 184 bytes after each TS header are: the magic
//! [`SYNTHETIC_MAGIC`] (so a real MP2T stream is never mistaken for a
//! synthetic one), the 64-bit packet counter (big-endian), the TS packet's
//! index in the RTP packet, and a pattern byte `counter·31 + index·188 +
//! offset` (mod 256) up to the end.

use thiserror::Error;

/// RTP payload type of MPEG-2 TS (RFC 3551 §6).
pub const PAYLOAD_TYPE_MP2T: u8 = 33;
/// RTP timestamp clock of MP2T (RFC 3551 §6).
pub const MP2T_CLOCK_HZ: u64 = 90_000;
/// Size of one MPEG-TS packet.
pub const TS_PACKET_LEN: usize = 188;
/// TS packets per RTP packet: the usual 7, which keeps an IP packet under 1500 bytes.
pub const TS_PACKETS_PER_RTP: usize = 7;
/// Bytes of RTP payload per packet.
pub const SYNTHETIC_PAYLOAD_LEN: usize = TS_PACKET_LEN * TS_PACKETS_PER_RTP;
/// Bytes of one synthetic RTP packet (12-byte header, no CSRC or extension).
pub const SYNTHETIC_RTP_LEN: usize = RTP_HEADER_LEN + SYNTHETIC_PAYLOAD_LEN;
/// The PID of the synthetic elementary stream.
pub const SYNTHETIC_PID: u16 = 0x0100;

const RTP_HEADER_LEN: usize = 12;
const TS_SYNC: u8 = 0x47;
const TS_HEADER_LEN: usize = 4;
/// Marks a TS packet body as written by the synthetic encoder.
pub const SYNTHETIC_MAGIC: [u8; 8] = *b"MBMS-SYN";
const MAGIC_AT: usize = TS_HEADER_LEN;
const COUNTER_AT: usize = MAGIC_AT + SYNTHETIC_MAGIC.len();
const INDEX_AT: usize = COUNTER_AT + 8;
/// Where the pattern starts in a TS packet.
const PATTERN_AT: usize = INDEX_AT + 1;

/// What one RTP packet of the synthetic stream carries in its header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SyntheticPacket {
    pub ssrc: u32,
    pub sequence_number: u16,
    pub timestamp: u32,
    pub payload_type: u8,
    /// Packet counter embedded in the payload; also fixes the TS continuity counters.
    pub counter: u64,
}

/// Writes the RTP packet `packet` into `buf[..SYNTHETIC_RTP_LEN]` and returns
/// its length. `buf` must hold at least [`SYNTHETIC_RTP_LEN`] bytes (plus the
/// SRTP overhead if it is protected in place afterwards).
pub fn build_synthetic_rtp(packet: &SyntheticPacket, buf: &mut [u8]) -> usize {
    let out = &mut buf[..SYNTHETIC_RTP_LEN];
    out[0] = 0x80; // V=2, no padding, extension or CSRC
    out[1] = packet.payload_type & 0x7f;
    out[2..4].copy_from_slice(&packet.sequence_number.to_be_bytes());
    out[4..8].copy_from_slice(&packet.timestamp.to_be_bytes());
    out[8..12].copy_from_slice(&packet.ssrc.to_be_bytes());
    write_synthetic_payload(packet.counter, &mut out[RTP_HEADER_LEN..]);
    SYNTHETIC_RTP_LEN
}

/// Fills a [`SYNTHETIC_PAYLOAD_LEN`]-byte payload for packet `counter`.
fn write_synthetic_payload(counter: u64, payload: &mut [u8]) {
    for (index, ts) in payload.chunks_exact_mut(TS_PACKET_LEN).enumerate() {
        write_ts_packet(counter, index, ts);
    }
}

/// Writes TS packet `index` of RTP packet `counter` into `ts` (188 bytes).
fn write_ts_packet(counter: u64, index: usize, ts: &mut [u8]) {
    ts[..TS_HEADER_LEN].copy_from_slice(&ts_header(counter, index));
    ts[MAGIC_AT..COUNTER_AT].copy_from_slice(&SYNTHETIC_MAGIC);
    ts[COUNTER_AT..INDEX_AT].copy_from_slice(&counter.to_be_bytes());
    ts[INDEX_AT] = index as u8;
    for (offset, byte) in ts[PATTERN_AT..].iter_mut().enumerate() {
        *byte = pattern_byte(counter, index, offset);
    }
}

/// The TS header of TS packet `index` of RTP packet `counter`.
fn ts_header(counter: u64, index: usize) -> [u8; 4] {
    let continuity = (counter.wrapping_mul(TS_PACKETS_PER_RTP as u64) + index as u64) as u8 & 0x0f;
    let pusi = if index == 0 { 0x40 } else { 0x00 };
    [
        TS_SYNC,
        pusi | (SYNTHETIC_PID >> 8) as u8 & 0x1f,
        SYNTHETIC_PID as u8,
        0x10 | continuity, // not scrambled, payload only
    ]
}

fn pattern_byte(counter: u64, index: usize, offset: usize) -> u8 {
    (counter.wrapping_mul(31) as u8)
        .wrapping_add((index * TS_PACKET_LEN) as u8)
        .wrapping_add(offset as u8)
}

/// Why a payload that looks synthetic does not check out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum PayloadError {
    #[error("payload of {0} bytes is not a synthetic payload")]
    NotSynthetic(usize),
    #[error("TS packet {index}: header {found:02x?}, magic or index is not the expected one")]
    TsHeader { index: usize, found: [u8; 4] },
    #[error("TS packet {index}: counter {found} differs from the first TS packet's {expected}")]
    Counter {
        index: usize,
        found: u64,
        expected: u64,
    },
    #[error("TS packet {index}: pattern differs at byte {offset}")]
    Pattern { index: usize, offset: usize },
}

/// Whether `payload` claims to be synthetic: the right size, a TS sync byte
/// and the magic. Other payloads (a real encoder's) are not checked.
pub fn looks_synthetic(payload: &[u8]) -> bool {
    payload.len() == SYNTHETIC_PAYLOAD_LEN
        && payload[0] == TS_SYNC
        && payload[MAGIC_AT..COUNTER_AT] == SYNTHETIC_MAGIC
}

/// Checks a synthetic payload completely (every TS header, counter and
/// pattern byte) and returns its packet counter.
pub fn verify_synthetic_payload(payload: &[u8]) -> Result<u64, PayloadError> {
    if payload.len() != SYNTHETIC_PAYLOAD_LEN {
        return Err(PayloadError::NotSynthetic(payload.len()));
    }
    let counter_of = |ts: &[u8]| {
        let mut bytes = [0u8; 8];
        bytes.copy_from_slice(&ts[COUNTER_AT..INDEX_AT]);
        u64::from_be_bytes(bytes)
    };
    let counter = counter_of(payload);
    let mut expected = [0u8; TS_PACKET_LEN];
    for (index, ts) in payload.chunks_exact(TS_PACKET_LEN).enumerate() {
        // Fast path: one comparison against the packet as it was written.
        write_ts_packet(counter, index, &mut expected);
        if ts == expected {
            continue;
        }
        let found = counter_of(ts);
        if found != counter {
            return Err(PayloadError::Counter {
                index,
                found,
                expected: counter,
            });
        }
        if ts[..TS_HEADER_LEN] != ts_header(counter, index)
            || ts[MAGIC_AT..COUNTER_AT] != SYNTHETIC_MAGIC
            || usize::from(ts[INDEX_AT]) != index
        {
            let mut found = [0u8; 4];
            found.copy_from_slice(&ts[..TS_HEADER_LEN]);
            return Err(PayloadError::TsHeader { index, found });
        }
        let offset = ts[PATTERN_AT..]
            .iter()
            .zip(&expected[PATTERN_AT..])
            .position(|(found, wanted)| found != wanted)
            .unwrap_or(0);
        return Err(PayloadError::Pattern { index, offset });
    }
    Ok(counter)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::srtp::RtpHeader;
    use proptest::prelude::*;

    fn sample(counter: u64) -> SyntheticPacket {
        SyntheticPacket {
            ssrc: 0x1234_5678,
            sequence_number: 65535,
            timestamp: 90_000,
            payload_type: PAYLOAD_TYPE_MP2T,
            counter,
        }
    }

    #[test]
    fn packet_is_rtp_carrying_seven_ts_packets() {
        let mut buf = [0u8; 1500];
        let len = build_synthetic_rtp(&sample(5), &mut buf);
        assert_eq!(len, 12 + 1316);
        let (header, header_len) = RtpHeader::parse(&buf[..len]).unwrap();
        assert_eq!(header_len, 12);
        assert_eq!(
            (header.payload_type, header.sequence_number, header.ssrc),
            (33, 65535, 0x1234_5678)
        );
        let payload = &buf[12..len];
        for (i, ts) in payload.chunks(188).enumerate() {
            assert_eq!(ts[0], 0x47);
            assert_eq!(u16::from_be_bytes([ts[1], ts[2]]) & 0x1fff, SYNTHETIC_PID);
            assert_eq!(
                ts[1] & 0x40 != 0,
                i == 0,
                "PUSI on the first TS packet only"
            );
            assert_eq!(ts[3] >> 4, 0x1, "payload only");
            assert_eq!(usize::from(ts[3] & 0x0f), (5 * 7 + i) % 16);
        }
        assert_eq!(verify_synthetic_payload(payload), Ok(5));
    }

    #[test]
    fn continuity_counter_runs_across_rtp_packets() {
        let mut a = [0u8; SYNTHETIC_RTP_LEN];
        let mut b = [0u8; SYNTHETIC_RTP_LEN];
        build_synthetic_rtp(&sample(9), &mut a);
        build_synthetic_rtp(&sample(10), &mut b);
        let last_cc = a[12 + 6 * 188 + 3] & 0x0f;
        let next_cc = b[12 + 3] & 0x0f;
        assert_eq!(next_cc, (last_cc + 1) & 0x0f);
    }

    #[test]
    fn only_synthetic_payloads_look_synthetic() {
        let mut buf = [0u8; SYNTHETIC_RTP_LEN];
        build_synthetic_rtp(&sample(1), &mut buf);
        assert!(looks_synthetic(&buf[12..]));
        let mut real_ts = buf[12..].to_vec();
        real_ts[MAGIC_AT] ^= 0xff; // a real encoder's TS: same size, sync byte, no magic
        assert!(!looks_synthetic(&real_ts));
        assert!(!looks_synthetic(&buf[12..1000]));
    }

    #[test]
    fn verifier_finds_each_kind_of_damage() {
        let mut buf = [0u8; SYNTHETIC_RTP_LEN];
        build_synthetic_rtp(&sample(77), &mut buf);
        let payload = &buf[12..];
        let damaged = |at: usize| {
            let mut copy = payload.to_vec();
            copy[at] ^= 0x01;
            verify_synthetic_payload(&copy)
        };
        assert!(matches!(
            damaged(188 + 3),
            Err(PayloadError::TsHeader { index: 1, .. })
        ));
        assert!(matches!(
            damaged(2 * 188 + 4 + 8 + 7),
            Err(PayloadError::Counter { index: 2, .. })
        ));
        assert_eq!(
            damaged(6 * 188 + 100),
            Err(PayloadError::Pattern {
                index: 6,
                offset: 100 - 21
            })
        );
        assert_eq!(
            verify_synthetic_payload(&payload[..1000]),
            Err(PayloadError::NotSynthetic(1000))
        );
    }

    proptest! {
        #[test]
        fn round_trip_and_random_bytes(counter in any::<u64>(), bytes in proptest::collection::vec(any::<u8>(), 0..1400)) {
            let mut buf = [0u8; SYNTHETIC_RTP_LEN];
            build_synthetic_rtp(&sample(counter), &mut buf);
            prop_assert_eq!(verify_synthetic_payload(&buf[12..]), Ok(counter));
            let _ = verify_synthetic_payload(&bytes);
        }
    }
}
