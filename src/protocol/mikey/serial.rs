//! RFC 1982 serial-number comparison for the 32-bit MIKEY timestamp counter,
//! as TS 33.246 asks for the replay checks (seed §6.4.6.1, §6.4.6.2).

/// Half the 32-bit serial space: the largest step that still counts as
/// "forward" is one less than this.
const HALF: u32 = 1 << 31;

/// `a > b` in RFC 1982 §3.2 terms: `a` is ahead of `b` by 1 to 2^31 − 1 steps,
/// modulo 2^32. Values exactly 2^31 apart are undefined in the RFC; they are
/// not "greater" here, so a receiver fails closed on them.
pub fn serial_gt(a: u32, b: u32) -> bool {
    let ahead = a.wrapping_sub(b);
    ahead != 0 && ahead < HALF
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn ordinary_and_wrapped_comparisons() {
        assert!(serial_gt(2, 1));
        assert!(!serial_gt(1, 2));
        assert!(!serial_gt(7, 7));
        assert!(serial_gt(5, 0xFFFF_FFF0), "wrap-around counts forward");
        assert!(!serial_gt(0xFFFF_FFF0, 5));
        assert!(serial_gt(0x7FFF_FFFF, 0));
        assert!(
            !serial_gt(0x8000_0000, 0),
            "2^31 apart is undefined: not greater"
        );
        assert!(!serial_gt(0, 0x8000_0000));
    }

    proptest! {
        #[test]
        fn forward_steps_below_half_are_greater(b: u32, step in 1u32..HALF) {
            prop_assert!(serial_gt(b.wrapping_add(step), b));
            prop_assert!(!serial_gt(b, b.wrapping_add(step)));
        }
    }
}
