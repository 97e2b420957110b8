//! OMA DRM v2 DCF (Discrete Content Format) for FLUTE download objects
//! (TS 33.246 §6.6.3; box layouts as written and read by Bento4, wire reference §5.1).
//!
//! A protected object is one ISO BMFF file:
//!
//! ```text
//! ftyp  major 'odcf', minor 2, compatible ['odcf']
//! odrm  full box, 64-bit size (objects over 4 GB)
//!   odhe  full box: ContentTypeLength(1) ‖ ContentType ‖ ohdr
//!     ohdr  full box: EncryptionMethod(1) ‖ PaddingScheme(1) ‖ PlaintextLength(8)
//!           ‖ ContentIDLength(2) ‖ RightsIssuerURLLength(2) ‖ TextualHeadersLength(2)
//!           ‖ ContentID ‖ RightsIssuerURL ‖ TextualHeaders ("Name:Value\0" entries)
//!   odda  full box, 64-bit size: EncryptedDataLength(8) ‖ IV(16) ‖ ciphertext
//! ```
//!
//! Everything in that tree up to the IV depends only on the parameters and the
//! plaintext length, so [`DcfWriter`] emits the header first and then streams the
//! ciphertext: a multi-gigabyte object never sits whole in memory, and the exact
//! object size is known before encryption starts (FDT Content-Length).
//! [`DcfHeader::parse`] and [`DcfReader`] do the same in reverse for a receiver.
//!
//! Container format (verified against Bento4) versus project profile (TS 33.246
//! text not available, design §2, [`crate::protocol::profile::dcf`]):
//! - verified: the box tree above, code points of EncryptionMethod and
//!   PaddingScheme, the IV-prefixed EncryptedData, RFC 2630 padding for CBC, a
//!   full 128-bit big-endian counter for CTR, `Name:Value\0` textual headers;
//! - profile: AES_128_CBC with RFC 2630 padding as the method the gateway emits
//!   ([`EncryptionMethod::PROFILE`]; AES_128_CTR is supported for completeness),
//!   the MTK as content key, and the key identity in the `MBMS-Key-ID` textual
//!   header ([`MbmsKeyId`]).

mod block_stream;
mod boxes;
mod error;
mod key_id;
mod layout;
mod reader;
mod textual_headers;
mod writer;

pub use boxes::{
    BoxHeader, CommonHeaders, ContentObjectHeader, DiscreteHeaders, FileType, FourCc, FullBoxHeader,
};
pub use error::{DcfReadError, DcfWriteError};
pub use key_id::{KeyIdError, MbmsKeyId};
pub use layout::DcfLayout;
pub use reader::{DcfHeader, DcfReader, HeaderParse};
pub use textual_headers::TextualHeaderError;
pub use writer::{DcfParams, DcfWriter};

use crate::protocol::profile;

/// AES block size, also the IV length at the front of EncryptedData.
pub const IV_LEN: usize = 16;

/// EncryptionMethod code points of the ohdr box (OMA DRM v2 DCF; Bento4
/// `AP4_OMA_DCF_ENCRYPTION_METHOD_*`). NULL is listed so a reader can name it
/// when refusing it: a protected session never accepts plaintext.
pub const METHOD_NULL: u8 = 0;
pub const METHOD_AES_128_CBC: u8 = 1;
pub const METHOD_AES_128_CTR: u8 = 2;

/// PaddingScheme code points of the ohdr box (Bento4 `AP4_OMA_DCF_PADDING_SCHEME_*`).
pub const PADDING_NONE: u8 = 0;
pub const PADDING_RFC_2630: u8 = 1;

/// The content encryption of a DCF object. Each method fixes its padding scheme
/// the way Bento4's packager and decrypter pair them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EncryptionMethod {
    /// AES-128-CBC with RFC 2630 (PKCS#7-style) padding of 1..=16 bytes.
    Aes128Cbc,
    /// AES-128-CTR, the IV being the initial 128-bit big-endian counter; no padding.
    Aes128Ctr,
}

impl EncryptionMethod {
    /// The method the project profile emits (`profile::dcf::ENCRYPTION_METHOD`).
    pub const PROFILE: Self = match Self::from_code(profile::dcf::ENCRYPTION_METHOD) {
        Some(method) => method,
        None => panic!("profile::dcf::ENCRYPTION_METHOD is not a supported method"),
    };

    pub const fn from_code(code: u8) -> Option<Self> {
        match code {
            METHOD_AES_128_CBC => Some(Self::Aes128Cbc),
            METHOD_AES_128_CTR => Some(Self::Aes128Ctr),
            _ => None,
        }
    }

    /// The ohdr EncryptionMethod byte.
    pub const fn code(self) -> u8 {
        match self {
            Self::Aes128Cbc => METHOD_AES_128_CBC,
            Self::Aes128Ctr => METHOD_AES_128_CTR,
        }
    }

    /// The ohdr PaddingScheme byte that goes with this method.
    pub const fn padding_scheme(self) -> u8 {
        match self {
            Self::Aes128Cbc => PADDING_RFC_2630,
            Self::Aes128Ctr => PADDING_NONE,
        }
    }

    /// Ciphertext length (without the IV) for `plaintext_len` bytes: RFC 2630
    /// always adds 1..=16 bytes, so CBC rounds up to the next whole block past
    /// the plaintext; CTR adds nothing. `None` on overflow.
    pub const fn ciphertext_len(self, plaintext_len: u64) -> Option<u64> {
        match self {
            Self::Aes128Cbc => match (plaintext_len / IV_LEN as u64).checked_add(1) {
                Some(blocks) => blocks.checked_mul(IV_LEN as u64),
                None => None,
            },
            Self::Aes128Ctr => Some(plaintext_len),
        }
    }
}

// The profile's padding constant must be the one its method implies.
const _: () = assert!(EncryptionMethod::PROFILE.padding_scheme() == profile::dcf::PADDING_SCHEME);

#[cfg(test)]
mod tests;
