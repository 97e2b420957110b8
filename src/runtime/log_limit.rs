//! Rate limiting for log lines about per-packet problems: a failing socket can
//! fail for every datagram, and a log line per packet would bury every other
//! event (and cost more than the packet). The first occurrence is logged at
//! once; later ones at most once per interval, with the count suppressed in
//! between. The counters in the metrics stay exact either way.

use std::time::{Duration, Instant};

/// Default interval between two lines about the same problem.
pub const LOG_INTERVAL: Duration = Duration::from_secs(10);

/// Decides when a repeated problem may be logged again.
#[derive(Debug)]
pub struct LogLimiter {
    interval: Duration,
    last: Option<Instant>,
    suppressed: u64,
}

impl LogLimiter {
    pub fn new(interval: Duration) -> Self {
        Self {
            interval,
            last: None,
            suppressed: 0,
        }
    }

    /// One more occurrence at `now`: `Some(n)` when it should be logged, `n`
    /// being how many were suppressed since the last line; `None` otherwise.
    pub fn allow(&mut self, now: Instant) -> Option<u64> {
        match self.last {
            Some(last) if now.saturating_duration_since(last) < self.interval => {
                self.suppressed += 1;
                None
            }
            _ => {
                self.last = Some(now);
                Some(std::mem::take(&mut self.suppressed))
            }
        }
    }
}

impl Default for LogLimiter {
    fn default() -> Self {
        Self::new(LOG_INTERVAL)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_is_logged_then_one_per_interval_with_the_suppressed_count() {
        let mut limiter = LogLimiter::new(Duration::from_secs(10));
        let t0 = Instant::now();
        assert_eq!(limiter.allow(t0), Some(0));
        for ms in [1, 500, 9_999] {
            assert_eq!(limiter.allow(t0 + Duration::from_millis(ms)), None);
        }
        assert_eq!(limiter.allow(t0 + Duration::from_secs(10)), Some(3));
        assert_eq!(limiter.allow(t0 + Duration::from_secs(11)), None);
        assert_eq!(limiter.allow(t0 + Duration::from_secs(25)), Some(1));
    }
}
