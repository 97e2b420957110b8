//! Per-master-key session crypto: one AES-128 key schedule and one pre-keyed
//! HMAC-SHA1 state per direction (SRTP, SRTCP), derived once when the key is
//! installed and reused for every packet: the packet path clones the HMAC state
//! and never runs a key schedule.

use super::kdf::{Kdf, Label};
use super::keystream::xor_keystream;
use aes::Aes128;
use aes::cipher::KeyInit;
use hmac::{Hmac, Mac};
use sha1::Sha1;
use subtle::ConstantTimeEq;
use zeroize::Zeroize;

/// HMAC-SHA1 output, of which the first `tag.size()` bytes form the tag.
pub(super) type FullTag = [u8; 20];

/// Session keys of one direction (SRTP or SRTCP) under one master key.
///
/// The AES key schedule (aes `zeroize` feature) and the session salt are wiped
/// on drop; the pre-keyed HMAC state (SHA-1 states after the inner and outer
/// pads) has no wiping API in `hmac` 0.12 / `sha1` 0.10 and is only freed.
pub(super) struct SessionCrypto {
    cipher: Aes128,
    /// The session salt k_s as the IV's base, k_s·2^16.
    salt_block: u128,
    mac: Hmac<Sha1>,
}

impl SessionCrypto {
    fn derive(kdf: &Kdf, encryption: Label, auth: Label, salt_label: Label) -> Self {
        let mut key = [0u8; 16];
        kdf.derive(encryption, &mut key);
        // HMAC zero-pads keys shorter than the 64-byte block, so a padded block
        // is the same key as the 20-byte session auth key (RFC 2104 §2).
        let mut auth_block = [0u8; 64];
        kdf.derive(auth, &mut auth_block[..20]);
        let mut salt = [0u8; 16];
        kdf.derive(salt_label, &mut salt[..14]);
        let session = Self {
            cipher: Aes128::new(&key.into()),
            salt_block: u128::from_be_bytes(salt),
            mac: <Hmac<Sha1> as KeyInit>::new(&auth_block.into()),
        };
        key.zeroize();
        auth_block.zeroize();
        salt.zeroize();
        session
    }

    /// SRTP session keys (labels 0, 1, 2).
    pub(super) fn rtp(kdf: &Kdf) -> Self {
        Self::derive(kdf, Label::RtpEncryption, Label::RtpAuth, Label::RtpSalt)
    }

    /// SRTCP session keys (labels 3, 4, 5).
    pub(super) fn rtcp(kdf: &Kdf) -> Self {
        Self::derive(kdf, Label::RtcpEncryption, Label::RtcpAuth, Label::RtcpSalt)
    }

    /// Encrypts or decrypts `data` for packet `index` of `ssrc`:
    /// IV = (k_s·2^16) XOR (SSRC·2^64) XOR (i·2^16) (RFC 3711 §4.1.1).
    #[inline]
    pub(super) fn apply_keystream(&self, ssrc: u32, index: u64, data: &mut [u8]) {
        // Computed in registers: byte-wise IV assembly on the stack stalled
        // store-to-load forwarding on every packet.
        let iv = self.salt_block ^ (u128::from(ssrc) << 64) ^ (u128::from(index) << 16);
        xor_keystream(&self.cipher, &iv.to_be_bytes(), data);
    }

    /// HMAC-SHA1 over the concatenation of `parts` (RFC 3711 §4.2.1).
    #[inline]
    pub(super) fn mac(&self, parts: &[&[u8]]) -> FullTag {
        let mut mac = self.mac.clone();
        for part in parts {
            mac.update(part);
        }
        mac.finalize().into_bytes().into()
    }

    /// Recomputes the tag and compares it with `received` in constant time.
    pub(super) fn verify(&self, parts: &[&[u8]], received: &[u8]) -> bool {
        let expected = self.mac(parts);
        expected
            .get(..received.len())
            .is_some_and(|e| bool::from(e.ct_eq(received)))
    }
}

impl Drop for SessionCrypto {
    fn drop(&mut self) {
        self.salt_block.zeroize();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 3711 B.2 AES-CM keystream (wire reference §4.3), blocks 0, 1, 2 and
    /// the blocks around the 0xFF carry.
    #[test]
    fn rfc3711_b2_keystream() {
        let key: [u8; 16] = hex::decode("2B7E151628AED2A6ABF7158809CF4F3C")
            .unwrap()
            .try_into()
            .unwrap();
        let cipher = Aes128::new(&key.into());
        let mut iv = [0u8; 16];
        iv[..14].copy_from_slice(&hex::decode("F0F1F2F3F4F5F6F7F8F9FAFBFCFD").unwrap());
        let mut stream = vec![0u8; 0xff02 * 16];
        xor_keystream(&cipher, &iv, &mut stream);
        let block = |n: usize| hex::encode_upper(&stream[n * 16..(n + 1) * 16]);
        assert_eq!(block(0), "E03EAD0935C95E80E166B16DD92B4EB4");
        assert_eq!(block(1), "D23513162B02D0F72A43A2FE4A5F97AB");
        assert_eq!(block(2), "41E95B3BB0A2E8DD477901E4FCA894C0");
        assert_eq!(block(0xfeff), "EC8CDF7398607CB0F2D21675EA9EA1E4");
        assert_eq!(block(0xff00), "362B7C3C6773516318A077D7FC5073AE");
        assert_eq!(block(0xff01), "6A2CC3787889374FBEB4C81B17BA6C44");
    }
}
