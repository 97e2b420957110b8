//! KEMAC payload (RFC 3830 §6.2; wire reference §2.4): the encrypted key data
//! sub-payloads and the MAC over the whole message.

use crate::protocol::codec::{Codec, DecodeError, Reader};

/// Encryption algorithms (IANA "Encr alg").
pub mod encr_alg {
    pub const NULL: u8 = 0;
    pub const AES_CM_128: u8 = 1;
}

/// MAC algorithms (IANA "MAC alg").
pub mod mac_alg {
    pub const NULL: u8 = 0;
    pub const HMAC_SHA1_160: u8 = 1;
    pub const HMAC_SHA256_256: u8 = 2;
}

/// Length of the MAC field for a MAC algorithm, `None` if unknown (then the
/// message cannot even be delimited).
pub fn mac_len(alg: u8) -> Option<usize> {
    match alg {
        mac_alg::NULL => Some(0),
        mac_alg::HMAC_SHA1_160 => Some(20),
        mac_alg::HMAC_SHA256_256 => Some(32),
        _ => None,
    }
}

/// A KEMAC payload body:
/// `Encr alg(1) ‖ Encr data len(2) ‖ Encr data ‖ MAC alg(1) ‖ MAC`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Kemac<'a> {
    encr_alg: u8,
    encr_data: &'a [u8],
    mac_alg: u8,
    mac: &'a [u8],
}

impl<'a> Kemac<'a> {
    /// `None` if `encr_data` exceeds the 16-bit length or `mac` does not have
    /// the length of `mac_alg`.
    pub fn new(encr_alg: u8, encr_data: &'a [u8], mac_alg: u8, mac: &'a [u8]) -> Option<Self> {
        let fits = encr_data.len() <= usize::from(u16::MAX);
        (fits && mac_len(mac_alg) == Some(mac.len())).then_some(Self {
            encr_alg,
            encr_data,
            mac_alg,
            mac,
        })
    }

    pub fn encr_alg(&self) -> u8 {
        self.encr_alg
    }

    /// The encrypted key data sub-payloads (empty in a MAC-only KEMAC).
    pub fn encr_data(&self) -> &'a [u8] {
        self.encr_data
    }

    pub fn mac_alg(&self) -> u8 {
        self.mac_alg
    }

    pub fn mac(&self) -> &'a [u8] {
        self.mac
    }
}

impl<'a> Codec<'a> for Kemac<'a> {
    fn encoded_len(&self) -> usize {
        4 + self.encr_data.len() + self.mac.len()
    }

    fn encode(&self, out: &mut Vec<u8>) {
        out.push(self.encr_alg);
        // `new` and `read` bound the length to 65535.
        out.extend_from_slice(&(self.encr_data.len() as u16).to_be_bytes());
        out.extend_from_slice(self.encr_data);
        out.push(self.mac_alg);
        out.extend_from_slice(self.mac);
    }

    fn read(r: &mut Reader<'a>) -> Result<Self, DecodeError> {
        let encr_alg = r.u8("KEMAC encr alg")?;
        let len = r.u16("KEMAC encr data length")?;
        let encr_data = r.take(len.into(), "KEMAC encr data")?;
        let mac_alg = r.u8("KEMAC MAC alg")?;
        let mac_len =
            mac_len(mac_alg).ok_or(DecodeError::unsupported("KEMAC MAC alg", mac_alg.into()))?;
        let mac = r.take(mac_len, "KEMAC MAC")?;
        Ok(Self {
            encr_alg,
            encr_data,
            mac_alg,
            mac,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout() {
        let mac = [0xee; 20];
        let kemac = Kemac::new(
            encr_alg::AES_CM_128,
            &[1, 2, 3],
            mac_alg::HMAC_SHA1_160,
            &mac,
        )
        .unwrap();
        let bytes = kemac.to_vec();
        assert_eq!(&bytes[..7], &[1, 0, 3, 1, 2, 3, 1]);
        assert_eq!(&bytes[7..], &mac);
        assert_eq!(Kemac::decode(&bytes).unwrap(), kemac);
    }

    #[test]
    fn mac_only_form() {
        // Solicited pull (seed §6.3.2.2.4): Encr data len = 0, MAC present.
        let mac = [0x11; 20];
        let bytes = Kemac::new(encr_alg::AES_CM_128, &[], mac_alg::HMAC_SHA1_160, &mac)
            .unwrap()
            .to_vec();
        assert_eq!(&bytes[..4], &[1, 0, 0, 1]);
        assert_eq!(Kemac::decode(&bytes).unwrap().encr_data(), &[] as &[u8]);
    }

    #[test]
    fn rejects_unknown_mac_and_wrong_lengths() {
        assert_eq!(
            Kemac::decode(&[1, 0, 0, 9]),
            Err(DecodeError::unsupported("KEMAC MAC alg", 9))
        );
        assert!(Kemac::new(1, &[], mac_alg::HMAC_SHA1_160, &[0; 19]).is_none());
        assert!(Kemac::new(0, &[], mac_alg::NULL, &[]).is_some());
    }
}
