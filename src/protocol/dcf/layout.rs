//! Offsets and sizes of every box of a DCF object, known before the first
//! ciphertext byte exists: they depend only on the header fields, the method and
//! the plaintext length.

use super::boxes::{ContentObjectHeader, DiscreteHeaders, FileType, FullBoxHeader};
use super::{EncryptionMethod, IV_LEN};
use crate::protocol::codec::Codec;

/// Where each box sits in the object (offsets from the start of the file).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DcfLayout {
    pub ftyp_len: u64,
    pub odrm_offset: u64,
    pub odrm_size: u64,
    pub odhe_offset: u64,
    pub odhe_size: u64,
    pub ohdr_offset: u64,
    pub ohdr_size: u64,
    pub odda_offset: u64,
    pub odda_size: u64,
    /// EncryptedDataLength: IV + ciphertext (including CBC padding).
    pub encrypted_data_len: u64,
    pub iv_offset: u64,
    /// Everything before this offset is the header; ciphertext follows.
    pub ciphertext_offset: u64,
    pub total_len: u64,
}

impl DcfLayout {
    /// `None` if the object's sizes overflow 64 bits.
    pub fn new(
        ftyp: &FileType,
        odhe: &DiscreteHeaders,
        method: EncryptionMethod,
        plaintext_len: u64,
    ) -> Option<Self> {
        let ftyp_len = ftyp.encoded_len() as u64;
        let odhe_size = odhe.encoded_len() as u64;
        let ohdr_size = odhe.common.encoded_len() as u64;
        let encrypted_data_len = method
            .ciphertext_len(plaintext_len)?
            .checked_add(IV_LEN as u64)?;
        let odda = ContentObjectHeader::new(encrypted_data_len)?;
        let odda_size = odda.box_header.header.size;

        let odrm_offset = ftyp_len;
        let odhe_offset = odrm_offset + FullBoxHeader::LARGE_LEN as u64;
        let ohdr_offset = odhe_offset + odhe_size - ohdr_size;
        let odda_offset = odhe_offset + odhe_size;
        let odrm_size = odda_size.checked_add(odda_offset - odrm_offset)?;
        let iv_offset = odda_offset + odda.encoded_len() as u64;
        Some(Self {
            ftyp_len,
            odrm_offset,
            odrm_size,
            odhe_offset,
            odhe_size,
            ohdr_offset,
            ohdr_size,
            odda_offset,
            odda_size,
            encrypted_data_len,
            iv_offset,
            ciphertext_offset: iv_offset + IV_LEN as u64,
            total_len: odrm_offset.checked_add(odrm_size)?,
        })
    }
}
