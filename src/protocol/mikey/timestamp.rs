//! Timestamp payload T (RFC 3830 §6.6; wire reference §2.2).

use crate::protocol::codec::{Codec, DecodeError, Reader};

/// TS types (IANA "TS Type").
pub mod ts_type {
    pub const NTP_UTC: u8 = 0;
    pub const NTP: u8 = 1;
    pub const COUNTER: u8 = 2;
}

/// A T payload body: `TS type(1) ‖ TS value`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Timestamp {
    NtpUtc(u64),
    Ntp(u64),
    /// 32-bit counter, the MBMS replay counter (profile `TS_TYPE`).
    Counter(u32),
}

impl Timestamp {
    /// The 64-bit T that enters the KEMAC IV (RFC 3830 §4.2.3): a COUNTER is
    /// right-aligned (wire reference §3.4).
    pub fn iv_value(self) -> u64 {
        match self {
            Self::NtpUtc(t) | Self::Ntp(t) => t,
            Self::Counter(c) => u64::from(c),
        }
    }
}

impl Timestamp {
    pub fn ts_type(self) -> u8 {
        match self {
            Self::NtpUtc(_) => ts_type::NTP_UTC,
            Self::Ntp(_) => ts_type::NTP,
            Self::Counter(_) => ts_type::COUNTER,
        }
    }

    /// The TS value field as sent (8 bytes for NTP, 4 for COUNTER).
    pub fn value_bytes(self) -> ValueBytes {
        match self {
            Self::NtpUtc(t) | Self::Ntp(t) => ValueBytes {
                buf: t.to_be_bytes(),
                len: 8,
            },
            Self::Counter(c) => ValueBytes {
                buf: u64::from(c).to_be_bytes(),
                len: 4,
            },
        }
    }
}

/// The TS value bytes of a [`Timestamp`], on the stack.
#[derive(Debug, Clone, Copy)]
pub struct ValueBytes {
    buf: [u8; 8],
    len: usize,
}

impl ValueBytes {
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf[8 - self.len..]
    }
}

impl<'a> Codec<'a> for Timestamp {
    fn encoded_len(&self) -> usize {
        match self {
            Self::NtpUtc(_) | Self::Ntp(_) => 9,
            Self::Counter(_) => 5,
        }
    }

    fn encode(&self, out: &mut Vec<u8>) {
        match *self {
            Self::NtpUtc(t) => {
                out.push(ts_type::NTP_UTC);
                out.extend_from_slice(&t.to_be_bytes());
            }
            Self::Ntp(t) => {
                out.push(ts_type::NTP);
                out.extend_from_slice(&t.to_be_bytes());
            }
            Self::Counter(c) => {
                out.push(ts_type::COUNTER);
                out.extend_from_slice(&c.to_be_bytes());
            }
        }
    }

    fn read(r: &mut Reader<'a>) -> Result<Self, DecodeError> {
        match r.u8("T type")? {
            ts_type::NTP_UTC => Ok(Self::NtpUtc(r.u64("T NTP-UTC value")?)),
            ts_type::NTP => Ok(Self::Ntp(r.u64("T NTP value")?)),
            ts_type::COUNTER => Ok(Self::Counter(r.u32("T COUNTER value")?)),
            other => Err(DecodeError::unsupported("T type", other.into())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layouts() {
        assert_eq!(Timestamp::Counter(0x0102_0304).to_vec(), [2, 1, 2, 3, 4]);
        assert_eq!(
            Timestamp::Ntp(0x0102_0304_0506_0708).to_vec(),
            [1, 1, 2, 3, 4, 5, 6, 7, 8]
        );
        assert_eq!(Timestamp::NtpUtc(9).to_vec()[0], 0);
        assert_eq!(
            Timestamp::decode(&[3, 0, 0, 0, 0]),
            Err(DecodeError::unsupported("T type", 3))
        );
    }

    #[test]
    fn value_bytes_match_the_wire() {
        for t in [
            Timestamp::Counter(0x0102_0304),
            Timestamp::Ntp(0x0a0b_0c0d_0e0f_1011),
        ] {
            assert_eq!(t.value_bytes().as_bytes(), &t.to_vec()[1..]);
        }
    }

    #[test]
    fn counter_is_right_aligned_in_iv() {
        assert_eq!(Timestamp::Counter(1).iv_value(), 1);
        assert_eq!(Timestamp::Ntp(u64::MAX).iv_value(), u64::MAX);
    }
}
