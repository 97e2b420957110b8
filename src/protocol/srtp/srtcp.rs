//! SRTCP (RFC 3711 §3.4): the first 8 bytes of the compound packet stay in
//! clear, the rest is encrypted under the SRTCP session keys (labels 3, 4, 5),
//! then `E ‖ SRTCP index (31 bits)`, the MKI and an 80-bit tag follow. The tag
//! covers the packet and the E ‖ index word, not the MKI.

use super::index::{MAX_SRTCP_INDEX, Window};
use super::receiver::{SrtpReceiver, replay_error};
use super::rtp::RtcpHeader;
use super::sender::SrtpSender;
use super::{SRTCP_TAG, SrtpError, protected_len};
use crate::protocol::codec::{Codec, Reader};

/// E flag: the packet's payload is encrypted.
const ENCRYPTED: u32 = 1 << 31;
/// Length of the E ‖ SRTCP index word.
const INDEX_WORD: usize = 4;

fn rtcp_ssrc(packet: &[u8]) -> Result<u32, SrtpError> {
    let mut r = Reader::new(packet);
    let header = RtcpHeader::read(&mut r).map_err(SrtpError::MalformedRtcp)?;
    Ok(header.ssrc)
}

impl SrtpSender {
    /// Protects the (compound) RTCP packet in `buf[..rtcp_len]` in place and
    /// returns the SRTCP length; `buf` needs [`super::SrtpConfig::rtcp_overhead`]
    /// spare bytes. Each SSRC has its own SRTCP index, from 0 up (RFC 3711
    /// §3.4); it is never reused, so after 2^31 packets the SSRC is refused.
    pub fn protect_rtcp(&mut self, buf: &mut [u8], rtcp_len: usize) -> Result<usize, SrtpError> {
        let srtcp_len = protected_len(buf, rtcp_len, self.config.rtcp_overhead())?;
        let ssrc = rtcp_ssrc(&buf[..rtcp_len])?;
        let word_end = rtcp_len + INDEX_WORD;
        let mki_end = word_end + self.config.mki_len;
        let (key, stream) = self.key_and_stream(ssrc)?;
        let index = stream.rtcp_next;
        if index > MAX_SRTCP_INDEX {
            return Err(SrtpError::IndexExhausted { ssrc });
        }

        key.rtcp
            .apply_keystream(ssrc, index, &mut buf[RtcpHeader::LEN..rtcp_len]);
        buf[rtcp_len..word_end].copy_from_slice(&(ENCRYPTED | index as u32).to_be_bytes());
        let tag = key.rtcp.mac(&[&buf[..word_end]]);
        buf[word_end..mki_end].copy_from_slice(key.mki.as_bytes());
        buf[mki_end..srtcp_len].copy_from_slice(&tag[..SRTCP_TAG.size()]);
        stream.rtcp_next = index + 1;
        Ok(srtcp_len)
    }
}

impl SrtpReceiver {
    /// Authenticates and, when its E flag is set, decrypts the SRTCP packet
    /// filling `buf`, in place. Returns the length of the RTCP packet.
    pub fn unprotect_rtcp(&mut self, buf: &mut [u8]) -> Result<usize, SrtpError> {
        let trailer = self.config.rtcp_overhead();
        let rtcp_len = buf
            .len()
            .checked_sub(trailer)
            .ok_or(SrtpError::PacketTooShort {
                len: buf.len(),
                needed: RtcpHeader::LEN + trailer,
            })?;
        let ssrc = rtcp_ssrc(&buf[..rtcp_len])?;
        let word_end = rtcp_len + INDEX_WORD;
        let mki_end = word_end + self.config.mki_len;
        let word = Reader::new(&buf[rtcp_len..word_end])
            .u32("SRTCP E/index")
            .map_err(SrtpError::MalformedRtcp)?;
        let index = u64::from(word & !ENCRYPTED);
        let key = self.keys.get(&buf[word_end..mki_end])?;

        if let Some(window) = self.streams.get(ssrc).and_then(|s| s.rtcp) {
            window
                .check(index)
                .map_err(|why| replay_error(&window, ssrc, index, why))?;
        }
        if !key.rtcp.verify(&[&buf[..word_end]], &buf[mki_end..]) {
            return Err(SrtpError::AuthenticationFailed { ssrc });
        }

        let stream = self.streams.get_or_insert(ssrc)?;
        if word & ENCRYPTED != 0 {
            key.rtcp
                .apply_keystream(ssrc, index, &mut buf[RtcpHeader::LEN..rtcp_len]);
        }
        Window::record_into(&mut stream.rtcp, index);
        Ok(rtcp_len)
    }
}
