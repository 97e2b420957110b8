//! Envelope keys of a pre-shared-key MIKEY message (RFC 3830 §4.1.4) and the
//! KEMAC protection they give: AES-CM-128 encryption (§4.2.3) and
//! HMAC-SHA-1-160 (§4.2.4). In MBMS the pre-shared key is the MSK for MTK
//! messages and the MUK for MSK messages (wire reference §3.2).

use super::prf::prf_many;
use super::rand::Rand;
use crate::protocol::keys::Secret;
use aes::Aes128;
use ctr::cipher::{KeyIvInit, StreamCipher};
use hmac::{Hmac, Mac};
use sha1::Sha1;

type HmacSha1 = Hmac<Sha1>;
type Aes128Ctr = ctr::Ctr128BE<Aes128>;

/// PRF label constants (RFC 3830 §4.1.4; wire reference §3.3).
pub mod label_const {
    pub const ENCR: u32 = 0x1505_33E1;
    pub const AUTH: u32 = 0x2D22_AC75;
    pub const SALT: u32 = 0x29B8_8916;
}

/// The CS ID byte of the envelope labels: 0xFF, "not a crypto session".
const ENVELOPE_CS_ID: u8 = 0xFF;
const MAX_RAND_LEN: usize = u8::MAX as usize;
const LABEL_HEADER_LEN: usize = 9;
pub const MAC_LEN: usize = 20;

/// `const ‖ 0xFF ‖ CSB ID ‖ RAND`, on the stack (RAND is at most 255 bytes).
pub struct EnvelopeLabel {
    buf: [u8; LABEL_HEADER_LEN + MAX_RAND_LEN],
    len: usize,
}

impl EnvelopeLabel {
    pub fn new(constant: u32, csb_id: u32, rand: Rand<'_>) -> Self {
        let rand = rand.bytes();
        let mut buf = [0u8; LABEL_HEADER_LEN + MAX_RAND_LEN];
        buf[..4].copy_from_slice(&constant.to_be_bytes());
        buf[4] = ENVELOPE_CS_ID;
        buf[5..9].copy_from_slice(&csb_id.to_be_bytes());
        buf[9..9 + rand.len()].copy_from_slice(rand);
        Self {
            buf,
            len: LABEL_HEADER_LEN + rand.len(),
        }
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

/// encr_key, auth_key and salt_key of one message (16/20/14 bytes for
/// AES-CM-128 and HMAC-SHA-1-160).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvelopeKeys {
    encr: Secret<16>,
    auth: Secret<20>,
    salt: Secret<14>,
}

impl EnvelopeKeys {
    /// Derives the keys from the pre-shared key with the message's CSB ID and
    /// RAND (empty when the message has no RAND).
    pub fn derive(psk: &[u8], csb_id: u32, rand: Rand<'_>) -> Self {
        let encr_label = EnvelopeLabel::new(label_const::ENCR, csb_id, rand);
        let auth_label = EnvelopeLabel::new(label_const::AUTH, csb_id, rand);
        let salt_label = EnvelopeLabel::new(label_const::SALT, csb_id, rand);
        let mut encr = Secret::new([0; 16]);
        let mut auth = Secret::new([0; 20]);
        let mut salt = Secret::new([0; 14]);
        prf_many(
            psk,
            &mut [
                (encr_label.as_bytes(), encr.expose_mut()),
                (auth_label.as_bytes(), auth.expose_mut()),
                (salt_label.as_bytes(), salt.expose_mut()),
            ],
        );
        Self { encr, auth, salt }
    }

    pub fn encr_key(&self) -> &Secret<16> {
        &self.encr
    }

    pub fn auth_key(&self) -> &Secret<20> {
        &self.auth
    }

    pub fn salt_key(&self) -> &Secret<14> {
        &self.salt
    }

    /// The AES-CM counter block (RFC 3830 §4.2.3):
    /// `(salt_key XOR (0x0000 ‖ CSB ID ‖ T)) ‖ 0x0000`.
    pub fn kemac_iv(&self, csb_id: u32, t: u64) -> [u8; 16] {
        let mut iv = [0u8; 16];
        iv[..14].copy_from_slice(self.salt.expose());
        for (i, b) in csb_id.to_be_bytes().into_iter().enumerate() {
            iv[2 + i] ^= b;
        }
        for (i, b) in t.to_be_bytes().into_iter().enumerate() {
            iv[6 + i] ^= b;
        }
        iv
    }

    /// Encrypts or decrypts (the same operation) the KEMAC data in place.
    pub fn apply_keystream(&self, csb_id: u32, t: u64, data: &mut [u8]) {
        let iv = self.kemac_iv(csb_id, t);
        let mut cipher = Aes128Ctr::new(self.encr.expose().into(), &iv.into());
        cipher.apply_keystream(data);
    }

    /// HMAC-SHA-1-160 over `covered` (RFC 3830 §4.2.4).
    pub fn mac(&self, covered: &[u8]) -> [u8; MAC_LEN] {
        self.mac_parts(&[covered])
    }

    /// Constant-time check of a received MAC.
    pub fn verify_mac(&self, covered: &[u8], received: &[u8]) -> bool {
        self.verify_mac_parts(&[covered], received)
    }

    /// HMAC-SHA-1-160 over the concatenation of `parts`.
    pub fn mac_parts(&self, parts: &[&[u8]]) -> [u8; MAC_LEN] {
        self.keyed_mac(parts).finalize().into_bytes().into()
    }

    /// Constant-time check of a MAC over the concatenation of `parts`.
    pub fn verify_mac_parts(&self, parts: &[&[u8]], received: &[u8]) -> bool {
        self.keyed_mac(parts).verify_slice(received).is_ok()
    }

    fn keyed_mac(&self, parts: &[&[u8]]) -> HmacSha1 {
        let mut mac =
            HmacSha1::new_from_slice(self.auth.expose()).expect("HMAC takes a key of any length");
        for part in parts {
            mac.update(part);
        }
        mac
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MSK: &str = "000102030405060708090a0b0c0d0e0f";
    const CSB_ID: u32 = 0x1234_5678;
    const RAND: &str = "a0a1a2a3a4a5a6a7a8a9aaabacadaeaf";

    fn keys(rand: &[u8]) -> EnvelopeKeys {
        EnvelopeKeys::derive(&hex::decode(MSK).unwrap(), CSB_ID, Rand::new(rand).unwrap())
    }

    #[test]
    fn label_matches_reference() {
        let rand = hex::decode(RAND).unwrap();
        let label = EnvelopeLabel::new(label_const::ENCR, CSB_ID, Rand::new(&rand).unwrap());
        assert_eq!(
            hex::encode(label.as_bytes()),
            "150533e1ff12345678a0a1a2a3a4a5a6a7a8a9aaabacadaeaf"
        );
    }

    /// Wire reference §3.5, RAND present.
    #[test]
    fn envelope_keys_with_rand() {
        let k = keys(&hex::decode(RAND).unwrap());
        assert_eq!(
            hex::encode(k.encr_key().expose()),
            "728ffc4e7bea1d0d8106d39a7403f137"
        );
        assert_eq!(
            hex::encode(k.auth_key().expose()),
            "1c259cd9039f914f4e376c9983028c56d93bfa48"
        );
        assert_eq!(
            hex::encode(k.salt_key().expose()),
            "44f89561458faec57b3c630b5095"
        );
    }

    /// Wire reference §3.5, RAND empty.
    #[test]
    fn envelope_keys_without_rand() {
        let k = keys(&[]);
        assert_eq!(
            hex::encode(k.encr_key().expose()),
            "53ccc9c8999150cde66c02ce38dd76c2"
        );
        assert_eq!(
            hex::encode(k.auth_key().expose()),
            "f2fdfc6bbf103b5e06824eb5edc385c3aa1ec8b0"
        );
        assert_eq!(
            hex::encode(k.salt_key().expose()),
            "2cb4b14a1d2944b4f6f111f57a14"
        );
    }

    /// Wire reference §3.5: IV and ciphertext for T = COUNTER 1.
    #[test]
    fn kemac_iv_and_ciphertext() {
        let k = keys(&hex::decode(RAND).unwrap());
        assert_eq!(
            hex::encode(k.kemac_iv(CSB_ID, 1)),
            "44f8875513f7aec57b3c630b50940000"
        );
        let mut data = hex::decode(
            "0031001000112233445566778899aabbccddeeff000e0102030405060708090a0b0c0d0e0600000001002a",
        )
        .unwrap();
        let plain = data.clone();
        k.apply_keystream(CSB_ID, 1, &mut data);
        assert_eq!(
            hex::encode(&data),
            "a2c6eb83930a5342f0e23231bba0a15ababe8e6af6887065a59d0d6c2160514f6a3a4023672e91cc555f16"
        );
        k.apply_keystream(CSB_ID, 1, &mut data);
        assert_eq!(data, plain);
    }

    #[test]
    fn mac_verifies_only_the_same_bytes() {
        let k = keys(&[]);
        let mac = k.mac(b"message");
        assert!(k.verify_mac(b"message", &mac));
        assert!(!k.verify_mac(b"messagE", &mac));
        assert!(!k.verify_mac(b"message", &mac[..19]));
    }

    #[test]
    fn debug_redacted() {
        let text = format!("{:?}", keys(&[]));
        assert!(!text.contains("53") && !text.contains("83"), "{text}");
    }
}
