//! Verification payload V (RFC 3830 §6.9): the MAC of a verification message,
//! the acknowledgement a UE sends when an MSK message has the V bit set
//! (seed §6.3.2.3.1).

use super::kemac::mac_len;
use crate::protocol::codec::{Codec, DecodeError, Reader};

/// A V payload body: `MAC alg(1) ‖ Verification MAC`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verification<'a> {
    mac_alg: u8,
    mac: &'a [u8],
}

impl<'a> Verification<'a> {
    /// `None` unless `mac` has the length of `mac_alg`.
    pub fn new(mac_alg: u8, mac: &'a [u8]) -> Option<Self> {
        (mac_len(mac_alg) == Some(mac.len())).then_some(Self { mac_alg, mac })
    }

    pub fn mac_alg(&self) -> u8 {
        self.mac_alg
    }

    pub fn mac(&self) -> &'a [u8] {
        self.mac
    }
}

impl<'a> Codec<'a> for Verification<'a> {
    fn encoded_len(&self) -> usize {
        1 + self.mac.len()
    }

    fn encode(&self, out: &mut Vec<u8>) {
        out.push(self.mac_alg);
        out.extend_from_slice(self.mac);
    }

    fn read(r: &mut Reader<'a>) -> Result<Self, DecodeError> {
        let mac_alg = r.u8("V MAC alg")?;
        let len = mac_len(mac_alg).ok_or(DecodeError::unsupported("V MAC alg", mac_alg.into()))?;
        Ok(Self {
            mac_alg,
            mac: r.take(len, "V MAC")?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout() {
        let mac = [0x5a; 20];
        let v = Verification::new(1, &mac).unwrap();
        let bytes = v.to_vec();
        assert_eq!(bytes.len(), 21);
        assert_eq!(bytes[0], 1);
        assert_eq!(Verification::decode(&bytes).unwrap(), v);
        assert!(Verification::new(1, &mac[..10]).is_none());
        assert_eq!(
            Verification::decode(&[7]),
            Err(DecodeError::unsupported("V MAC alg", 7))
        );
    }
}
