//! The ROC on air: the integrity transform carrying the roll-over counter
//! (RCC) of RFC 4771. MBMS has no receiver feedback (RTCP receiver reports
//! are off, TS 26.346 §8.2), so a UE that tunes in after the sender's
//! sequence number wrapped cannot learn the ROC from the session; RFC 4771
//! was written for this broadcast case.
//!
//! A packet whose SEQ is 0 modulo the rate R is an *RCC packet*. In RCCm1
//! and RCCm2 its tag is `ROC_sender ‖ MAC_tr`: the 32-bit ROC the sender used
//! for the packet index, then the left-most n_tag − 32 bits of the usual
//! HMAC-SHA1 over `authenticated portion ‖ ROC`, so the tag keeps its
//! negotiated length n_tag. In RCCm3 the tag of an RCC packet is the ROC
//! alone. The other packets carry the default RFC 3711 tag in RCCm2 and no
//! tag at all in RCCm1 and RCCm3 (RFC 4771, "transform modes").
//!
//! A receiver takes ROC_sender from an RCC packet in place of its own ROC,
//! and in RCCm1/RCCm2 only once MAC_tr verified with it, so a corrupted or
//! forged ROC never becomes the stream's ROC (RFC 4771, receiver
//! processing). SRTCP carries its index in every packet and is not touched
//! by the transform.

use crate::protocol::profile;
use std::num::NonZeroU16;
use thiserror::Error;

/// Length of ROC_sender at the head of an RCC packet's tag.
pub const ROC_LEN: usize = 4;

/// The transform modes of RFC 4771.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RccMode {
    /// RCC packets: ROC ‖ MAC_tr; other packets: no tag (not authenticated).
    Rccm1,
    /// RCC packets: ROC ‖ MAC_tr; other packets: the default HMAC-SHA1 tag.
    Rccm2,
    /// RCC packets: the ROC alone; no packet is authenticated.
    Rccm3,
}

impl RccMode {
    pub const ALL: [Self; 3] = [Self::Rccm1, Self::Rccm2, Self::Rccm3];

    /// The mode's name in RFC 4771 (lower case, as in configuration files).
    pub const fn name(self) -> &'static str {
        match self {
            Self::Rccm1 => "rccm1",
            Self::Rccm2 => "rccm2",
            Self::Rccm3 => "rccm3",
        }
    }

    /// The SRTP authentication algorithm value of RFC 4771 (parameter negotiation; MIKEY
    /// security policy parameter 14; 0 is NULL, 1 HMAC-SHA-1).
    pub const fn auth_algorithm(self) -> u8 {
        match self {
            Self::Rccm1 => 2,
            Self::Rccm2 => 3,
            Self::Rccm3 => 4,
        }
    }

    /// The mode named `name` (see [`RccMode::name`]).
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|m| m.name() == name)
    }
}

/// How the SRTP packets of a session carry the ROC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RocTransmission {
    /// Not at all (plain RFC 3711): receivers learn the ROC otherwise, or
    /// start at 0.
    None,
    /// RFC 4771 in `mode`, on every packet whose SEQ is 0 modulo `rate`.
    Rcc { mode: RccMode, rate: NonZeroU16 },
}

/// Why a ROC transmission setting cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum RocSettingError {
    #[error("{0:?} is no ROC transmission: expected none, rccm1, rccm2 or rccm3")]
    UnknownMode(String),
    #[error("a ROC transmission rate must be at least 1")]
    ZeroRate,
    #[error("a ROC transmission rate is set, but the ROC is not transmitted (none)")]
    RateWithoutRcc,
}

impl RocTransmission {
    /// The setting named `mode` ("none" or an [`RccMode::name`]) at `rate`,
    /// as configuration files and the command line give it; what is not
    /// given is the profile's ([`profile::srtp::ROC_TRANSMISSION`]).
    pub fn from_setting(mode: Option<&str>, rate: Option<u16>) -> Result<Self, RocSettingError> {
        let profile = profile::srtp::ROC_TRANSMISSION;
        match (mode.unwrap_or(profile.mode_name()), rate) {
            ("none", None) => Ok(Self::None),
            ("none", Some(_)) => Err(RocSettingError::RateWithoutRcc),
            (name, rate) => {
                let mode = RccMode::from_name(name)
                    .ok_or_else(|| RocSettingError::UnknownMode(name.to_owned()))?;
                let rate = match rate {
                    None => profile::srtp::ROC_RATE,
                    Some(r) => NonZeroU16::new(r).ok_or(RocSettingError::ZeroRate)?,
                };
                Ok(Self::Rcc { mode, rate })
            }
        }
    }

    /// "none" or the mode's name.
    pub const fn mode_name(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Rcc { mode, .. } => mode.name(),
        }
    }

    /// R, when the ROC is transmitted.
    pub const fn rate(self) -> Option<u16> {
        match self {
            Self::None => None,
            Self::Rcc { rate, .. } => Some(rate.get()),
        }
    }

    /// Whether the packet with `seq` carries the ROC.
    pub const fn carries_roc(self, seq: u16) -> bool {
        match self {
            Self::None => false,
            Self::Rcc { rate, .. } => seq.is_multiple_of(rate.get()),
        }
    }

    /// The tag of the packet with `seq` in a session whose negotiated tag
    /// length is `n_tag` bytes.
    pub(super) const fn packet_tag(self, seq: u16, n_tag: usize) -> PacketTag {
        let Self::Rcc { mode, .. } = self else {
            return PacketTag::DEFAULT.with_mac(n_tag);
        };
        match (mode, self.carries_roc(seq)) {
            (RccMode::Rccm1 | RccMode::Rccm2, true) => PacketTag {
                roc: true,
                mac: n_tag.saturating_sub(ROC_LEN),
            },
            (RccMode::Rccm3, true) => PacketTag { roc: true, mac: 0 },
            (RccMode::Rccm2, false) => PacketTag::DEFAULT.with_mac(n_tag),
            (RccMode::Rccm1 | RccMode::Rccm3, false) => PacketTag::DEFAULT,
        }
    }

    /// The longest tag any packet of the session carries.
    pub(super) const fn max_tag(self, n_tag: usize) -> usize {
        match self {
            Self::Rcc {
                mode: RccMode::Rccm3,
                ..
            } => ROC_LEN,
            _ => n_tag,
        }
    }
}

/// What the tag of one SRTP packet holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct PacketTag {
    /// ROC_sender leads the tag.
    pub(super) roc: bool,
    /// Bytes of HMAC-SHA1 output in the tag (after the ROC); 0: the packet
    /// is not authenticated.
    pub(super) mac: usize,
}

impl PacketTag {
    /// No ROC, no MAC.
    const DEFAULT: Self = Self { roc: false, mac: 0 };

    const fn with_mac(self, mac: usize) -> Self {
        Self { mac, ..self }
    }

    pub(super) const fn len(self) -> usize {
        if self.roc {
            ROC_LEN + self.mac
        } else {
            self.mac
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rcc(mode: RccMode, rate: u16) -> RocTransmission {
        RocTransmission::Rcc {
            mode,
            rate: NonZeroU16::new(rate).unwrap(),
        }
    }

    #[test]
    fn tags_per_mode_and_packet() {
        let tag = |roc: bool, mac: usize| PacketTag { roc, mac };
        assert_eq!(RocTransmission::None.packet_tag(0, 10), tag(false, 10));
        for mode in [RccMode::Rccm1, RccMode::Rccm2] {
            assert_eq!(rcc(mode, 16).packet_tag(32, 10), tag(true, 6));
            assert_eq!(rcc(mode, 16).packet_tag(32, 10).len(), 10);
        }
        assert_eq!(rcc(RccMode::Rccm2, 16).packet_tag(33, 10), tag(false, 10));
        assert_eq!(rcc(RccMode::Rccm1, 16).packet_tag(33, 10), tag(false, 0));
        assert_eq!(rcc(RccMode::Rccm3, 16).packet_tag(48, 10), tag(true, 0));
        assert_eq!(rcc(RccMode::Rccm3, 16).packet_tag(49, 10), tag(false, 0));
        assert_eq!(rcc(RccMode::Rccm3, 16).max_tag(10), 4);
        assert_eq!(rcc(RccMode::Rccm1, 16).max_tag(10), 10);
    }

    #[test]
    fn the_rate_counts_on_the_sequence_number() {
        let every_3 = rcc(RccMode::Rccm2, 3);
        let carrying: Vec<u16> = (0..10).filter(|&s| every_3.carries_roc(s)).collect();
        assert_eq!(carrying, [0, 3, 6, 9]);
        // 65535 is 0 mod 3, and so is 0 right after it.
        assert!(every_3.carries_roc(65535) && every_3.carries_roc(0));
        assert!((0..=u16::MAX).all(|s| rcc(RccMode::Rccm1, 1).carries_roc(s)));
        assert!(!RocTransmission::None.carries_roc(0));
    }

    #[test]
    fn settings_parse_or_name_the_problem() {
        let parse = |mode: &str, rate| RocTransmission::from_setting(Some(mode), rate);
        assert_eq!(parse("none", None), Ok(RocTransmission::None));
        assert_eq!(parse("rccm2", None), Ok(rcc(RccMode::Rccm2, 16)));
        assert_eq!(parse("rccm1", Some(4)), Ok(rcc(RccMode::Rccm1, 4)));
        assert_eq!(parse("rccm3", Some(0)), Err(RocSettingError::ZeroRate));
        assert_eq!(parse("none", Some(4)), Err(RocSettingError::RateWithoutRcc));
        assert_eq!(
            parse("RCC", None).unwrap_err().to_string(),
            "\"RCC\" is no ROC transmission: expected none, rccm1, rccm2 or rccm3"
        );
        let setting = rcc(RccMode::Rccm1, 8);
        assert_eq!((setting.mode_name(), setting.rate()), ("rccm1", Some(8)));
        assert_eq!(RocTransmission::None.rate(), None);
        assert_eq!(
            RocTransmission::from_setting(None, None),
            Ok(profile::srtp::ROC_TRANSMISSION)
        );
        assert_eq!(
            RocTransmission::from_setting(None, Some(2)),
            Ok(rcc(RccMode::Rccm2, 2))
        );
    }

    #[test]
    fn names_and_algorithm_values() {
        for mode in RccMode::ALL {
            assert_eq!(RccMode::from_name(mode.name()), Some(mode));
        }
        assert_eq!(RccMode::from_name("rccm4"), None);
        let values: Vec<u8> = RccMode::ALL.iter().map(|m| m.auth_algorithm()).collect();
        assert_eq!(values, [2, 3, 4]);
    }
}
