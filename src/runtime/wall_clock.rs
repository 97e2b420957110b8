//! The wall clock as NTP seconds (RFC 5905, era 0), the time base of FDT
//! `Expires` (RFC 6726 §3.4.2) and SDP session versions (RFC 4566 §5.2).

use std::time::{SystemTime, UNIX_EPOCH};

/// Seconds from 1900-01-01 to 1970-01-01.
const NTP_UNIX_OFFSET: u64 = 2_208_988_800;

/// `time` in NTP seconds (0 before 1970).
pub fn ntp_seconds(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() + NTP_UNIX_OFFSET)
}

/// Now in NTP seconds.
pub fn ntp_now() -> u64 {
    ntp_seconds(SystemTime::now())
}
