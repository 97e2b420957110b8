//! ID payload (RFC 3830 §6.7): IDi and IDr of an MSK message, whose
//! combination names the MUK (seed §6.4.6.1).

use crate::protocol::codec::{Codec, DecodeError, Reader};

/// ID types (IANA "ID Type").
pub mod id_type {
    pub const NAI: u8 = 0;
    pub const URI: u8 = 1;
}

/// An ID payload body: `ID type(1) ‖ ID len(2) ‖ ID data`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Id<'a> {
    id_type: u8,
    data: &'a [u8],
}

impl<'a> Id<'a> {
    /// `None` if `data` exceeds the 16-bit length field.
    pub fn new(id_type: u8, data: &'a [u8]) -> Option<Self> {
        (data.len() <= usize::from(u16::MAX)).then_some(Self { id_type, data })
    }

    pub fn id_type(&self) -> u8 {
        self.id_type
    }

    pub fn data(&self) -> &'a [u8] {
        self.data
    }
}

impl<'a> Codec<'a> for Id<'a> {
    fn encoded_len(&self) -> usize {
        3 + self.data.len()
    }

    fn encode(&self, out: &mut Vec<u8>) {
        out.push(self.id_type);
        // `new` and `read` bound the length to 65535.
        out.extend_from_slice(&(self.data.len() as u16).to_be_bytes());
        out.extend_from_slice(self.data);
    }

    fn read(r: &mut Reader<'a>) -> Result<Self, DecodeError> {
        let id_type = r.u8("ID type")?;
        let len = r.u16("ID length")?;
        let data = r.take(len.into(), "ID data")?;
        Ok(Self { id_type, data })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout() {
        let id = Id::new(id_type::URI, b"bmsc").unwrap();
        assert_eq!(id.to_vec(), b"\x01\x00\x04bmsc");
        assert_eq!(Id::decode(b"\x01\x00\x04bmsc").unwrap(), id);
        assert!(matches!(
            Id::decode(b"\x01\x00\x05bmsc"),
            Err(DecodeError::Truncated { .. })
        ));
    }
}
