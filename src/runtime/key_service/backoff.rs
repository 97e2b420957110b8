//! Reconnect delays: exponential backoff with full jitter (the delay is drawn
//! uniformly from [0, min(cap, initial · 2^attempt)]), so a fleet of gateways that
//! lost the same BM-SC does not reconnect in lockstep.

use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    pub initial: Duration,
    pub max: Duration,
}

impl Backoff {
    /// Upper bound of the delay before reconnect attempt `attempt` (0-based).
    pub fn ceiling(&self, attempt: u32) -> Duration {
        let factor = 1u32.checked_shl(attempt.min(31)).unwrap_or(u32::MAX);
        self.initial.saturating_mul(factor).min(self.max)
    }

    /// The delay for `attempt`, given a uniform random value `unit` in [0, 1].
    pub fn delay(&self, attempt: u32, unit: f64) -> Duration {
        self.ceiling(attempt).mul_f64(unit.clamp(0.0, 1.0))
    }
}

/// A uniform value in [0, 1] from the OS random source (0.5 if it is unavailable:
/// jitter is a courtesy, not a security property).
pub fn random_unit() -> f64 {
    let mut bytes = [0u8; 4];
    match getrandom::fill(&mut bytes) {
        Ok(()) => f64::from(u32::from_le_bytes(bytes)) / f64::from(u32::MAX),
        Err(_) => 0.5,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const B: Backoff = Backoff {
        initial: Duration::from_millis(200),
        max: Duration::from_secs(10),
    };

    #[test]
    fn ceiling_doubles_then_caps() {
        let ms: Vec<u128> = (0..8).map(|a| B.ceiling(a).as_millis()).collect();
        assert_eq!(ms, [200, 400, 800, 1600, 3200, 6400, 10_000, 10_000]);
        assert_eq!(B.ceiling(u32::MAX), Duration::from_secs(10));
    }

    #[test]
    fn jitter_spans_zero_to_ceiling() {
        assert_eq!(B.delay(3, 0.0), Duration::ZERO);
        assert_eq!(B.delay(3, 1.0), Duration::from_millis(1600));
        assert_eq!(B.delay(3, 0.5), Duration::from_millis(800));
        assert_eq!(B.delay(3, 7.0), Duration::from_millis(1600), "clamped");
        let u = random_unit();
        assert!((0.0..=1.0).contains(&u));
    }
}
