//! Key material and key identifiers (TS 33.246 §6.3.2.1, design §2).
//!
//! Secrets are wrapped in [`Secret`]: zeroized on drop, never printed. Their
//! `Debug` shows only the length, so a key can sit in any struct that derives
//! `Debug` without leaking into logs or error messages.

use std::fmt;
use subtle::ConstantTimeEq;
use zeroize::{Zeroize, ZeroizeOnDrop};

/// A fixed-size secret. Only [`Secret::expose`] gives access to the bytes.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct Secret<const N: usize>([u8; N]);

impl<const N: usize> Secret<N> {
    pub const LEN: usize = N;

    pub const fn new(bytes: [u8; N]) -> Self {
        Self(bytes)
    }

    /// Copies from a slice; `None` unless it is exactly `N` bytes long.
    pub fn from_slice(bytes: &[u8]) -> Option<Self> {
        <[u8; N]>::try_from(bytes).ok().map(Self)
    }

    pub fn expose(&self) -> &[u8; N] {
        &self.0
    }
}

impl<const N: usize> fmt::Debug for Secret<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Secret<{N}>(..)")
    }
}

/// Constant-time comparison, so tests and caches can compare keys safely.
impl<const N: usize> PartialEq for Secret<N> {
    fn eq(&self, other: &Self) -> bool {
        self.0.ct_eq(&other.0).into()
    }
}
impl<const N: usize> Eq for Secret<N> {}

/// MBMS Service Key: the MIKEY pre-shared key of MTK messages (AES-128 size).
pub type Msk = Secret<16>;
/// MBMS Traffic Key: the SRTP master key and the DCF content key.
pub type MtkKey = Secret<16>;
/// The 112-bit SRTP master salt delivered with the MTK (TEK+SALT key data).
pub type MtkSalt = Secret<14>;

/// An MTK with its salt, as carried in the KEMAC of an MTK message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mtk {
    pub key: MtkKey,
    pub salt: MtkSalt,
}

/// Key Domain ID = MCC ‖ MNC, 3 bytes (seed §6.3.2.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyDomainId(pub [u8; 3]);

/// MSK ID, 4 bytes: bytes 0–1 Key Group, bytes 2–3 Key Number (seed §6.3.2.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MskId(pub u32);

impl MskId {
    /// Key Number 0 means "the current MSK" of the group (seed §6.3.2.1A, §6.3.2.2.4).
    pub const CURRENT_KEY_NUMBER: u16 = 0;

    pub const fn new(key_group: u16, key_number: u16) -> Self {
        Self(((key_group as u32) << 16) | key_number as u32)
    }

    pub const fn key_group(self) -> u16 {
        (self.0 >> 16) as u16
    }

    pub const fn key_number(self) -> u16 {
        self.0 as u16
    }

    pub const fn to_bytes(self) -> [u8; 4] {
        self.0.to_be_bytes()
    }
}

/// MTK ID, 16 bits, strictly increasing under one MSK (design §2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MtkId(pub u16);

/// The MKI carried on every SRTP packet: MSK ID ‖ MTK ID (design §2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Mki {
    pub msk_id: MskId,
    pub mtk_id: MtkId,
}

impl Mki {
    pub const LEN: usize = 6;

    pub fn to_bytes(self) -> [u8; 6] {
        let mut out = [0u8; 6];
        out[..4].copy_from_slice(&self.msk_id.to_bytes());
        out[4..].copy_from_slice(&self.mtk_id.0.to_be_bytes());
        out
    }

    pub fn from_bytes(bytes: [u8; 6]) -> Self {
        Self {
            msk_id: MskId(u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]])),
            mtk_id: MtkId(u16::from_be_bytes([bytes[4], bytes[5]])),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn msk_id_parts() {
        let id = MskId::new(0x1234, 0x0005);
        assert_eq!(id.0, 0x1234_0005);
        assert_eq!(id.key_group(), 0x1234);
        assert_eq!(id.key_number(), 5);
        assert_eq!(id.to_bytes(), [0x12, 0x34, 0x00, 0x05]);
    }

    #[test]
    fn mki_round_trip() {
        let mki = Mki {
            msk_id: MskId(0xdead_beef),
            mtk_id: MtkId(0x0102),
        };
        assert_eq!(mki.to_bytes(), [0xde, 0xad, 0xbe, 0xef, 0x01, 0x02]);
        assert_eq!(Mki::from_bytes(mki.to_bytes()), mki);
    }

    #[test]
    fn secrets_never_print() {
        let k = Msk::new([0x42; 16]);
        let text = format!(
            "{k:?} {:?}",
            Mtk {
                key: MtkKey::new([7; 16]),
                salt: MtkSalt::new([9; 14])
            }
        );
        assert!(!text.contains("42") && !text.contains("66"), "{text}");
        assert!(text.contains("Secret<16>(..)"));
    }
}
