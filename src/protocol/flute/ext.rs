//! LCT header extensions (RFC 5651 §5.2). HET 0–127 carry their length HEL
//! (32-bit words, including HET and HEL) in the second byte; HET 128–255 are
//! one 32-bit word. Extensions the project does not interpret (EXT_NOP,
//! EXT_AUTH, unknown numbers) are kept as opaque bodies, so a decoded header
//! re-encodes with them in place.

use std::borrow::Cow;

use super::FluteError;
use crate::protocol::codec::{Codec, DecodeError, Reader};

/// The longest LCT header, extensions included: HDR_LEN counts 32-bit words
/// in 8 bits (RFC 5651 §5.1).
pub const MAX_HEADER_LEN: usize = 255 * 4;

/// Header Extension Types (IANA "LCT Header Extensions").
pub mod het {
    pub const EXT_NOP: u8 = 0;
    pub const EXT_AUTH: u8 = 1;
    pub const EXT_TIME: u8 = 2;
    pub const EXT_FTI: u8 = 64;
    pub const EXT_FDT: u8 = 192;
    pub const EXT_CENC: u8 = 193;
}

/// Content encodings of EXT_CENC (IANA FLUTE "Content Encoding Algorithms").
pub mod cenc {
    pub const NULL: u8 = 0;
    pub const ZLIB: u8 = 1;
    pub const DEFLATE: u8 = 2;
    pub const GZIP: u8 = 3;
}

/// EXT_FDT (RFC 3926 §3.4.1): `192 | V(4) | FDT Instance ID(20)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExtFdt {
    /// FLUTE version: 1 for RFC 3926 (`profile::flute::FDT_VERSION`).
    pub version: u8,
    pub instance_id: u32,
}

impl ExtFdt {
    pub const MAX_INSTANCE_ID: u32 = (1 << 20) - 1;
}

/// EXT_TIME (RFC 5651 §5.2.2): a 16-bit Use field then one 32-bit word per
/// set use bit, in the order SCT-High, SCT-Low, ERT, SLC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ExtTime {
    /// Sender Current Time, NTP seconds.
    pub sct_high: Option<u32>,
    /// Sender Current Time, NTP fraction.
    pub sct_low: Option<u32>,
    /// Expected Residual Time, seconds.
    pub ert: Option<u32>,
    /// Session Last Changed, NTP seconds.
    pub slc: Option<u32>,
    /// The protocol-instantiation-specific low byte of Use.
    pub pi_specific: u8,
}

const USE_SCT_HIGH: u16 = 0x8000;
const USE_SCT_LOW: u16 = 0x4000;
const USE_ERT: u16 = 0x2000;
const USE_SLC: u16 = 0x1000;

impl ExtTime {
    fn slots(&self) -> [(u16, Option<u32>); 4] {
        [
            (USE_SCT_HIGH, self.sct_high),
            (USE_SCT_LOW, self.sct_low),
            (USE_ERT, self.ert),
            (USE_SLC, self.slc),
        ]
    }

    fn words(&self) -> usize {
        self.slots().iter().filter(|(_, v)| v.is_some()).count()
    }
}

/// One header extension; bodies borrow from the packet when decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeaderExtension<'a> {
    Fdt(ExtFdt),
    /// EXT_CENC (RFC 3926 §3.4.2): `193 | CENC(8) | reserved(16)`.
    Cenc(u8),
    /// EXT_FTI body after HET and HEL; its layout depends on the FEC Encoding
    /// ID (see `oti`).
    Fti(&'a [u8]),
    Time(ExtTime),
    /// Any other extension, body after HET (and HEL for HET < 128).
    Other {
        het: u8,
        body: &'a [u8],
    },
}

impl HeaderExtension<'_> {
    pub fn het(&self) -> u8 {
        match self {
            Self::Fdt(_) => het::EXT_FDT,
            Self::Cenc(_) => het::EXT_CENC,
            Self::Fti(_) => het::EXT_FTI,
            Self::Time(_) => het::EXT_TIME,
            Self::Other { het, .. } => *het,
        }
    }

    /// Rejects what cannot be encoded faithfully.
    pub fn validate(&self) -> Result<(), FluteError> {
        let body_error = |len, reason| FluteError::ExtensionBody {
            het: self.het(),
            len,
            reason,
        };
        match self {
            Self::Fdt(f) => {
                if f.version > 15 {
                    return Err(FluteError::ValueTooWide {
                        field: "EXT_FDT version",
                        value: f.version.into(),
                        bits: 4,
                    });
                }
                if f.instance_id > ExtFdt::MAX_INSTANCE_ID {
                    return Err(FluteError::ValueTooWide {
                        field: "FDT Instance ID",
                        value: f.instance_id.into(),
                        bits: 20,
                    });
                }
            }
            Self::Cenc(_) | Self::Time(_) => {}
            Self::Fti(body) => {
                check_variable_body(body.len()).map_err(|r| body_error(body.len(), r))?
            }
            Self::Other { het, body } => {
                if *het >= 128 {
                    if body.len() != 3 {
                        return Err(body_error(body.len(), "HET >= 128 has a 3-byte body"));
                    }
                } else {
                    check_variable_body(body.len()).map_err(|r| body_error(body.len(), r))?;
                }
            }
        }
        Ok(())
    }
}

fn check_variable_body(len: usize) -> Result<(), &'static str> {
    if !(len + 2).is_multiple_of(4) {
        return Err("HET and body must fill whole 32-bit words");
    }
    if len + 2 > MAX_HEADER_LEN {
        return Err("longer than an LCT header can be");
    }
    Ok(())
}

impl<'a> Codec<'a> for HeaderExtension<'a> {
    fn encoded_len(&self) -> usize {
        match self {
            Self::Fdt(_) | Self::Cenc(_) => 4,
            Self::Fti(body) => 2 + body.len(),
            Self::Time(t) => 4 + 4 * t.words(),
            Self::Other { het, body } => {
                if *het >= 128 {
                    4
                } else {
                    2 + body.len()
                }
            }
        }
    }

    fn encode(&self, out: &mut Vec<u8>) {
        debug_assert_eq!(self.validate(), Ok(()));
        let hel = (self.encoded_len() / 4).min(255) as u8;
        match self {
            Self::Fdt(f) => {
                let word = (u32::from(het::EXT_FDT) << 24)
                    | (u32::from(f.version & 0xf) << 20)
                    | (f.instance_id & ExtFdt::MAX_INSTANCE_ID);
                out.extend_from_slice(&word.to_be_bytes());
            }
            Self::Cenc(c) => out.extend_from_slice(&[het::EXT_CENC, *c, 0, 0]),
            Self::Fti(body) => {
                out.extend_from_slice(&[het::EXT_FTI, hel]);
                out.extend_from_slice(body);
            }
            Self::Time(t) => {
                let used = t.slots();
                let use_bits = used
                    .iter()
                    .filter(|(_, v)| v.is_some())
                    .fold(u16::from(t.pi_specific), |acc, (bit, _)| acc | bit);
                out.extend_from_slice(&[het::EXT_TIME, hel]);
                out.extend_from_slice(&use_bits.to_be_bytes());
                for value in used.iter().filter_map(|(_, v)| *v) {
                    out.extend_from_slice(&value.to_be_bytes());
                }
            }
            Self::Other { het, body } => {
                out.push(*het);
                if *het < 128 {
                    out.push(hel);
                }
                out.extend_from_slice(body);
            }
        }
    }

    fn read(r: &mut Reader<'a>) -> Result<Self, DecodeError> {
        let het = r.u8("LCT HET")?;
        if het >= 128 {
            let body = r.take(3, "LCT fixed header extension")?;
            return Ok(match het {
                het::EXT_FDT => {
                    let word =
                        (u32::from(body[0]) << 16) | (u32::from(body[1]) << 8) | u32::from(body[2]);
                    Self::Fdt(ExtFdt {
                        version: (word >> 20) as u8,
                        instance_id: word & ExtFdt::MAX_INSTANCE_ID,
                    })
                }
                het::EXT_CENC => Self::Cenc(body[0]),
                _ => Self::Other { het, body },
            });
        }
        let hel = usize::from(r.u8("LCT HEL")?);
        if hel == 0 {
            return Err(DecodeError::invalid("LCT HEL", "zero length"));
        }
        let body = r.take(hel * 4 - 2, "LCT header extension body")?;
        Ok(match het {
            het::EXT_FTI => Self::Fti(body),
            het::EXT_TIME => Self::Time(read_time(body)?),
            _ => Self::Other { het, body },
        })
    }
}

fn read_time(body: &[u8]) -> Result<ExtTime, DecodeError> {
    let mut r = Reader::new(body);
    let use_bits = r.u16("EXT_TIME use")?;
    let mut word = |bit: u16| -> Result<Option<u32>, DecodeError> {
        if use_bits & bit != 0 {
            r.u32("EXT_TIME value").map(Some)
        } else {
            Ok(None)
        }
    };
    let t = ExtTime {
        sct_high: word(USE_SCT_HIGH)?,
        sct_low: word(USE_SCT_LOW)?,
        ert: word(USE_ERT)?,
        slc: word(USE_SLC)?,
        pi_specific: use_bits as u8,
    };
    r.expect_end("EXT_TIME (HEL larger than its use bits)")?;
    Ok(t)
}

/// The extension area of an LCT header: validated bytes, borrowed on decode,
/// owned when built.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Extensions<'a>(Cow<'a, [u8]>);

impl<'a> Extensions<'a> {
    /// Checks that `bytes` is a sequence of well-formed extensions.
    pub fn parse(bytes: &'a [u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(bytes);
        while !r.is_empty() {
            HeaderExtension::read(&mut r)?;
        }
        Ok(Self(Cow::Borrowed(bytes)))
    }

    /// Encodes `list` in order.
    pub fn build(list: &[HeaderExtension<'_>]) -> Result<Extensions<'static>, FluteError> {
        let mut out = Vec::with_capacity(list.iter().map(Codec::encoded_len).sum());
        for ext in list {
            ext.validate()?;
            ext.encode(&mut out);
        }
        if out.len() > MAX_HEADER_LEN {
            return Err(FluteError::HeaderTooLong { len: out.len() });
        }
        Ok(Extensions(Cow::Owned(out)))
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    pub fn iter(&self) -> ExtensionIter<'_> {
        ExtensionIter(Reader::new(&self.0))
    }

    /// The first extension of type `het`.
    pub fn find(&self, het: u8) -> Option<HeaderExtension<'_>> {
        self.iter().find(|e| e.het() == het)
    }

    pub fn fdt(&self) -> Option<ExtFdt> {
        match self.find(het::EXT_FDT)? {
            HeaderExtension::Fdt(f) => Some(f),
            _ => None,
        }
    }

    pub fn fti(&self) -> Option<&[u8]> {
        match self.find(het::EXT_FTI)? {
            HeaderExtension::Fti(body) => Some(body),
            _ => None,
        }
    }

    pub fn cenc(&self) -> Option<u8> {
        match self.find(het::EXT_CENC)? {
            HeaderExtension::Cenc(c) => Some(c),
            _ => None,
        }
    }

    pub fn time(&self) -> Option<ExtTime> {
        match self.find(het::EXT_TIME)? {
            HeaderExtension::Time(t) => Some(t),
            _ => None,
        }
    }
}

/// Iterates over already-validated extensions.
#[derive(Debug, Clone)]
pub struct ExtensionIter<'a>(Reader<'a>);

impl<'a> Iterator for ExtensionIter<'a> {
    type Item = HeaderExtension<'a>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.0.is_empty() {
            return None;
        }
        // The bytes were validated by `parse` or produced by `build`; a failure
        // here would only end the iteration.
        HeaderExtension::read(&mut self.0).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn exact_bytes_of_each_extension() {
        let cases: [(HeaderExtension<'_>, &str); 6] = [
            (
                HeaderExtension::Fdt(ExtFdt {
                    version: 1,
                    instance_id: 0xabcde,
                }),
                "c01abcde",
            ),
            (HeaderExtension::Cenc(cenc::GZIP), "c1030000"),
            (
                HeaderExtension::Fti(&[1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14]),
                "40040102030405060708090a0b0c0d0e",
            ),
            (
                HeaderExtension::Time(ExtTime {
                    sct_high: Some(0xe8a1_b2c3),
                    sct_low: Some(0x8000_0000),
                    ..ExtTime::default()
                }),
                "0203c000e8a1b2c380000000",
            ),
            (
                HeaderExtension::Other {
                    het: het::EXT_NOP,
                    body: &[0, 0],
                },
                "00010000",
            ),
            (
                HeaderExtension::Other {
                    het: 200,
                    body: &[7, 8, 9],
                },
                "c8070809",
            ),
        ];
        for (ext, expected) in cases {
            let bytes = ext.to_vec();
            assert_eq!(hex::encode(&bytes), expected);
            assert_eq!(HeaderExtension::decode(&bytes).unwrap(), ext);
        }
    }

    #[test]
    fn list_round_trip_keeps_unknown_extensions() {
        let list = [
            HeaderExtension::Other {
                het: 99,
                body: &[0xaa; 6],
            },
            HeaderExtension::Fdt(ExtFdt {
                version: 1,
                instance_id: 1,
            }),
            HeaderExtension::Cenc(cenc::NULL),
            HeaderExtension::Time(ExtTime {
                ert: Some(30),
                slc: Some(1),
                pi_specific: 3,
                ..ExtTime::default()
            }),
        ];
        let built = Extensions::build(&list).unwrap();
        let parsed = Extensions::parse(built.as_bytes()).unwrap();
        assert_eq!(parsed.iter().collect::<Vec<_>>(), list);
        assert_eq!(parsed.fdt().unwrap().instance_id, 1);
        assert_eq!(parsed.cenc(), Some(cenc::NULL));
        assert_eq!(parsed.time().unwrap().ert, Some(30));
        assert_eq!(parsed.fti(), None);
    }

    #[test]
    fn build_rejects_unencodable_extensions() {
        let too_wide = HeaderExtension::Fdt(ExtFdt {
            version: 1,
            instance_id: 1 << 20,
        });
        assert!(matches!(
            Extensions::build(&[too_wide]),
            Err(FluteError::ValueTooWide {
                field: "FDT Instance ID",
                ..
            })
        ));
        let ragged = HeaderExtension::Other { het: 5, body: &[1] };
        assert!(matches!(
            Extensions::build(&[ragged]),
            Err(FluteError::ExtensionBody { het: 5, len: 1, .. })
        ));
        let fixed = HeaderExtension::Other {
            het: 130,
            body: &[1],
        };
        assert!(Extensions::build(&[fixed]).is_err());
    }

    #[test]
    fn parse_rejects_malformed_areas() {
        // HEL 0 would loop forever in a naive parser.
        assert_eq!(
            Extensions::parse(&[5, 0, 0, 0]),
            Err(DecodeError::invalid("LCT HEL", "zero length"))
        );
        // HEL longer than the area.
        assert!(Extensions::parse(&[5, 2, 0, 0]).is_err());
        // EXT_TIME whose HEL disagrees with its use bits.
        assert!(Extensions::parse(&[2, 1, 0x80, 0]).is_err());
        assert!(Extensions::parse(&[2, 2, 0, 0, 0, 0, 0, 0]).is_err());
    }

    proptest! {
        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            if let Ok(exts) = Extensions::parse(&bytes) {
                let list: Vec<_> = exts.iter().collect();
                let rebuilt = Extensions::build(&list).unwrap();
                let reparsed = Extensions::parse(rebuilt.as_bytes()).unwrap();
                prop_assert_eq!(reparsed.iter().collect::<Vec<_>>(), list);
            }
        }
    }
}
