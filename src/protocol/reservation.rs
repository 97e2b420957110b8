//! Values that must never be reused across restarts (MTK IDs, MIKEY counters)
//! are handed out from blocks reserved in a journal (design §3 "Counters
//! survive"). A block's upper bound is made durable *before* any value inside it
//! is used; after a crash the process resumes above the reserved bound, so a value
//! that may have been sent is never sent again. Reserving in blocks keeps fsync
//! off the per-message path.
//!
//! Pure state: the runtime persists the bound that [`Reservation::take`] asks for.

/// What [`Reservation::take`] needs from the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Take {
    /// Use this value; it lies below the durable bound.
    Value(u64),
    /// Persist `reserve_until` (exclusive) durably, call
    /// [`Reservation::reserved`] with it, then take again.
    Persist { reserve_until: u64 },
    /// The value space `[.., limit)` is used up.
    Exhausted,
}

/// A monotone allocator over `[next, limit)` backed by a durable high-water mark.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reservation {
    next: u64,
    reserved_until: u64,
    limit: u64,
    block: u64,
}

impl Reservation {
    /// Resumes from a durable high-water mark: every value below `durable_until`
    /// may have been used, so allocation starts at `max(start, durable_until)`.
    pub fn resume(start: u64, durable_until: u64, limit: u64, block: u64) -> Self {
        let next = start.max(durable_until);
        Self {
            next,
            reserved_until: next,
            limit,
            block: block.max(1),
        }
    }

    pub fn take(&mut self) -> Take {
        if self.next >= self.limit {
            return Take::Exhausted;
        }
        if self.next < self.reserved_until {
            let value = self.next;
            self.next += 1;
            return Take::Value(value);
        }
        Take::Persist {
            reserve_until: self.next.saturating_add(self.block).min(self.limit),
        }
    }

    /// Records that `until` is durable.
    pub fn reserved(&mut self, until: u64) {
        self.reserved_until = self.reserved_until.max(until.min(self.limit));
    }

    /// The next value that would be handed out.
    pub fn peek(&self) -> u64 {
        self.next
    }

    /// Values left before the limit.
    pub fn remaining(&self) -> u64 {
        self.limit.saturating_sub(self.next)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn take_durably(r: &mut Reservation, durable: &mut u64) -> Option<u64> {
        loop {
            match r.take() {
                Take::Value(v) => return Some(v),
                Take::Persist { reserve_until } => {
                    *durable = reserve_until;
                    r.reserved(reserve_until);
                }
                Take::Exhausted => return None,
            }
        }
    }

    #[test]
    fn values_are_always_below_the_durable_bound() {
        let mut durable = 0;
        let mut r = Reservation::resume(1, durable, 1000, 16);
        for expected in 1..100 {
            let v = take_durably(&mut r, &mut durable).unwrap();
            assert_eq!(v, expected);
            assert!(v < durable);
        }
    }

    #[test]
    fn a_restart_resumes_above_everything_possibly_used() {
        let mut durable = 0;
        let mut r = Reservation::resume(1, durable, 1000, 16);
        let mut last = 0;
        for _ in 0..20 {
            last = take_durably(&mut r, &mut durable).unwrap();
        }
        // Crash: only `durable` survives.
        let mut r = Reservation::resume(1, durable, 1000, 16);
        let first_after = take_durably(&mut r, &mut durable).unwrap();
        assert!(first_after > last, "{first_after} <= {last}");
    }

    #[test]
    fn exhaustion_is_reported_not_wrapped() {
        let mut durable = 0;
        let mut r = Reservation::resume(5, durable, 8, 100);
        let got: Vec<_> = std::iter::from_fn(|| take_durably(&mut r, &mut durable)).collect();
        assert_eq!(got, vec![5, 6, 7]);
        assert_eq!(durable, 8);
        assert_eq!(r.take(), Take::Exhausted);
    }
}
