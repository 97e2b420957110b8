//! FEC Object Transmission Information (RFC 5052 §6.2) as carried in EXT_FTI
//! (HET 64, HEL 4) and the FEC Payload IDs, for the FEC schemes the project
//! sends: Compact No-Code (RFC 5445), Raptor (RFC 5053) and RaptorQ (RFC 6330).

use super::FluteError;
use crate::protocol::codec::{DecodeError, Reader};

/// FEC Encoding IDs (IANA "FEC Encoding IDs"); the LCT codepoint carries them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum FecEncodingId {
    /// RFC 5445.
    CompactNoCode = 0,
    /// RFC 5053.
    Raptor = 1,
    /// RFC 6330.
    RaptorQ = 6,
}

impl TryFrom<u8> for FecEncodingId {
    type Error = DecodeError;

    fn try_from(v: u8) -> Result<Self, DecodeError> {
        match v {
            0 => Ok(Self::CompactNoCode),
            1 => Ok(Self::Raptor),
            6 => Ok(Self::RaptorQ),
            other => Err(DecodeError::unsupported("FEC Encoding ID", other.into())),
        }
    }
}

/// EXT_FTI body length (HEL 4 minus HET and HEL) for all three schemes.
pub const FTI_BODY_LEN: usize = 14;

/// Scheme-specific part of the OTI.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SchemeOti {
    /// RFC 5445 §2.1: Maximum Source Block Length B (32 bits).
    CompactNoCode { max_source_block_length: u32 },
    /// RFC 5053 §3.2.3: Z (16), N (8), Al (8).
    Raptor {
        source_blocks: u16,
        sub_blocks: u8,
        alignment: u8,
    },
    /// RFC 6330 §3.3.3: Z (8), N (16), Al (8).
    RaptorQ {
        source_blocks: u8,
        sub_blocks: u16,
        alignment: u8,
    },
}

/// The OTI of one object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Oti {
    /// F: the object's transfer length in bytes.
    pub transfer_length: u64,
    /// E (No-Code) or T (Raptor, RaptorQ): encoding symbol length in bytes.
    pub symbol_length: u16,
    pub scheme: SchemeOti,
}

impl Oti {
    pub fn encoding_id(&self) -> FecEncodingId {
        match self.scheme {
            SchemeOti::CompactNoCode { .. } => FecEncodingId::CompactNoCode,
            SchemeOti::Raptor { .. } => FecEncodingId::Raptor,
            SchemeOti::RaptorQ { .. } => FecEncodingId::RaptorQ,
        }
    }

    /// Bits of the transfer-length field: 48 for No-Code and Raptor, 40 for RaptorQ.
    pub fn transfer_length_bits(&self) -> u32 {
        match self.scheme {
            SchemeOti::RaptorQ { .. } => 40,
            _ => 48,
        }
    }

    pub fn validate(&self) -> Result<(), FluteError> {
        let bits = self.transfer_length_bits();
        if self.transfer_length >> bits != 0 {
            return Err(FluteError::ValueTooWide {
                field: "transfer length",
                value: self.transfer_length.into(),
                bits,
            });
        }
        if self.symbol_length == 0 {
            return Err(FluteError::ZeroSymbolLength);
        }
        Ok(())
    }

    /// The EXT_FTI body (after HET 64 and HEL 4):
    /// - No-Code: `F(48) | Res(16) | E(16) | B(32)`
    /// - Raptor:  `F(48) | Res(16) | T(16) | Z(16) | N(8) | Al(8)` (RFC 5053 §3.2.3)
    /// - RaptorQ: `F(40) | Res(8) | T(16) | Z(8) | N(16) | Al(8) | pad(16)` (RFC 6330 §3.3)
    pub fn fti_body(&self) -> [u8; FTI_BODY_LEN] {
        // (bytes of F, offset of T): F and the reserved bits fill 8 bytes for
        // No-Code and Raptor, 6 for RaptorQ.
        let (f_len, t_at) = match self.scheme {
            SchemeOti::RaptorQ { .. } => (5, 6),
            _ => (6, 8),
        };
        let tail = match self.scheme {
            SchemeOti::CompactNoCode {
                max_source_block_length,
            } => max_source_block_length.to_be_bytes(),
            _ => self.scheme_specific_info().unwrap_or_default(),
        };
        let mut b = [0u8; FTI_BODY_LEN];
        b[..f_len].copy_from_slice(&self.transfer_length.to_be_bytes()[8 - f_len..]);
        b[t_at..t_at + 2].copy_from_slice(&self.symbol_length.to_be_bytes());
        b[t_at + 2..t_at + 6].copy_from_slice(&tail);
        b
    }

    /// Scheme-Specific Information as FDT `FEC-OTI-Scheme-Specific-Info`
    /// carries it (base64 of these 4 bytes); No-Code has none.
    pub fn scheme_specific_info(&self) -> Option<[u8; 4]> {
        match self.scheme {
            SchemeOti::CompactNoCode { .. } => None,
            SchemeOti::Raptor {
                source_blocks,
                sub_blocks,
                alignment,
            } => {
                let z = source_blocks.to_be_bytes();
                Some([z[0], z[1], sub_blocks, alignment])
            }
            SchemeOti::RaptorQ {
                source_blocks,
                sub_blocks,
                alignment,
            } => {
                let n = sub_blocks.to_be_bytes();
                Some([source_blocks, n[0], n[1], alignment])
            }
        }
    }

    /// Reads an EXT_FTI body for the FEC scheme named by the codepoint.
    pub fn from_fti(encoding_id: FecEncodingId, body: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(body);
        let transfer_length = match encoding_id {
            FecEncodingId::RaptorQ => {
                let f = r.uint(5, "EXT_FTI transfer length")?;
                r.u8("EXT_FTI reserved")?;
                f
            }
            _ => {
                let f = r.u48("EXT_FTI transfer length")?;
                r.u16("EXT_FTI reserved")?;
                f
            }
        };
        let symbol_length = r.u16("EXT_FTI symbol length")?;
        let scheme = match encoding_id {
            FecEncodingId::CompactNoCode => SchemeOti::CompactNoCode {
                max_source_block_length: r.u32("EXT_FTI maximum source block length")?,
            },
            FecEncodingId::Raptor => SchemeOti::Raptor {
                source_blocks: r.u16("EXT_FTI Z")?,
                sub_blocks: r.u8("EXT_FTI N")?,
                alignment: r.u8("EXT_FTI Al")?,
            },
            FecEncodingId::RaptorQ => SchemeOti::RaptorQ {
                source_blocks: r.u8("EXT_FTI Z")?,
                sub_blocks: r.u16("EXT_FTI N")?,
                alignment: r.u8("EXT_FTI Al")?,
            },
        };
        // RaptorQ's 12 bytes are padded to the 32-bit boundary; nothing else may follow.
        let padding = r.rest();
        if padding.len() > 2 || padding.iter().any(|b| *b != 0) {
            return Err(DecodeError::invalid(
                "EXT_FTI",
                "unexpected bytes after the OTI",
            ));
        }
        Ok(Self {
            transfer_length,
            symbol_length,
            scheme,
        })
    }
}

/// FEC Payload ID: source block number and encoding symbol ID.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FecPayloadId {
    pub sbn: u32,
    pub esi: u32,
}

/// Every FEC Payload ID the project uses is 32 bits.
pub const PAYLOAD_ID_LEN: usize = 4;

impl FecPayloadId {
    /// Largest (SBN, ESI) of the scheme: `SBN(16) | ESI(16)` for No-Code
    /// (RFC 5445 §2.1) and Raptor (RFC 5053 §3.2.1), `SBN(8) | ESI(24)` for
    /// RaptorQ (RFC 6330 §3.2).
    pub const fn limits(id: FecEncodingId) -> (u32, u32) {
        match id {
            FecEncodingId::CompactNoCode | FecEncodingId::Raptor => (0xffff, 0xffff),
            FecEncodingId::RaptorQ => (0xff, 0x00ff_ffff),
        }
    }

    fn esi_bits(id: FecEncodingId) -> u32 {
        match id {
            FecEncodingId::RaptorQ => 24,
            _ => 16,
        }
    }

    pub fn to_bytes(self, id: FecEncodingId) -> Result<[u8; PAYLOAD_ID_LEN], FluteError> {
        let (max_sbn, max_esi) = Self::limits(id);
        if self.sbn > max_sbn {
            return Err(FluteError::PayloadIdOverflow {
                what: "source block number",
                value: self.sbn.into(),
                limit: max_sbn.into(),
            });
        }
        if self.esi > max_esi {
            return Err(FluteError::PayloadIdOverflow {
                what: "encoding symbol ID",
                value: self.esi.into(),
                limit: max_esi.into(),
            });
        }
        Ok(((self.sbn << Self::esi_bits(id)) | self.esi).to_be_bytes())
    }

    pub fn read(id: FecEncodingId, r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let word = r.u32("FEC Payload ID")?;
        let bits = Self::esi_bits(id);
        Ok(Self {
            sbn: word >> bits,
            esi: word & ((1 << bits) - 1),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn no_code_fti_bytes() {
        let oti = Oti {
            transfer_length: 0x0102_0304_0506,
            symbol_length: 1428,
            scheme: SchemeOti::CompactNoCode {
                max_source_block_length: 64,
            },
        };
        // F(48) | Res(16) | E(16) | B(32), as ypo/flute `AlcNoCode::add_fti`.
        assert_eq!(
            hex::encode(oti.fti_body()),
            "010203040506\
             0000\
             0594\
             00000040"
        );
        assert_eq!(
            Oti::from_fti(FecEncodingId::CompactNoCode, &oti.fti_body()),
            Ok(oti)
        );
    }

    /// RFC 5053 §3.2.3: 48-bit F, 16 reserved bits, T(16), then Z(16) N(8) Al(8).
    #[test]
    fn raptor_fti_bytes_follow_rfc_5053() {
        let oti = Oti {
            transfer_length: 3_000_000,
            symbol_length: 1424,
            scheme: SchemeOti::Raptor {
                source_blocks: 0x0203,
                sub_blocks: 1,
                alignment: 4,
            },
        };
        assert_eq!(
            hex::encode(oti.fti_body()),
            "0000002dc6c0\
             0000\
             0590\
             0203\
             01\
             04"
        );
        assert_eq!(oti.scheme_specific_info(), Some([2, 3, 1, 4]));
        assert_eq!(
            Oti::from_fti(FecEncodingId::Raptor, &oti.fti_body()),
            Ok(oti)
        );
    }

    /// RFC 6330 §3.3.2/§3.3.3: 40-bit F, 8 reserved bits, T(16), Z(8) N(16) Al(8), padded.
    #[test]
    fn raptorq_fti_bytes_follow_rfc_6330() {
        let oti = Oti {
            transfer_length: 0xff_0000_0001,
            symbol_length: 1400,
            scheme: SchemeOti::RaptorQ {
                source_blocks: 3,
                sub_blocks: 0x0102,
                alignment: 4,
            },
        };
        assert_eq!(
            hex::encode(oti.fti_body()),
            "ff00000001\
             00\
             0578\
             03\
             0102\
             04\
             0000"
        );
        assert_eq!(
            Oti::from_fti(FecEncodingId::RaptorQ, &oti.fti_body()),
            Ok(oti)
        );
        // The 12-byte form without padding is accepted too.
        assert_eq!(
            Oti::from_fti(FecEncodingId::RaptorQ, &oti.fti_body()[..12]),
            Ok(oti)
        );
    }

    #[test]
    fn validate_checks_field_widths() {
        let mut oti = Oti {
            transfer_length: 1 << 40,
            symbol_length: 1,
            scheme: SchemeOti::RaptorQ {
                source_blocks: 1,
                sub_blocks: 1,
                alignment: 4,
            },
        };
        assert!(matches!(
            oti.validate(),
            Err(FluteError::ValueTooWide { bits: 40, .. })
        ));
        oti.scheme = SchemeOti::CompactNoCode {
            max_source_block_length: 1,
        };
        assert_eq!(oti.validate(), Ok(()));
        oti.symbol_length = 0;
        assert_eq!(oti.validate(), Err(FluteError::ZeroSymbolLength));
    }

    #[test]
    fn payload_id_layouts() {
        let id = FecPayloadId {
            sbn: 0x12,
            esi: 0x3456,
        };
        assert_eq!(
            id.to_bytes(FecEncodingId::CompactNoCode).unwrap(),
            [0, 0x12, 0x34, 0x56]
        );
        assert_eq!(
            id.to_bytes(FecEncodingId::RaptorQ).unwrap(),
            [0x12, 0, 0x34, 0x56]
        );
        let big = FecPayloadId {
            sbn: 0x100,
            esi: 0x1_0000,
        };
        assert!(matches!(
            big.to_bytes(FecEncodingId::RaptorQ),
            Err(FluteError::PayloadIdOverflow {
                what: "source block number",
                ..
            })
        ));
        assert!(matches!(
            big.to_bytes(FecEncodingId::Raptor),
            Err(FluteError::PayloadIdOverflow {
                what: "encoding symbol ID",
                ..
            })
        ));
        for fec in [
            FecEncodingId::CompactNoCode,
            FecEncodingId::Raptor,
            FecEncodingId::RaptorQ,
        ] {
            let (sbn, esi) = FecPayloadId::limits(fec);
            let id = FecPayloadId { sbn, esi };
            let bytes = id.to_bytes(fec).unwrap();
            assert_eq!(FecPayloadId::read(fec, &mut Reader::new(&bytes)), Ok(id));
        }
    }

    proptest! {
        /// Second implementation of RFC 6330 §3.2/§3.3: the `raptorq` crate's
        /// OTI and Payload ID serialisation.
        #[test]
        fn raptorq_layout_matches_raptorq_crate(
            f in 0u64..=942_574_504_275, t_words in 1u16..16_000, z in 1u8..=255,
            n in any::<u16>(), sbn in any::<u8>(), esi in 0u32..(1 << 24),
        ) {
            let symbol_size = t_words * 4;
            prop_assume!(f.div_ceil(symbol_size.into()).div_ceil(z.into()) <= 56_403);
            let theirs = raptorq::ObjectTransmissionInformation::new(f, symbol_size, z, n, 4);
            let ours = Oti {
                transfer_length: f,
                symbol_length: symbol_size,
                scheme: SchemeOti::RaptorQ { source_blocks: z, sub_blocks: n, alignment: 4 },
            };
            prop_assert_eq!(&ours.fti_body()[..12], &theirs.serialize()[..]);
            let id = FecPayloadId { sbn: sbn.into(), esi };
            prop_assert_eq!(
                id.to_bytes(FecEncodingId::RaptorQ).unwrap(),
                raptorq::PayloadId::new(sbn, esi).serialize()
            );
        }

        #[test]
        fn random_fti_never_panics(fec in prop_oneof![Just(0u8), Just(1), Just(6), any::<u8>()],
                                   body in proptest::collection::vec(any::<u8>(), 0..20)) {
            if let Ok(id) = FecEncodingId::try_from(fec)
                && let Ok(oti) = Oti::from_fti(id, &body) {
                    prop_assert_eq!(Oti::from_fti(id, &oti.fti_body()), Ok(oti));
                }
        }
    }
}
