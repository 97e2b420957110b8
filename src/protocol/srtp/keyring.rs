//! The master keys of one context, each named by its MKI (RFC 3711 §3.1, §8.1):
//! the MBMS receiver picks the MTK by the MKI on each packet, and an MTK switch
//! installs the next key before it is used and retires the old one after.

use super::crypto::SessionCrypto;
use super::kdf::Kdf;
use super::{MAX_MASTER_KEYS, MAX_MKI_LEN, SrtpError};
use crate::protocol::keys::Mtk;
use std::fmt;

/// An MKI value as it appears on the wire. MKIs are public, so it prints as hex.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct MkiBytes {
    bytes: [u8; MAX_MKI_LEN],
    len: u8,
}

impl MkiBytes {
    /// `None` when longer than [`MAX_MKI_LEN`].
    pub fn new(mki: &[u8]) -> Option<Self> {
        let mut bytes = [0u8; MAX_MKI_LEN];
        bytes.get_mut(..mki.len())?.copy_from_slice(mki);
        Some(Self {
            bytes,
            len: mki.len() as u8,
        })
    }

    /// The first [`MAX_MKI_LEN`] bytes of `mki`, for naming it in an error.
    fn truncated(mki: &[u8]) -> Self {
        let len = mki.len().min(MAX_MKI_LEN);
        let mut bytes = [0u8; MAX_MKI_LEN];
        bytes[..len].copy_from_slice(&mki[..len]);
        Self {
            bytes,
            len: len as u8,
        }
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }
}

impl fmt::Display for MkiBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.len == 0 {
            return f.write_str("(empty)");
        }
        self.as_bytes()
            .iter()
            .try_for_each(|b| write!(f, "{b:02x}"))
    }
}

impl fmt::Debug for MkiBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Mki({self})")
    }
}

/// One master key: its MKI and the session keys derived from it (kdr 0).
pub(super) struct MasterKey {
    pub(super) mki: MkiBytes,
    pub(super) rtp: SessionCrypto,
    pub(super) rtcp: SessionCrypto,
}

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MasterKey")
            .field("mki", &self.mki)
            .finish_non_exhaustive()
    }
}

/// Up to [`MAX_MASTER_KEYS`] master keys, looked up by MKI.
#[derive(Debug)]
pub(super) struct KeyRing {
    keys: Vec<MasterKey>,
    mki_len: usize,
}

impl KeyRing {
    pub(super) fn new(mki_len: usize) -> Self {
        Self {
            keys: Vec::with_capacity(MAX_MASTER_KEYS),
            mki_len,
        }
    }

    /// Checks that `mki` has the session's MKI length.
    pub(super) fn mki(&self, mki: &[u8]) -> Result<MkiBytes, SrtpError> {
        let value = MkiBytes::new(mki).ok_or(SrtpError::MkiTooLong {
            len: mki.len(),
            max: MAX_MKI_LEN,
        })?;
        if mki.len() != self.mki_len {
            return Err(SrtpError::MkiLength {
                mki: value,
                len: mki.len(),
                expected: self.mki_len,
            });
        }
        Ok(value)
    }

    /// Derives the session keys of `mtk` and installs them under `mki`.
    pub(super) fn add(&mut self, mki: &[u8], mtk: &Mtk) -> Result<(), SrtpError> {
        let mki = self.mki(mki)?;
        if self.position(mki.as_bytes()).is_ok() {
            return Err(SrtpError::DuplicateMki(mki));
        }
        if self.keys.len() >= MAX_MASTER_KEYS {
            return Err(SrtpError::KeyRingFull {
                capacity: MAX_MASTER_KEYS,
            });
        }
        let kdf = Kdf::new(mtk.key.expose(), mtk.salt.expose());
        self.keys.push(MasterKey {
            mki,
            rtp: SessionCrypto::rtp(&kdf),
            rtcp: SessionCrypto::rtcp(&kdf),
        });
        Ok(())
    }

    pub(super) fn remove(&mut self, mki: &[u8]) -> Result<(), SrtpError> {
        let pos = self.position(mki)?;
        self.keys.swap_remove(pos);
        Ok(())
    }

    /// The slot of the key whose MKI equals `mki` (the wire bytes, any length).
    /// Slots change when a key is removed.
    pub(super) fn position(&self, mki: &[u8]) -> Result<usize, SrtpError> {
        // Fixed-size comparison: no memcmp call on the packet path.
        MkiBytes::new(mki)
            .and_then(|wanted| self.keys.iter().position(|k| k.mki == wanted))
            .ok_or_else(|| SrtpError::UnknownMki(MkiBytes::truncated(mki)))
    }

    /// The key in slot `pos` (from [`Self::position`]).
    pub(super) fn at(&self, pos: usize) -> Option<&MasterKey> {
        self.keys.get(pos)
    }

    /// The key whose MKI equals `mki`, or the typed error for an unknown MKI.
    pub(super) fn get(&self, mki: &[u8]) -> Result<&MasterKey, SrtpError> {
        let pos = self.position(mki)?;
        Ok(&self.keys[pos])
    }

    pub(super) fn mkis(&self) -> impl Iterator<Item = MkiBytes> + '_ {
        self.keys.iter().map(|k| k.mki)
    }
}
