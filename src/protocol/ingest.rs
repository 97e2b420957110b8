//! What the gateway accepts from an encoder, and how it keeps every outgoing
//! (SSRC, packet index) unique when the encoder restarts.
//!
//! An encoder that restarts with the same SSRC sends sequence numbers from a new
//! starting point. Forwarded as they are, they would map to packet indexes
//! already used under the current MTK (RFC 3711 §9.1: a repeated index reuses
//! keystream). [`SequenceContinuity`] renumbers such a stream so its outgoing
//! sequence numbers continue where they left off, as an RTP translator may
//! (RFC 3550 §7.1); ordinary reordering and loss pass through unchanged.

use super::codec::DecodeError;
use super::srtp::RtcpHeader;
use crate::protocol::codec::Codec;
use rtp_types::{RtpPacket, RtpParseError};
use thiserror::Error;

/// An accepted ingest datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IngestKind {
    Rtp {
        ssrc: u32,
        sequence_number: u16,
    },
    /// RTCP (RFC 5761 multiplexing: packet types 200–204 in the second byte).
    Rtcp,
}

/// Why an ingest datagram was dropped.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum IngestReject {
    #[error("datagram of {len} bytes is over the {max}-byte limit")]
    Oversize { len: usize, max: usize },
    #[error("not an RTP packet: {0}")]
    Malformed(MalformedRtp),
    #[error("RTP packet without payload")]
    Empty,
    #[error("malformed RTCP packet: {0}")]
    MalformedRtcp(DecodeError),
}

/// Why a datagram is not RTP (RFC 3550 §5.1), as `rtp-types` finds it.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum MalformedRtp {
    #[error("version {0}, not 2")]
    Version(u8),
    #[error("{actual} bytes where its header needs at least {expected}")]
    Truncated { expected: usize, actual: usize },
    #[error("padding length {0}")]
    Padding(u8),
}

impl From<RtpParseError> for MalformedRtp {
    fn from(e: RtpParseError) -> Self {
        match e {
            RtpParseError::UnsupportedVersion(v) => Self::Version(v),
            RtpParseError::Truncated { expected, actual } => Self::Truncated { expected, actual },
            RtpParseError::PaddingInvalid(p) => Self::Padding(p),
        }
    }
}

/// Checks one datagram; `max_len` is the largest RTP/RTCP packet that still
/// fits the egress MTU once protected.
pub fn classify(datagram: &[u8], max_len: usize) -> Result<IngestKind, IngestReject> {
    if datagram.len() > max_len {
        return Err(IngestReject::Oversize {
            len: datagram.len(),
            max: max_len,
        });
    }
    if datagram.len() >= 2 && (200..=204).contains(&datagram[1]) {
        RtcpHeader::decode(datagram.get(..RtcpHeader::LEN).unwrap_or(datagram))
            .map_err(IngestReject::MalformedRtcp)?;
        return Ok(IngestKind::Rtcp);
    }
    // rtp-types reads the header in place (no copy, no allocation) and
    // checks the CSRC list, extension and padding against the length.
    let packet = RtpPacket::parse(datagram).map_err(|e| IngestReject::Malformed(e.into()))?;
    if packet.payload_offset() >= datagram.len() {
        return Err(IngestReject::Empty);
    }
    Ok(IngestKind::Rtp {
        ssrc: packet.ssrc(),
        sequence_number: packet.sequence_number(),
    })
}

/// A backward step larger than this is an encoder restart, not reordering.
/// Well inside the SRTP sender's replay window (128), so reordered packets keep
/// their own sequence numbers.
pub const RESTART_THRESHOLD: u16 = 100;

#[derive(Debug, Clone, Copy)]
struct Stream {
    ssrc: u32,
    offset: u16,
    last_out: u16,
    last_used: u64,
}

/// Per-SSRC renumbering after encoder restarts, for a bounded number of SSRCs
/// (the least recently seen is forgotten first).
#[derive(Debug, Clone)]
pub struct SequenceContinuity {
    streams: Vec<Stream>,
    capacity: usize,
    tick: u64,
    restarts: u64,
}

impl SequenceContinuity {
    pub fn new(capacity: usize) -> Self {
        Self {
            streams: Vec::with_capacity(capacity),
            capacity: capacity.max(1),
            tick: 0,
            restarts: 0,
        }
    }

    /// Restarts detected so far.
    pub fn restarts(&self) -> u64 {
        self.restarts
    }

    /// The outgoing sequence number for `seq` of `ssrc`.
    pub fn map(&mut self, ssrc: u32, seq: u16) -> u16 {
        self.tick += 1;
        let tick = self.tick;
        let Some(stream) = self.streams.iter_mut().find(|s| s.ssrc == ssrc) else {
            if self.streams.len() == self.capacity
                && let Some(oldest) = self
                    .streams
                    .iter()
                    .enumerate()
                    .min_by_key(|(_, s)| s.last_used)
                    .map(|(i, _)| i)
            {
                self.streams.swap_remove(oldest);
            }
            self.streams.push(Stream {
                ssrc,
                offset: 0,
                last_out: seq,
                last_used: tick,
            });
            return seq;
        };
        stream.last_used = tick;
        let out = seq.wrapping_add(stream.offset);
        let step = out.wrapping_sub(stream.last_out) as i16;
        if step < 0 && step.unsigned_abs() > RESTART_THRESHOLD {
            // Continue right after the highest number sent.
            let next = stream.last_out.wrapping_add(1);
            stream.offset = next.wrapping_sub(seq);
            stream.last_out = next;
            self.restarts += 1;
            return next;
        }
        if step > 0 {
            stream.last_out = out;
        }
        out
    }

    /// Renumbers an RTP packet in place (bytes 2–3).
    pub fn rewrite(&mut self, packet: &mut [u8], ssrc: u32, seq: u16) {
        let out = self.map(ssrc, seq);
        if out != seq
            && let Some(field) = packet.get_mut(2..4)
        {
            field.copy_from_slice(&out.to_be_bytes());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rtp(seq: u16, ssrc: u32, payload: usize) -> Vec<u8> {
        let mut p = vec![0x80, 33];
        p.extend_from_slice(&seq.to_be_bytes());
        p.extend_from_slice(&[0, 0, 0, 1]);
        p.extend_from_slice(&ssrc.to_be_bytes());
        p.resize(12 + payload, 0x47);
        p
    }

    #[test]
    fn classifies_rtp_rtcp_and_rejects_with_reasons() {
        assert_eq!(
            classify(&rtp(7, 9, 10), 1500),
            Ok(IngestKind::Rtp {
                ssrc: 9,
                sequence_number: 7
            })
        );
        let sr = [0x80, 200, 0, 6, 0, 0, 0, 9, 1, 2, 3, 4];
        assert_eq!(classify(&sr, 1500), Ok(IngestKind::Rtcp));
        assert!(matches!(
            classify(&rtp(1, 1, 2000), 1500),
            Err(IngestReject::Oversize {
                len: 2012,
                max: 1500
            })
        ));
        assert!(matches!(
            classify(b"garbage!garbage!", 1500),
            Err(IngestReject::Malformed(_))
        ));
        assert_eq!(classify(&rtp(1, 1, 0), 1500), Err(IngestReject::Empty));
        assert!(matches!(
            classify(&[0x80, 200, 0], 1500),
            Err(IngestReject::MalformedRtcp(_))
        ));
        let mut truncated = rtp(1, 1, 10);
        truncated[0] |= 0x0f; // 15 CSRCs announced, none present
        let err = classify(&truncated, 1500).unwrap_err();
        assert!(matches!(err, IngestReject::Malformed(_)));
        assert!(err.to_string().starts_with("not an RTP packet: "), "{err}");
        let mut version_1 = rtp(1, 1, 10);
        version_1[0] = 0x40;
        assert_eq!(
            classify(&version_1, 1500),
            Err(IngestReject::Malformed(MalformedRtp::Version(1)))
        );
        let mut zero_padding = rtp(1, 1, 10);
        zero_padding[0] |= 0x20;
        *zero_padding.last_mut().unwrap() = 0;
        assert_eq!(
            classify(&zero_padding, 1500),
            Err(IngestReject::Malformed(MalformedRtp::Padding(0)))
        );
        let mut padding_past_header = rtp(1, 1, 10);
        padding_past_header[0] |= 0x20;
        *padding_past_header.last_mut().unwrap() = 30;
        let err = classify(&padding_past_header, 1500).unwrap_err();
        assert!(
            matches!(
                err,
                IngestReject::Malformed(MalformedRtp::Truncated {
                    expected: 42,
                    actual: 22
                })
            ),
            "{err}"
        );
    }

    #[test]
    fn reordering_passes_restart_is_renumbered() {
        let mut c = SequenceContinuity::new(4);
        let seqs = [1000u16, 1001, 1003, 1002, 1004];
        let out: Vec<_> = seqs.iter().map(|s| c.map(7, *s)).collect();
        assert_eq!(out, seqs);
        // Encoder restarts at 10: the stream continues at 1005, 1006, ...
        assert_eq!(c.map(7, 10), 1005);
        assert_eq!(c.map(7, 11), 1006);
        assert_eq!(c.restarts(), 1);
        // A different SSRC is independent.
        assert_eq!(c.map(8, 10), 10);
    }

    #[test]
    fn wraps_and_renumbering_never_repeat_an_outgoing_number() {
        let mut c = SequenceContinuity::new(2);
        let mut seen = std::collections::HashSet::new();
        let mut seq: u16 = 65_000;
        for i in 0..5000u32 {
            if i % 1000 == 999 {
                seq = seq.wrapping_sub(500); // restart
            }
            let out = c.map(1, seq);
            assert!(seen.insert((i / 60_000, out)), "repeat of {out}");
            seq = seq.wrapping_add(1);
        }
        assert_eq!(c.restarts(), 5);
    }
}
