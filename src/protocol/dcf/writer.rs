//! Incremental DCF writer: the header (all boxes up to and including the IV) is
//! built up front from the declared plaintext length, then the ciphertext is
//! streamed chunk by chunk. The declared length is enforced, so a source file
//! that grows or shrinks while it is read fails instead of producing a DCF whose
//! boxes lie about their sizes.

use aes::Aes128Enc;
use aes::cipher::{BlockEncryptMut, KeyIvInit, StreamCipher};

use super::block_stream::{BlockCarry, extend_transformed};
use super::boxes::FullBoxHeader;
use super::boxes::{CommonHeaders, ContentObjectHeader, DiscreteHeaders, FileType, FourCc};
use super::error::DcfWriteError;
use super::layout::DcfLayout;
use super::textual_headers;
use super::{EncryptionMethod, IV_LEN};
use crate::protocol::codec::Codec;
use crate::protocol::keys::MtkKey;

/// What goes into the DCF headers of one object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DcfParams {
    /// MIME type of the plaintext (odhe ContentType, at most 255 bytes).
    pub content_type: String,
    /// ohdr ContentID, at most 65535 bytes.
    pub content_id: String,
    /// ohdr RightsIssuerURL, at most 65535 bytes (may be empty).
    pub rights_issuer_url: String,
    /// `Name:Value` pairs in order; add [`super::MbmsKeyId::textual_header`] here.
    pub textual_headers: Vec<(String, String)>,
    pub method: EncryptionMethod,
    /// Exact number of plaintext bytes that will be fed.
    pub plaintext_len: u64,
}

impl DcfParams {
    /// The odhe box (with its ohdr) these parameters describe, after checking
    /// every length against its wire field.
    fn discrete_headers(&self) -> Result<DiscreteHeaders, DcfWriteError> {
        if self.content_type.len() > usize::from(u8::MAX) {
            return Err(DcfWriteError::ContentTypeTooLong {
                len: self.content_type.len(),
            });
        }
        textual_headers::validate(&self.textual_headers)?;
        let textual_len = textual_headers::encoded_len(&self.textual_headers);
        for (field, len) in [
            ("ContentID", self.content_id.len()),
            ("RightsIssuerURL", self.rights_issuer_url.len()),
            ("TextualHeaders", textual_len),
        ] {
            if len > usize::from(u16::MAX) {
                return Err(DcfWriteError::FieldTooLong { field, len });
            }
        }
        let mut raw_textual = Vec::with_capacity(textual_len);
        textual_headers::encode(&self.textual_headers, &mut raw_textual);
        Ok(DiscreteHeaders {
            content_type: self.content_type.clone(),
            common: CommonHeaders {
                encryption_method: self.method.code(),
                padding_scheme: self.method.padding_scheme(),
                plaintext_len: self.plaintext_len,
                content_id: self.content_id.clone(),
                rights_issuer_url: self.rights_issuer_url.clone(),
                textual_headers: raw_textual,
            },
        })
    }
}

/// The content cipher, keyed once per object (one AES key schedule).
enum Encryptor {
    Cbc(cbc::Encryptor<Aes128Enc>, BlockCarry),
    /// Full 128-bit big-endian counter starting at the IV, as Bento4's
    /// `AP4_CtrStreamCipher` with a 16-byte counter.
    Ctr(ctr::Ctr128BE<Aes128Enc>),
}

/// Writes one DCF object: [`header`](Self::header), then
/// [`encrypt`](Self::encrypt) per chunk, then [`finish`](Self::finish).
pub struct DcfWriter {
    header: Vec<u8>,
    layout: DcfLayout,
    encryptor: Encryptor,
    declared: u64,
    fed: u64,
}

impl std::fmt::Debug for DcfWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DcfWriter")
            .field("layout", &self.layout)
            .field("declared", &self.declared)
            .field("fed", &self.fed)
            .finish_non_exhaustive()
    }
}

impl DcfWriter {
    /// `iv` must be fresh random bytes for every object: a repeated (MTK, IV)
    /// leaks plaintext relations in CBC and the plaintext XOR in CTR (design §3).
    pub fn new(params: DcfParams, key: &MtkKey, iv: [u8; IV_LEN]) -> Result<Self, DcfWriteError> {
        let odhe = params.discrete_headers()?;
        let ftyp = FileType::dcf();
        let layout = DcfLayout::new(&ftyp, &odhe, params.method, params.plaintext_len).ok_or(
            DcfWriteError::TooLarge {
                plaintext_len: params.plaintext_len,
            },
        )?;
        let odda =
            ContentObjectHeader::new(layout.encrypted_data_len).ok_or(DcfWriteError::TooLarge {
                plaintext_len: params.plaintext_len,
            })?;

        let mut header = Vec::with_capacity(layout.ciphertext_offset as usize);
        ftyp.encode(&mut header);
        FullBoxHeader::v0(FourCc::ODRM, layout.odrm_size, true).encode(&mut header);
        odhe.encode(&mut header);
        odda.encode(&mut header);
        header.extend_from_slice(&iv);
        debug_assert_eq!(header.len() as u64, layout.ciphertext_offset);

        let (key, iv) = (key.expose().into(), iv.into());
        let encryptor = match params.method {
            EncryptionMethod::Aes128Cbc => {
                Encryptor::Cbc(cbc::Encryptor::new(key, &iv), BlockCarry::default())
            }
            EncryptionMethod::Aes128Ctr => Encryptor::Ctr(ctr::Ctr128BE::new(key, &iv)),
        };
        Ok(Self {
            header,
            layout,
            encryptor,
            declared: params.plaintext_len,
            fed: 0,
        })
    }

    /// ftyp, odrm/odhe/ohdr and the odda box up to and including the IV.
    pub fn header(&self) -> &[u8] {
        &self.header
    }

    /// Exact size of the finished object, header included.
    pub fn total_len(&self) -> u64 {
        self.layout.total_len
    }

    pub fn layout(&self) -> &DcfLayout {
        &self.layout
    }

    /// Plaintext bytes accepted so far.
    pub fn fed(&self) -> u64 {
        self.fed
    }

    /// Encrypts the next chunk of plaintext and appends the ciphertext to `out`
    /// (CBC holds back up to 15 bytes until their block is complete). Refuses,
    /// without writing anything, a chunk that would exceed the declared length.
    pub fn encrypt(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<(), DcfWriteError> {
        let offered = self.fed.saturating_add(input.len() as u64);
        if offered > self.declared {
            return Err(DcfWriteError::InputLongerThanDeclared {
                declared: self.declared,
                offered,
            });
        }
        self.fed = offered;
        match &mut self.encryptor {
            Encryptor::Cbc(cbc, carry) => {
                carry.process(input, out, |blocks| cbc.encrypt_blocks_inout_mut(blocks));
            }
            Encryptor::Ctr(ctr) => {
                extend_transformed(input, out, |bytes| ctr.apply_keystream(bytes));
            }
        }
        Ok(())
    }

    /// Appends the final padded block (CBC) after checking that exactly the
    /// declared number of bytes was fed.
    pub fn finish(mut self, out: &mut Vec<u8>) -> Result<(), DcfWriteError> {
        if self.fed != self.declared {
            return Err(DcfWriteError::InputShorterThanDeclared {
                declared: self.declared,
                fed: self.fed,
            });
        }
        if let Encryptor::Cbc(cbc, carry) = &mut self.encryptor {
            carry.pad_and_process(out, |blocks| cbc.encrypt_blocks_inout_mut(blocks));
        }
        Ok(())
    }
}
