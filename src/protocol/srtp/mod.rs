//! SRTP and SRTCP (RFC 3711) for MBMS streaming sessions (design §2, wire
//! reference §4): AES-CM-128 with HMAC-SHA1-80 or -32, key derivation rate 0,
//! and master keys selected by the MKI carried on every packet.
//!
//! [`SrtpSender`] protects the encoder's RTP (and the gateway's RTCP SR) in place;
//! [`SrtpReceiver`] does what a UE does. Both hold a small ring of master keys
//! (MTKs), each named by its MKI, so an MTK switch is: add the next key, switch the
//! active MKI, retire the old key once nothing uses it any more.
//!
//! The packet index is kept per SSRC, independent of the master key, so it runs
//! on across MTK switches, and the sender refuses ever to protect the same
//! (SSRC, index) twice (design §3 "never repeats (MTK, SSRC, packet index)").
//!
//! ```
//! use mbms_gateway::protocol::keys::{Mki, MskId, Mtk, MtkId, MtkKey, MtkSalt};
//! use mbms_gateway::protocol::srtp::{SrtpConfig, SrtpReceiver, SrtpSender};
//!
//! let mki = Mki { msk_id: MskId::new(1, 7), mtk_id: MtkId(42) }.to_bytes();
//! let mtk = Mtk { key: MtkKey::new([0x11; 16]), salt: MtkSalt::new([0x22; 14]) };
//!
//! let mut sender = SrtpSender::new(SrtpConfig::mbms())?;
//! sender.add_master_key(&mki, &mtk)?;
//! sender.set_active_key(&mki)?;
//!
//! // An RTP packet (V=2, SEQ 1, SSRC 0xcafebabe) with room for MKI and tag.
//! let rtp = [0x80, 96, 0, 1, 0, 0, 0, 0, 0xca, 0xfe, 0xba, 0xbe, 1, 2, 3];
//! let mut buf = [0u8; 64];
//! buf[..rtp.len()].copy_from_slice(&rtp);
//! let srtp_len = sender.protect(&mut buf, rtp.len())?;
//! assert_eq!(srtp_len, rtp.len() + SrtpConfig::mbms().rtp_overhead());
//!
//! let mut receiver = SrtpReceiver::new(SrtpConfig::mbms())?;
//! receiver.add_master_key(&mki, &mtk)?;
//! let rtp_len = receiver.unprotect(&mut buf[..srtp_len])?;
//! assert_eq!(&buf[..rtp_len], &rtp);
//! # Ok::<(), mbms_gateway::protocol::srtp::SrtpError>(())
//! ```

mod crypto;
mod index;
mod kdf;
mod keyring;
mod keystream;
mod rcc;
mod receiver;
mod rtp;
mod sender;
mod srtcp;
mod streams;

pub use keyring::MkiBytes;
pub use rcc::{ROC_LEN, RccMode, RocSettingError, RocTransmission};
pub use receiver::{RocSource, SrtpReceiver, Unprotected};
pub use rtp::{RtcpHeader, RtpExtension, RtpHeader};
pub use sender::SrtpSender;

use crate::protocol::codec::DecodeError;
use crate::protocol::profile;
use thiserror::Error;

/// Longest MKI a context accepts (the MBMS profile uses [`profile::srtp::MKI_LEN`]).
pub const MAX_MKI_LEN: usize = 16;
/// Master keys a context holds at once: previous, current and next MTK, plus one
/// spare so an early next-but-one MTK message does not force an eviction.
pub const MAX_MASTER_KEYS: usize = 4;
/// Replay / reuse window in packets (RFC 3711 §3.3.2 asks for at least 64).
pub const REPLAY_WINDOW: u64 = 128;

/// The HMAC-SHA1 tag length of SRTP packets (RFC 3711 §5.2; RFC 4568 §6.2.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthTag {
    /// `AES_CM_128_HMAC_SHA1_80`: 10-byte tag.
    HmacSha1_80,
    /// `AES_CM_128_HMAC_SHA1_32`: 4-byte tag on SRTP; SRTCP keeps 80 bits.
    HmacSha1_32,
}

impl AuthTag {
    pub const fn size(self) -> usize {
        match self {
            Self::HmacSha1_80 => 10,
            Self::HmacSha1_32 => 4,
        }
    }
}

/// SRTCP always carries an 80-bit tag, also with the `_32` suite (RFC 4568 §6.2.1).
pub(crate) const SRTCP_TAG: AuthTag = AuthTag::HmacSha1_80;

/// What both ends of a session agree on out of band (SDP / the wire profile).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SrtpConfig {
    /// Tag length on SRTP packets.
    pub tag: AuthTag,
    /// MKI length in bytes on every packet, 0..=[`MAX_MKI_LEN`]. With 0 the
    /// context can hold only one master key: there is nothing to select by.
    pub mki_len: usize,
    /// Most SSRCs tracked at once; state for all of them is allocated up front so
    /// the packet path never allocates and hostile input cannot grow memory.
    pub max_streams: usize,
    /// Whether and how packets carry the ROC (RFC 4771).
    pub roc: RocTransmission,
}

impl SrtpConfig {
    /// The project's MBMS profile (design §2): HMAC-SHA1-80, 6-byte MKI, the
    /// ROC on air as [`profile::srtp::ROC_TRANSMISSION`].
    pub const fn mbms() -> Self {
        Self {
            tag: match profile::srtp::AUTH_TAG_LEN {
                4 => AuthTag::HmacSha1_32,
                _ => AuthTag::HmacSha1_80,
            },
            mki_len: profile::srtp::MKI_LEN,
            max_streams: 16,
            roc: profile::srtp::ROC_TRANSMISSION,
        }
    }

    /// Most bytes appended to an RTP packet by protection: MKI and the
    /// longest tag of the session (buffers need this much room).
    pub const fn rtp_overhead(&self) -> usize {
        self.mki_len + self.roc.max_tag(self.tag.size())
    }

    /// Bytes appended to the RTP packet with sequence number `seq`: MKI and
    /// its tag, which with RFC 4771 depends on the packet.
    pub const fn rtp_trailer(&self, seq: u16) -> usize {
        self.mki_len + self.rtp_tag(seq).len()
    }

    /// The MKI of the SRTP packet `packet`, if it is long enough to have one.
    pub fn mki_of<'a>(&self, packet: &'a [u8]) -> Option<&'a [u8]> {
        let seq = u16::from_be_bytes([*packet.get(2)?, *packet.get(3)?]);
        let start = packet.len().checked_sub(self.rtp_trailer(seq))?;
        packet.get(start..start + self.mki_len)
    }

    const fn rtp_tag(&self, seq: u16) -> rcc::PacketTag {
        self.roc.packet_tag(seq, self.tag.size())
    }

    /// Bytes appended to an RTCP packet: E ‖ SRTCP index, MKI and tag.
    pub const fn rtcp_overhead(&self) -> usize {
        4 + self.mki_len + SRTCP_TAG.size()
    }

    fn validate(&self) -> Result<(), SrtpError> {
        if self.mki_len > MAX_MKI_LEN {
            return Err(SrtpError::MkiTooLong {
                len: self.mki_len,
                max: MAX_MKI_LEN,
            });
        }
        // RFC 4771: MAC_tr is the tag less the ROC; with a 4-byte tag an
        // RCC packet of RCCm1/RCCm2 would carry no MAC at all.
        if let RocTransmission::Rcc {
            mode: mode @ (RccMode::Rccm1 | RccMode::Rccm2),
            ..
        } = self.roc
            && self.tag.size() <= ROC_LEN
        {
            return Err(SrtpError::RccTagTooShort {
                mode: mode.name(),
                tag: self.tag.size(),
            });
        }
        Ok(())
    }
}

/// The protected length of a `len`-byte packet in `buf` with `overhead` bytes
/// appended, if `buf` has room for it.
fn protected_len(buf: &[u8], len: usize, overhead: usize) -> Result<usize, SrtpError> {
    let needed = len.saturating_add(overhead);
    if buf.len() < needed {
        return Err(SrtpError::BufferTooSmall {
            needed,
            available: buf.len(),
        });
    }
    Ok(needed)
}

/// Why a packet or a key operation was refused. Nothing here carries key bytes;
/// MKIs are public (they travel in clear on every packet) and are shown in hex.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SrtpError {
    #[error("malformed RTP packet: {0}")]
    MalformedRtp(DecodeError),
    #[error("malformed RTCP packet: {0}")]
    MalformedRtcp(DecodeError),
    #[error("packet of {len} bytes is shorter than its header, MKI and tag ({needed} bytes)")]
    PacketTooShort { len: usize, needed: usize },
    #[error("buffer of {available} bytes has no room for the protected packet ({needed} bytes)")]
    BufferTooSmall { needed: usize, available: usize },
    #[error("MKI of {len} bytes is longer than the supported {max}")]
    MkiTooLong { len: usize, max: usize },
    #[error("MKI {mki} has {len} bytes, the session uses {expected}")]
    MkiLength {
        mki: keyring::MkiBytes,
        len: usize,
        expected: usize,
    },
    #[error("a master key with MKI {0} is already installed")]
    DuplicateMki(keyring::MkiBytes),
    #[error("no master key with MKI {0}")]
    UnknownMki(keyring::MkiBytes),
    #[error("all {capacity} master key slots are in use; retire an old key first")]
    KeyRingFull { capacity: usize },
    #[error("master key with MKI {0} is the active sending key and cannot be removed")]
    ActiveKeyRemoval(keyring::MkiBytes),
    #[error("no active master key selected for sending")]
    NoActiveKey,
    #[error(
        "SSRC {ssrc:#010x}: packet index {index} was already protected; refusing to reuse the keystream"
    )]
    IndexReused { ssrc: u32, index: u64 },
    #[error(
        "SSRC {ssrc:#010x}: packet index {index} is behind the window (highest {highest}); refusing to protect it"
    )]
    IndexBehindWindow { ssrc: u32, index: u64, highest: u64 },
    #[error("SSRC {ssrc:#010x}: packet index space exhausted under one session")]
    IndexExhausted { ssrc: u32 },
    #[error("SSRC {ssrc:#010x}: packet index {index} replayed")]
    Replayed { ssrc: u32, index: u64 },
    #[error(
        "SSRC {ssrc:#010x}: packet index {index} is older than the replay window (highest {highest})"
    )]
    TooOld { ssrc: u32, index: u64, highest: u64 },
    #[error("SSRC {ssrc:#010x}: authentication tag mismatch")]
    AuthenticationFailed { ssrc: u32 },
    #[error(
        "SSRC {ssrc:#010x}: ROC not known yet; packets are refused until one that carries it (RFC 4771) authenticates"
    )]
    AwaitingRoc { ssrc: u32 },
    #[error(
        "{mode} needs an SRTP tag longer than the 4-byte ROC it carries; the session's tag is {tag} bytes"
    )]
    RccTagTooShort { mode: &'static str, tag: usize },
    #[error("already tracking {capacity} SSRCs; no room for SSRC {ssrc:#010x}")]
    TooManyStreams { ssrc: u32, capacity: usize },
}

#[cfg(test)]
mod rcc_tests;
#[cfg(test)]
mod tests;
