//! The unprotecting side (RFC 3711 §3.3): what a UE, or the gateway's probe,
//! does with each SRTP packet. Master keys are added as MIKEY MTK messages
//! arrive and picked per packet by the MKI.

use super::index::{Rejection, Window, estimate_index};
use super::keyring::{KeyRing, MkiBytes};
use super::rtp::RtpHeader;
use super::streams::Streams;
use super::{ROC_LEN, RocTransmission, SrtpConfig, SrtpError};
use crate::protocol::keys::Mtk;

/// Per-SSRC receiving state: replay windows for SRTP and SRTCP, and how the
/// ROC was learned. Created only for a packet that authenticated (or, in
/// RCCm3, that carried the ROC), so forged packets cannot fill the table.
#[derive(Debug, Default)]
pub(super) struct ReceiverStream {
    pub(super) rtp: Option<Window>,
    pub(super) rtcp: Option<Window>,
    pub(super) roc_source: Option<RocSource>,
}

/// How a receiver came to know the ROC of a stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RocSource {
    /// From the tag of an RCC packet (RFC 4771), verified by its MAC except
    /// in RCCm3.
    Carried,
    /// Assumed 0 for the first packet, as RFC 3711 §3.3.1 does.
    Zero,
    /// Found by trying ROC values until the tag authenticated
    /// ([`SrtpReceiver::set_max_initial_roc`]).
    Searched,
}

impl RocSource {
    pub const fn name(self) -> &'static str {
        match self {
            Self::Carried => "carried",
            Self::Zero => "zero",
            Self::Searched => "searched",
        }
    }
}

/// One unprotected packet: where its RTP ends and what it told the receiver.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unprotected {
    /// Length of the RTP packet now at the start of the buffer.
    pub rtp_len: usize,
    /// Its SRTP packet index, ROC·2^16 + SEQ.
    pub index: u64,
    /// It is an RCC packet: its tag carries the sender's ROC (RFC 4771).
    pub carried_roc: bool,
}

/// SRTP/SRTCP unprotection for one session.
///
/// A new SSRC starts at ROC 0 (RFC 3711 §3.3.1), or at the first ROC that
/// authenticates when [`SrtpReceiver::set_max_initial_roc`] allows a late join;
/// from then on the ROC follows the SEQ, and the replay window (RFC 3711
/// §3.3.2) refuses repeats.
#[derive(Debug)]
pub struct SrtpReceiver {
    pub(super) config: SrtpConfig,
    pub(super) keys: KeyRing,
    pub(super) streams: Streams<ReceiverStream>,
    max_initial_roc: u32,
}

impl SrtpReceiver {
    pub fn new(config: SrtpConfig) -> Result<Self, SrtpError> {
        config.validate()?;
        Ok(Self {
            config,
            keys: KeyRing::new(config.mki_len),
            streams: Streams::new(config.max_streams),
            max_initial_roc: 0,
        })
    }

    /// Lets the first packet of a new SSRC authenticate under any ROC up to
    /// `max_roc`, not only 0, in a session that does not carry the ROC
    /// ([`RocTransmission::None`]; with RFC 4771 the ROC comes from the
    /// stream and this is ignored). MBMS has no receiver feedback (RTCP RR
    /// is off, TS 26.346 §8.2), so without RFC 4771 a UE joining after the
    /// sender's SEQ wrapped cannot learn the ROC otherwise. The tag is the
    /// oracle: a new stream costs up to `max_roc + 1` HMACs per packet until
    /// one authenticates, and with the 32-bit tag a forgery's chance grows by
    /// the same factor, so keep the bound to what the session's age requires.
    pub fn set_max_initial_roc(&mut self, max_roc: u32) {
        self.max_initial_roc = max_roc;
    }

    pub fn config(&self) -> &SrtpConfig {
        &self.config
    }

    /// Installs the master key named `mki` (an MTK from a MIKEY message).
    pub fn add_master_key(&mut self, mki: &[u8], mtk: &Mtk) -> Result<(), SrtpError> {
        self.keys.add(mki, mtk)
    }

    pub fn remove_master_key(&mut self, mki: &[u8]) -> Result<(), SrtpError> {
        self.keys.remove(mki)
    }

    /// The MKIs of the installed master keys.
    pub fn master_keys(&self) -> impl Iterator<Item = MkiBytes> + '_ {
        self.keys.mkis()
    }

    /// The highest SRTP packet index received for `ssrc`.
    pub fn highest_index(&self, ssrc: u32) -> Option<u64> {
        self.streams.get(ssrc)?.rtp.map(|w| w.highest())
    }

    /// Forgets the state of `ssrc` (e.g. after an RTCP BYE).
    pub fn forget_stream(&mut self, ssrc: u32) -> bool {
        self.streams.remove(ssrc)
    }

    /// How the ROC of `ssrc` was learned, once a packet of it was accepted.
    pub fn roc_source(&self, ssrc: u32) -> Option<RocSource> {
        self.streams.get(ssrc)?.roc_source
    }

    /// Authenticates and decrypts the SRTP packet filling `buf`, in place.
    /// Returns the length of the RTP packet now at the start of `buf`.
    pub fn unprotect(&mut self, buf: &mut [u8]) -> Result<usize, SrtpError> {
        self.unprotect_packet(buf).map(|p| p.rtp_len)
    }

    /// [`unprotect`](Self::unprotect), telling also the packet's index and
    /// whether it carried the ROC.
    ///
    /// With RFC 4771 the tag of an RCC packet names the sender's ROC; in
    /// RCCm1 and RCCm2 it is taken only once MAC_tr verified over the packet
    /// and that ROC, so a corrupted ROC or a truncated tag is refused like
    /// any forgery and changes nothing (RFC 4771 receiver processing; RFC 3711 §3.3 step 5).
    /// Until a stream's ROC is known, its other packets are refused with
    /// [`SrtpError::AwaitingRoc`], except that in RCCm2 a packet whose tag
    /// authenticates at ROC 0 starts the stream there, as RFC 3711 §3.3.1
    /// does: a receiver present from the start of the session loses nothing.
    pub fn unprotect_packet(&mut self, buf: &mut [u8]) -> Result<Unprotected, SrtpError> {
        let too_short = |needed| SrtpError::PacketTooShort {
            len: buf.len(),
            needed,
        };
        let seq = match buf.get(2..4) {
            Some(seq) => u16::from_be_bytes([seq[0], seq[1]]),
            None => return Err(too_short(self.config.rtp_overhead() + 4)),
        };
        let tag = self.config.rtp_tag(seq);
        let trailer = self.config.mki_len + tag.len();
        let rtp_len = buf.len().checked_sub(trailer).ok_or(too_short(trailer))?;
        let (header, header_len) =
            RtpHeader::parse(&buf[..rtp_len]).map_err(SrtpError::MalformedRtp)?;
        let ssrc = header.ssrc;
        let mki_end = rtp_len + self.config.mki_len;
        let key = self.keys.get(&buf[rtp_len..mki_end])?;
        let (carried, mac) = buf[mki_end..].split_at(if tag.roc { ROC_LEN } else { 0 });
        let carried = <[u8; ROC_LEN]>::try_from(carried)
            .ok()
            .map(u32::from_be_bytes);

        let authenticated = |index: u64| {
            let roc = ((index >> 16) as u32).to_be_bytes();
            tag.mac == 0 || key.rtp.verify(&[&buf[..rtp_len], &roc], mac)
        };
        let window = self.streams.get(ssrc).and_then(|s| s.rtp);
        let accepted = |index: u64| -> Result<Option<u64>, SrtpError> {
            if let Some(window) = &window {
                window
                    .check(index)
                    .map_err(|why| replay_error(window, ssrc, index, why))?;
            }
            Ok(Some(index).filter(|&i| authenticated(i)))
        };
        let (index, source) = match (carried, window) {
            // RCCm1/RCCm2: the carried ROC, under the MAC it came with.
            (Some(roc), _) if tag.mac > 0 => (
                accepted(u64::from(roc) << 16 | u64::from(seq))?,
                Some(RocSource::Carried),
            ),
            // A known stream follows its own ROC (RCCm3's unauthenticated
            // ROC included, once the stream is synchronized).
            (_, Some(window)) => {
                let index = estimate_index(window.highest(), seq)
                    .map_err(|why| replay_error(&window, ssrc, u64::from(seq), why))?;
                (accepted(index)?, None)
            }
            // RCCm3 on a new stream: the ROC as carried, nothing to verify.
            (Some(roc), None) => (
                Some(u64::from(roc) << 16 | u64::from(seq)),
                Some(RocSource::Carried),
            ),
            // RFC 4771 on a new stream, before its first RCC packet: ROC 0 as
            // RFC 3711 §3.3.1 starts, if the packet's own tag confirms it
            // (RCCm2); otherwise the ROC is not known yet.
            (None, None) if self.config.roc != RocTransmission::None => {
                let at_zero = u64::from(seq);
                if tag.mac == 0 || !authenticated(at_zero) {
                    return Err(SrtpError::AwaitingRoc { ssrc });
                }
                (Some(at_zero), Some(RocSource::Zero))
            }
            // Plain RFC 3711: ROC 0, unless a search for a late join is enabled.
            (None, None) => {
                let found = (0..=u64::from(self.max_initial_roc))
                    .map(|roc| roc << 16 | u64::from(seq))
                    .find(|&i| authenticated(i));
                let source = if found.is_some_and(|i| i >> 16 > 0) {
                    RocSource::Searched
                } else {
                    RocSource::Zero
                };
                (found, Some(source))
            }
        };
        let Some(index) = index else {
            return Err(SrtpError::AuthenticationFailed { ssrc });
        };

        let stream = self.streams.get_or_insert(ssrc)?;
        if stream.roc_source.is_none() {
            stream.roc_source = source;
        }
        key.rtp
            .apply_keystream(ssrc, index, &mut buf[header_len..rtp_len]);
        Window::record_into(&mut stream.rtp, index);
        Ok(Unprotected {
            rtp_len,
            index,
            carried_roc: carried.is_some(),
        })
    }
}

/// The receiver's error for an index the window refused (RFC 3711 §3.3.2).
pub(super) fn replay_error(window: &Window, ssrc: u32, index: u64, why: Rejection) -> SrtpError {
    match why {
        Rejection::Seen => SrtpError::Replayed { ssrc, index },
        Rejection::TooOld => SrtpError::TooOld {
            ssrc,
            index,
            highest: window.highest(),
        },
        Rejection::Exhausted => SrtpError::IndexExhausted { ssrc },
    }
}
