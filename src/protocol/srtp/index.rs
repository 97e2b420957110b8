//! Packet indexes: the 48-bit SRTP index recovered from the 16-bit SEQ
//! (RFC 3711 §3.3.1, Appendix A) and the sliding window of indexes already seen
//! (RFC 3711 §3.3.2). The receiver uses the window against replays; the sender
//! uses the same window so it can never protect one index twice.

use super::REPLAY_WINDOW;

/// Largest SRTP packet index: ROC (32 bits) ‖ SEQ (16 bits).
pub(super) const MAX_SRTP_INDEX: u64 = (1 << 48) - 1;
/// Largest SRTCP index (31 bits, RFC 3711 §3.4).
pub(super) const MAX_SRTCP_INDEX: u64 = (1 << 31) - 1;

/// Why an index is not acceptable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Rejection {
    /// Already in the window.
    Seen,
    /// Behind the window (or before index 0): cannot tell, so refused.
    TooOld,
    /// Past the last index of the index space.
    Exhausted,
}

/// The index of `seq` closest to `highest`, the highest index seen so far: the
/// ROC guess v ∈ {ROC−1, ROC, ROC+1} of RFC 3711 §3.3.1. Fails when the guess
/// falls outside 0..=2^48−1 (before the first packet, or past the last ROC).
pub(super) fn estimate_index(highest: u64, seq: u16) -> Result<u64, Rejection> {
    let roc = highest >> 16;
    let s_l = highest as u16;
    let roc_guess = if s_l < 0x8000 {
        if seq > s_l && seq - s_l > 0x8000 {
            roc.checked_sub(1).ok_or(Rejection::TooOld)?
        } else {
            roc
        }
    } else if seq < s_l - 0x8000 {
        roc + 1
    } else {
        roc
    };
    let index = roc_guess << 16 | u64::from(seq);
    if index > MAX_SRTP_INDEX {
        return Err(Rejection::Exhausted);
    }
    Ok(index)
}

/// The highest index seen and a bitmap of the [`REPLAY_WINDOW`] indexes at and
/// below it (bit `d` = index `highest − d`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Window {
    highest: u64,
    seen: u128,
}

const _: () = assert!(REPLAY_WINDOW <= u128::BITS as u64);

impl Window {
    /// A window whose only entry is `first`.
    pub(super) fn starting_at(first: u64) -> Self {
        Self {
            highest: first,
            seen: 1,
        }
    }

    pub(super) fn highest(&self) -> u64 {
        self.highest
    }

    /// Whether `index` may be accepted, without recording it.
    pub(super) fn check(&self, index: u64) -> Result<(), Rejection> {
        let Some(delta) = self.highest.checked_sub(index) else {
            return Ok(());
        };
        if delta >= REPLAY_WINDOW {
            Err(Rejection::TooOld)
        } else if self.seen >> delta & 1 == 1 {
            Err(Rejection::Seen)
        } else {
            Ok(())
        }
    }

    /// Records `index` in the window of `slot`, starting one if the stream has
    /// none yet.
    pub(super) fn record_into(slot: &mut Option<Self>, index: u64) {
        match slot {
            Some(window) => window.record(index),
            empty => *empty = Some(Self::starting_at(index)),
        }
    }

    /// Records `index` (which [`Self::check`] accepted), sliding the window
    /// forward when it is the new highest.
    pub(super) fn record(&mut self, index: u64) {
        match index.checked_sub(self.highest) {
            Some(0) | None => {
                let delta = self.highest - index;
                if delta < REPLAY_WINDOW {
                    self.seen |= 1 << delta;
                }
            }
            Some(ahead) => {
                self.seen = if ahead < REPLAY_WINDOW {
                    self.seen << ahead | 1
                } else {
                    1
                };
                self.highest = index;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn estimate_follows_seq_across_rollover() {
        assert_eq!(estimate_index(0xfff0, 0xfff1), Ok(0xfff1));
        assert_eq!(estimate_index(0xfff0, 0x0002), Ok(0x1_0002));
        assert_eq!(estimate_index(0x1_0002, 0xfff0), Ok(0xfff0));
        assert_eq!(estimate_index(0x5_8000, 0x0001), Ok(0x5_0001));
        assert_eq!(estimate_index(0x5_8001, 0x0000), Ok(0x6_0000));
        assert_eq!(estimate_index(0x5_0000, 0x8001), Ok(0x4_8001));
        // Before the first packet of ROC 0: no index exists.
        assert_eq!(estimate_index(0x0010, 0xff00), Err(Rejection::TooOld));
        // Past the last ROC.
        assert_eq!(
            estimate_index(MAX_SRTP_INDEX, 0x0000),
            Err(Rejection::Exhausted)
        );
    }

    #[test]
    fn window_rejects_seen_and_old() {
        let mut w = Window::starting_at(1000);
        assert_eq!(w.check(1000), Err(Rejection::Seen));
        assert_eq!(w.check(999), Ok(()));
        w.record(999);
        assert_eq!(w.check(999), Err(Rejection::Seen));
        w.record(1005);
        assert_eq!(w.highest(), 1005);
        assert_eq!(w.check(1000), Err(Rejection::Seen));
        assert_eq!(w.check(1003), Ok(()));
        assert_eq!(w.check(1005 - REPLAY_WINDOW + 1), Ok(()));
        assert_eq!(w.check(1005 - REPLAY_WINDOW), Err(Rejection::TooOld));
        w.record(1005 + 10 * REPLAY_WINDOW);
        assert_eq!(w.check(1005), Err(Rejection::TooOld));
        assert_eq!(w.check(1006 + 10 * REPLAY_WINDOW), Ok(()));
    }

    proptest! {
        /// Any SEQ within ±2^15−1 of the highest index maps back to its index.
        #[test]
        fn estimate_recovers_nearby_index(highest in 0x8000u64..MAX_SRTP_INDEX - 0x8000, delta in -0x7fffi64..0x7fff) {
            let index = highest.checked_add_signed(delta).unwrap();
            prop_assert_eq!(estimate_index(highest, index as u16), Ok(index));
        }

        /// The window accepts each index once and never one that fell behind.
        #[test]
        fn window_accepts_each_index_once(steps in proptest::collection::vec(0u64..300, 1..200)) {
            let mut w = Window::starting_at(steps[0]);
            let mut accepted = std::collections::BTreeSet::from([steps[0]]);
            for &i in &steps[1..] {
                match w.check(i) {
                    Ok(()) => {
                        prop_assert!(accepted.insert(i), "index {} accepted twice", i);
                        w.record(i);
                    }
                    Err(Rejection::Seen) => prop_assert!(accepted.contains(&i)),
                    Err(Rejection::TooOld) => prop_assert!(i + REPLAY_WINDOW <= w.highest()),
                    Err(Rejection::Exhausted) => prop_assert!(false, "window never reports exhaustion"),
                }
            }
        }
    }
}
