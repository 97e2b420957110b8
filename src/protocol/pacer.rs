//! A token-bucket pacer: holds a session to its configured bitrate while
//! letting the sender thread hand the kernel whole GSO batches.
//!
//! Credit is kept in *nanobits* (10⁻⁹ bit) as an integer: one nanosecond at
//! `R` bit/s earns exactly `R` nanobits and one byte costs 8·10⁹. Every step
//! is exact, so a sender that follows the pacer for hours gets the configured
//! rate with no rounding drift. The bucket holds at most `burst_bytes`; that is
//! the largest burst the wire ever sees (a GSO batch leaves back to back).
//!
//! Sans-IO: `now` comes in on every call; nothing reads a clock.

use std::time::{Duration, Instant};

use thiserror::Error;

/// Nanobits per byte: the cost of one byte in credit units.
const NANOBITS_PER_BYTE: u128 = 8 * 1_000_000_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum PacerError {
    #[error("pacing rate must be at least 1 bit/s")]
    ZeroRate,
    #[error("pacing burst must be at least 1 byte")]
    ZeroBurst,
}

#[derive(Debug, Clone)]
pub struct Pacer {
    rate_bits_per_s: u64,
    burst_bytes: u64,
    /// Bucket capacity in nanobits.
    capacity: u128,
    /// Credit at `updated`, in nanobits. Negative after a packet larger
    /// than the burst was let through on a full bucket.
    credit: i128,
    updated: Instant,
}

impl Pacer {
    /// A pacer at `rate_bits_per_s` that allows bursts of `burst_bytes`. The
    /// bucket starts full at `now`.
    pub fn new(rate_bits_per_s: u64, burst_bytes: u64, now: Instant) -> Result<Self, PacerError> {
        if rate_bits_per_s == 0 {
            return Err(PacerError::ZeroRate);
        }
        if burst_bytes == 0 {
            return Err(PacerError::ZeroBurst);
        }
        let capacity = u128::from(burst_bytes) * NANOBITS_PER_BYTE;
        Ok(Self {
            rate_bits_per_s,
            burst_bytes,
            capacity,
            credit: capacity as i128,
            updated: now,
        })
    }

    pub fn rate_bits_per_s(&self) -> u64 {
        self.rate_bits_per_s
    }

    pub fn burst_bytes(&self) -> u64 {
        self.burst_bytes
    }

    /// Changes the rate from `now` on; credit earned so far is kept.
    pub fn set_rate(&mut self, rate_bits_per_s: u64, now: Instant) -> Result<(), PacerError> {
        if rate_bits_per_s == 0 {
            return Err(PacerError::ZeroRate);
        }
        self.credit = self.credit_at(now);
        self.updated = self.updated.max(now);
        self.rate_bits_per_s = rate_bits_per_s;
        Ok(())
    }

    /// Bytes that may leave at `now` (0 while in debt).
    pub fn budget(&self, now: Instant) -> u64 {
        let credit = self.credit_at(now);
        if credit <= 0 {
            return 0;
        }
        // Credit never exceeds the capacity, so this fits `burst_bytes`.
        (credit as u128 / NANOBITS_PER_BYTE) as u64
    }

    /// How many packets of `packet_len` bytes may leave at `now` as one
    /// batch, at most `max_packets`. A packet larger than the burst may leave
    /// alone once the bucket is full, or it could never be sent.
    pub fn packets_due(&self, now: Instant, packet_len: usize, max_packets: usize) -> usize {
        let len = packet_len.max(1) as u64;
        let by_budget = (self.budget(now) / len) as usize;
        let oversize_alone = len > self.burst_bytes && self.credit_at(now) >= self.capacity as i128;
        by_budget.max(usize::from(oversize_alone)).min(max_packets)
    }

    /// Records that `bytes` left at `now`. Sending more than the budget puts
    /// the bucket in debt, which later sends pay back.
    pub fn consume(&mut self, now: Instant, bytes: usize) {
        let cost = bytes as i128 * NANOBITS_PER_BYTE as i128;
        self.credit = self.credit_at(now) - cost;
        self.updated = self.updated.max(now);
    }

    /// [`packets_due`](Self::packets_due) and [`consume`](Self::consume) in
    /// one step: the size of the batch to send now.
    pub fn take_batch(&mut self, now: Instant, packet_len: usize, max_packets: usize) -> usize {
        let n = self.packets_due(now, packet_len, max_packets);
        if n > 0 {
            self.consume(now, n * packet_len);
        }
        n
    }

    /// Sends one packet of `bytes` if it may leave at `now`, else says when.
    pub fn poll_send(&mut self, now: Instant, bytes: usize) -> Result<(), Instant> {
        if self.packets_due(now, bytes, 1) == 1 {
            self.consume(now, bytes);
            Ok(())
        } else {
            Err(self.next_send_at(bytes))
        }
    }

    /// The earliest instant at which a packet of `bytes` may leave (possibly
    /// in the past: then it may leave at once). Rounded up to the next
    /// nanosecond so that asking again at that instant succeeds.
    pub fn next_send_at(&self, bytes: usize) -> Instant {
        let need = (bytes as u128 * NANOBITS_PER_BYTE).min(self.capacity) as i128;
        if self.credit >= need {
            return self.updated;
        }
        let deficit = (need - self.credit) as u128;
        let nanos = deficit.div_ceil(u128::from(self.rate_bits_per_s));
        self.updated + duration_from_nanos(nanos)
    }

    /// Credit at `now`, capped at the capacity. An earlier `now` than the
    /// last update earns nothing (the bucket never runs backwards).
    fn credit_at(&self, now: Instant) -> i128 {
        let elapsed = now.saturating_duration_since(self.updated).as_nanos();
        // Enough time to refill from any debt saturates: no overflow for
        // elapsed times of centuries.
        let earned = elapsed.saturating_mul(u128::from(self.rate_bits_per_s));
        let earned = earned.min(self.capacity + self.credit.unsigned_abs()) as i128;
        (self.credit + earned).min(self.capacity as i128)
    }
}

fn duration_from_nanos(nanos: u128) -> Duration {
    const NANOS_PER_SEC: u128 = 1_000_000_000;
    let secs = u64::try_from(nanos / NANOS_PER_SEC).unwrap_or(u64::MAX);
    Duration::new(secs, (nanos % NANOS_PER_SEC) as u32)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const PACKET: usize = 1316;
    /// Packets the sender takes per wakeup: at 1316 B, the most one GSO
    /// send carries (49 segments ≤ 65 507 B).
    const BATCH_MAX: usize = 49;
    /// A 9000-byte MTU less IPv4 and UDP headers and headroom.
    const JUMBO: usize = 8948;

    /// A sender thread that sends a batch whenever one is due and
    /// otherwise sleeps exactly until the next packet may leave. Returns the
    /// bytes sent in `[start, start + span]` and the largest batch.
    fn run(rate: u64, packet: usize, burst: u64, span: Duration) -> (u128, usize) {
        let start = Instant::now();
        let end = start + span;
        let mut pacer = Pacer::new(rate, burst, start).unwrap();
        let mut now = start;
        let (mut sent, mut largest) = (0u128, 0);
        while now <= end {
            let n = pacer.take_batch(now, packet, BATCH_MAX);
            sent += (n * packet) as u128;
            largest = largest.max(n);
            let next = pacer.next_send_at(packet);
            assert!(
                n > 0 || next > now,
                "nothing due at {now:?} yet next is not later"
            );
            now = next.max(now);
        }
        (sent, largest)
    }

    #[test]
    fn long_runs_hold_the_configured_rate() {
        let span = Duration::from_secs(60);
        // 10 Gbit/s links carry jumbo frames (and it keeps the simulation short).
        for (rate, packet) in [
            (1_000_000u64, PACKET),
            (10_000_000, PACKET),
            (100_000_000, PACKET),
            (1_000_000_000, PACKET),
            (10_000_000_000, JUMBO),
        ] {
            // Burst: one full batch.
            let burst = (BATCH_MAX * packet) as u64;
            let (sent, largest) = run(rate, packet, burst, span);
            let ideal = u128::from(rate) * 60 / 8 + u128::from(burst);
            // Exact accounting: never more than earned plus the initial
            // bucket, and short of it by less than one packet.
            assert!(sent <= ideal, "rate {rate}: sent {sent} > {ideal}");
            assert!(
                sent + packet as u128 > ideal,
                "rate {rate}: sent {sent}, ideal {ideal}"
            );
            let steady = (sent - u128::from(burst)) as f64 * 8.0 / 60.0;
            let error = (steady - rate as f64).abs() / rate as f64;
            assert!(error < 0.001, "rate {rate}: measured {steady} bit/s");
            assert!(largest <= BATCH_MAX);
        }
    }

    #[test]
    fn burst_cap_limits_a_batch_after_idle() {
        let start = Instant::now();
        let mut pacer = Pacer::new(1_000_000_000, 10 * PACKET as u64, start).unwrap();
        assert_eq!(pacer.packets_due(start, PACKET, 64), 10);
        assert_eq!(pacer.take_batch(start, PACKET, 64), 10);
        assert_eq!(pacer.budget(start), 0);
        // An hour idle earns no more than the bucket holds.
        let later = start + Duration::from_secs(3600);
        assert_eq!(pacer.budget(later), 10 * PACKET as u64);
        assert_eq!(pacer.take_batch(later, PACKET, 64), 10);
        assert_eq!(pacer.take_batch(later, PACKET, 64), 0);
    }

    #[test]
    fn next_send_at_is_exact_to_the_nanosecond() {
        let start = Instant::now();
        // 1 Mbit/s: one 125-byte packet (1000 bits) per millisecond.
        let mut pacer = Pacer::new(1_000_000, 125, start).unwrap();
        assert_eq!(pacer.poll_send(start, 125), Ok(()));
        let at = pacer.next_send_at(125);
        assert_eq!(at, start + Duration::from_millis(1));
        assert_eq!(pacer.poll_send(at - Duration::from_nanos(1), 125), Err(at));
        assert_eq!(pacer.poll_send(at, 125), Ok(()));
        // 3 bit/s: a byte takes 8/3 s, rounded up to the nanosecond.
        let mut slow = Pacer::new(3, 1, start).unwrap();
        slow.consume(start, 1);
        assert_eq!(
            slow.next_send_at(1),
            start + Duration::from_nanos(2_666_666_667)
        );
    }

    #[test]
    fn oversize_packet_waits_for_a_full_bucket_then_leaves_in_debt() {
        let start = Instant::now();
        let mut pacer = Pacer::new(8_000, 100, start).unwrap(); // 1000 B/s
        assert_eq!(pacer.packets_due(start, 300, 4), 1);
        pacer.consume(start, 300);
        assert_eq!(pacer.budget(start), 0);
        // Debt of 200 B plus a full bucket of 100 B: 0.3 s.
        assert_eq!(pacer.next_send_at(300), start + Duration::from_millis(300));
        assert_eq!(
            pacer.packets_due(start + Duration::from_millis(299), 300, 4),
            0
        );
        assert_eq!(
            pacer.packets_due(start + Duration::from_millis(300), 300, 4),
            1
        );
    }

    #[test]
    fn time_going_backwards_earns_nothing() {
        let start = Instant::now() + Duration::from_secs(10);
        let mut pacer = Pacer::new(8_000, 1000, start).unwrap();
        pacer.consume(start, 1000);
        let earlier = start - Duration::from_secs(5);
        assert_eq!(pacer.budget(earlier), 0);
        pacer.consume(earlier, 0);
        assert_eq!(pacer.budget(start + Duration::from_millis(500)), 500);
    }

    #[test]
    fn set_rate_keeps_earned_credit() {
        let start = Instant::now();
        let mut pacer = Pacer::new(8_000, 10_000, start).unwrap();
        pacer.consume(start, 10_000);
        let t1 = start + Duration::from_secs(1);
        pacer.set_rate(16_000, t1).unwrap();
        assert_eq!(pacer.budget(t1), 1000);
        assert_eq!(pacer.budget(t1 + Duration::from_secs(1)), 3000);
        assert_eq!(pacer.set_rate(0, t1), Err(PacerError::ZeroRate));
    }

    #[test]
    fn zero_rate_or_burst_is_rejected() {
        let now = Instant::now();
        assert_eq!(Pacer::new(0, 1, now).unwrap_err(), PacerError::ZeroRate);
        assert_eq!(Pacer::new(1, 0, now).unwrap_err(), PacerError::ZeroBurst);
    }

    proptest! {
        /// Over any window that starts and ends on a send, the bytes sent
        /// never exceed the burst plus what the window earned.
        #[test]
        fn no_window_exceeds_burst_plus_rate(
            rate in 1_000u64..20_000_000_000,
            burst in 1u64..200_000,
            sizes in proptest::collection::vec(1usize..9000, 1..200),
        ) {
            let start = Instant::now();
            let mut pacer = Pacer::new(rate, burst, start).unwrap();
            let mut now = start;
            let mut log: Vec<(Instant, usize)> = Vec::new();
            for len in sizes {
                now = pacer.next_send_at(len).max(now);
                prop_assert_eq!(pacer.poll_send(now, len), Ok(()));
                log.push((now, len));
            }
            for i in 0..log.len() {
                let (mut bytes, mut largest) = (0u128, 0u128);
                for &(t, len) in &log[i..] {
                    bytes += len as u128;
                    largest = largest.max(len as u128);
                    let earned_bits = (t - log[i].0).as_nanos() * u128::from(rate) / 1_000_000_000;
                    let allowance = u128::from(burst).max(largest) + earned_bits / 8 + 1;
                    prop_assert!(bytes <= allowance, "{bytes} > {allowance}");
                }
            }
        }
    }
}
