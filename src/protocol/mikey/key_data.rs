//! Key data sub-payload (RFC 3830 §6.13; wire reference §2.5), carried
//! encrypted inside KEMAC, and the MTK-ID interval that MBMS puts in its key
//! validity (seed §6.3.2.1B, §6.5.3).

use super::message::PayloadType;
use crate::protocol::codec::{Codec, DecodeError, Reader};
use crate::protocol::keys::MtkId;
use std::fmt;

/// Key data types (IANA "Key Data Type"); 4–7 (RFC 6043/6267) are not used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyType {
    Tgk = 0,
    TgkSalt = 1,
    Tek = 2,
    TekSalt = 3,
}

impl KeyType {
    pub const fn has_salt(self) -> bool {
        matches!(self, Self::TgkSalt | Self::TekSalt)
    }

    /// For profile constants: an unknown code fails the build.
    pub(crate) const fn from_profile(code: u8) -> Self {
        match code {
            0 => Self::Tgk,
            1 => Self::TgkSalt,
            2 => Self::Tek,
            3 => Self::TekSalt,
            _ => panic!("profile key data type must be 0..=3"),
        }
    }

    fn from_code(code: u8) -> Result<Self, DecodeError> {
        match code {
            0 => Ok(Self::Tgk),
            1 => Ok(Self::TgkSalt),
            2 => Ok(Self::Tek),
            3 => Ok(Self::TekSalt),
            other => Err(DecodeError::unsupported("Key data type", other.into())),
        }
    }
}

/// Key validity (KV) and its data (RFC 3830 §6.14).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyValidity<'a> {
    /// KV 0: no validity data.
    Null,
    /// KV 1: `SPI len(1) ‖ SPI`.
    Spi(&'a [u8]),
    /// KV 2: `VF len(1) ‖ VF ‖ VT len(1) ‖ VT`.
    Interval { from: &'a [u8], to: &'a [u8] },
}

/// KV codes (IANA "Key Validity Type").
pub mod kv {
    pub const NULL: u8 = 0;
    pub const SPI: u8 = 1;
    pub const INTERVAL: u8 = 2;
}

impl KeyValidity<'_> {
    /// The 4-bit KV code.
    pub fn code(&self) -> u8 {
        match self {
            Self::Null => kv::NULL,
            Self::Spi(_) => kv::SPI,
            Self::Interval { .. } => kv::INTERVAL,
        }
    }

    fn fits(&self) -> bool {
        let short = |b: &[u8]| b.len() <= usize::from(u8::MAX);
        match self {
            Self::Null => true,
            Self::Spi(spi) => short(spi),
            Self::Interval { from, to } => short(from) && short(to),
        }
    }

    fn encoded_len(&self) -> usize {
        match self {
            Self::Null => 0,
            Self::Spi(spi) => 1 + spi.len(),
            Self::Interval { from, to } => 2 + from.len() + to.len(),
        }
    }

    fn encode(&self, out: &mut Vec<u8>) {
        // `KeyData::new` and `read` bound every length to 255.
        let mut short = |b: &[u8]| {
            out.push(b.len() as u8);
            out.extend_from_slice(b);
        };
        match self {
            Self::Null => {}
            Self::Spi(spi) => short(spi),
            Self::Interval { from, to } => {
                short(from);
                short(to);
            }
        }
    }
}

/// An MSK's key validity: the MTK IDs [SEQl, SEQu] that may be used under it.
/// SEQl > SEQu invalidates the MSK (seed §6.3.2.1B, §6.5.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MtkIdInterval {
    pub seq_l: MtkId,
    pub seq_u: MtkId,
}

impl MtkIdInterval {
    /// An interval with SEQl > SEQu: "this MSK is no longer valid".
    pub const INVALIDATED: Self = Self {
        seq_l: MtkId(1),
        seq_u: MtkId(0),
    };

    pub fn is_invalidation(&self) -> bool {
        self.seq_l > self.seq_u
    }

    /// True when `id` lies in [SEQl, SEQu]; never for an invalidated MSK.
    pub fn contains(&self, id: MtkId) -> bool {
        self.seq_l <= id && id <= self.seq_u
    }

    /// Reads KV data Interval whose VF and VT are 2-byte MTK IDs.
    pub fn from_key_validity(kv: &KeyValidity<'_>) -> Result<Self, DecodeError> {
        let KeyValidity::Interval { from, to } = kv else {
            return Err(DecodeError::invalid(
                "Key data KV",
                "not an MTK ID interval",
            ));
        };
        let mtk_id = |b: &[u8], what| {
            <[u8; 2]>::try_from(b)
                .map(|b| MtkId(u16::from_be_bytes(b)))
                .map_err(|_| DecodeError::invalid(what, "not a 2-byte MTK ID"))
        };
        Ok(Self {
            seq_l: mtk_id(from, "Key data KV SEQl")?,
            seq_u: mtk_id(to, "Key data KV SEQu")?,
        })
    }

    /// The VF and VT bytes of the interval, for a [`KeyValidity::Interval`].
    pub fn to_bytes(self) -> ([u8; 2], [u8; 2]) {
        (self.seq_l.0.to_be_bytes(), self.seq_u.0.to_be_bytes())
    }
}

/// A Key data sub-payload body:
/// `Type(4b) ‖ KV(4b) ‖ Key len(2) ‖ Key ‖ [Salt len(2) ‖ Salt] ‖ KV data`.
/// Its `Debug` shows lengths only: the key and salt are secrets.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct KeyData<'a> {
    key_type: KeyType,
    key: &'a [u8],
    salt: Option<&'a [u8]>,
    validity: KeyValidity<'a>,
}

impl<'a> KeyData<'a> {
    /// `None` if a salt is given exactly when `key_type` has none (or missing
    /// when it has one), or a length does not fit its field.
    pub fn new(
        key_type: KeyType,
        key: &'a [u8],
        salt: Option<&'a [u8]>,
        validity: KeyValidity<'a>,
    ) -> Option<Self> {
        let long = |b: &[u8]| b.len() <= usize::from(u16::MAX);
        let salt_ok = match salt {
            Some(s) => key_type.has_salt() && long(s),
            None => !key_type.has_salt(),
        };
        (salt_ok && long(key) && validity.fits()).then_some(Self {
            key_type,
            key,
            salt,
            validity,
        })
    }

    pub fn key_type(&self) -> KeyType {
        self.key_type
    }

    pub fn key(&self) -> &'a [u8] {
        self.key
    }

    pub fn salt(&self) -> Option<&'a [u8]> {
        self.salt
    }

    pub fn validity(&self) -> KeyValidity<'a> {
        self.validity
    }
}

impl fmt::Debug for KeyData<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyData")
            .field("key_type", &self.key_type)
            .field("key_len", &self.key.len())
            .field("salt_len", &self.salt.map(<[u8]>::len))
            .field("validity", &self.validity)
            .finish()
    }
}

impl<'a> Codec<'a> for KeyData<'a> {
    fn encoded_len(&self) -> usize {
        3 + self.key.len() + self.salt.map_or(0, |s| 2 + s.len()) + self.validity.encoded_len()
    }

    fn encode(&self, out: &mut Vec<u8>) {
        out.push(((self.key_type as u8) << 4) | self.validity.code());
        // `new` and `read` bound key and salt to 65535 bytes.
        out.extend_from_slice(&(self.key.len() as u16).to_be_bytes());
        out.extend_from_slice(self.key);
        if let Some(salt) = self.salt {
            out.extend_from_slice(&(salt.len() as u16).to_be_bytes());
            out.extend_from_slice(salt);
        }
        self.validity.encode(out);
    }

    fn read(r: &mut Reader<'a>) -> Result<Self, DecodeError> {
        let type_kv = r.u8("Key data type/KV")?;
        let key_type = KeyType::from_code(type_kv >> 4)?;
        let key_len = r.u16("Key data key length")?;
        let key = r.take(key_len.into(), "Key data key")?;
        let salt = if key_type.has_salt() {
            let len = r.u16("Key data salt length")?;
            Some(r.take(len.into(), "Key data salt")?)
        } else {
            None
        };
        let mut short = |what| {
            let len = r.u8(what)?;
            r.take(len.into(), what)
        };
        let validity = match type_kv & 0x0f {
            kv::NULL => KeyValidity::Null,
            kv::SPI => KeyValidity::Spi(short("Key data KV SPI")?),
            kv::INTERVAL => KeyValidity::Interval {
                from: short("Key data KV VF")?,
                to: short("Key data KV VT")?,
            },
            other => return Err(DecodeError::unsupported("Key data KV", other.into())),
        };
        Ok(Self {
            key_type,
            key,
            salt,
            validity,
        })
    }
}

/// Bytes that [`encode_chain`] appends for `items`.
pub fn chain_len(items: &[KeyData<'_>]) -> usize {
    items.iter().map(|k| 1 + k.encoded_len()).sum()
}

/// Appends key data sub-payloads, each preceded by its next-payload byte (20
/// for another key data, 0 after the last): the KEMAC plaintext.
pub fn encode_chain(items: &[KeyData<'_>], out: &mut Vec<u8>) {
    for (i, item) in items.iter().enumerate() {
        let more = i + 1 < items.len();
        out.push(if more { PayloadType::KeyData as u8 } else { 0 });
        item.encode(out);
    }
}

/// Walks the key data sub-payloads of a decrypted KEMAC. Other sub-payloads
/// (ID) are not used by MBMS and end the walk with an error.
pub struct KeyDataChain<'a> {
    r: Reader<'a>,
    done: bool,
}

impl<'a> KeyDataChain<'a> {
    pub fn new(plaintext: &'a [u8]) -> Self {
        Self {
            r: Reader::new(plaintext),
            done: plaintext.is_empty(),
        }
    }

    fn step(&mut self) -> Result<KeyData<'a>, DecodeError> {
        let next = self.r.u8("Key data next payload")?;
        let item = KeyData::read(&mut self.r)?;
        match next {
            0 => {
                self.done = true;
                self.r.expect_end("KEMAC key data")?;
            }
            n if n == PayloadType::KeyData as u8 => {}
            other => {
                return Err(DecodeError::unsupported(
                    "Key data next payload",
                    other.into(),
                ));
            }
        }
        Ok(item)
    }
}

impl<'a> Iterator for KeyDataChain<'a> {
    type Item = Result<KeyData<'a>, DecodeError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let item = self.step();
        self.done |= item.is_err();
        Some(item)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The illustrative sub-payload of wire reference §3.5.
    const REFERENCE: &str =
        "0031001000112233445566778899aabbccddeeff000e0102030405060708090a0b0c0d0e0600000001002a";

    #[test]
    fn reference_sub_payload_decodes_and_re_encodes() {
        let bytes = hex::decode(REFERENCE).unwrap();
        let items: Vec<_> = KeyDataChain::new(&bytes).collect::<Result<_, _>>().unwrap();
        assert_eq!(items.len(), 1);
        let kd = items[0];
        assert_eq!(kd.key_type(), KeyType::TekSalt);
        assert_eq!(hex::encode(kd.key()), "00112233445566778899aabbccddeeff");
        assert_eq!(
            hex::encode(kd.salt().unwrap()),
            "0102030405060708090a0b0c0d0e"
        );
        assert_eq!(kd.validity(), KeyValidity::Spi(&[0, 0, 0, 1, 0, 0x2a]));
        let mut out = Vec::new();
        encode_chain(&items, &mut out);
        assert_eq!(out, bytes);
        assert_eq!(chain_len(&items), bytes.len());
    }

    #[test]
    fn interval_validity_carries_mtk_ids() {
        let window = MtkIdInterval {
            seq_l: MtkId(0x0010),
            seq_u: MtkId(0x00ff),
        };
        let (from, to) = window.to_bytes();
        let kd = KeyData::new(
            KeyType::Tek,
            &[7; 16],
            None,
            KeyValidity::Interval {
                from: &from,
                to: &to,
            },
        )
        .unwrap();
        let bytes = kd.to_vec();
        assert_eq!(bytes[0], 0x22);
        assert_eq!(&bytes[19..], &[2, 0x00, 0x10, 2, 0x00, 0xff]);
        let back = KeyData::decode(&bytes).unwrap();
        assert_eq!(
            MtkIdInterval::from_key_validity(&back.validity()).unwrap(),
            window
        );
    }

    #[test]
    fn interval_rules() {
        let w = MtkIdInterval {
            seq_l: MtkId(5),
            seq_u: MtkId(9),
        };
        assert!(w.contains(MtkId(5)) && w.contains(MtkId(9)));
        assert!(!w.contains(MtkId(4)) && !w.contains(MtkId(10)));
        assert!(!w.is_invalidation());
        assert!(MtkIdInterval::INVALIDATED.is_invalidation());
        assert!(!MtkIdInterval::INVALIDATED.contains(MtkId(0)));
        assert!(!MtkIdInterval::INVALIDATED.contains(MtkId(1)));
    }

    #[test]
    fn constructor_enforces_salt_rule() {
        assert!(KeyData::new(KeyType::Tek, &[1], Some(&[2]), KeyValidity::Null).is_none());
        assert!(KeyData::new(KeyType::TekSalt, &[1], None, KeyValidity::Null).is_none());
        assert!(KeyData::new(KeyType::TekSalt, &[1], Some(&[2]), KeyValidity::Null).is_some());
        assert!(KeyData::new(KeyType::Tek, &[1], None, KeyValidity::Spi(&[0; 256])).is_none());
    }

    #[test]
    fn chain_rejects_other_sub_payloads_and_trailing_bytes() {
        let mut bytes = hex::decode(REFERENCE).unwrap();
        bytes[0] = 6;
        assert_eq!(
            KeyDataChain::new(&bytes).next(),
            Some(Err(DecodeError::unsupported("Key data next payload", 6)))
        );
        let mut bytes = hex::decode(REFERENCE).unwrap();
        bytes.push(0);
        assert!(matches!(
            KeyDataChain::new(&bytes).next(),
            Some(Err(DecodeError::Trailing { .. }))
        ));
    }

    #[test]
    fn debug_hides_key_and_salt() {
        let kd = KeyData::new(
            KeyType::TekSalt,
            &[0xab; 16],
            Some(&[0xcd; 14]),
            KeyValidity::Null,
        )
        .unwrap();
        let text = format!("{kd:?}");
        assert!(
            !text.contains("171") && !text.contains("205") && !text.contains("ab"),
            "{text}"
        );
        assert!(text.contains("key_len: 16"));
    }
}
