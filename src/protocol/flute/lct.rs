//! LCT header (RFC 5651 §5.1):
//!
//! ```text
//! V(4)=1 | C(2) | PSI(2) | S(1) | O(2) | H(1) | Res(2) | A(1) | B(1) | HDR_LEN(8) | CP(8)
//! CCI (32·(C+1) bits) | TSI (32·S + 16·H bits) | TOI (32·O + 16·H bits) | header extensions
//! ```
//!
//! H is shared by TSI and TOI, so their lengths always sum to whole 32-bit words.
//! The FLUTE profile (TS 26.346, `profile::flute::TSI_LEN`) fixes a 16-bit TSI
//! (S = 0, H = 1), which leaves TOI lengths of 16, 48, 80 or 112 bits.

use super::FluteError;
use super::ext::Extensions;
use crate::protocol::codec::{Codec, DecodeError, Reader, put_uint};
use crate::protocol::profile;

/// LCT version number (RFC 5651 §5.1): FLUTE v1 and v2 both run on LCT v1.
pub const LCT_VERSION: u8 = 1;
/// TOI 0 carries FDT Instances (RFC 3926 §3.3).
pub const TOI_FDT: u128 = 0;
pub use super::ext::MAX_HEADER_LEN;

const FLAG_CLOSE_OBJECT: u8 = 0x01;
const FLAG_CLOSE_SESSION: u8 = 0x02;

/// Widths of the CCI, TSI and TOI fields as the C, S, O and H flags encode them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FieldWidths {
    c: u8,
    s: bool,
    o: u8,
    h: bool,
}

impl FieldWidths {
    /// `c` and `o` are the 2-bit C and O flags.
    pub fn new(c: u8, s: bool, o: u8, h: bool) -> Result<Self, FluteError> {
        if c > 3 || o > 3 {
            return Err(FluteError::InvalidWidths {
                reason: "C and O are 2-bit fields",
            });
        }
        Ok(Self { c, s, o, h })
    }

    /// The FLUTE profile: 32-bit CCI (congestion control is not used, TS 26.346
    /// §7.1), TSI of `profile::flute::TSI_LEN` bytes and the shortest TOI that
    /// holds `toi`.
    pub fn flute(toi: u128) -> Result<Self, FluteError> {
        Self::smallest(0, profile::flute::TSI_LEN, toi)
    }

    /// The shortest CCI that holds `cci`, a TSI of `tsi_len` bytes (0, 2, 4 or 6)
    /// and the shortest TOI with the same half-word parity that holds `toi`.
    pub fn smallest(cci: u128, tsi_len: usize, toi: u128) -> Result<Self, FluteError> {
        if !matches!(tsi_len, 0 | 2 | 4 | 6) {
            return Err(FluteError::InvalidWidths {
                reason: "TSI length must be 0, 2, 4 or 6 bytes",
            });
        }
        let h = tsi_len % 4 == 2;
        let cci_bytes = significant_bytes(cci);
        let c = (cci_bytes.max(1).div_ceil(4) - 1) as u8;
        let toi_bytes = significant_bytes(toi);
        let half = if h { 2 } else { 0 };
        let o = toi_bytes.saturating_sub(half).div_ceil(4);
        if o > 3 {
            return Err(FluteError::ValueTooWide {
                field: "TOI",
                value: toi,
                bits: (3 * 32 + half * 8) as u32,
            });
        }
        Ok(Self {
            c,
            s: tsi_len >= 4,
            o: o as u8,
            h,
        })
    }

    pub const fn cci_len(&self) -> usize {
        4 * (self.c as usize + 1)
    }

    pub const fn tsi_len(&self) -> usize {
        4 * self.s as usize + 2 * self.h as usize
    }

    pub const fn toi_len(&self) -> usize {
        4 * self.o as usize + 2 * self.h as usize
    }

    /// Bytes of the header before the extensions.
    pub const fn fixed_len(&self) -> usize {
        4 + self.cci_len() + self.tsi_len() + self.toi_len()
    }

    const fn flags(&self) -> u16 {
        ((self.c as u16) << 10)
            | ((self.s as u16) << 7)
            | ((self.o as u16) << 5)
            | ((self.h as u16) << 4)
    }
}

fn significant_bytes(v: u128) -> usize {
    16 - (v.leading_zeros() / 8) as usize
}

fn check_width(field: &'static str, value: u128, len: usize) -> Result<(), FluteError> {
    if len < 16 && value >> (8 * len) != 0 {
        return Err(FluteError::ValueTooWide {
            field,
            value,
            bits: (8 * len) as u32,
        });
    }
    Ok(())
}

/// One LCT header. Decoding borrows the extension bytes from the packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LctHeader<'a> {
    pub widths: FieldWidths,
    /// Protocol-Specific Indication (2 bits); FLUTE leaves it 0.
    pub psi: u8,
    /// A: the sender is about to stop sending in this session.
    pub close_session: bool,
    /// B: the sender is about to stop sending this object.
    pub close_object: bool,
    /// CP; see `profile::flute::codepoint`.
    pub codepoint: u8,
    pub cci: u128,
    pub tsi: u64,
    pub toi: u128,
    pub extensions: Extensions<'a>,
}

impl<'a> LctHeader<'a> {
    /// Checks what encoding would otherwise silently truncate: values wider than
    /// their fields, PSI wider than 2 bits, a header longer than HDR_LEN allows.
    pub fn validate(&self) -> Result<(), FluteError> {
        let w = &self.widths;
        if self.psi > 3 {
            return Err(FluteError::ValueTooWide {
                field: "PSI",
                value: u128::from(self.psi),
                bits: 2,
            });
        }
        check_width("CCI", self.cci, w.cci_len())?;
        check_width("TSI", u128::from(self.tsi), w.tsi_len())?;
        check_width("TOI", self.toi, w.toi_len())?;
        let len = self.encoded_len();
        if len > MAX_HEADER_LEN {
            return Err(FluteError::HeaderTooLong { len });
        }
        Ok(())
    }

    /// HDR_LEN in bytes.
    pub fn header_len(&self) -> usize {
        self.widths.fixed_len() + self.extensions.as_bytes().len()
    }
}

/// Sets or clears the B flag of an encoded header in place (the packetizer
/// copies one prebuilt header per packet).
pub fn set_close_object(header: &mut [u8], on: bool) {
    set_flag(header, FLAG_CLOSE_OBJECT, on);
}

/// Sets or clears the A flag of an encoded header in place.
pub fn set_close_session(header: &mut [u8], on: bool) {
    set_flag(header, FLAG_CLOSE_SESSION, on);
}

fn set_flag(header: &mut [u8], flag: u8, on: bool) {
    if let Some(b) = header.get_mut(1) {
        if on {
            *b |= flag;
        } else {
            *b &= !flag;
        }
    }
}

impl<'a> Codec<'a> for LctHeader<'a> {
    fn encoded_len(&self) -> usize {
        self.header_len()
    }

    /// Values wider than their fields are truncated; [`LctHeader::validate`]
    /// rejects them beforehand.
    fn encode(&self, out: &mut Vec<u8>) {
        debug_assert_eq!(self.validate(), Ok(()));
        let w = &self.widths;
        let first = (u16::from(LCT_VERSION) << 12)
            | w.flags()
            | (u16::from(self.psi & 3) << 8)
            | (u16::from(self.close_session) << 1)
            | u16::from(self.close_object);
        out.extend_from_slice(&first.to_be_bytes());
        out.push((self.header_len() / 4).min(255) as u8);
        out.push(self.codepoint);
        put_u128(out, self.cci, w.cci_len());
        put_uint(out, self.tsi, w.tsi_len());
        put_u128(out, self.toi, w.toi_len());
        out.extend_from_slice(self.extensions.as_bytes());
    }

    fn read(r: &mut Reader<'a>) -> Result<Self, DecodeError> {
        let first = r.u16("LCT flags")?;
        let version = (first >> 12) as u8;
        if version != LCT_VERSION {
            return Err(DecodeError::unsupported("LCT version", version.into()));
        }
        let widths = FieldWidths {
            c: ((first >> 10) & 3) as u8,
            s: first & (1 << 7) != 0,
            o: ((first >> 5) & 3) as u8,
            h: first & (1 << 4) != 0,
        };
        let header_len = usize::from(r.u8("LCT HDR_LEN")?) * 4;
        let codepoint = r.u8("LCT codepoint")?;
        if header_len < widths.fixed_len() {
            return Err(DecodeError::invalid(
                "LCT HDR_LEN",
                "shorter than the CCI, TSI and TOI fields",
            ));
        }
        let cci = read_u128(r, widths.cci_len(), "LCT CCI")?;
        let tsi = r.uint(widths.tsi_len(), "LCT TSI")?;
        let toi = read_u128(r, widths.toi_len(), "LCT TOI")?;
        let ext_bytes = r.take(header_len - widths.fixed_len(), "LCT header extensions")?;
        Ok(Self {
            widths,
            psi: ((first >> 8) & 3) as u8,
            close_session: first & u16::from(FLAG_CLOSE_SESSION) != 0,
            close_object: first & u16::from(FLAG_CLOSE_OBJECT) != 0,
            codepoint,
            cci,
            tsi,
            toi,
            extensions: Extensions::parse(ext_bytes)?,
        })
    }
}

fn put_u128(out: &mut Vec<u8>, value: u128, len: usize) {
    out.extend_from_slice(&value.to_be_bytes()[16 - len..]);
}

fn read_u128(r: &mut Reader<'_>, len: usize, what: &'static str) -> Result<u128, DecodeError> {
    Ok(r.take(len, what)?
        .iter()
        .fold(0u128, |acc, b| (acc << 8) | u128::from(*b)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::flute::ext::{ExtFdt, ExtTime, HeaderExtension};
    use proptest::prelude::*;

    fn header(widths: FieldWidths, cci: u128, tsi: u64, toi: u128) -> LctHeader<'static> {
        LctHeader {
            widths,
            psi: 0,
            close_session: false,
            close_object: false,
            codepoint: 0,
            cci,
            tsi,
            toi,
            extensions: Extensions::default(),
        }
    }

    /// Hand-computed: 16-bit TSI 0x1234, TOI 5 (16 bits), CP 0, EXT_FDT v1 id 7.
    /// First word: V=1 (0x1), C=0, PSI=0 → 0x10; S=0 O=0 H=1 → 0x10; HDR_LEN 4
    /// words (4 fixed + CCI 4 + TSI/TOI 4 + EXT_FDT 4 = 16 bytes).
    #[test]
    fn exact_bytes_flute_profile_header() {
        let mut h = header(FieldWidths::flute(5).unwrap(), 0, 0x1234, 5);
        h.extensions = Extensions::build(&[HeaderExtension::Fdt(ExtFdt {
            version: 1,
            instance_id: 7,
        })])
        .unwrap();
        let bytes = h.to_vec();
        assert_eq!(
            hex::encode(&bytes),
            "10100400\
             00000000\
             12340005\
             c0100007"
        );
        assert_eq!(LctHeader::decode(&bytes).unwrap(), h);
    }

    /// The same header layout as `ypo/flute` `push_lct_header` for FEC 0 with a
    /// 48-bit TOI: TSI 1, TOI 0x1_0000, B set → O=1, H=1, HDR_LEN 4.
    #[test]
    fn exact_bytes_48_bit_toi_close_object() {
        let mut h = header(FieldWidths::flute(0x1_0000).unwrap(), 0, 1, 0x1_0000);
        h.close_object = true;
        assert_eq!(h.widths.toi_len(), 6);
        assert_eq!(
            hex::encode(h.to_vec()),
            "10310400\
             00000000\
             00010000\
             00010000"
        );
    }

    #[test]
    fn flute_profile_toi_widths() {
        for (toi, len) in [
            (0u128, 2),
            (0xffff, 2),
            (0x1_0000, 6),
            (0xffff_ffff_ffff, 6),
            (1 << 48, 10),
            (u128::from(u64::MAX), 10),
            ((1 << 112) - 1, 14),
        ] {
            let w = FieldWidths::flute(toi).unwrap();
            assert_eq!((w.tsi_len(), w.toi_len()), (2, len), "toi {toi:#x}");
        }
        assert!(matches!(
            FieldWidths::flute(1 << 112),
            Err(FluteError::ValueTooWide { field: "TOI", .. })
        ));
    }

    #[test]
    fn every_width_combination_round_trips() {
        let ext = Extensions::build(&[
            HeaderExtension::Fdt(ExtFdt {
                version: 2,
                instance_id: 0xfffff,
            }),
            HeaderExtension::Time(ExtTime {
                sct_high: Some(0xe000_0000),
                sct_low: Some(0x8000_0000),
                ert: None,
                slc: Some(9),
                pi_specific: 0x5a,
            }),
        ])
        .unwrap();
        for c in 0..4 {
            for s in [false, true] {
                for o in 0..4 {
                    for h in [false, true] {
                        let w = FieldWidths::new(c, s, o, h).unwrap();
                        let max = |len: usize| -> u128 {
                            if len == 0 {
                                0
                            } else {
                                u128::MAX >> (128 - 8 * len)
                            }
                        };
                        let mut hd = header(
                            w,
                            max(w.cci_len()),
                            max(w.tsi_len()) as u64,
                            max(w.toi_len()),
                        );
                        hd.psi = 3;
                        hd.close_object = true;
                        hd.close_session = true;
                        hd.codepoint = 6;
                        hd.extensions = ext.clone();
                        hd.validate().unwrap();
                        let bytes = hd.to_vec();
                        assert_eq!(bytes.len() % 4, 0);
                        assert_eq!(usize::from(bytes[2]) * 4, bytes.len());
                        assert_eq!(LctHeader::decode(&bytes).unwrap(), hd, "{w:?}");
                    }
                }
            }
        }
    }

    #[test]
    fn validate_rejects_wide_values() {
        let w = FieldWidths::flute(1).unwrap();
        assert!(matches!(
            header(w, 0, 0x1_0000, 1).validate(),
            Err(FluteError::ValueTooWide { field: "TSI", .. })
        ));
        assert!(matches!(
            header(w, 0, 1, 0x1_0000).validate(),
            Err(FluteError::ValueTooWide { field: "TOI", .. })
        ));
        assert!(matches!(
            header(w, 1 << 32, 1, 1).validate(),
            Err(FluteError::ValueTooWide { field: "CCI", .. })
        ));
        let mut h = header(w, 0, 1, 1);
        h.psi = 4;
        assert!(matches!(
            h.validate(),
            Err(FluteError::ValueTooWide { field: "PSI", .. })
        ));
    }

    #[test]
    fn decode_rejects_bad_version_and_short_hdr_len() {
        let good = header(FieldWidths::flute(1).unwrap(), 0, 1, 1).to_vec();
        let mut v2 = good.clone();
        v2[0] = 0x20;
        assert_eq!(
            LctHeader::decode(&v2),
            Err(DecodeError::unsupported("LCT version", 2))
        );
        let mut short = good.clone();
        short[2] = 2;
        assert!(matches!(
            LctHeader::decode(&short),
            Err(DecodeError::Invalid {
                what: "LCT HDR_LEN",
                ..
            })
        ));
        for cut in 0..good.len() {
            assert!(LctHeader::decode(&good[..cut]).is_err());
        }
    }

    #[test]
    fn flag_patching() {
        let mut bytes = header(FieldWidths::flute(1).unwrap(), 0, 1, 1).to_vec();
        set_close_object(&mut bytes, true);
        set_close_session(&mut bytes, true);
        let h = LctHeader::decode(&bytes).unwrap();
        assert!(h.close_object && h.close_session);
        set_close_object(&mut bytes, false);
        assert!(!LctHeader::decode(&bytes).unwrap().close_object);
    }

    proptest! {
        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = LctHeader::decode(&bytes);
            if let Ok(h) = LctHeader::read(&mut Reader::new(&bytes)) {
                // Whatever decodes re-encodes to a header that decodes the same
                // (reserved bits are not kept).
                let again = h.to_vec();
                prop_assert_eq!(LctHeader::decode(&again).unwrap(), h);
            }
        }

        #[test]
        fn flute_profile_round_trip(tsi in any::<u16>(), toi in any::<u64>(), cp in any::<u8>(), b in any::<bool>()) {
            let mut h = header(FieldWidths::flute(u128::from(toi)).unwrap(), 0, tsi.into(), toi.into());
            h.codepoint = cp;
            h.close_object = b;
            let bytes = h.to_vec();
            prop_assert_eq!(LctHeader::decode(&bytes).unwrap(), h);
        }
    }
}
