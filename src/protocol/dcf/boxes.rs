//! The ISO BMFF boxes of a DCF (ISO/IEC 14496-12 §4.2 box and full-box headers;
//! DCF box bodies as in Bento4 `Ap4OhdrAtom.cpp`, `Ap4OdheAtom.cpp`,
//! `Ap4OddaAtom.cpp`, `Ap4FtypAtom.cpp`). These are plain codecs: code points
//! are carried as raw bytes and judged by the reader, so a decoder error here
//! always means a malformed box.

use std::fmt;

use crate::protocol::codec::{Codec, DecodeError, Reader, put_uint};

/// A four-character box type or brand.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct FourCc(pub [u8; 4]);

impl FourCc {
    pub const FTYP: Self = Self(*b"ftyp");
    pub const ODRM: Self = Self(*b"odrm");
    pub const ODHE: Self = Self(*b"odhe");
    pub const OHDR: Self = Self(*b"ohdr");
    pub const ODDA: Self = Self(*b"odda");
    /// GroupID box inside ohdr: the content key is wrapped under a group key.
    pub const GRPI: Self = Self(*b"grpi");
    /// The DCF brand (Bento4 `AP4_OMA_DCF_BRAND_ODCF`).
    pub const ODCF: Self = Self(*b"odcf");
}

/// Printable ASCII as is, anything else escaped, so a hostile type cannot
/// inject control characters into a log line.
impl fmt::Display for FourCc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for &b in &self.0 {
            if b.is_ascii_graphic() || b == b' ' {
                write!(f, "{}", char::from(b))?;
            } else {
                write!(f, "\\x{b:02x}")?;
            }
        }
        Ok(())
    }
}

impl fmt::Debug for FourCc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "'{self}'")
    }
}

/// Box header: `size(4) ‖ type(4)`, or `1 ‖ type ‖ largesize(8)` when `large`.
/// `size` counts the whole box including this header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BoxHeader {
    pub box_type: FourCc,
    pub size: u64,
    /// 64-bit largesize form. Bento4 uses it for odrm and odda whatever the size.
    pub large: bool,
}

impl BoxHeader {
    pub const LEN: usize = 8;
    pub const LARGE_LEN: usize = 16;

    pub const fn header_len(&self) -> usize {
        if self.large {
            Self::LARGE_LEN
        } else {
            Self::LEN
        }
    }
}

impl Codec<'_> for BoxHeader {
    fn encoded_len(&self) -> usize {
        self.header_len()
    }

    fn encode(&self, out: &mut Vec<u8>) {
        if self.large {
            out.extend_from_slice(&1u32.to_be_bytes());
            out.extend_from_slice(&self.box_type.0);
            out.extend_from_slice(&self.size.to_be_bytes());
        } else {
            debug_assert!(self.size <= u64::from(u32::MAX));
            put_uint(out, self.size, 4);
            out.extend_from_slice(&self.box_type.0);
        }
    }

    fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let size32 = r.u32("box size")?;
        let box_type = FourCc(r.array("box type")?);
        let (size, large) = match size32 {
            0 => {
                return Err(DecodeError::invalid(
                    "box size",
                    "0 (box extends to end of file) is not supported: sizes must be explicit",
                ));
            }
            1 => (r.u64("box largesize")?, true),
            n => (u64::from(n), false),
        };
        let header = Self {
            box_type,
            size,
            large,
        };
        if size < header.header_len() as u64 {
            return Err(DecodeError::invalid(
                "box size",
                "smaller than the box header",
            ));
        }
        Ok(header)
    }
}

/// Full box header: box header ‖ version(1) ‖ flags(3). Every DCF box but ftyp
/// is a full box, version 0 (Bento4 refuses any other version).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FullBoxHeader {
    pub header: BoxHeader,
    pub version: u8,
    pub flags: u32,
}

impl FullBoxHeader {
    pub const LEN: usize = BoxHeader::LEN + 4;
    pub const LARGE_LEN: usize = BoxHeader::LARGE_LEN + 4;

    /// Version 0, flags 0, the only form DCF uses.
    pub const fn v0(box_type: FourCc, size: u64, large: bool) -> Self {
        Self {
            header: BoxHeader {
                box_type,
                size,
                large,
            },
            version: 0,
            flags: 0,
        }
    }

    pub const fn header_len(&self) -> usize {
        self.header.header_len() + 4
    }

    /// Reads a full box header, requiring `expected` type and version 0.
    /// `what` names the box and `version_what` its version field in errors.
    pub fn read_expecting(
        r: &mut Reader<'_>,
        expected: FourCc,
        (what, version_what): (&'static str, &'static str),
    ) -> Result<Self, DecodeError> {
        let full = Self::read(r)?;
        if full.header.box_type != expected {
            return Err(DecodeError::invalid(what, "unexpected box type"));
        }
        if full.version != 0 {
            return Err(DecodeError::unsupported(
                version_what,
                u64::from(full.version),
            ));
        }
        if full.header.size < full.header_len() as u64 {
            return Err(DecodeError::invalid(
                what,
                "smaller than its full-box header",
            ));
        }
        Ok(full)
    }
}

impl Codec<'_> for FullBoxHeader {
    fn encoded_len(&self) -> usize {
        self.header_len()
    }

    fn encode(&self, out: &mut Vec<u8>) {
        self.header.encode(out);
        out.push(self.version);
        put_uint(out, u64::from(self.flags), 3);
    }

    fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(Self {
            header: BoxHeader::read(r)?,
            version: r.u8("full box version")?,
            flags: r.u24("full box flags")?,
        })
    }
}

/// Reads the body of a box whose header was just read: a sub-reader over exactly
/// the rest of the box, so a field can never run into the next box.
fn body<'a>(
    r: &mut Reader<'a>,
    size: u64,
    header_len: usize,
    what: &'static str,
) -> Result<Reader<'a>, DecodeError> {
    let body_len = usize::try_from(size - header_len as u64)
        .map_err(|_| DecodeError::invalid(what, "box larger than memory"))?;
    Ok(Reader::new(r.take(body_len, what)?))
}

/// Skips child boxes we do not interpret, checking that they tile the body
/// exactly. `reject` names a child type that must not be ignored.
fn skip_children(
    r: &mut Reader<'_>,
    reject: Option<(FourCc, &'static str, &'static str)>,
) -> Result<(), DecodeError> {
    while !r.is_empty() {
        let child = BoxHeader::read(r)?;
        if let Some((box_type, what, reason)) = reject
            && child.box_type == box_type
        {
            return Err(DecodeError::invalid(what, reason));
        }
        body(r, child.size, child.header_len(), "child box")?;
    }
    Ok(())
}

fn utf8(bytes: &[u8], what: &'static str) -> Result<String, DecodeError> {
    String::from_utf8(bytes.to_vec()).map_err(|_| DecodeError::invalid(what, "not UTF-8"))
}

/// ftyp: major brand ‖ minor version ‖ compatible brands (ISO/IEC 14496-12 §4.3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileType {
    pub major_brand: FourCc,
    pub minor_version: u32,
    pub compatible_brands: Vec<FourCc>,
}

impl FileType {
    /// What Bento4's `mp4dcfpackager` writes: major 'odcf', minor 2, ['odcf'].
    pub fn dcf() -> Self {
        Self {
            major_brand: FourCc::ODCF,
            minor_version: 2,
            compatible_brands: vec![FourCc::ODCF],
        }
    }

    /// A DCF reader accepts 'odcf' as the major or any compatible brand.
    pub fn is_dcf(&self) -> bool {
        self.major_brand == FourCc::ODCF || self.compatible_brands.contains(&FourCc::ODCF)
    }
}

impl Codec<'_> for FileType {
    fn encoded_len(&self) -> usize {
        BoxHeader::LEN + 8 + 4 * self.compatible_brands.len()
    }

    fn encode(&self, out: &mut Vec<u8>) {
        BoxHeader {
            box_type: FourCc::FTYP,
            size: self.encoded_len() as u64,
            large: false,
        }
        .encode(out);
        out.extend_from_slice(&self.major_brand.0);
        put_uint(out, u64::from(self.minor_version), 4);
        for brand in &self.compatible_brands {
            out.extend_from_slice(&brand.0);
        }
    }

    fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let header = BoxHeader::read(r)?;
        if header.box_type != FourCc::FTYP {
            return Err(DecodeError::invalid("ftyp", "unexpected box type"));
        }
        let mut b = body(r, header.size, header.header_len(), "ftyp")?;
        let major_brand = FourCc(b.array("ftyp major brand")?);
        let minor_version = b.u32("ftyp minor version")?;
        if b.remaining() % 4 != 0 {
            return Err(DecodeError::invalid(
                "ftyp compatible brands",
                "not a whole number of brands",
            ));
        }
        let mut compatible_brands = Vec::with_capacity(b.remaining() / 4);
        while !b.is_empty() {
            compatible_brands.push(FourCc(b.array("ftyp compatible brand")?));
        }
        Ok(Self {
            major_brand,
            minor_version,
            compatible_brands,
        })
    }
}

/// ohdr (Common Headers): the encryption parameters and identifiers. Child
/// boxes are skipped on read, except 'grpi' (a group-key wrapped content key,
/// which the MBMS profile does not use: the content key is the MTK itself).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommonHeaders {
    pub encryption_method: u8,
    pub padding_scheme: u8,
    pub plaintext_len: u64,
    pub content_id: String,
    pub rights_issuer_url: String,
    /// Raw `Name:Value\0` entries (see `textual_headers`).
    pub textual_headers: Vec<u8>,
}

impl CommonHeaders {
    /// Bytes after the full-box header before the variable fields:
    /// method(1) padding(1) plaintext length(8) three 16-bit lengths.
    const FIXED_LEN: usize = 1 + 1 + 8 + 2 + 2 + 2;
}

impl Codec<'_> for CommonHeaders {
    fn encoded_len(&self) -> usize {
        FullBoxHeader::LEN
            + Self::FIXED_LEN
            + self.content_id.len()
            + self.rights_issuer_url.len()
            + self.textual_headers.len()
    }

    /// Field lengths must fit 16 bits; the writer checks that before encoding.
    fn encode(&self, out: &mut Vec<u8>) {
        FullBoxHeader::v0(FourCc::OHDR, self.encoded_len() as u64, false).encode(out);
        out.push(self.encryption_method);
        out.push(self.padding_scheme);
        out.extend_from_slice(&self.plaintext_len.to_be_bytes());
        for field in [
            self.content_id.as_bytes(),
            self.rights_issuer_url.as_bytes(),
            &self.textual_headers,
        ] {
            debug_assert!(field.len() <= usize::from(u16::MAX));
            put_uint(out, field.len() as u64, 2);
        }
        out.extend_from_slice(self.content_id.as_bytes());
        out.extend_from_slice(self.rights_issuer_url.as_bytes());
        out.extend_from_slice(&self.textual_headers);
    }

    fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let full = FullBoxHeader::read_expecting(r, FourCc::OHDR, ("ohdr", "ohdr version"))?;
        let mut b = body(r, full.header.size, full.header_len(), "ohdr")?;
        let encryption_method = b.u8("ohdr EncryptionMethod")?;
        let padding_scheme = b.u8("ohdr PaddingScheme")?;
        let plaintext_len = b.u64("ohdr PlaintextLength")?;
        let content_id_len = b.u16("ohdr ContentIDLength")?;
        let rights_issuer_url_len = b.u16("ohdr RightsIssuerURLLength")?;
        let textual_headers_len = b.u16("ohdr TextualHeadersLength")?;
        let content_id = utf8(
            b.take(usize::from(content_id_len), "ohdr ContentID")?,
            "ohdr ContentID",
        )?;
        let rights_issuer_url = utf8(
            b.take(usize::from(rights_issuer_url_len), "ohdr RightsIssuerURL")?,
            "ohdr RightsIssuerURL",
        )?;
        let textual_headers = b
            .take(usize::from(textual_headers_len), "ohdr TextualHeaders")?
            .to_vec();
        skip_children(
            &mut b,
            Some((
                FourCc::GRPI,
                "ohdr child grpi",
                "group-key wrapped content keys are not supported",
            )),
        )?;
        Ok(Self {
            encryption_method,
            padding_scheme,
            plaintext_len,
            content_id,
            rights_issuer_url,
            textual_headers,
        })
    }
}

/// odhe (Discrete Media Headers): the plaintext's MIME type and the ohdr box.
/// Other children are skipped on read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiscreteHeaders {
    pub content_type: String,
    pub common: CommonHeaders,
}

impl Codec<'_> for DiscreteHeaders {
    fn encoded_len(&self) -> usize {
        FullBoxHeader::LEN + 1 + self.content_type.len() + self.common.encoded_len()
    }

    /// The content type must fit 8 bits of length; the writer checks that.
    fn encode(&self, out: &mut Vec<u8>) {
        FullBoxHeader::v0(FourCc::ODHE, self.encoded_len() as u64, false).encode(out);
        debug_assert!(self.content_type.len() <= usize::from(u8::MAX));
        out.push(self.content_type.len() as u8);
        out.extend_from_slice(self.content_type.as_bytes());
        self.common.encode(out);
    }

    fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let full = FullBoxHeader::read_expecting(r, FourCc::ODHE, ("odhe", "odhe version"))?;
        let mut b = body(r, full.header.size, full.header_len(), "odhe")?;
        let content_type_len = b.u8("odhe ContentTypeLength")?;
        let content_type = utf8(
            b.take(usize::from(content_type_len), "odhe ContentType")?,
            "odhe ContentType",
        )?;
        let mut common = None;
        while !b.is_empty() {
            let mut peek = b.clone();
            let child = BoxHeader::read(&mut peek)?;
            if child.box_type == FourCc::OHDR {
                if common.is_some() {
                    return Err(DecodeError::invalid("odhe", "more than one ohdr box"));
                }
                common = Some(CommonHeaders::read(&mut b)?);
            } else {
                BoxHeader::read(&mut b)?;
                body(&mut b, child.size, child.header_len(), "odhe child box")?;
            }
        }
        let common = common.ok_or(DecodeError::invalid("odhe", "no ohdr box"))?;
        Ok(Self {
            content_type,
            common,
        })
    }
}

/// The start of odda (Content Object): full-box header with a 64-bit size and
/// EncryptedDataLength. EncryptedData (IV ‖ ciphertext) follows and is streamed,
/// so it is not part of this codec.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ContentObjectHeader {
    pub box_header: FullBoxHeader,
    pub encrypted_data_len: u64,
}

impl ContentObjectHeader {
    /// The form Bento4 writes: largesize header, size = header + 8 + data.
    pub fn new(encrypted_data_len: u64) -> Option<Self> {
        let size = encrypted_data_len.checked_add((FullBoxHeader::LARGE_LEN + 8) as u64)?;
        Some(Self {
            box_header: FullBoxHeader::v0(FourCc::ODDA, size, true),
            encrypted_data_len,
        })
    }
}

impl Codec<'_> for ContentObjectHeader {
    fn encoded_len(&self) -> usize {
        self.box_header.header_len() + 8
    }

    fn encode(&self, out: &mut Vec<u8>) {
        self.box_header.encode(out);
        out.extend_from_slice(&self.encrypted_data_len.to_be_bytes());
    }

    fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(Self {
            box_header: FullBoxHeader::read_expecting(r, FourCc::ODDA, ("odda", "odda version"))?,
            encrypted_data_len: r.u64("odda EncryptedDataLength")?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn common() -> CommonHeaders {
        CommonHeaders {
            encryption_method: 1,
            padding_scheme: 1,
            plaintext_len: 0x0102_0304_0506_0708,
            content_id: "cid:a@b".into(),
            rights_issuer_url: "http://ri".into(),
            textual_headers: b"A:b\0".to_vec(),
        }
    }

    #[test]
    fn ohdr_bytes() {
        let bytes = common().to_vec();
        let mut expected = Vec::new();
        expected.extend_from_slice(&(12u32 + 16 + 7 + 9 + 4).to_be_bytes());
        expected.extend_from_slice(b"ohdr\0\0\0\0");
        expected.extend_from_slice(&[1, 1, 1, 2, 3, 4, 5, 6, 7, 8, 0, 7, 0, 9, 0, 4]);
        expected.extend_from_slice(b"cid:a@bhttp://riA:b\0");
        assert_eq!(bytes, expected);
        assert_eq!(CommonHeaders::decode(&bytes).unwrap(), common());
    }

    #[test]
    fn large_header_bytes() {
        let h = FullBoxHeader::v0(FourCc::ODRM, 0x1_0000_0020, true);
        assert_eq!(
            h.to_vec(),
            [
                0, 0, 0, 1, b'o', b'd', b'r', b'm', 0, 0, 0, 1, 0, 0, 0, 0x20, 0, 0, 0, 0
            ]
        );
        assert_eq!(FullBoxHeader::decode(&h.to_vec()).unwrap(), h);
    }

    #[test]
    fn ohdr_skips_unknown_children_and_refuses_grpi() {
        let mut with_child = common();
        with_child.textual_headers.clear();
        let mut bytes = with_child.to_vec();
        let child = b"\0\0\0\x0cfree\x01\x02\x03\x04";
        bytes.extend_from_slice(child);
        let size = bytes.len() as u32;
        bytes[..4].copy_from_slice(&size.to_be_bytes());
        assert_eq!(CommonHeaders::decode(&bytes).unwrap(), with_child);

        bytes[size as usize - 8..size as usize - 4].copy_from_slice(b"grpi");
        assert!(matches!(
            CommonHeaders::decode(&bytes),
            Err(DecodeError::Invalid {
                what: "ohdr child grpi",
                ..
            })
        ));
    }

    #[test]
    fn field_overrunning_its_box_is_an_error() {
        let mut bytes = common().to_vec();
        // ContentIDLength claims more than the box holds.
        bytes[22..24].copy_from_slice(&200u16.to_be_bytes());
        assert!(matches!(
            CommonHeaders::decode(&bytes),
            Err(DecodeError::Truncated {
                what: "ohdr ContentID",
                ..
            })
        ));
    }

    #[test]
    fn size_zero_and_undersized_boxes_are_refused() {
        assert!(BoxHeader::decode(b"\0\0\0\0odda").is_err());
        assert!(BoxHeader::decode(b"\0\0\0\x07odda").is_err());
        assert!(BoxHeader::decode(b"\0\0\0\x01odda\0\0\0\0\0\0\0\x0f").is_err());
    }

    #[test]
    fn fourcc_display_escapes() {
        assert_eq!(FourCc(*b"od\nz").to_string(), "od\\x0az");
    }

    proptest! {
        #[test]
        fn decoders_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = BoxHeader::decode(&bytes);
            let _ = FullBoxHeader::decode(&bytes);
            let _ = FileType::decode(&bytes);
            let _ = CommonHeaders::decode(&bytes);
            let _ = DiscreteHeaders::decode(&bytes);
            let _ = ContentObjectHeader::decode(&bytes);
        }

        #[test]
        fn odhe_round_trip(
            content_type in "[ -~]{0,40}",
            content_id in "[ -~]{0,40}",
            plaintext_len in any::<u64>(),
            textual in proptest::collection::vec(any::<u8>(), 0..40),
        ) {
            let odhe = DiscreteHeaders {
                content_type,
                common: CommonHeaders {
                    encryption_method: 2,
                    padding_scheme: 0,
                    plaintext_len,
                    content_id,
                    rights_issuer_url: String::new(),
                    textual_headers: textual,
                },
            };
            let bytes = odhe.to_vec();
            prop_assert_eq!(bytes.len(), odhe.encoded_len());
            prop_assert_eq!(DiscreteHeaders::decode(&bytes).unwrap(), odhe);
        }
    }
}
