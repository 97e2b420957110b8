//! RAND payload (RFC 3830 §6.11; wire reference §2.3).

use crate::protocol::codec::{Codec, DecodeError, Reader};

/// A RAND payload body: `RAND len(1) ‖ RAND`. The bytes enter the envelope-key
/// labels (RFC 3830 §4.1.4), so every message needs fresh ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rand<'a>(&'a [u8]);

impl<'a> Rand<'a> {
    /// No RAND bytes: what the labels use when a message has no RAND payload.
    pub const EMPTY: Self = Self(&[]);

    /// `None` if longer than the one-byte length field allows.
    pub fn new(bytes: &'a [u8]) -> Option<Self> {
        (bytes.len() <= usize::from(u8::MAX)).then_some(Self(bytes))
    }

    /// A fixed-size RAND, checked at compile time.
    pub const fn from_array<const N: usize>(bytes: &'a [u8; N]) -> Self {
        const { assert!(N <= u8::MAX as usize, "RAND is at most 255 bytes") };
        Self(bytes)
    }

    pub fn bytes(&self) -> &'a [u8] {
        self.0
    }
}

impl<'a> Codec<'a> for Rand<'a> {
    fn encoded_len(&self) -> usize {
        1 + self.0.len()
    }

    fn encode(&self, out: &mut Vec<u8>) {
        // `new` and `read` bound the length to 255.
        out.push(self.0.len() as u8);
        out.extend_from_slice(self.0);
    }

    fn read(r: &mut Reader<'a>) -> Result<Self, DecodeError> {
        let len = r.u8("RAND length")?;
        Ok(Self(r.take(len.into(), "RAND")?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_and_bounds() {
        let rand = Rand::new(&[0xa0, 0xa1]).unwrap();
        assert_eq!(rand.to_vec(), [2, 0xa0, 0xa1]);
        assert_eq!(Rand::decode(&[2, 0xa0, 0xa1]).unwrap(), rand);
        assert!(Rand::new(&[0; 256]).is_none());
        assert!(matches!(
            Rand::decode(&[3, 1]),
            Err(DecodeError::Truncated { .. })
        ));
    }
}
