//! The probe's SRTP side (RFC 3711 §3.3): one receiver per port, keys
//! installed as MTK messages are accepted, packets with a not-yet-known MKI
//! held for a while (MIKEY and SRTP arrive on different sockets, so an MTK
//! message may come after the first packets under its MTK), and per-SSRC
//! accounting of loss, MTK switches and synthetic payloads.

use super::report::{SrtpStats, StreamStats};
use crate::protocol::keys::{Mki, Mtk};
use crate::protocol::srtp::{
    MAX_MASTER_KEYS, RocTransmission, RtpHeader, SrtpConfig, SrtpError, SrtpReceiver, Unprotected,
};
use crate::runtime::synthetic::{looks_synthetic, verify_synthetic_payload};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::{Duration, Instant};

/// Consecutive failures (authentication or replay) after which an SSRC's state
/// is dropped, so a sender that restarted its sequence numbers is picked up
/// again. A probe is a monitor: re-learning a stream matters more to it than
/// refusing eight replays in a row.
pub const RESET_AFTER_FAILURES: u32 = 8;
/// Most packets held for an unknown MKI at once.
pub const MAX_HELD_PACKETS: usize = 1024;
/// Most SSRCs with failure counts tracked per port.
const MAX_FAILING_SSRCS: usize = 256;

/// A packet waiting for its MTK.
struct Held {
    since: Instant,
    port_index: usize,
    packet: Vec<u8>,
}

struct PortReceiver {
    port: u16,
    receiver: SrtpReceiver,
    consecutive_failures: HashMap<u32, u32>,
}

/// Sequence tracking of one SSRC: extended SEQs of the current run of the
/// sender, and the loss of earlier runs (before a reset).
#[derive(Default)]
struct Track {
    run: Option<Run>,
    last_decrypted: Option<Instant>,
    lost_before: u64,
    mkis: Vec<[u8; Mki::LEN]>,
    stats: StreamStats,
}

#[derive(Clone, Copy)]
struct Run {
    lowest: u64,
    highest: u64,
    received: u64,
}

impl Run {
    fn lost(&self) -> u64 {
        (self.highest - self.lowest + 1).saturating_sub(self.received)
    }
}

impl Track {
    /// Records SEQ `seq`, extended next to the highest seen (RFC 3550 A.1):
    /// within ±2^15 of it, so wraps in either direction are followed.
    fn record_seq(&mut self, seq: u16) {
        let run = match self.run {
            // Start high enough that a reordered earlier SEQ stays positive.
            None => Run {
                lowest: (1 << 16) + u64::from(seq),
                highest: (1 << 16) + u64::from(seq),
                received: 1,
            },
            Some(mut run) => {
                let delta = i64::from(seq.wrapping_sub(run.highest as u16) as i16);
                let ext = run.highest.saturating_add_signed(delta);
                run.lowest = run.lowest.min(ext);
                run.highest = run.highest.max(ext);
                run.received += 1;
                run
            }
        };
        self.run = Some(run);
        self.stats.lost = self.lost_before + run.lost();
    }

    /// Ends the current run of the sender (its SSRC state was dropped).
    fn reset(&mut self) {
        if let Some(run) = self.run.take() {
            self.lost_before += run.lost();
        }
    }
}

/// SRTP reception on all the session's ports.
pub(super) struct SrtpSide {
    config: SrtpConfig,
    ports: Vec<PortReceiver>,
    installed: VecDeque<[u8; Mki::LEN]>,
    held: VecDeque<Held>,
    hold: Duration,
    tracks: BTreeMap<(u16, u32), Track>,
    pub(super) stats: SrtpStats,
}

impl SrtpSide {
    pub(super) fn new(
        ports: &[u16],
        hold: Duration,
        roc: RocTransmission,
        max_initial_roc: u32,
    ) -> Result<Self, SrtpError> {
        let config = SrtpConfig {
            roc,
            ..SrtpConfig::mbms()
        };
        let ports = ports
            .iter()
            .map(|&port| {
                let mut receiver = SrtpReceiver::new(config)?;
                receiver.set_max_initial_roc(max_initial_roc);
                Ok(PortReceiver {
                    port,
                    receiver,
                    consecutive_failures: HashMap::new(),
                })
            })
            .collect::<Result<_, SrtpError>>()?;
        Ok(Self {
            config,
            ports,
            installed: VecDeque::with_capacity(MAX_MASTER_KEYS),
            held: VecDeque::new(),
            hold,
            tracks: BTreeMap::new(),
            stats: SrtpStats::default(),
        })
    }

    /// Installs an MTK on every port, retiring the oldest when the ring is
    /// full, then retries the packets held for it.
    pub(super) fn install(&mut self, mki: [u8; Mki::LEN], mtk: &Mtk, now: Instant) {
        if self.installed.contains(&mki) {
            return;
        }
        if self.installed.len() >= MAX_MASTER_KEYS
            && let Some(oldest) = self.installed.pop_front()
        {
            for port in &mut self.ports {
                port.receiver.remove_master_key(&oldest).ok();
            }
        }
        for port in &mut self.ports {
            if let Err(e) = port.receiver.add_master_key(&mki, mtk) {
                tracing::warn!(error = %e, port = port.port, "installing an MTK failed");
            }
        }
        self.installed.push_back(mki);
        self.expire(now);
        let waiting = std::mem::take(&mut self.held);
        for held in waiting {
            if self.config.mki_of(&held.packet) == Some(&mki[..]) {
                let mut packet = held.packet;
                if self.unprotect(held.port_index, &mut packet, now, true) {
                    self.stats.held_then_decrypted += 1;
                }
            } else {
                self.held.push_back(held);
            }
        }
    }

    /// Counts as unknown-MKI the held packets whose time ran out.
    pub(super) fn expire(&mut self, now: Instant) {
        while let Some(front) = self.held.front() {
            if now.duration_since(front.since) < self.hold {
                break;
            }
            self.held.pop_front();
            self.stats.unknown_mki += 1;
        }
    }

    /// Processes one datagram received on `self.ports[port_index]`.
    pub(super) fn receive(&mut self, port_index: usize, packet: &mut [u8], now: Instant) {
        self.stats.received += 1;
        self.unprotect(port_index, packet, now, false);
    }

    /// Unprotects and accounts one packet; true when it decrypted.
    fn unprotect(
        &mut self,
        port_index: usize,
        packet: &mut [u8],
        now: Instant,
        retry: bool,
    ) -> bool {
        let Some(port) = self.ports.get_mut(port_index) else {
            return false;
        };
        let mut result = port.receiver.unprotect_packet(packet);
        if matches!(result, Err(SrtpError::TooManyStreams { .. })) {
            // Senders that restarted under new SSRCs left their state behind:
            // make room by dropping the SSRC silent for longest, then retry.
            let stalest = self
                .tracks
                .iter()
                .filter(|((p, _), t)| *p == port.port && t.run.is_some())
                .min_by_key(|(_, t)| t.last_decrypted)
                .map(|(&key, _)| key);
            if let Some(key) = stalest {
                port.receiver.forget_stream(key.1);
                self.stats.stream_resets += 1;
                if let Some(track) = self.tracks.get_mut(&key) {
                    track.reset();
                }
                result = port.receiver.unprotect_packet(packet);
            }
        }
        let ssrc = match result {
            Ok(unprotected) => {
                let ssrc = rtp_ssrc(packet);
                port.consecutive_failures.remove(&ssrc);
                let roc_learned = port.receiver.roc_source(ssrc).map(|s| s.name());
                let port = port.port;
                self.decrypted(port, packet, unprotected, roc_learned, now);
                return true;
            }
            Err(SrtpError::AwaitingRoc { .. }) => {
                self.stats.awaiting_roc += 1;
                return false;
            }
            Err(SrtpError::UnknownMki(_)) if !retry && !self.hold.is_zero() => {
                if self.held.len() < MAX_HELD_PACKETS {
                    self.held.push_back(Held {
                        since: now,
                        port_index,
                        packet: packet.to_vec(),
                    });
                } else {
                    self.stats.unknown_mki += 1;
                }
                return false;
            }
            Err(SrtpError::UnknownMki(_)) => {
                self.stats.unknown_mki += 1;
                return false;
            }
            Err(SrtpError::AuthenticationFailed { ssrc }) => {
                self.stats.auth_failures += 1;
                ssrc
            }
            Err(SrtpError::Replayed { ssrc, .. } | SrtpError::TooOld { ssrc, .. }) => {
                self.stats.replayed += 1;
                ssrc
            }
            Err(e) => {
                self.stats.malformed += 1;
                tracing::debug!(error = %e, port = port.port, "SRTP packet dropped");
                return false;
            }
        };
        if port.consecutive_failures.len() >= MAX_FAILING_SSRCS {
            port.consecutive_failures.clear();
        }
        let failures = port.consecutive_failures.entry(ssrc).or_default();
        *failures += 1;
        if *failures >= RESET_AFTER_FAILURES {
            port.consecutive_failures.remove(&ssrc);
            port.receiver.forget_stream(ssrc);
            self.stats.stream_resets += 1;
            if let Some(track) = self.tracks.get_mut(&(port.port, ssrc)) {
                track.reset();
            }
            tracing::info!(
                port = port.port,
                ssrc,
                "SSRC state dropped after repeated failures"
            );
        }
        false
    }

    fn decrypted(
        &mut self,
        port: u16,
        packet: &[u8],
        unprotected: Unprotected,
        roc_learned: Option<&'static str>,
        now: Instant,
    ) {
        let rtp_len = unprotected.rtp_len;
        self.stats.decrypted += 1;
        self.stats.decrypted_bytes += rtp_len as u64;
        let Ok((header, header_len)) = RtpHeader::parse(&packet[..rtp_len]) else {
            return; // unprotect parsed it already
        };
        let track = self.tracks.entry((port, header.ssrc)).or_default();
        track.last_decrypted = Some(now);
        track.stats.port = port;
        track.stats.ssrc = header.ssrc;
        track.stats.packets += 1;
        track.stats.bytes += rtp_len as u64;
        track.stats.rcc_packets += u64::from(unprotected.carried_roc);
        track.stats.roc_learned = roc_learned;
        track.stats.first_seq.get_or_insert(header.sequence_number);
        track.stats.highest_index = track.stats.highest_index.max(Some(unprotected.index));
        track.record_seq(header.sequence_number);
        let mki_len = self.config.mki_len;
        if let Some(mki) = packet
            .get(rtp_len..rtp_len + mki_len)
            .and_then(|m| <[u8; Mki::LEN]>::try_from(m).ok())
            && !track.mkis.contains(&mki)
        {
            if !track.mkis.is_empty() {
                track.stats.mtk_switches += 1;
            }
            track.mkis.push(mki);
            track.stats.mkis.push(hex::encode(mki));
        }
        let payload = &packet[header_len..rtp_len];
        if looks_synthetic(payload) {
            track.stats.payloads_checked += 1;
            if verify_synthetic_payload(payload).is_err() {
                track.stats.payload_errors += 1;
            }
        }
    }

    pub(super) fn streams(&self) -> Vec<StreamStats> {
        self.tracks.values().map(|t| t.stats.clone()).collect()
    }
}

/// The SSRC of an RTP/SRTP packet (bytes 8..12, in clear).
fn rtp_ssrc(packet: &[u8]) -> u32 {
    packet
        .get(8..12)
        .and_then(|b| <[u8; 4]>::try_from(b).ok())
        .map_or(0, u32::from_be_bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loss_follows_wraps_and_reordering() {
        let mut track = Track::default();
        for seq in [65534u16, 65535, 1, 0, 3] {
            track.record_seq(seq);
        }
        // 65534..=3 is 6 numbers; 2 is missing.
        assert_eq!(track.stats.lost, 1);
        track.reset();
        for seq in [10u16, 12] {
            track.record_seq(seq);
        }
        assert_eq!(track.stats.lost, 2, "one lost per run");
    }
}
