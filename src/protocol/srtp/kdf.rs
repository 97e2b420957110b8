//! Session key derivation with the AES-CM PRF (RFC 3711 §4.3), key derivation
//! rate 0 only: r = 0, so every label's input is just `label ‖ 0^48` XOR salt and
//! the session keys are derived once per master key (profile `KEY_DERIVATION_RATE`).

use super::keystream::xor_keystream;
use aes::Aes128;
use aes::cipher::KeyInit;
use zeroize::Zeroize;

// Only kdr 0 is implemented (as in libsrtp): r = index DIV kdr is then always
// 0. The profile asserts that its KEY_DERIVATION_RATE is 0.

/// Key derivation labels (RFC 3711 §4.3.2 and §4.3.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub(super) enum Label {
    RtpEncryption = 0,
    RtpAuth = 1,
    RtpSalt = 2,
    RtcpEncryption = 3,
    RtcpAuth = 4,
    RtcpSalt = 5,
}

/// The AES-CM PRF keyed with one master key; derives any number of session keys.
pub(super) struct Kdf {
    cipher: Aes128,
    master_salt: [u8; 14],
}

impl Kdf {
    pub(super) fn new(master_key: &[u8; 16], master_salt: &[u8; 14]) -> Self {
        Self {
            cipher: Aes128::new(master_key.into()),
            master_salt: *master_salt,
        }
    }

    /// Fills `out` with the PRF output for `label`: the AES-CM keystream under the
    /// master key with IV = (label ‖ r) XOR master salt, then two zero bytes
    /// (RFC 3711 §4.3.1, §4.3.3; r = 0 for kdr 0).
    pub(super) fn derive(&self, label: Label, out: &mut [u8]) {
        let mut iv = [0u8; 16];
        iv[..14].copy_from_slice(&self.master_salt);
        // key_id = label (8 bits) ‖ r (48 bits), right-aligned against the 112-bit salt.
        iv[7] ^= label as u8;
        out.fill(0);
        xor_keystream(&self.cipher, &iv, out);
    }
}

impl Drop for Kdf {
    fn drop(&mut self) {
        self.master_salt.zeroize();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unhex<const N: usize>(s: &str) -> [u8; N] {
        hex::decode(s).unwrap().try_into().unwrap()
    }

    /// RFC 3711 B.3 (wire reference §4.3): cipher key and salt match libsrtp's
    /// `cipher_driver.c`, the auth key is the reference's computed value.
    #[test]
    fn rfc3711_b3_key_derivation() {
        let kdf = Kdf::new(
            &unhex("E1F97A0D3E018BE0D64FA32C06DE4139"),
            &unhex("0EC675AD498AFEEBB6960B3AABE6"),
        );
        let mut key = [0u8; 16];
        kdf.derive(Label::RtpEncryption, &mut key);
        assert_eq!(hex::encode_upper(key), "C61E7A93744F39EE10734AFE3FF7A087");
        let mut salt = [0u8; 14];
        kdf.derive(Label::RtpSalt, &mut salt);
        assert_eq!(hex::encode_upper(salt), "30CBBC08863D8C85D49DB34A9AE1");
        let mut auth = [0u8; 20];
        kdf.derive(Label::RtpAuth, &mut auth);
        assert_eq!(
            hex::encode_upper(auth),
            "CEBE321F6FF7716B6FD4AB49AF256A156D38BAA4"
        );
    }

    #[test]
    fn labels_give_distinct_keys() {
        let kdf = Kdf::new(&[7; 16], &[9; 14]);
        let labels = [
            Label::RtpEncryption,
            Label::RtpAuth,
            Label::RtpSalt,
            Label::RtcpEncryption,
            Label::RtcpAuth,
            Label::RtcpSalt,
        ];
        let keys: Vec<[u8; 16]> = labels
            .iter()
            .map(|&l| {
                let mut k = [0u8; 16];
                kdf.derive(l, &mut k);
                k
            })
            .collect();
        for (i, a) in keys.iter().enumerate() {
            for b in &keys[i + 1..] {
                assert_ne!(a, b);
            }
        }
    }
}
