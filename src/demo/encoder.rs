//! A synthetic encoder: the [`synthetic`](crate::runtime::synthetic) test
//! signal as RTP at a fixed packet rate, on its own thread, for labs, the
//! demo and tests.

use crate::runtime::synthetic::{
    MP2T_CLOCK_HZ, PAYLOAD_TYPE_MP2T, SYNTHETIC_RTP_LEN, SyntheticPacket, build_synthetic_rtp,
};
use crate::runtime::udp::{EgressOptions, egress_socket};
use anyhow::{Context, Result};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// A synthetic encoder run. Unset SSRC, sequence number and timestamp are
/// random, as RFC 3550 §5.1 asks; set them to model a restarted encoder (same
/// SSRC with the sequence number jumping back, or a new SSRC).
#[derive(Debug, Clone)]
pub struct EncoderConfig {
    pub dest: SocketAddr,
    /// Packets per second (> 0).
    pub rate_pps: u32,
    /// Stop after this many packets (`None`: until stopped or `duration`).
    pub packets: Option<u64>,
    /// Stop after this long (`None`: until stopped or `packets`).
    pub duration: Option<Duration>,
    pub ssrc: Option<u32>,
    pub initial_seq: Option<u16>,
    pub initial_timestamp: Option<u32>,
    /// Counter embedded in the first payload.
    pub initial_counter: u64,
    pub payload_type: u8,
    /// Local address to send from (IPv4: also the multicast interface).
    pub interface: Option<IpAddr>,
    /// Multicast TTL / hop limit.
    pub ttl: u32,
}

impl EncoderConfig {
    /// MP2T at `rate_pps` to `dest`, random SSRC / SEQ / timestamp, TTL 1.
    pub fn new(dest: SocketAddr, rate_pps: u32) -> Self {
        Self {
            dest,
            rate_pps,
            packets: None,
            duration: None,
            ssrc: None,
            initial_seq: None,
            initial_timestamp: None,
            initial_counter: 0,
            payload_type: PAYLOAD_TYPE_MP2T,
            interface: None,
            ttl: 1,
        }
    }
}

/// What an encoder run sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct EncoderStats {
    pub ssrc: u32,
    pub first_seq: u16,
    pub packets_sent: u64,
    pub bytes_sent: u64,
    pub send_errors: u64,
}

/// A running encoder thread.
pub struct EncoderHandle {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<EncoderStats>,
}

impl EncoderHandle {
    /// Asks the encoder to stop and waits for it.
    pub fn stop(self) -> EncoderStats {
        self.stop.store(true, Ordering::Relaxed);
        self.join()
    }

    /// Waits until the encoder ends by itself (packet count or duration).
    pub fn join(self) -> EncoderStats {
        self.thread.join().expect("encoder thread does not panic")
    }

    pub fn is_finished(&self) -> bool {
        self.thread.is_finished()
    }
}

/// Starts an encoder on its own thread.
pub fn start_encoder(config: EncoderConfig) -> Result<EncoderHandle> {
    anyhow::ensure!(
        config.rate_pps > 0,
        "encoder rate must be above 0 packets/s"
    );
    let socket = egress_socket(
        config.dest.is_ipv6(),
        &EgressOptions {
            interface: config.interface,
            interface_index: 0,
            ttl: config.ttl,
            dscp: 0,
        },
    )
    .context("encoder socket")?;
    let stop = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&stop);
    let thread = std::thread::Builder::new()
        .name("synthetic-encoder".into())
        .spawn(move || run(&config, &socket, &flag))
        .context("spawning the encoder thread")?;
    Ok(EncoderHandle { stop, thread })
}

fn run(config: &EncoderConfig, socket: &std::net::UdpSocket, stop: &AtomicBool) -> EncoderStats {
    let mut packet = SyntheticPacket {
        ssrc: config.ssrc.unwrap_or_else(rand::random),
        sequence_number: config.initial_seq.unwrap_or_else(rand::random),
        timestamp: config.initial_timestamp.unwrap_or_else(rand::random),
        payload_type: config.payload_type,
        counter: config.initial_counter,
    };
    let mut stats = EncoderStats {
        ssrc: packet.ssrc,
        first_seq: packet.sequence_number,
        packets_sent: 0,
        bytes_sent: 0,
        send_errors: 0,
    };
    let ticks_per_packet = (MP2T_CLOCK_HZ / u64::from(config.rate_pps)).max(1) as u32;
    let interval = Duration::from_secs(1) / config.rate_pps;
    let start = Instant::now();
    let mut buf = [0u8; SYNTHETIC_RTP_LEN];
    while !stop.load(Ordering::Relaxed)
        && config.packets.is_none_or(|n| stats.packets_sent < n)
        && config.duration.is_none_or(|d| start.elapsed() < d)
    {
        let due = start + interval * (stats.packets_sent.min(u64::from(u32::MAX)) as u32);
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        let len = build_synthetic_rtp(&packet, &mut buf);
        match socket.send_to(&buf[..len], config.dest) {
            Ok(_) => {
                stats.packets_sent += 1;
                stats.bytes_sent += len as u64;
            }
            Err(e) => {
                stats.send_errors += 1;
                tracing::debug!(error = %e, dest = %config.dest, "encoder send failed");
                // A failing send (no route yet) must not spin the thread.
                std::thread::sleep(interval);
            }
        }
        packet.sequence_number = packet.sequence_number.wrapping_add(1);
        packet.timestamp = packet.timestamp.wrapping_add(ticks_per_packet);
        packet.counter = packet.counter.wrapping_add(1);
    }
    stats
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::srtp::RtpHeader;
    use crate::runtime::synthetic::verify_synthetic_payload;

    #[test]
    fn encoder_sends_paced_counted_packets() {
        let rx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        rx.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut config = EncoderConfig::new(rx.local_addr().unwrap(), 500);
        config.packets = Some(20);
        config.ssrc = Some(0xabcd);
        config.initial_seq = Some(65530);
        config.interface = Some("127.0.0.1".parse().unwrap());
        let stats = start_encoder(config).unwrap().join();
        assert_eq!(stats.packets_sent, 20);
        assert_eq!((stats.ssrc, stats.first_seq), (0xabcd, 65530));
        let mut buf = [0u8; 2048];
        for i in 0..20u64 {
            let n = rx.recv(&mut buf).unwrap();
            let (header, len) = RtpHeader::parse(&buf[..n]).unwrap();
            assert_eq!(header.sequence_number, 65530u16.wrapping_add(i as u16));
            assert_eq!(verify_synthetic_payload(&buf[len..n]), Ok(i));
        }
    }
}
