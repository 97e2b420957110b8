//! Typed errors of the DCF writer and reader. Each rejection names the field and
//! the reason; none carries key material.

use thiserror::Error;

use super::boxes::FourCc;
use super::key_id::KeyIdError;
use super::textual_headers::TextualHeaderError;
use crate::protocol::codec::DecodeError;

/// Why a DCF object cannot be written. The input-length errors mean the output
/// produced so far is not a valid DCF and must be discarded.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DcfWriteError {
    #[error("DCF content type is {len} bytes; ContentTypeLength holds at most 255")]
    ContentTypeTooLong { len: usize },
    #[error("DCF {field} is {len} bytes; its ohdr length field holds at most 65535")]
    FieldTooLong { field: &'static str, len: usize },
    #[error("DCF {0}")]
    TextualHeader(#[from] TextualHeaderError),
    #[error("DCF object of {plaintext_len} plaintext bytes overflows 64-bit box sizes")]
    TooLarge { plaintext_len: u64 },
    #[error("DCF source grew: {declared} bytes declared, {offered} offered")]
    InputLongerThanDeclared { declared: u64, offered: u64 },
    #[error("DCF source truncated: {declared} bytes declared, {fed} fed")]
    InputShorterThanDeclared { declared: u64, fed: u64 },
}

/// Why a DCF object cannot be read or decrypted.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DcfReadError {
    #[error("DCF malformed: {0}")]
    Malformed(#[from] DecodeError),
    #[error("not a DCF: ftyp major brand {major_brand} and no 'odcf' compatible brand")]
    NotDcf { major_brand: FourCc },
    #[error("DCF: expected box {expected}, found {found}")]
    UnexpectedBox { expected: FourCc, found: FourCc },
    #[error("DCF: box {box_type} of {size} bytes exceeds the {max}-byte header limit")]
    HeaderTooLarge {
        box_type: FourCc,
        size: u64,
        max: u64,
    },
    #[error("DCF: box {child} ends past the end of its parent {parent}")]
    ChildOverrunsParent { child: FourCc, parent: FourCc },
    #[error(
        "DCF: odda box size {box_size} != header + 8 + EncryptedDataLength {encrypted_data_len}"
    )]
    ContentObjectSize {
        box_size: u64,
        encrypted_data_len: u64,
    },
    #[error(
        "DCF: EncryptionMethod {method} not supported (0 NULL is refused, 1 AES_128_CBC, 2 AES_128_CTR)"
    )]
    UnsupportedMethod { method: u8 },
    #[error("DCF: PaddingScheme {padding} does not go with EncryptionMethod {method}")]
    PaddingMismatch { method: u8, padding: u8 },
    #[error(
        "DCF: EncryptedDataLength {encrypted_data_len} does not match PlaintextLength {plaintext_len} (expected IV + {expected_ciphertext_len})"
    )]
    EncryptedLength {
        plaintext_len: u64,
        encrypted_data_len: u64,
        expected_ciphertext_len: u64,
    },
    #[error("DCF ohdr {0}")]
    TextualHeader(#[from] TextualHeaderError),
    #[error("DCF: {0}")]
    KeyId(#[from] KeyIdError),
    #[error("DCF ciphertext truncated: {received} of {expected} bytes")]
    Truncated { expected: u64, received: u64 },
    #[error("DCF: RFC 2630 padding check failed (wrong key or corrupted ciphertext)")]
    BadPadding,
    #[error(
        "DCF: decrypted {actual} bytes, PlaintextLength says {declared} (wrong key or corrupted ciphertext)"
    )]
    PlaintextLength { declared: u64, actual: u64 },
}
