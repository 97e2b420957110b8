//! The unprotecting side (RFC 3711 §3.3): what a UE, or the gateway's probe,
//! does with each SRTP packet. Master keys are added as MIKEY MTK messages
//! arrive and picked per packet by the MKI.

use super::index::{Rejection, Window, estimate_index};
use super::keyring::{KeyRing, MkiBytes};
use super::rtp::RtpHeader;
use super::streams::Streams;
use super::{SrtpConfig, SrtpError};
use crate::protocol::keys::Mtk;

/// Per-SSRC receiving state: replay windows for SRTP and SRTCP. Created only
/// for a packet that authenticated, so forged packets cannot fill the table.
#[derive(Debug, Default)]
pub(super) struct ReceiverStream {
    pub(super) rtp: Option<Window>,
    pub(super) rtcp: Option<Window>,
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
    /// `max_roc`, not only 0. MBMS has no receiver feedback (RTCP RR is off,
    /// TS 26.346 §8.2), so a UE joining after the sender's SEQ wrapped cannot
    /// learn the ROC otherwise (wire reference §4.2). The tag is the oracle:
    /// a new stream costs up to `max_roc + 1` HMACs per packet until one
    /// authenticates, and with the 32-bit tag a forgery's chance grows by the
    /// same factor, so keep the bound to what the session's age requires.
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

    /// Authenticates and decrypts the SRTP packet filling `buf`, in place.
    /// Returns the length of the RTP packet now at the start of `buf`.
    pub fn unprotect(&mut self, buf: &mut [u8]) -> Result<usize, SrtpError> {
        let tag_len = self.config.tag.size();
        let trailer = self.config.rtp_overhead();
        let rtp_len = buf
            .len()
            .checked_sub(trailer)
            .ok_or(SrtpError::PacketTooShort {
                len: buf.len(),
                needed: trailer,
            })?;
        let (header, header_len) =
            RtpHeader::parse(&buf[..rtp_len]).map_err(SrtpError::MalformedRtp)?;
        let ssrc = header.ssrc;
        let seq = header.sequence_number;
        let mki_end = buf.len() - tag_len;
        let key = self.keys.get(&buf[rtp_len..mki_end])?;

        let authenticated = |index: u64| {
            let roc = ((index >> 16) as u32).to_be_bytes();
            key.rtp.verify(&[&buf[..rtp_len], &roc], &buf[mki_end..])
        };
        let index = match self.streams.get(ssrc).and_then(|s| s.rtp) {
            Some(window) => {
                let refuse = |index, why| replay_error(&window, ssrc, index, why);
                let index = estimate_index(window.highest(), seq)
                    .map_err(|why| refuse(u64::from(seq), why))?;
                window.check(index).map_err(|why| refuse(index, why))?;
                Some(index).filter(|&i| authenticated(i))
            }
            // A new stream: ROC 0 unless a search for a late join is enabled.
            None => (0..=u64::from(self.max_initial_roc))
                .map(|roc| roc << 16 | u64::from(seq))
                .find(|&i| authenticated(i)),
        };
        let Some(index) = index else {
            return Err(SrtpError::AuthenticationFailed { ssrc });
        };

        let stream = self.streams.get_or_insert(ssrc)?;
        key.rtp
            .apply_keystream(ssrc, index, &mut buf[header_len..rtp_len]);
        Window::record_into(&mut stream.rtp, index);
        Ok(rtp_len)
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
