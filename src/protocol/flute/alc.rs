//! ALC packet (RFC 5775 §4.1): LCT header, FEC Payload ID, encoding symbol.
//! The codepoint names the FEC scheme (`profile::flute::codepoint`), which
//! fixes the Payload ID layout. A packet with nothing after the
//! LCT header (e.g. a close-session packet) has neither Payload ID nor symbol.

use super::FluteError;
use super::lct::LctHeader;
use super::oti::{FecEncodingId, FecPayloadId, Oti};
use crate::protocol::codec::{Codec, DecodeError, Reader};
use crate::protocol::profile;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlcPacket<'a> {
    pub header: LctHeader<'a>,
    /// `None` only for a data-less packet.
    pub payload_id: Option<FecPayloadId>,
    pub symbol: &'a [u8],
}

impl<'a> AlcPacket<'a> {
    pub fn fec_encoding_id(&self) -> Result<FecEncodingId, DecodeError> {
        fec_of(self.header.codepoint)
    }

    /// The OTI from EXT_FTI, if the packet carries one.
    pub fn oti(&self) -> Option<Result<Oti, DecodeError>> {
        let body = self.header.extensions.fti()?;
        Some(
            self.fec_encoding_id()
                .and_then(|id| Oti::from_fti(id, body)),
        )
    }

    pub fn validate(&self) -> Result<(), FluteError> {
        self.header.validate()?;
        if let Some(id) = self.payload_id {
            let fec = fec_of(self.header.codepoint)
                .map_err(|_| FluteError::UnsupportedFec(self.header.codepoint))?;
            id.to_bytes(fec)?;
        }
        Ok(())
    }
}

fn fec_of(codepoint: u8) -> Result<FecEncodingId, DecodeError> {
    FecEncodingId::try_from(profile::flute::fec_encoding_id(codepoint))
}

impl<'a> Codec<'a> for AlcPacket<'a> {
    fn encoded_len(&self) -> usize {
        let id_len = if self.payload_id.is_some() { 4 } else { 0 };
        self.header.encoded_len() + id_len + self.symbol.len()
    }

    /// [`AlcPacket::validate`] rejects what would not encode faithfully.
    fn encode(&self, out: &mut Vec<u8>) {
        debug_assert_eq!(self.validate(), Ok(()));
        self.header.encode(out);
        if let Some(id) = self.payload_id {
            let fec = fec_of(self.header.codepoint).unwrap_or(FecEncodingId::CompactNoCode);
            out.extend_from_slice(&id.to_bytes(fec).unwrap_or_default());
        }
        out.extend_from_slice(self.symbol);
    }

    fn read(r: &mut Reader<'a>) -> Result<Self, DecodeError> {
        let header = LctHeader::read(r)?;
        if r.is_empty() {
            return Ok(Self {
                header,
                payload_id: None,
                symbol: &[],
            });
        }
        let fec = fec_of(header.codepoint)?;
        let payload_id = FecPayloadId::read(fec, r)?;
        Ok(Self {
            header,
            payload_id: Some(payload_id),
            symbol: r.rest(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::flute::ext::{ExtFdt, Extensions, HeaderExtension};
    use crate::protocol::flute::lct::FieldWidths;
    use crate::protocol::flute::oti::SchemeOti;
    use proptest::prelude::*;

    fn packet(fec: FecEncodingId, oti: &Oti) -> (Vec<u8>, [u8; 14]) {
        let fti = oti.fti_body();
        let header = LctHeader {
            widths: FieldWidths::flute(0).unwrap(),
            psi: 0,
            close_session: false,
            close_object: true,
            codepoint: fec as u8,
            cci: 0,
            tsi: 7,
            toi: 0,
            extensions: Extensions::build(&[
                HeaderExtension::Fdt(ExtFdt {
                    version: 1,
                    instance_id: 3,
                }),
                HeaderExtension::Fti(&fti),
            ])
            .unwrap(),
        };
        let pkt = AlcPacket {
            header,
            payload_id: Some(FecPayloadId { sbn: 2, esi: 9 }),
            symbol: b"hello",
        };
        pkt.validate().unwrap();
        (pkt.to_vec(), fti)
    }

    #[test]
    fn fdt_packet_exact_bytes_and_round_trip() {
        let oti = Oti {
            transfer_length: 5,
            symbol_length: 1428,
            scheme: SchemeOti::CompactNoCode {
                max_source_block_length: 64,
            },
        };
        let (bytes, _) = packet(FecEncodingId::CompactNoCode, &oti);
        assert_eq!(
            hex::encode(&bytes),
            concat!(
                "10110800", // V=1, H=1, B=1, HDR_LEN 8 words, CP 0
                "00000000", // CCI
                "00070000", // TSI 7, TOI 0
                "c0100003", // EXT_FDT v1, instance 3
                "4004000000000005",
                "0000059400000040", // EXT_FTI
                "00020009",         // SBN 2, ESI 9
                "68656c6c6f"
            )
        );
        let pkt = AlcPacket::decode(&bytes).unwrap();
        assert_eq!(pkt.payload_id, Some(FecPayloadId { sbn: 2, esi: 9 }));
        assert_eq!(pkt.symbol, b"hello");
        assert_eq!(pkt.oti(), Some(Ok(oti)));
        assert_eq!(pkt.header.extensions.fdt().unwrap().instance_id, 3);
    }

    #[test]
    fn raptorq_payload_id_layout() {
        let oti = Oti {
            transfer_length: 5,
            symbol_length: 8,
            scheme: SchemeOti::RaptorQ {
                source_blocks: 1,
                sub_blocks: 1,
                alignment: 4,
            },
        };
        let (bytes, _) = packet(FecEncodingId::RaptorQ, &oti);
        // SBN(8) | ESI(24) right after the 32-byte header.
        assert_eq!(&bytes[32..36], &[2, 0, 0, 9]);
        let pkt = AlcPacket::decode(&bytes).unwrap();
        assert_eq!(pkt.oti(), Some(Ok(oti)));
    }

    #[test]
    fn unknown_codepoint_is_an_error_not_a_guess() {
        let oti = Oti {
            transfer_length: 5,
            symbol_length: 8,
            scheme: SchemeOti::CompactNoCode {
                max_source_block_length: 1,
            },
        };
        let (mut bytes, _) = packet(FecEncodingId::CompactNoCode, &oti);
        bytes[3] = 5;
        assert_eq!(
            AlcPacket::decode(&bytes),
            Err(DecodeError::unsupported("FEC Encoding ID", 5))
        );
    }

    proptest! {
        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..120)) {
            if let Ok(pkt) = AlcPacket::decode(&bytes) {
                let _ = pkt.oti();
                let again = pkt.to_vec();
                prop_assert_eq!(AlcPacket::decode(&again).unwrap(), pkt);
            }
        }

        #[test]
        fn mutated_packet_never_panics(edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
                                       cut in any::<prop::sample::Index>()) {
            let oti = Oti {
                transfer_length: 5,
                symbol_length: 8,
                scheme: SchemeOti::RaptorQ { source_blocks: 1, sub_blocks: 1, alignment: 4 },
            };
            let (mut bytes, _) = packet(FecEncodingId::RaptorQ, &oti);
            for (at, b) in edits {
                let i = at.index(bytes.len());
                bytes[i] = b;
            }
            bytes.truncate(cut.index(bytes.len() + 1));
            if let Ok(pkt) = AlcPacket::decode(&bytes) {
                let _ = pkt.oti();
            }
        }
    }
}
