//! Incremental DCF reader for a receiver: [`DcfHeader::parse`] reads the boxes
//! from a prefix of the object (asking for more bytes when the prefix is short),
//! exposes the key identity so the right MTK can be chosen, and [`DcfReader`]
//! then decrypts the ciphertext as it arrives and checks padding and length at
//! the end.

use aes::Aes128Dec;
use aes::Aes128Enc;
use aes::cipher::{BlockDecryptMut, KeyIvInit, StreamCipher};

use super::block_stream::{BLOCK_LEN, BlockCarry, extend_transformed, unpadded_len};
use super::boxes::FullBoxHeader;
use super::boxes::{BoxHeader, ContentObjectHeader, DiscreteHeaders, FileType, FourCc};
use super::error::DcfReadError;
use super::key_id::MbmsKeyId;
use super::textual_headers;
use super::{EncryptionMethod, IV_LEN};
use crate::protocol::codec::{Codec, Reader};
use crate::protocol::keys::MtkKey;

/// Largest ftyp box accepted (a few dozen brands).
const MAX_FTYP_LEN: u64 = 1024;
/// Largest odhe box accepted. A maximal ohdr (three 64 KiB fields) is ~192 KiB;
/// the cap keeps a hostile size field from making a receiver buffer gigabytes
/// before the first check.
const MAX_ODHE_LEN: u64 = 1 << 20;

/// Result of parsing a prefix of a DCF object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeaderParse {
    /// The header is complete; ciphertext starts at `header_len`.
    Complete {
        header: DcfHeader,
        header_len: usize,
    },
    /// The prefix must be at least `at_least` bytes long (in total) to go on.
    NeedMore { at_least: usize },
}

/// The parsed, validated header of a DCF object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DcfHeader {
    content_type: String,
    content_id: String,
    rights_issuer_url: String,
    textual_headers: Vec<(String, String)>,
    key_id: Option<MbmsKeyId>,
    method: EncryptionMethod,
    plaintext_len: u64,
    encrypted_data_len: u64,
    iv: [u8; IV_LEN],
}

/// Outcome of one parsing step: a value, or the prefix length needed.
enum Step<T> {
    Ready(T),
    Need(usize),
}

/// Makes sure `buf` holds `len` bytes from `pos` (with `len` already capped).
fn need(buf: &[u8], pos: usize, len: u64) -> Step<usize> {
    let end = pos.saturating_add(usize::try_from(len).unwrap_or(usize::MAX));
    if buf.len() >= end {
        Step::Ready(end)
    } else {
        Step::Need(end)
    }
}

macro_rules! ready {
    ($step:expr) => {
        match $step {
            Step::Ready(v) => v,
            Step::Need(at_least) => return Ok(HeaderParse::NeedMore { at_least }),
        }
    };
}

/// The (full) box header at `pos`, which must be of type `expected`.
fn expect_box(
    buf: &[u8],
    pos: usize,
    expected: FourCc,
    full: bool,
) -> Result<Step<BoxHeader>, DcfReadError> {
    let rest = buf.get(pos..).unwrap_or_default();
    let version_and_flags = if full { 4 } else { 0 };
    if rest.len() < BoxHeader::LEN {
        return Ok(Step::Need(pos + BoxHeader::LEN + version_and_flags));
    }
    let large = rest[..4] == 1u32.to_be_bytes();
    let header_len = version_and_flags
        + if large {
            BoxHeader::LARGE_LEN
        } else {
            BoxHeader::LEN
        };
    if rest.len() < header_len {
        return Ok(Step::Need(pos + header_len));
    }
    let header = BoxHeader::read(&mut Reader::new(rest))?;
    if header.box_type != expected {
        return Err(DcfReadError::UnexpectedBox {
            expected,
            found: header.box_type,
        });
    }
    Ok(Step::Ready(header))
}

fn capped(header: &BoxHeader, max: u64) -> Result<u64, DcfReadError> {
    if header.size > max {
        return Err(DcfReadError::HeaderTooLarge {
            box_type: header.box_type,
            size: header.size,
            max,
        });
    }
    Ok(header.size)
}

impl DcfHeader {
    /// Parses the header from a prefix of a DCF object: ftyp, then the first
    /// odrm with its odhe and the odda box up to and including the IV. Checks
    /// every size against its parent, the method and padding pair, and that
    /// EncryptedDataLength is exactly what PlaintextLength implies.
    pub fn parse(buf: &[u8]) -> Result<HeaderParse, DcfReadError> {
        // ftyp
        let ftyp_header = ready!(expect_box(buf, 0, FourCc::FTYP, false)?);
        let ftyp_end = ready!(need(buf, 0, capped(&ftyp_header, MAX_FTYP_LEN)?));
        let ftyp = FileType::decode(&buf[..ftyp_end])?;
        if !ftyp.is_dcf() {
            return Err(DcfReadError::NotDcf {
                major_brand: ftyp.major_brand,
            });
        }

        // odrm: only its header; its end bounds the children.
        let odrm_pos = ftyp_end;
        ready!(expect_box(buf, odrm_pos, FourCc::ODRM, true)?);
        let mut r = Reader::new(&buf[odrm_pos..]);
        let odrm = FullBoxHeader::read_expecting(&mut r, FourCc::ODRM, ("odrm", "odrm version"))?;
        let odrm_end = (odrm_pos as u64).saturating_add(odrm.header.size);

        // odhe, whole.
        let odhe_pos = odrm_pos + odrm.header_len();
        let odhe_box = ready!(expect_box(buf, odhe_pos, FourCc::ODHE, true)?);
        let odhe_end = ready!(need(buf, odhe_pos, capped(&odhe_box, MAX_ODHE_LEN)?));
        if odhe_end as u64 > odrm_end {
            return Err(DcfReadError::ChildOverrunsParent {
                child: FourCc::ODHE,
                parent: FourCc::ODRM,
            });
        }
        let odhe = DiscreteHeaders::decode(&buf[odhe_pos..odhe_end])?;
        let common = &odhe.common;
        let method = match EncryptionMethod::from_code(common.encryption_method) {
            Some(method) => method,
            None => {
                return Err(DcfReadError::UnsupportedMethod {
                    method: common.encryption_method,
                });
            }
        };
        if common.padding_scheme != method.padding_scheme() {
            return Err(DcfReadError::PaddingMismatch {
                method: common.encryption_method,
                padding: common.padding_scheme,
            });
        }
        let textual_headers = textual_headers::parse(&common.textual_headers)?;
        let key_id = MbmsKeyId::find(&textual_headers)?;

        // odda: header, EncryptedDataLength and IV.
        let odda_pos = odhe_end;
        let odda_box = ready!(expect_box(buf, odda_pos, FourCc::ODDA, true)?);
        let odda_fixed = (odda_box.header_len() + 4 + 8 + IV_LEN) as u64;
        let iv_end = ready!(need(buf, odda_pos, odda_fixed));
        let mut r = Reader::new(&buf[odda_pos..iv_end]);
        let odda = ContentObjectHeader::read(&mut r)?;
        let iv: [u8; IV_LEN] = r.array("odda IV")?;
        let data_start = (odda.box_header.header_len() + 8) as u64;
        if odda.box_header.header.size.checked_sub(data_start) != Some(odda.encrypted_data_len) {
            return Err(DcfReadError::ContentObjectSize {
                box_size: odda.box_header.header.size,
                encrypted_data_len: odda.encrypted_data_len,
            });
        }
        if (odda_pos as u64)
            .checked_add(odda.box_header.header.size)
            .is_none_or(|end| end > odrm_end)
        {
            return Err(DcfReadError::ChildOverrunsParent {
                child: FourCc::ODDA,
                parent: FourCc::ODRM,
            });
        }
        let expected_ciphertext_len = method.ciphertext_len(common.plaintext_len);
        if expected_ciphertext_len.and_then(|c| c.checked_add(IV_LEN as u64))
            != Some(odda.encrypted_data_len)
        {
            return Err(DcfReadError::EncryptedLength {
                plaintext_len: common.plaintext_len,
                encrypted_data_len: odda.encrypted_data_len,
                expected_ciphertext_len: expected_ciphertext_len.unwrap_or(u64::MAX),
            });
        }

        Ok(HeaderParse::Complete {
            header: Self {
                content_type: odhe.content_type,
                content_id: odhe.common.content_id,
                rights_issuer_url: odhe.common.rights_issuer_url,
                textual_headers,
                key_id,
                method,
                plaintext_len: odhe.common.plaintext_len,
                encrypted_data_len: odda.encrypted_data_len,
                iv,
            },
            header_len: iv_end,
        })
    }

    pub fn content_type(&self) -> &str {
        &self.content_type
    }

    pub fn content_id(&self) -> &str {
        &self.content_id
    }

    pub fn rights_issuer_url(&self) -> &str {
        &self.rights_issuer_url
    }

    /// All textual headers in order, the key-id header included.
    pub fn textual_headers(&self) -> &[(String, String)] {
        &self.textual_headers
    }

    /// The MTK that protects the object, if the `MBMS-Key-ID` header is present.
    pub fn key_id(&self) -> Option<MbmsKeyId> {
        self.key_id
    }

    pub fn method(&self) -> EncryptionMethod {
        self.method
    }

    pub fn plaintext_len(&self) -> u64 {
        self.plaintext_len
    }

    /// EncryptedDataLength: IV + ciphertext.
    pub fn encrypted_data_len(&self) -> u64 {
        self.encrypted_data_len
    }

    /// Ciphertext bytes after the IV.
    pub fn ciphertext_len(&self) -> u64 {
        self.encrypted_data_len - IV_LEN as u64
    }

    pub fn iv(&self) -> &[u8; IV_LEN] {
        &self.iv
    }
}

/// The content decipher, keyed once per object.
enum Decryptor {
    /// CBC holds the last block's plaintext back until its padding is checked.
    Cbc {
        cbc: cbc::Decryptor<Aes128Dec>,
        carry: BlockCarry,
        last_block: Option<[u8; BLOCK_LEN]>,
    },
    Ctr(ctr::Ctr128BE<Aes128Enc>),
}

/// Decrypts the ciphertext of one object: [`decrypt`](Self::decrypt) per chunk,
/// then [`finish`](Self::finish).
pub struct DcfReader {
    header: DcfHeader,
    decryptor: Decryptor,
    remaining: u64,
    produced: u64,
}

impl std::fmt::Debug for DcfReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DcfReader")
            .field("header", &self.header)
            .field("remaining", &self.remaining)
            .field("produced", &self.produced)
            .finish_non_exhaustive()
    }
}

impl DcfReader {
    pub fn new(header: DcfHeader, key: &MtkKey) -> Self {
        let (key, iv) = (key.expose().into(), header.iv.into());
        let decryptor = match header.method {
            EncryptionMethod::Aes128Cbc => Decryptor::Cbc {
                cbc: cbc::Decryptor::new(key, &iv),
                carry: BlockCarry::default(),
                last_block: None,
            },
            EncryptionMethod::Aes128Ctr => Decryptor::Ctr(ctr::Ctr128BE::new(key, &iv)),
        };
        Self {
            remaining: header.ciphertext_len(),
            header,
            decryptor,
            produced: 0,
        }
    }

    pub fn header(&self) -> &DcfHeader {
        &self.header
    }

    /// Ciphertext bytes still expected.
    pub fn remaining(&self) -> u64 {
        self.remaining
    }

    /// Decrypts the next chunk of ciphertext, appending plaintext to `out`.
    /// Consumes at most the ciphertext still expected and returns how many
    /// bytes of `input` it used: whatever follows belongs to the next box.
    pub fn decrypt(&mut self, input: &[u8], out: &mut Vec<u8>) -> usize {
        let used = usize::try_from(self.remaining).map_or(input.len(), |r| r.min(input.len()));
        let input = &input[..used];
        self.remaining -= used as u64;
        let start = out.len();
        match &mut self.decryptor {
            Decryptor::Cbc {
                cbc,
                carry,
                last_block,
            } => {
                carry.process(input, out, |blocks| cbc.decrypt_blocks_inout_mut(blocks));
                // The final block arrived in this call (the ciphertext is whole
                // blocks): keep it back for the padding check.
                if self.remaining == 0 && last_block.is_none() && out.len() >= start + BLOCK_LEN {
                    let at = out.len() - BLOCK_LEN;
                    let mut block = [0u8; BLOCK_LEN];
                    block.copy_from_slice(&out[at..]);
                    out.truncate(at);
                    *last_block = Some(block);
                }
            }
            Decryptor::Ctr(ctr) => {
                extend_transformed(input, out, |bytes| ctr.apply_keystream(bytes));
            }
        }
        self.produced += (out.len() - start) as u64;
        used
    }

    /// Checks that the whole ciphertext arrived, verifies and strips the CBC
    /// padding (appending the last plaintext bytes) and compares the plaintext
    /// length with PlaintextLength.
    pub fn finish(mut self, out: &mut Vec<u8>) -> Result<(), DcfReadError> {
        if self.remaining > 0 {
            let expected = self.header.ciphertext_len();
            return Err(DcfReadError::Truncated {
                expected,
                received: expected - self.remaining,
            });
        }
        if let Decryptor::Cbc {
            carry, last_block, ..
        } = &self.decryptor
        {
            let block = match last_block {
                Some(block) if carry.len() == 0 => block,
                _ => return Err(DcfReadError::BadPadding),
            };
            let data_len = unpadded_len(block).ok_or(DcfReadError::BadPadding)?;
            out.extend_from_slice(&block[..data_len]);
            self.produced += data_len as u64;
        }
        if self.produced != self.header.plaintext_len {
            return Err(DcfReadError::PlaintextLength {
                declared: self.header.plaintext_len,
                actual: self.produced,
            });
        }
        Ok(())
    }
}
