//! The token-bucket pacer over simulated time: long-run rate, burst cap,
//! exact timings, debt and time going backwards.

use mbms_gateway::protocol::pacer::*;
use proptest::prelude::*;
use std::time::{Duration, Instant};

const PACKET: usize = 1316;
/// Packets the sender takes per wakeup: at 1316 B, the most one GSO
/// send carries (49 segments ≤ 65 507 B).
const BATCH_MAX: usize = 49;
/// A 9000-byte MTU less IPv4 and UDP headers and headroom.
const JUMBO: usize = 8948;

/// A sender thread that sends a batch whenever one is due and
/// otherwise sleeps exactly until the next packet may leave. Returns the
/// bytes sent in `[start, start + span]` and the largest batch.
fn run(rate: u64, packet: usize, burst: u64, span: Duration) -> (u128, usize) {
    let start = Instant::now();
    let end = start + span;
    let mut pacer = Pacer::new(rate, burst, start).unwrap();
    let mut now = start;
    let (mut sent, mut largest) = (0u128, 0);
    while now <= end {
        let n = pacer.take_batch(now, packet, BATCH_MAX);
        sent += (n * packet) as u128;
        largest = largest.max(n);
        let next = pacer.next_send_at(packet);
        assert!(
            n > 0 || next > now,
            "nothing due at {now:?} yet next is not later"
        );
        now = next.max(now);
    }
    (sent, largest)
}

#[test]
fn long_runs_hold_the_configured_rate() {
    let span = Duration::from_secs(60);
    // 10 Gbit/s links carry jumbo frames (and it keeps the simulation short).
    for (rate, packet) in [
        (1_000_000u64, PACKET),
        (10_000_000, PACKET),
        (100_000_000, PACKET),
        (1_000_000_000, PACKET),
        (10_000_000_000, JUMBO),
    ] {
        // Burst: one full batch.
        let burst = (BATCH_MAX * packet) as u64;
        let (sent, largest) = run(rate, packet, burst, span);
        let ideal = u128::from(rate) * 60 / 8 + u128::from(burst);
        // Exact accounting: never more than earned plus the initial
        // bucket, and short of it by less than one packet.
        assert!(sent <= ideal, "rate {rate}: sent {sent} > {ideal}");
        assert!(
            sent + packet as u128 > ideal,
            "rate {rate}: sent {sent}, ideal {ideal}"
        );
        let steady = (sent - u128::from(burst)) as f64 * 8.0 / 60.0;
        let error = (steady - rate as f64).abs() / rate as f64;
        assert!(error < 0.001, "rate {rate}: measured {steady} bit/s");
        assert!(largest <= BATCH_MAX);
    }
}

#[test]
fn burst_cap_limits_a_batch_after_idle() {
    let start = Instant::now();
    let mut pacer = Pacer::new(1_000_000_000, 10 * PACKET as u64, start).unwrap();
    assert_eq!(pacer.packets_due(start, PACKET, 64), 10);
    assert_eq!(pacer.take_batch(start, PACKET, 64), 10);
    assert_eq!(pacer.budget(start), 0);
    // An hour idle earns no more than the bucket holds.
    let later = start + Duration::from_secs(3600);
    assert_eq!(pacer.budget(later), 10 * PACKET as u64);
    assert_eq!(pacer.take_batch(later, PACKET, 64), 10);
    assert_eq!(pacer.take_batch(later, PACKET, 64), 0);
}

#[test]
fn next_send_at_is_exact_to_the_nanosecond() {
    let start = Instant::now();
    // 1 Mbit/s: one 125-byte packet (1000 bits) per millisecond.
    let mut pacer = Pacer::new(1_000_000, 125, start).unwrap();
    assert_eq!(pacer.poll_send(start, 125), Ok(()));
    let at = pacer.next_send_at(125);
    assert_eq!(at, start + Duration::from_millis(1));
    assert_eq!(pacer.poll_send(at - Duration::from_nanos(1), 125), Err(at));
    assert_eq!(pacer.poll_send(at, 125), Ok(()));
    // 3 bit/s: a byte takes 8/3 s, rounded up to the nanosecond.
    let mut slow = Pacer::new(3, 1, start).unwrap();
    slow.consume(start, 1);
    assert_eq!(
        slow.next_send_at(1),
        start + Duration::from_nanos(2_666_666_667)
    );
}

#[test]
fn oversize_packet_waits_for_a_full_bucket_then_leaves_in_debt() {
    let start = Instant::now();
    let mut pacer = Pacer::new(8_000, 100, start).unwrap(); // 1000 B/s
    assert_eq!(pacer.packets_due(start, 300, 4), 1);
    pacer.consume(start, 300);
    assert_eq!(pacer.budget(start), 0);
    // Debt of 200 B plus a full bucket of 100 B: 0.3 s.
    assert_eq!(pacer.next_send_at(300), start + Duration::from_millis(300));
    assert_eq!(
        pacer.packets_due(start + Duration::from_millis(299), 300, 4),
        0
    );
    assert_eq!(
        pacer.packets_due(start + Duration::from_millis(300), 300, 4),
        1
    );
}

#[test]
fn time_going_backwards_earns_nothing() {
    let start = Instant::now() + Duration::from_secs(10);
    let mut pacer = Pacer::new(8_000, 1000, start).unwrap();
    pacer.consume(start, 1000);
    let earlier = start - Duration::from_secs(5);
    assert_eq!(pacer.budget(earlier), 0);
    pacer.consume(earlier, 0);
    assert_eq!(pacer.budget(start + Duration::from_millis(500)), 500);
}

#[test]
fn set_rate_keeps_earned_credit() {
    let start = Instant::now();
    let mut pacer = Pacer::new(8_000, 10_000, start).unwrap();
    pacer.consume(start, 10_000);
    let t1 = start + Duration::from_secs(1);
    pacer.set_rate(16_000, t1).unwrap();
    assert_eq!(pacer.budget(t1), 1000);
    assert_eq!(pacer.budget(t1 + Duration::from_secs(1)), 3000);
    assert_eq!(pacer.set_rate(0, t1), Err(PacerError::ZeroRate));
}

#[test]
fn zero_rate_or_burst_is_rejected() {
    let now = Instant::now();
    assert_eq!(Pacer::new(0, 1, now).unwrap_err(), PacerError::ZeroRate);
    assert_eq!(Pacer::new(1, 0, now).unwrap_err(), PacerError::ZeroBurst);
}

proptest! {
    /// Over any window that starts and ends on a send, the bytes sent
    /// never exceed the burst plus what the window earned.
    #[test]
    fn no_window_exceeds_burst_plus_rate(
        rate in 1_000u64..20_000_000_000,
        burst in 1u64..200_000,
        sizes in proptest::collection::vec(1usize..9000, 1..200),
    ) {
        let start = Instant::now();
        let mut pacer = Pacer::new(rate, burst, start).unwrap();
        let mut now = start;
        let mut log: Vec<(Instant, usize)> = Vec::new();
        for len in sizes {
            now = pacer.next_send_at(len).max(now);
            prop_assert_eq!(pacer.poll_send(now, len), Ok(()));
            log.push((now, len));
        }
        for i in 0..log.len() {
            let (mut bytes, mut largest) = (0u128, 0u128);
            for &(t, len) in &log[i..] {
                bytes += len as u128;
                largest = largest.max(len as u128);
                let earned_bits = (t - log[i].0).as_nanos() * u128::from(rate) / 1_000_000_000;
                let allowance = u128::from(burst).max(largest) + earned_bits / 8 + 1;
                prop_assert!(bytes <= allowance, "{bytes} > {allowance}");
            }
        }
    }
}
