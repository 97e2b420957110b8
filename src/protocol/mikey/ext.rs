//! General Extension payload (RFC 3830 §6.15) and its Key ID type (RFC 4563),
//! which carries the MBMS key identifiers (wire reference §2.6).

use crate::protocol::codec::{Codec, DecodeError, Reader};
use crate::protocol::keys::{KeyDomainId, MskId, MtkId};
use crate::protocol::profile::mikey::EXT_TYPE_KEY_ID;

/// Key ID types inside a Key ID extension (IANA, RFC 4563).
pub mod key_id_type {
    pub const KEY_DOMAIN_ID: u8 = 0;
    pub const MSK_ID: u8 = 1;
    pub const MTK_ID: u8 = 2;
}

const KEY_DOMAIN_ID_LEN: usize = 3;
const MSK_ID_LEN: usize = 4;
const MTK_ID_LEN: usize = 2;
/// Entry header: KeyIdType(1) ‖ KeyIdLen(2).
const ENTRY_HEADER_LEN: usize = 3;

/// The MBMS key identifiers of a Key ID extension. An MTK message carries all
/// three; an MSK message has no MTK ID, which is how the receiver tells the two
/// apart (seed §6.4.6.1, §6.5.3).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct KeyIds {
    pub key_domain_id: Option<KeyDomainId>,
    pub msk_id: Option<MskId>,
    pub mtk_id: Option<MtkId>,
}

/// A General Extension payload body: `Type(1) ‖ Length(2) ‖ Data`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GeneralExtension<'a> {
    /// Type 3, decoded into its MBMS entries.
    KeyIds(KeyIds),
    /// Any other extension type, kept verbatim (it is still MAC-covered).
    Other { ext_type: u8, data: &'a [u8] },
}

impl KeyIds {
    fn data_len(&self) -> usize {
        let entry = |present: bool, len: usize| if present { ENTRY_HEADER_LEN + len } else { 0 };
        entry(self.key_domain_id.is_some(), KEY_DOMAIN_ID_LEN)
            + entry(self.msk_id.is_some(), MSK_ID_LEN)
            + entry(self.mtk_id.is_some(), MTK_ID_LEN)
    }

    fn encode_entries(&self, out: &mut Vec<u8>) {
        let mut entry = |kind: u8, value: &[u8]| {
            out.push(kind);
            // Entry values are 2–4 bytes.
            out.extend_from_slice(&(value.len() as u16).to_be_bytes());
            out.extend_from_slice(value);
        };
        if let Some(id) = self.key_domain_id {
            entry(key_id_type::KEY_DOMAIN_ID, &id.0);
        }
        if let Some(id) = self.msk_id {
            entry(key_id_type::MSK_ID, &id.to_bytes());
        }
        if let Some(id) = self.mtk_id {
            entry(key_id_type::MTK_ID, &id.0.to_be_bytes());
        }
    }

    fn read_entries(data: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(data);
        let mut ids = Self::default();
        while !r.is_empty() {
            let kind = r.u8("EXT Key ID type")?;
            let len = usize::from(r.u16("EXT Key ID length")?);
            let value = r.take(len, "EXT Key ID value")?;
            match kind {
                key_id_type::KEY_DOMAIN_ID => set_once(
                    &mut ids.key_domain_id,
                    KeyDomainId(fixed(value, "EXT Key Domain ID")?),
                    "EXT Key Domain ID",
                )?,
                key_id_type::MSK_ID => set_once(
                    &mut ids.msk_id,
                    MskId(u32::from_be_bytes(fixed(value, "EXT MSK ID")?)),
                    "EXT MSK ID",
                )?,
                key_id_type::MTK_ID => set_once(
                    &mut ids.mtk_id,
                    MtkId(u16::from_be_bytes(fixed(value, "EXT MTK ID")?)),
                    "EXT MTK ID",
                )?,
                other => return Err(DecodeError::unsupported("EXT Key ID type", other.into())),
            }
        }
        Ok(ids)
    }
}

fn fixed<const N: usize>(value: &[u8], what: &'static str) -> Result<[u8; N], DecodeError> {
    <[u8; N]>::try_from(value).map_err(|_| DecodeError::invalid(what, "wrong length"))
}

fn set_once<T>(slot: &mut Option<T>, value: T, what: &'static str) -> Result<(), DecodeError> {
    if slot.replace(value).is_some() {
        return Err(DecodeError::invalid(what, "appears twice"));
    }
    Ok(())
}

impl<'a> GeneralExtension<'a> {
    /// An extension of another type; `None` if `data` exceeds the 16-bit length.
    pub fn other(ext_type: u8, data: &'a [u8]) -> Option<Self> {
        (data.len() <= usize::from(u16::MAX)).then_some(Self::Other { ext_type, data })
    }

    fn data_len(&self) -> usize {
        match self {
            Self::KeyIds(ids) => ids.data_len(),
            Self::Other { data, .. } => data.len(),
        }
    }
}

impl<'a> Codec<'a> for GeneralExtension<'a> {
    fn encoded_len(&self) -> usize {
        3 + self.data_len()
    }

    fn encode(&self, out: &mut Vec<u8>) {
        let ext_type = match self {
            Self::KeyIds(_) => EXT_TYPE_KEY_ID,
            Self::Other { ext_type, .. } => *ext_type,
        };
        out.push(ext_type);
        // Key IDs are at most 18 bytes; `other` bounds the rest.
        out.extend_from_slice(&(self.data_len() as u16).to_be_bytes());
        match self {
            Self::KeyIds(ids) => ids.encode_entries(out),
            Self::Other { data, .. } => out.extend_from_slice(data),
        }
    }

    fn read(r: &mut Reader<'a>) -> Result<Self, DecodeError> {
        let ext_type = r.u8("EXT type")?;
        let len = usize::from(r.u16("EXT length")?);
        let data = r.take(len, "EXT data")?;
        if ext_type == EXT_TYPE_KEY_ID {
            Ok(Self::KeyIds(KeyIds::read_entries(data)?))
        } else {
            Ok(Self::Other { ext_type, data })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mtk_ids() -> KeyIds {
        KeyIds {
            key_domain_id: Some(KeyDomainId([0x32, 0xf4, 0x10])),
            msk_id: Some(MskId::new(0x0102, 0x0003)),
            mtk_id: Some(MtkId(0x0a0b)),
        }
    }

    #[test]
    fn key_id_layout() {
        let ext = GeneralExtension::KeyIds(mtk_ids());
        assert_eq!(
            hex::encode(ext.to_vec()),
            "030012000003 32f410 010004 01020003 020002 0a0b".replace(' ', "")
        );
        assert_eq!(GeneralExtension::decode(&ext.to_vec()).unwrap(), ext);
    }

    #[test]
    fn key_id_entries_in_any_order() {
        let bytes = hex::decode("03000c0200020a0b01000401020003").unwrap();
        let GeneralExtension::KeyIds(ids) = GeneralExtension::decode(&bytes).unwrap() else {
            panic!("expected Key IDs");
        };
        assert_eq!(ids.key_domain_id, None);
        assert_eq!(ids.msk_id, Some(MskId(0x0102_0003)));
        assert_eq!(ids.mtk_id, Some(MtkId(0x0a0b)));
    }

    #[test]
    fn key_id_rejects_bad_entries() {
        let wrong_len = hex::decode("030006010003010203").unwrap();
        assert_eq!(
            GeneralExtension::decode(&wrong_len),
            Err(DecodeError::invalid("EXT MSK ID", "wrong length"))
        );
        let twice = hex::decode("03000a0200020001020002 0002".replace(' ', "").as_str()).unwrap();
        assert_eq!(
            GeneralExtension::decode(&twice),
            Err(DecodeError::invalid("EXT MTK ID", "appears twice"))
        );
        let unknown = hex::decode("030003090000").unwrap();
        assert_eq!(
            GeneralExtension::decode(&unknown),
            Err(DecodeError::unsupported("EXT Key ID type", 9))
        );
    }

    #[test]
    fn other_extension_kept_verbatim() {
        let ext = GeneralExtension::other(0, b"vendor").unwrap();
        let bytes = ext.to_vec();
        assert_eq!(&bytes[..3], &[0, 0, 6]);
        assert_eq!(GeneralExtension::decode(&bytes).unwrap(), ext);
    }
}
