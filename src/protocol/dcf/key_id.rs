//! The MTK identity of a DCF object, carried in the textual header
//! `profile::dcf::KEY_ID_HEADER` as lowercase hex of Key Domain ID (3) ‖
//! MSK ID (4) ‖ MTK ID (2) (project profile, design §2). Seed §6.6.1 requires
//! key identification to travel with the protected data; where TS 33.246
//! places it is unverified, hence a profile item.

use thiserror::Error;

use crate::protocol::keys::{KeyDomainId, MskId, MtkId};
use crate::protocol::profile;

/// Why an `MBMS-Key-ID` header value is unusable.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum KeyIdError {
    #[error("MBMS-Key-ID value has {len} characters, expected 18 hex digits")]
    WrongLength { len: usize },
    #[error("MBMS-Key-ID value has a non-hex character at position {position}")]
    NotHex { position: usize },
    #[error("MBMS-Key-ID header appears more than once")]
    Duplicate,
}

/// Which MTK protects an object: the receiver looks it up before decrypting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct MbmsKeyId {
    pub key_domain_id: KeyDomainId,
    pub msk_id: MskId,
    pub mtk_id: MtkId,
}

impl MbmsKeyId {
    /// Key Domain ID (3) ‖ MSK ID (4) ‖ MTK ID (2).
    pub const LEN: usize = 9;

    pub fn to_bytes(self) -> [u8; Self::LEN] {
        let mut out = [0u8; Self::LEN];
        out[..3].copy_from_slice(&self.key_domain_id.0);
        out[3..7].copy_from_slice(&self.msk_id.to_bytes());
        out[7..].copy_from_slice(&self.mtk_id.0.to_be_bytes());
        out
    }

    pub fn from_bytes(b: [u8; Self::LEN]) -> Self {
        Self {
            key_domain_id: KeyDomainId([b[0], b[1], b[2]]),
            msk_id: MskId(u32::from_be_bytes([b[3], b[4], b[5], b[6]])),
            mtk_id: MtkId(u16::from_be_bytes([b[7], b[8]])),
        }
    }

    /// The header value: 18 lowercase hex digits.
    pub fn header_value(self) -> String {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        self.to_bytes()
            .iter()
            .flat_map(|b| [HEX[usize::from(b >> 4)], HEX[usize::from(b & 0x0f)]])
            .map(char::from)
            .collect()
    }

    /// Parses a header value. Upper-case digits are accepted: hex case carries
    /// no meaning, and refusing it would only drop otherwise valid objects.
    pub fn parse_header_value(value: &str) -> Result<Self, KeyIdError> {
        let digits = value.as_bytes();
        if digits.len() != 2 * Self::LEN {
            return Err(KeyIdError::WrongLength { len: digits.len() });
        }
        let nibble = |position: usize| {
            char::from(digits[position])
                .to_digit(16)
                .map(|d| d as u8)
                .ok_or(KeyIdError::NotHex { position })
        };
        let mut bytes = [0u8; Self::LEN];
        for (i, byte) in bytes.iter_mut().enumerate() {
            *byte = (nibble(2 * i)? << 4) | nibble(2 * i + 1)?;
        }
        Ok(Self::from_bytes(bytes))
    }

    /// The (name, value) textual header to put in `DcfParams::textual_headers`.
    pub fn textual_header(self) -> (String, String) {
        (profile::dcf::KEY_ID_HEADER.to_owned(), self.header_value())
    }

    /// Finds the key-id header among parsed textual headers (name compared
    /// ASCII case-insensitively, like other Name:Value headers). More than one
    /// is an error: the receiver could not know which MTK applies.
    pub fn find(headers: &[(String, String)]) -> Result<Option<Self>, KeyIdError> {
        let mut matches = headers
            .iter()
            .filter(|(name, _)| name.eq_ignore_ascii_case(profile::dcf::KEY_ID_HEADER));
        let Some((_, value)) = matches.next() else {
            return Ok(None);
        };
        if matches.next().is_some() {
            return Err(KeyIdError::Duplicate);
        }
        Self::parse_header_value(value).map(Some)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn header_value_layout() {
        let id = MbmsKeyId {
            key_domain_id: KeyDomainId([0x00, 0xf1, 0x10]),
            msk_id: MskId::new(0x1234, 0xabcd),
            mtk_id: MtkId(0x0102),
        };
        assert_eq!(id.header_value(), "00f1101234abcd0102");
        assert_eq!(
            id.textual_header(),
            ("MBMS-Key-ID".to_string(), "00f1101234abcd0102".to_string())
        );
        assert_eq!(MbmsKeyId::parse_header_value("00F1101234ABCD0102"), Ok(id));
    }

    #[test]
    fn bad_values() {
        assert_eq!(
            MbmsKeyId::parse_header_value("00f110"),
            Err(KeyIdError::WrongLength { len: 6 })
        );
        assert_eq!(
            MbmsKeyId::parse_header_value("00f1101234abcd01g2"),
            Err(KeyIdError::NotHex { position: 16 })
        );
        // A multi-byte character must be a clean error, not a slicing panic.
        assert!(MbmsKeyId::parse_header_value("00f1101234abcd01é").is_err());
    }

    #[test]
    fn find_in_headers() {
        let h = |n: &str, v: &str| (n.to_string(), v.to_string());
        assert_eq!(MbmsKeyId::find(&[h("Other", "x")]), Ok(None));
        let one = [h("mbms-key-id", "000000000000010002")];
        assert_eq!(MbmsKeyId::find(&one).unwrap().unwrap().mtk_id, MtkId(2));
        let two = [one[0].clone(), h("MBMS-Key-ID", "000000000000010003")];
        assert_eq!(MbmsKeyId::find(&two), Err(KeyIdError::Duplicate));
    }

    proptest! {
        #[test]
        fn round_trip(bytes in any::<[u8; 9]>()) {
            let id = MbmsKeyId::from_bytes(bytes);
            prop_assert_eq!(id.to_bytes(), bytes);
            prop_assert_eq!(MbmsKeyId::parse_header_value(&id.header_value()), Ok(id));
        }

        #[test]
        fn parse_never_panics(s in ".{0,24}") {
            let _ = MbmsKeyId::parse_header_value(&s);
        }
    }
}
