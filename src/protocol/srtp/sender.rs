//! The protecting side (RFC 3711 §3.3): the gateway forwards the encoder's RTP
//! and protects each packet in place under the active master key.

use super::index::{Rejection, Window, estimate_index};
use super::keyring::{KeyRing, MasterKey, MkiBytes};
use super::rtp::RtpHeader;
use super::streams::Streams;
use super::{ROC_LEN, SrtpConfig, SrtpError, protected_len};
use crate::protocol::keys::Mtk;

/// Per-SSRC sending state. It does not depend on the master key, so the packet
/// index runs on across MTK switches (wire reference §4.2).
#[derive(Debug, Default)]
pub(super) struct SenderStream {
    /// Indexes already protected; `None` before the first packet.
    pub(super) rtp: Option<Window>,
    /// The next SRTCP index (RFC 3711 §3.4: starts at zero).
    pub(super) rtcp_next: u64,
}

/// SRTP/SRTCP protection for one session.
///
/// ROC tracking follows the incoming SEQ (RFC 3711 §3.3.1, starting at ROC 0),
/// and every (SSRC, index) is protected at most once, whatever the master key:
/// a repeated or out-of-window index is refused with
/// [`SrtpError::IndexReused`] / [`SrtpError::IndexBehindWindow`], never sent.
#[derive(Debug)]
pub struct SrtpSender {
    pub(super) config: SrtpConfig,
    pub(super) keys: KeyRing,
    /// Key-ring slot of the key protecting new packets.
    active: Option<usize>,
    pub(super) streams: Streams<SenderStream>,
}

impl SrtpSender {
    pub fn new(config: SrtpConfig) -> Result<Self, SrtpError> {
        config.validate()?;
        Ok(Self {
            config,
            keys: KeyRing::new(config.mki_len),
            active: None,
            streams: Streams::new(config.max_streams),
        })
    }

    pub fn config(&self) -> &SrtpConfig {
        &self.config
    }

    /// Installs a master key (an MTK) under `mki`, deriving its session keys now
    /// so the switch to it costs nothing on the packet path.
    pub fn add_master_key(&mut self, mki: &[u8], mtk: &Mtk) -> Result<(), SrtpError> {
        self.keys.add(mki, mtk)
    }

    /// Retires a master key. The active key cannot be retired: switch first.
    pub fn remove_master_key(&mut self, mki: &[u8]) -> Result<(), SrtpError> {
        let active = self.active_key();
        if let Some(active) = active.filter(|a| a.as_bytes() == mki) {
            return Err(SrtpError::ActiveKeyRemoval(active));
        }
        self.keys.remove(mki)?;
        // Removal may move the active key to another slot.
        self.active = active.and_then(|a| self.keys.position(a.as_bytes()).ok());
        Ok(())
    }

    /// Protects every following packet under the installed key named `mki`.
    pub fn set_active_key(&mut self, mki: &[u8]) -> Result<(), SrtpError> {
        self.active = Some(self.keys.position(mki)?);
        Ok(())
    }

    pub fn active_key(&self) -> Option<MkiBytes> {
        Some(self.keys.at(self.active?)?.mki)
    }

    /// The MKIs of the installed master keys.
    pub fn master_keys(&self) -> impl Iterator<Item = MkiBytes> + '_ {
        self.keys.mkis()
    }

    /// The highest SRTP packet index protected for `ssrc` (ROC·2^16 + SEQ).
    pub fn highest_index(&self, ssrc: u32) -> Option<u64> {
        self.streams.get(ssrc)?.rtp.map(|w| w.highest())
    }

    /// The active key and the state of `ssrc`, borrowed together.
    pub(super) fn key_and_stream(
        &mut self,
        ssrc: u32,
    ) -> Result<(&MasterKey, &mut SenderStream), SrtpError> {
        let key = self
            .active
            .and_then(|pos| self.keys.at(pos))
            .ok_or(SrtpError::NoActiveKey)?;
        Ok((key, self.streams.get_or_insert(ssrc)?))
    }

    /// Protects the RTP packet in `buf[..rtp_len]` in place: encrypts the
    /// payload, appends the MKI and the tag (RFC 3711 §3.1; on the packets
    /// that carry it, the tag leads with the ROC, RFC 4771), and returns
    /// the SRTP length. `buf` needs [`SrtpConfig::rtp_overhead`] spare bytes.
    pub fn protect(&mut self, buf: &mut [u8], rtp_len: usize) -> Result<usize, SrtpError> {
        let rtp = buf.get(..rtp_len).ok_or(SrtpError::BufferTooSmall {
            needed: rtp_len.saturating_add(self.config.rtp_overhead()),
            available: buf.len(),
        })?;
        let (header, header_len) = RtpHeader::parse(rtp).map_err(SrtpError::MalformedRtp)?;
        let ssrc = header.ssrc;
        let seq = header.sequence_number;
        let tag = self.config.rtp_tag(seq);
        let srtp_len = protected_len(buf, rtp_len, self.config.mki_len + tag.len())?;
        let mki_end = rtp_len + self.config.mki_len;
        let (key, stream) = self.key_and_stream(ssrc)?;
        let index = match &stream.rtp {
            None => u64::from(seq),
            Some(window) => next_index(window, ssrc, seq)?,
        };

        key.rtp
            .apply_keystream(ssrc, index, &mut buf[header_len..rtp_len]);
        let roc = ((index >> 16) as u32).to_be_bytes();
        let mac_at = if tag.roc { mki_end + ROC_LEN } else { mki_end };
        if tag.mac > 0 {
            let mac = key.rtp.mac(&[&buf[..rtp_len], &roc]);
            buf[mac_at..srtp_len].copy_from_slice(&mac[..tag.mac]);
        }
        buf[rtp_len..mki_end].copy_from_slice(key.mki.as_bytes());
        buf[mki_end..mac_at].copy_from_slice(&roc[..mac_at - mki_end]);

        Window::record_into(&mut stream.rtp, index);
        Ok(srtp_len)
    }
}

/// The index of the sender's next packet, refused if it was used or fell behind.
fn next_index(window: &Window, ssrc: u32, seq: u16) -> Result<u64, SrtpError> {
    let refuse = |index: u64, why: Rejection| match why {
        Rejection::Seen => SrtpError::IndexReused { ssrc, index },
        Rejection::TooOld => SrtpError::IndexBehindWindow {
            ssrc,
            index,
            highest: window.highest(),
        },
        Rejection::Exhausted => SrtpError::IndexExhausted { ssrc },
    };
    let index = estimate_index(window.highest(), seq).map_err(|why| refuse(u64::from(seq), why))?;
    window.check(index).map_err(|why| refuse(index, why))?;
    Ok(index)
}
