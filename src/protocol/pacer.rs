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
