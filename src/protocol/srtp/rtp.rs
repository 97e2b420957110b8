//! The RTP fixed header with its CSRC list and header extension (RFC 3550 §5.1,
//! §5.3.1), and the first RTCP header of a compound packet (RFC 3550 §6.4): the
//! parts SRTP leaves in clear. Padding belongs to the payload and is encrypted
//! (RFC 3711 §3.1), so it is not interpreted here.

use crate::protocol::codec::{Codec, DecodeError, Reader, put_uint};

const RTP_VERSION: u8 = 2;

/// An RTP header extension: 16-bit profile-defined value and 32-bit words.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RtpExtension<'a> {
    pub profile: u16,
    /// A multiple of 4 bytes, at most 4·65535.
    pub data: &'a [u8],
}

/// An RTP header borrowed from a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RtpHeader<'a> {
    pub padding: bool,
    pub marker: bool,
    pub payload_type: u8,
    pub sequence_number: u16,
    pub timestamp: u32,
    pub ssrc: u32,
    /// The CSRC list as 4-byte big-endian entries, at most 15 of them.
    pub csrcs: &'a [u8],
    pub extension: Option<RtpExtension<'a>>,
}

impl<'a> Codec<'a> for RtpHeader<'a> {
    fn encoded_len(&self) -> usize {
        12 + self.csrcs.len() + self.extension.map_or(0, |e| 4 + e.data.len())
    }

    fn encode(&self, out: &mut Vec<u8>) {
        debug_assert!(self.csrcs.len().is_multiple_of(4) && self.csrcs.len() <= 60);
        let cc = (self.csrcs.len() / 4) as u8 & 0x0f;
        out.push(
            RTP_VERSION << 6
                | u8::from(self.padding) << 5
                | u8::from(self.extension.is_some()) << 4
                | cc,
        );
        out.push(u8::from(self.marker) << 7 | self.payload_type & 0x7f);
        put_uint(out, self.sequence_number.into(), 2);
        put_uint(out, self.timestamp.into(), 4);
        put_uint(out, self.ssrc.into(), 4);
        out.extend_from_slice(self.csrcs);
        if let Some(ext) = self.extension {
            debug_assert!(ext.data.len() % 4 == 0 && ext.data.len() / 4 <= 0xffff);
            put_uint(out, ext.profile.into(), 2);
            put_uint(out, (ext.data.len() / 4) as u64, 2);
            out.extend_from_slice(ext.data);
        }
    }

    #[inline]
    fn read(r: &mut Reader<'a>) -> Result<Self, DecodeError> {
        let first = r.u8("RTP V/P/X/CC")?;
        let version = first >> 6;
        if version != RTP_VERSION {
            return Err(DecodeError::unsupported("RTP version", version.into()));
        }
        let second = r.u8("RTP M/PT")?;
        let sequence_number = r.u16("RTP sequence number")?;
        let timestamp = r.u32("RTP timestamp")?;
        let ssrc = r.u32("RTP SSRC")?;
        let csrcs = r.take(usize::from(first & 0x0f) * 4, "RTP CSRC list")?;
        let extension = if first & 0x10 != 0 {
            let profile = r.u16("RTP extension profile")?;
            let words = r.u16("RTP extension length")?;
            let data = r.take(usize::from(words) * 4, "RTP extension data")?;
            Some(RtpExtension { profile, data })
        } else {
            None
        };
        Ok(Self {
            padding: first & 0x20 != 0,
            marker: second & 0x80 != 0,
            payload_type: second & 0x7f,
            sequence_number,
            timestamp,
            ssrc,
            csrcs,
            extension,
        })
    }
}

impl<'a> RtpHeader<'a> {
    /// Parses the header at the start of `packet`; returns it with its length
    /// (the offset of the payload).
    #[inline]
    pub fn parse(packet: &'a [u8]) -> Result<(Self, usize), DecodeError> {
        let mut r = Reader::new(packet);
        let header = Self::read(&mut r)?;
        Ok((header, r.position()))
    }
}

/// The header of the first RTCP packet in a compound packet: the 8 bytes SRTCP
/// leaves in clear (RFC 3711 §3.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RtcpHeader {
    pub padding: bool,
    /// Reception report count or subtype (5 bits).
    pub count: u8,
    pub packet_type: u8,
    /// Length in 32-bit words minus one.
    pub length: u16,
    pub ssrc: u32,
}

impl RtcpHeader {
    pub const LEN: usize = 8;
}

impl Codec<'_> for RtcpHeader {
    fn encoded_len(&self) -> usize {
        Self::LEN
    }

    fn encode(&self, out: &mut Vec<u8>) {
        out.push(RTP_VERSION << 6 | u8::from(self.padding) << 5 | self.count & 0x1f);
        out.push(self.packet_type);
        put_uint(out, self.length.into(), 2);
        put_uint(out, self.ssrc.into(), 4);
    }

    fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let first = r.u8("RTCP V/P/RC")?;
        let version = first >> 6;
        if version != RTP_VERSION {
            return Err(DecodeError::unsupported("RTCP version", version.into()));
        }
        Ok(Self {
            padding: first & 0x20 != 0,
            count: first & 0x1f,
            packet_type: r.u8("RTCP packet type")?,
            length: r.u16("RTCP length")?,
            ssrc: r.u32("RTCP SSRC")?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_csrcs_and_extension() {
        let packet = hex::decode(concat!(
            "92", "e0", "1234", "00000001", "cafebabe", // V2 X CC=2, M, PT 96
            "11111111", "22222222", // CSRCs
            "bede", "0001", "aabbccdd", // extension, 1 word
            "ff"        // payload
        ))
        .unwrap();
        let (h, len) = RtpHeader::parse(&packet).unwrap();
        assert_eq!(len, 12 + 8 + 8);
        assert!(h.marker && !h.padding);
        assert_eq!(
            (h.payload_type, h.sequence_number, h.ssrc),
            (96, 0x1234, 0xcafe_babe)
        );
        assert_eq!(h.csrcs, &packet[12..20]);
        assert_eq!(
            h.extension,
            Some(RtpExtension {
                profile: 0xbede,
                data: &packet[24..28]
            })
        );
        assert_eq!(h.to_vec(), &packet[..len]);
    }

    #[test]
    fn rejects_malformed_headers() {
        let parse = |h: &str| RtpHeader::parse(&hex::decode(h).unwrap()).map(|(_, len)| len);
        assert_eq!(
            parse("400f1234decafbadcafebabe"),
            Err(DecodeError::unsupported("RTP version", 1))
        );
        let truncated = |h: &str| match parse(h) {
            Err(DecodeError::Truncated { what, .. }) => what,
            other => panic!("{h}: {other:?}"),
        };
        assert_eq!(truncated("800f1234decafbadcafeba"), "RTP SSRC");
        assert_eq!(truncated("810f1234decafbadcafebabe111111"), "RTP CSRC list");
        assert_eq!(
            truncated("900f1234decafbadcafebabebede0002aabbccdd"),
            "RTP extension data"
        );
        assert_eq!(
            RtcpHeader::decode(&hex::decode("00c80006cafebabe").unwrap()),
            Err(DecodeError::unsupported("RTCP version", 0))
        );
    }

    proptest! {
        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..80)) {
            if let Ok((h, len)) = RtpHeader::parse(&bytes) {
                prop_assert_eq!(h.to_vec(), &bytes[..len]);
            }
            let _ = RtcpHeader::decode(&bytes);
        }
    }
}
