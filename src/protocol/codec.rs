//! One codec for every wire type, in the shape of rustls's `Codec` trait: a type
//! knows its encoded length, appends itself to a caller-owned buffer, and reads
//! itself from a bounds-checked cursor. Decoders never panic: every short or
//! malformed input becomes a [`DecodeError`] that names the field and the reason.

use thiserror::Error;

/// Why a buffer could not be decoded. `what` names the field being read, so an
/// error reported to an operator says which part of which message was wrong.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DecodeError {
    #[error("{what}: truncated (need {needed} bytes, {available} left)")]
    Truncated {
        what: &'static str,
        needed: usize,
        available: usize,
    },
    #[error("{what}: {reason}")]
    Invalid {
        what: &'static str,
        reason: &'static str,
    },
    #[error("{what}: unsupported value {value}")]
    Unsupported { what: &'static str, value: u64 },
    #[error("{what}: {extra} trailing bytes")]
    Trailing { what: &'static str, extra: usize },
}

impl DecodeError {
    pub const fn invalid(what: &'static str, reason: &'static str) -> Self {
        Self::Invalid { what, reason }
    }

    pub const fn unsupported(what: &'static str, value: u64) -> Self {
        Self::Unsupported { what, value }
    }
}

/// A bounds-checked big-endian cursor over a borrowed buffer.
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub const fn new(buf: &'a [u8]) -> Self {
        Self { buf, pos: 0 }
    }

    /// Bytes consumed so far.
    pub const fn position(&self) -> usize {
        self.pos
    }

    pub const fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    pub const fn is_empty(&self) -> bool {
        self.remaining() == 0
    }

    /// The whole underlying buffer (for MACs that cover already-read bytes).
    pub const fn buffer(&self) -> &'a [u8] {
        self.buf
    }

    pub fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], DecodeError> {
        if n > self.remaining() {
            return Err(DecodeError::Truncated {
                what,
                needed: n,
                available: self.remaining(),
            });
        }
        let out = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(out)
    }

    /// Everything not yet read.
    pub fn rest(&mut self) -> &'a [u8] {
        let out = &self.buf[self.pos..];
        self.pos = self.buf.len();
        out
    }

    pub fn peek_u8(&self, what: &'static str) -> Result<u8, DecodeError> {
        self.buf
            .get(self.pos)
            .copied()
            .ok_or(DecodeError::Truncated {
                what,
                needed: 1,
                available: 0,
            })
    }

    pub fn array<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N], DecodeError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N, what)?);
        Ok(out)
    }

    pub fn u8(&mut self, what: &'static str) -> Result<u8, DecodeError> {
        Ok(self.take(1, what)?[0])
    }

    pub fn u16(&mut self, what: &'static str) -> Result<u16, DecodeError> {
        Ok(u16::from_be_bytes(self.array(what)?))
    }

    pub fn u24(&mut self, what: &'static str) -> Result<u32, DecodeError> {
        Ok(self.uint(3, what)? as u32)
    }

    pub fn u32(&mut self, what: &'static str) -> Result<u32, DecodeError> {
        Ok(u32::from_be_bytes(self.array(what)?))
    }

    pub fn u48(&mut self, what: &'static str) -> Result<u64, DecodeError> {
        self.uint(6, what)
    }

    pub fn u64(&mut self, what: &'static str) -> Result<u64, DecodeError> {
        Ok(u64::from_be_bytes(self.array(what)?))
    }

    /// A big-endian unsigned integer of `len` ≤ 8 bytes.
    pub fn uint(&mut self, len: usize, what: &'static str) -> Result<u64, DecodeError> {
        debug_assert!(len <= 8);
        Ok(self
            .take(len, what)?
            .iter()
            .fold(0u64, |acc, b| (acc << 8) | u64::from(*b)))
    }

    /// Fails unless the whole buffer was consumed.
    pub fn expect_end(&self, what: &'static str) -> Result<(), DecodeError> {
        match self.remaining() {
            0 => Ok(()),
            extra => Err(DecodeError::Trailing { what, extra }),
        }
    }
}

/// Appends the low `len` bytes of `value`, big-endian.
pub fn put_uint(out: &mut Vec<u8>, value: u64, len: usize) {
    debug_assert!(len <= 8);
    out.extend_from_slice(&value.to_be_bytes()[8 - len..]);
}

/// A wire type: encodes into a caller-owned buffer, decodes from a cursor.
pub trait Codec<'a>: Sized {
    /// Exact number of bytes `encode` appends.
    fn encoded_len(&self) -> usize;

    /// Appends the wire form to `out`. Reusing one buffer avoids allocation.
    fn encode(&self, out: &mut Vec<u8>);

    /// Reads one value, leaving the cursor after it.
    fn read(r: &mut Reader<'a>) -> Result<Self, DecodeError>;

    /// Decodes a buffer that holds exactly one value.
    fn decode(buf: &'a [u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(buf);
        let value = Self::read(&mut r)?;
        r.expect_end(std::any::type_name::<Self>())?;
        Ok(value)
    }

    fn to_vec(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.encoded_len());
        self.encode(&mut out);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reader_reports_field_and_shortfall() {
        let mut r = Reader::new(&[1, 2, 3]);
        assert_eq!(r.u16("a").unwrap(), 0x0102);
        assert_eq!(
            r.u32("b"),
            Err(DecodeError::Truncated {
                what: "b",
                needed: 4,
                available: 1
            })
        );
        assert_eq!(r.u8("c").unwrap(), 3);
        assert!(r.is_empty());
    }

    #[test]
    fn uint_widths_round_trip() {
        let mut out = Vec::new();
        put_uint(&mut out, 0x0102_0304_0506, 6);
        put_uint(&mut out, 0xabcdef, 3);
        let mut r = Reader::new(&out);
        assert_eq!(r.u48("x").unwrap(), 0x0102_0304_0506);
        assert_eq!(r.u24("y").unwrap(), 0xabcdef);
        r.expect_end("z").unwrap();
    }
}
