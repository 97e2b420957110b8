//! The MTK schedule (TS 33.246 §6.3.3.2): announcements ahead of every switch,
//! periodic re-sends, retirement, retries and revocation, driven by a
//! simulated clock.

use mbms_gateway::protocol::keys::Mki;
use mbms_gateway::protocol::keys::{MskId, MtkId};
use mbms_gateway::protocol::mtk_schedule::{MtkAction, MtkSchedule, MtkTiming};
use std::time::{Duration, Instant};

fn timing() -> MtkTiming {
    MtkTiming {
        period: Duration::from_secs(10),
        max_packets: None,
        lead: Duration::from_secs(2),
        resend: Duration::from_secs(1),
        retire_after: Duration::from_millis(500),
        retry: Duration::from_millis(300),
    }
}

fn mki(id: u16) -> Mki {
    Mki {
        msk_id: MskId::new(1, 1),
        mtk_id: MtkId(id),
    }
}

/// Runs the schedule over `[start, end)` in 10 ms steps, preparing MTKs with
/// increasing IDs, and records (time offset, action).
fn run(s: &mut MtkSchedule, start: Instant, end: Duration) -> Vec<(Duration, MtkAction)> {
    let mut log = Vec::new();
    let mut next_id = 1;
    let mut t = Duration::ZERO;
    while t < end {
        let now = start + t;
        while let Some(action) = s.poll(now) {
            log.push((t, action));
            if let MtkAction::Prepare { activate_at } = action {
                s.prepared(mki(next_id), activate_at, now);
                next_id += 1;
            }
        }
        if let Some(at) = s.poll_at() {
            assert!(
                at > now,
                "poll_at {at:?} not after a drained poll at {now:?}"
            );
        }
        t += Duration::from_millis(10);
    }
    log
}

#[test]
fn first_mtk_is_announced_before_it_is_active() {
    let mut s = MtkSchedule::new(timing());
    let start = Instant::now();
    let log = run(&mut s, start, Duration::from_millis(20));
    let kinds: Vec<_> = log.iter().map(|(_, a)| *a).collect();
    assert_eq!(
        kinds,
        vec![
            MtkAction::Prepare { activate_at: start },
            MtkAction::Announce(mki(1)),
            MtkAction::Activate(mki(1)),
        ]
    );
}

#[test]
fn every_switch_is_announced_at_least_lead_before() {
    let t = timing();
    let mut s = MtkSchedule::new(t);
    let log = run(&mut s, Instant::now(), Duration::from_secs(45));
    let activations: Vec<_> = log
        .iter()
        .filter_map(|(at, a)| match a {
            MtkAction::Activate(m) => Some((*at, *m)),
            _ => None,
        })
        .collect();
    assert_eq!(activations.len(), 5, "{activations:?}");
    for (i, (at, m)) in activations.iter().enumerate() {
        assert_eq!(m.mtk_id, MtkId(i as u16 + 1));
        let first_announce = log
            .iter()
            .find(|(_, a)| *a == MtkAction::Announce(*m))
            .map(|(t, _)| *t)
            .unwrap();
        if i > 0 {
            assert!(*at >= first_announce + t.lead, "MTK {i} switched too early");
            assert!(at.abs_diff(Duration::from_secs(10 * i as u64)) < Duration::from_millis(20));
        }
    }
    // The replaced MTK is retired after the grace period, never the active one.
    let retires: Vec<_> = log
        .iter()
        .filter_map(|(at, a)| matches!(a, MtkAction::Retire(_)).then_some(*at))
        .collect();
    assert_eq!(retires.len(), 4);
}

#[test]
fn messages_on_air_are_resent_every_interval() {
    let mut s = MtkSchedule::new(timing());
    let log = run(&mut s, Instant::now(), Duration::from_secs(9));
    let announces: Vec<_> = log
        .iter()
        .filter(|(_, a)| *a == MtkAction::Announce(mki(1)))
        .map(|(t, _)| *t)
        .collect();
    assert!(announces.len() >= 9, "{announces:?}");
    for pair in announces.windows(2) {
        assert!(pair[1] - pair[0] <= Duration::from_millis(1010));
    }
    // The pending MTK (prepared at 8 s) is announced too.
    assert!(log.iter().any(|(_, a)| *a == MtkAction::Announce(mki(2))));
}

#[test]
fn packet_count_forces_an_early_switch() {
    let mut s = MtkSchedule::new(MtkTiming {
        max_packets: Some(100),
        ..timing()
    });
    let start = Instant::now();
    run(&mut s, start, Duration::from_millis(20));
    s.on_protected(100);
    let now = start + Duration::from_secs(1);
    let action =
        std::iter::from_fn(|| s.poll(now)).find(|a| matches!(a, MtkAction::Prepare { .. }));
    assert_eq!(
        action,
        Some(MtkAction::Prepare {
            activate_at: now + timing().lead
        })
    );
}

#[test]
fn failed_preparation_is_retried_and_revocation_stops_everything() {
    let mut s = MtkSchedule::new(timing());
    let start = Instant::now();
    assert!(matches!(s.poll(start), Some(MtkAction::Prepare { .. })));
    s.prepare_failed(start);
    assert_eq!(s.poll(start), None);
    assert_eq!(s.poll_at(), Some(start + timing().retry));
    let later = start + timing().retry;
    assert!(matches!(s.poll(later), Some(MtkAction::Prepare { .. })));
    s.prepared(mki(7), later, later);
    while s.poll(later).is_some() {}
    assert_eq!(s.active(), Some(mki(7)));
    let revoked: Vec<_> = s.revoke_all().collect();
    assert_eq!(revoked, vec![mki(7)]);
    assert_eq!(s.active(), None);
    assert!(matches!(s.poll(later), Some(MtkAction::Prepare { .. })));
}

/// Keys prepared and not yet retired: what the SRTP context holds.
fn held_keys(log: &[(Duration, MtkAction)]) -> usize {
    let mut held = std::collections::BTreeSet::new();
    let mut most = 0;
    for (_, action) in log {
        match action {
            MtkAction::Activate(m) => {
                held.insert(m.mtk_id.0);
            }
            MtkAction::Retire(m) => {
                assert!(
                    held.remove(&m.mtk_id.0),
                    "retired {m:?} twice or never held"
                );
            }
            _ => {}
        }
        most = most.max(held.len());
    }
    most
}

/// Every replaced MTK is retired, also when the next switch comes before its
/// retirement was due (a retire delay as long as the period, or early
/// switches): a key two switches old goes at once, so no more than the
/// previous and the active key are ever held, and the SRTP context's ring
/// never fills up.
#[test]
fn every_replaced_mtk_is_retired_even_when_switches_outpace_retirement() {
    for (period, retire_after, max_packets) in [
        (2_000, 2_000, None),
        (2_000, 5_000, None),
        (10_000, 2_000, Some(1)),
    ] {
        let timing = MtkTiming {
            period: Duration::from_millis(period),
            max_packets,
            lead: Duration::from_millis(500),
            resend: Duration::from_millis(300),
            retire_after: Duration::from_millis(retire_after),
            retry: Duration::from_millis(300),
        };
        let mut s = MtkSchedule::new(timing);
        let start = Instant::now();
        let mut log = Vec::new();
        let mut next_id = 1;
        let mut t = Duration::ZERO;
        while t < Duration::from_secs(30) {
            let now = start + t;
            s.on_protected(1);
            while let Some(action) = s.poll(now) {
                log.push((t, action));
                if let MtkAction::Prepare { activate_at } = action {
                    s.prepared(mki(next_id), activate_at, now);
                    next_id += 1;
                }
            }
            t += Duration::from_millis(10);
        }
        let activations = log
            .iter()
            .filter(|(_, a)| matches!(a, MtkAction::Activate(_)))
            .count();
        let retirements = log
            .iter()
            .filter(|(_, a)| matches!(a, MtkAction::Retire(_)))
            .count();
        assert!(activations >= 10, "{period}/{retire_after}: {activations}");
        assert!(
            retirements + 2 >= activations,
            "{period}/{retire_after}: {activations} switches, {retirements} retired"
        );
        assert!(
            held_keys(&log) <= 2,
            "{period}/{retire_after}: more than two keys held"
        );
    }
}
