//! Transport Object Identifier allocation for one FLUTE session.
//!
//! TOI 0 is the FDT (RFC 3926 §3.3); objects get 1, 2, 3, … and the counter
//! wraps to 1 after a configurable maximum, skipping every TOI still on air,
//! so a receiver never sees one TOI name two live objects.

use std::collections::BTreeSet;

/// Default largest TOI: 2¹⁶ − 1 keeps the TOI field at 16 bits next to the
/// profile's 16-bit TSI (H = 1, O = 0: a 12-byte LCT header before
/// extensions). At two objects a second it wraps after nine hours, long after
/// any receiver has forgotten a finished object.
pub const DEFAULT_MAX_TOI: u128 = 0xffff;

/// Largest TOI the LCT header can carry with a 16-bit TSI (O = 3, H = 1).
pub const LCT_MAX_TOI: u128 = (1 << 112) - 1;

#[derive(Debug, Clone)]
pub struct ToiAllocator {
    next: u128,
    max: u128,
    in_use: BTreeSet<u128>,
}

impl ToiAllocator {
    /// Allocates from 1 to `max` (clamped to `1..=LCT_MAX_TOI`).
    pub fn new(max: u128) -> Self {
        Self {
            next: 1,
            max: max.clamp(1, LCT_MAX_TOI),
            in_use: BTreeSet::new(),
        }
    }

    pub fn max(&self) -> u128 {
        self.max
    }

    pub fn in_use(&self) -> usize {
        self.in_use.len()
    }

    /// The next free TOI after the last one handed out, or `None` when all
    /// `max` TOIs are on air.
    pub fn allocate(&mut self) -> Option<u128> {
        if self.in_use.len() as u128 >= self.max {
            return None;
        }
        // Free TOIs from `next` upward, else from 1 (the wrap): the first
        // gap in the in-use set at or after the start.
        let free_from = |start: u128| {
            let mut candidate = start;
            for &used in self.in_use.range(start..) {
                if used != candidate {
                    break;
                }
                candidate += 1;
            }
            (candidate <= self.max).then_some(candidate)
        };
        let toi = free_from(self.next).or_else(|| free_from(1))?;
        self.in_use.insert(toi);
        self.next = if toi == self.max { 1 } else { toi + 1 };
        Some(toi)
    }

    /// Returns `toi` to the pool; false if it was not allocated.
    pub fn release(&mut self, toi: u128) -> bool {
        self.in_use.remove(&toi)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn counts_up_from_one_and_wraps_past_zero() {
        let mut a = ToiAllocator::new(3);
        assert_eq!(
            [a.allocate(), a.allocate(), a.allocate()],
            [Some(1), Some(2), Some(3)]
        );
        assert_eq!(a.allocate(), None);
        assert!(a.release(2));
        assert!(!a.release(2));
        assert_eq!(a.allocate(), Some(2));
        assert!(a.release(1));
        assert_eq!(a.allocate(), Some(1));
    }

    #[test]
    fn wrap_skips_tois_still_in_use() {
        let mut a = ToiAllocator::new(5);
        for want in 1..=5 {
            assert_eq!(a.allocate(), Some(want));
        }
        for toi in [1, 2, 4] {
            a.release(toi);
        }
        // Counter is at the wrap: 1, 2 free, 3 busy, 4 free, 5 busy.
        assert_eq!(a.allocate(), Some(1));
        assert_eq!(a.allocate(), Some(2));
        assert_eq!(a.allocate(), Some(4));
        assert_eq!(a.allocate(), None);
    }

    #[test]
    fn default_max_keeps_the_16_bit_toi_field() {
        use crate::protocol::flute::lct::FieldWidths;
        let widths = FieldWidths::flute(DEFAULT_MAX_TOI).unwrap();
        assert_eq!((widths.tsi_len(), widths.toi_len()), (2, 2));
        assert!(FieldWidths::flute(LCT_MAX_TOI).is_ok());
        assert_eq!(ToiAllocator::new(0).max(), 1);
    }

    proptest! {
        /// Against a model: a TOI is never 0, never above max, never given out
        /// twice while in use, and the search continues after the last one.
        #[test]
        fn matches_the_model(max in 1u128..40, ops in proptest::collection::vec(any::<(bool, u8)>(), 1..300)) {
            let mut a = ToiAllocator::new(max);
            let mut live = BTreeSet::new();
            let mut last = 0u128;
            for (alloc, pick) in ops {
                if alloc {
                    let got = a.allocate();
                    let expected = (last + 1..=max).chain(1..=last).find(|t| !live.contains(t));
                    prop_assert_eq!(got, expected);
                    if let Some(toi) = got {
                        live.insert(toi);
                        last = toi;
                    }
                } else if let Some(&toi) = live.iter().nth(usize::from(pick) % live.len().max(1)) {
                    prop_assert!(a.release(toi));
                    live.remove(&toi);
                }
                prop_assert_eq!(a.in_use(), live.len());
            }
        }
    }
}
