//! What a probe saw, and the expectations a monitor or a test checks it against.

use serde::Serialize;
use std::fmt;

/// MIKEY MTK messages received on the MIKEY port (seed §6.4.6.2, §6.5).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct MikeyStats {
    pub received: u64,
    /// Accepted and installed as SRTP master keys.
    pub accepted: u64,
    /// Periodic re-sends of an MTK already held (MTK ID not above the
    /// current one): expected, not an error.
    pub repeats: u64,
    /// Replay counter not after the stored one.
    pub replayed: u64,
    /// KEMAC MAC did not verify under the MSK.
    pub bad_mac: u64,
    /// Messages under an MSK the probe does not hold ("missed key").
    pub missed_key: u64,
    /// The MSK IDs of those messages (hex), each once.
    pub missed_msk_ids: Vec<String>,
    /// Key Domain ID other than the configured one.
    pub wrong_key_domain: u64,
    /// MTK ID outside the MSK's key validity.
    pub outside_validity: u64,
    /// Undecodable, not an MTK message, or outside the profile.
    pub malformed: u64,
}

impl MikeyStats {
    /// Messages dropped for a reason other than being a repeat.
    pub fn rejected(&self) -> u64 {
        self.replayed
            + self.bad_mac
            + self.missed_key
            + self.wrong_key_domain
            + self.outside_validity
            + self.malformed
    }
}

/// SRTP packets received on the session's ports (RFC 3711 §3.3).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct SrtpStats {
    pub received: u64,
    pub decrypted: u64,
    /// RTP bytes after decryption (header and payload).
    pub decrypted_bytes: u64,
    pub auth_failures: u64,
    /// MKI still unknown when the hold time ran out (or the hold was full).
    pub unknown_mki: u64,
    /// Packets held for an MTK that arrived in time and then decrypted.
    pub held_then_decrypted: u64,
    /// Replayed or older than the replay window.
    pub replayed: u64,
    /// Refused because the stream's ROC was not known yet: a probe that
    /// joins a session carrying the ROC (RFC 4771) drops what comes before
    /// the first packet that carries it.
    pub awaiting_roc: u64,
    /// Not an SRTP packet of the session's profile.
    pub malformed: u64,
    /// SSRC state dropped after repeated failures (a restarted sender).
    pub stream_resets: u64,
}

/// One SSRC on one port.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct StreamStats {
    pub port: u16,
    pub ssrc: u32,
    pub packets: u64,
    pub bytes: u64,
    /// Sequence numbers never received (gaps in the extended SEQ).
    pub lost: u64,
    /// Times the stream moved to an MTK it had not used before.
    pub mtk_switches: u64,
    /// MKIs used (MSK ID ‖ MTK ID, hex), in order of first use.
    pub mkis: Vec<String>,
    /// Synthetic-encoder payloads checked, and those that did not verify.
    pub payloads_checked: u64,
    pub payload_errors: u64,
    /// How the stream's ROC was learned: "carried" (from an RFC 4771 RCC
    /// packet), "zero" (assumed, RFC 3711) or "searched" (tried until the
    /// tag authenticated).
    pub roc_learned: Option<&'static str>,
    /// Packets decrypted that carried the ROC.
    pub rcc_packets: u64,
    /// SEQ of the first packet decrypted, and the SRTP index of the highest.
    pub first_seq: Option<u16>,
    pub highest_index: Option<u64>,
}

/// Everything a probe counted.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ProbeReport {
    pub elapsed_s: f64,
    pub mikey: MikeyStats,
    pub srtp: SrtpStats,
    pub streams: Vec<StreamStats>,
}

impl ProbeReport {
    pub fn lost(&self) -> u64 {
        self.streams.iter().map(|s| s.lost).sum()
    }

    pub fn mtk_switches(&self) -> u64 {
        self.streams.iter().map(|s| s.mtk_switches).sum()
    }

    pub fn payload_errors(&self) -> u64 {
        self.streams.iter().map(|s| s.payload_errors).sum()
    }

    pub fn payloads_checked(&self) -> u64 {
        self.streams.iter().map(|s| s.payloads_checked).sum()
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("the report serializes")
    }
}

impl fmt::Display for ProbeReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let m = &self.mikey;
        let s = &self.srtp;
        writeln!(f, "probe report after {:.1} s", self.elapsed_s)?;
        writeln!(
            f,
            "  MIKEY: {} received, {} accepted, {} repeats, {} rejected \
             (replayed {}, bad MAC {}, missed key {}, wrong key domain {}, outside validity {}, malformed {})",
            m.received,
            m.accepted,
            m.repeats,
            m.rejected(),
            m.replayed,
            m.bad_mac,
            m.missed_key,
            m.wrong_key_domain,
            m.outside_validity,
            m.malformed
        )?;
        if !m.missed_msk_ids.is_empty() {
            writeln!(f, "  missed MSK IDs: {}", m.missed_msk_ids.join(", "))?;
        }
        writeln!(
            f,
            "  SRTP: {} received, {} decrypted ({} bytes, {} after a hold), {} auth failures, \
             {} unknown MKI, {} replayed, {} before the ROC was known, {} malformed, {} stream resets",
            s.received,
            s.decrypted,
            s.decrypted_bytes,
            s.held_then_decrypted,
            s.auth_failures,
            s.unknown_mki,
            s.replayed,
            s.awaiting_roc,
            s.malformed,
            s.stream_resets
        )?;
        for st in &self.streams {
            writeln!(
                f,
                "  port {} SSRC {:#010x}: {} packets, {} bytes, {} lost, {} MTK switches, \
                 payload {}/{} bad, ROC {} ({} packets carried it), MKIs [{}]",
                st.port,
                st.ssrc,
                st.packets,
                st.bytes,
                st.lost,
                st.mtk_switches,
                st.payload_errors,
                st.payloads_checked,
                st.roc_learned.unwrap_or("unknown"),
                st.rcc_packets,
                st.mkis.join(", ")
            )?;
        }
        Ok(())
    }
}

/// Bounds a report must meet (confidence monitoring, tests). `None` means no bound.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProbeExpect {
    pub min_packets: Option<u64>,
    pub max_auth_failures: Option<u64>,
    pub max_lost: Option<u64>,
    pub max_mikey_rejected: Option<u64>,
    pub min_mtk_switches: Option<u64>,
    pub max_payload_errors: Option<u64>,
}

impl ProbeExpect {
    /// Every bound the report misses, in plain words.
    pub fn check(&self, report: &ProbeReport) -> Result<(), Vec<String>> {
        let mut failures = Vec::new();
        let mut at_least = |bound: Option<u64>, value: u64, what: &str| {
            if let Some(min) = bound.filter(|&min| value < min) {
                failures.push(format!("{what}: {value}, expected at least {min}"));
            }
        };
        at_least(self.min_packets, report.srtp.decrypted, "decrypted packets");
        at_least(self.min_mtk_switches, report.mtk_switches(), "MTK switches");
        let mut at_most = |bound: Option<u64>, value: u64, what: &str| {
            if let Some(max) = bound.filter(|&max| value > max) {
                failures.push(format!("{what}: {value}, expected at most {max}"));
            }
        };
        at_most(
            self.max_auth_failures,
            report.srtp.auth_failures,
            "SRTP authentication failures",
        );
        at_most(self.max_lost, report.lost(), "lost packets");
        at_most(
            self.max_mikey_rejected,
            report.mikey.rejected(),
            "rejected MIKEY messages",
        );
        at_most(
            self.max_payload_errors,
            report.payload_errors(),
            "payload errors",
        );
        if failures.is_empty() {
            Ok(())
        } else {
            Err(failures)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn check_lists_every_shortfall() {
        let mut report = ProbeReport::default();
        report.srtp.decrypted = 10;
        report.srtp.auth_failures = 2;
        report.streams.push(StreamStats {
            lost: 3,
            mtk_switches: 1,
            ..StreamStats::default()
        });
        let expect = ProbeExpect {
            min_packets: Some(10),
            max_auth_failures: Some(0),
            max_lost: Some(3),
            min_mtk_switches: Some(2),
            ..ProbeExpect::default()
        };
        assert_eq!(
            expect.check(&report),
            Err(vec![
                "MTK switches: 1, expected at least 2".to_string(),
                "SRTP authentication failures: 2, expected at most 0".to_string(),
            ])
        );
        report.srtp.auth_failures = 0;
        report.streams[0].mtk_switches = 2;
        assert_eq!(expect.check(&report), Ok(()));
        assert!(report.to_json().contains("\"mtk_switches\": 2"));
    }
}
