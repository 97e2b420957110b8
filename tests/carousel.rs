//! The download-session carousel (FLUTE, TS 26.346): FDT rules, MIKEY objects
//! ahead of what they protect, late joiners, FDT-Instance ID wrap, over
//! simulated time.

use mbms_gateway::protocol::flute::carousel::*;
use mbms_gateway::protocol::flute::fdt::{FdtFecOti, FdtInstance};
use mbms_gateway::protocol::profile;
use proptest::prelude::*;
use std::collections::{BTreeSet, HashMap};
use std::num::NonZeroU32;
use std::time::{Duration, Instant};

const NTP_START: u32 = 3_900_000_000;

/// What went on air, as a receiver would see it.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Sent {
    Fdt {
        id: u32,
        expires: u32,
        files: Vec<(u128, String)>,
    },
    Object(u128),
    Forget(u128),
    Close,
}

fn record(action: CarouselAction<'_>) -> Sent {
    match action {
        CarouselAction::SendFdt { instance_id, fdt } => Sent::Fdt {
            id: instance_id,
            expires: fdt.expires,
            files: fdt
                .files
                .iter()
                .map(|f| (f.toi, f.content_location.clone()))
                .collect(),
        },
        CarouselAction::SendObject { toi } => Sent::Object(toi),
        CarouselAction::Forget { toi } => Sent::Forget(toi),
        CarouselAction::CloseSession => Sent::Close,
    }
}

/// A sender loop: each transmission takes `step` of simulated time.
struct Sim {
    carousel: Carousel,
    start: Instant,
    now: Instant,
    log: Vec<Sent>,
}

impl Sim {
    fn new(config: CarouselConfig) -> Self {
        let start = Instant::now();
        Self {
            carousel: Carousel::new(config, start).unwrap(),
            start,
            now: start,
            log: Vec::new(),
        }
    }

    fn ntp(&self) -> u32 {
        NTP_START + (self.now - self.start).as_secs() as u32
    }

    /// One poll; `None` when idle.
    fn step(&mut self, step: Duration) -> Option<Sent> {
        let ntp = self.ntp();
        let sent = self.carousel.poll(self.now, ntp).map(record)?;
        if matches!(sent, Sent::Fdt { .. } | Sent::Object(_)) {
            self.now += step;
        }
        self.log.push(sent.clone());
        Some(sent)
    }

    fn run(&mut self, actions: usize, step: Duration) {
        for _ in 0..actions {
            if self.step(step).is_none() {
                break;
            }
        }
    }
}

fn object(location: &str, lifetime: ObjectLifetime) -> CarouselObject {
    CarouselObject {
        content_location: location.into(),
        content_type: Some("application/octet-stream".into()),
        transfer_length: 1000,
        content_length: Some(1000),
        content_md5: None,
        fec_oti: None,
        decryption_key_uri: None,
        is_mikey: false,
        lifetime,
    }
}

fn mikey(location: &str, lifetime: ObjectLifetime) -> CarouselObject {
    CarouselObject {
        content_type: Some(profile::flute::MIKEY_CONTENT_TYPE.into()),
        is_mikey: true,
        ..object(location, lifetime)
    }
}

fn protected(location: &str, key: &str, lifetime: ObjectLifetime) -> CarouselObject {
    CarouselObject {
        decryption_key_uri: Some(key.into()),
        ..object(location, lifetime)
    }
}

fn times(n: u32) -> ObjectLifetime {
    ObjectLifetime::Repetitions(NonZeroU32::new(n).unwrap())
}

/// (TOI, Content-Location) of each File of an FDT.
type Listing = Vec<(u128, String)>;
/// (Instance ID, Expires, Files).
type FdtSeen = (u32, u32, Listing);

fn fdts(log: &[Sent]) -> Vec<FdtSeen> {
    log.iter()
        .filter_map(|s| match s {
            Sent::Fdt { id, expires, files } => Some((*id, *expires, files.clone())),
            _ => None,
        })
        .collect()
}

fn index_of(log: &[Sent], wanted: &Sent) -> usize {
    log.iter()
        .position(|s| s == wanted)
        .unwrap_or_else(|| panic!("{wanted:?} never sent in {log:?}"))
}

#[test]
fn nothing_is_sent_before_an_object_exists_and_the_fdt_goes_first() {
    let mut sim = Sim::new(CarouselConfig::default());
    assert_eq!(sim.step(Duration::ZERO), None);
    assert_eq!(sim.carousel.poll_at(), None);
    let toi = sim.carousel.add(object("a", times(1))).unwrap();
    assert_eq!(toi, 1);
    assert_eq!(sim.carousel.poll_at(), Some(sim.now));
    sim.run(10, Duration::from_millis(1));
    assert_eq!(
        sim.log,
        [
            Sent::Fdt {
                id: 0,
                expires: NTP_START + 60,
                files: vec![(1, "a".into())]
            },
            Sent::Object(1),
            Sent::Forget(1),
        ]
    );
    // Empty again: no FDT without objects.
    assert_eq!(sim.carousel.poll_at(), None);
}

#[test]
fn late_joiner_gets_every_object_and_a_full_fdt_within_one_pass() {
    let mut sim = Sim::new(CarouselConfig {
        fdt_interval: Duration::from_millis(35),
        ..CarouselConfig::default()
    });
    let c = &mut sim.carousel;
    c.add(object("manifest.mpd", ObjectLifetime::UntilRemoved))
        .unwrap();
    c.add(object("init.mp4", ObjectLifetime::UntilRemoved))
        .unwrap();
    c.add(mikey("mtk/1", ObjectLifetime::UntilRemoved)).unwrap();
    for i in 0..5 {
        c.add(protected(
            &format!("seg{i}.m4s"),
            "mtk/1",
            ObjectLifetime::UntilRemoved,
        ))
        .unwrap();
    }
    let all: BTreeSet<u128> = c.tois().collect();
    sim.run(400, Duration::from_millis(10));
    assert_eq!(sim.log.len(), 400);
    // From any action on, the next N object transmissions (N objects in
    // the carousel) and the action after them hold every object and an
    // FDT listing all of them, whatever FDTs the interval adds between.
    for i in 0..sim.log.len() / 2 {
        let mut objects = BTreeSet::new();
        let mut full_fdt = false;
        let mut counted = 0;
        for s in &sim.log[i..] {
            if counted == all.len() {
                full_fdt |= matches!(s, Sent::Fdt { files, .. }
                    if files.iter().map(|(t, _)| *t).collect::<BTreeSet<_>>() == all);
                break;
            }
            match s {
                Sent::Object(t) => {
                    objects.insert(*t);
                    counted += 1;
                }
                Sent::Fdt { files, .. } => {
                    full_fdt |= files.iter().map(|(t, _)| *t).collect::<BTreeSet<_>>() == all;
                }
                _ => {}
            }
        }
        assert_eq!(objects, all, "objects after action {i}");
        assert!(full_fdt, "no full FDT after action {i}");
    }
    let interval_fdts = fdts(&sim.log).len() - sim.log.len() / (all.len() + 1);
    assert!(interval_fdts > 10, "the interval never added an FDT");
    // The interval FDT re-sends the same instance: one ID throughout.
    let ids: BTreeSet<u32> = fdts(&sim.log).iter().map(|f| f.0).collect();
    assert_eq!(ids.len(), 1);
}

#[test]
fn fdt_renders_through_the_template_and_parses_back() {
    use mbms_gateway::protocol::flute::fdt::FdtTemplate;
    let template = FdtTemplate::parse(
        "3gpp-rel12.xml",
        include_str!("../fdt-templates/3gpp-rel12.xml"),
    )
    .unwrap();
    let now = Instant::now();
    let mut c = Carousel::new(CarouselConfig::default(), now).unwrap();
    let k = c.add(mikey("mtk/1", ObjectLifetime::UntilRemoved)).unwrap();
    let mut segment = protected("seg1.m4s", "mtk/1", times(1));
    segment.content_md5 = Some([7; 16]);
    segment.fec_oti = Some(FdtFecOti {
        encoding_id: 0,
        max_source_block_length: Some(1024),
        encoding_symbol_length: Some(1400),
        scheme_specific_info: None,
    });
    let p = c.add(segment).unwrap();
    let Some(CarouselAction::SendFdt { instance_id, fdt }) = c.poll(now, NTP_START) else {
        panic!("the first action is not an FDT");
    };
    assert_eq!(instance_id, 0);
    let parsed = FdtInstance::parse(&template.render(fdt).unwrap()).unwrap();
    assert_eq!(&parsed, fdt);
    assert!(parsed.full_fdt);
    assert_eq!(parsed.expires, NTP_START + 60);
    let file = |toi| parsed.files.iter().find(|f| f.toi == toi).unwrap();
    assert_eq!(
        file(k).content_type.as_deref(),
        Some(profile::flute::MIKEY_CONTENT_TYPE)
    );
    assert_eq!(file(p).decryption_key_uri.as_deref(), Some("mtk/1"));
    assert_eq!(file(p).transfer_length, Some(1000));
}

#[test]
fn mikey_object_is_sent_first_in_every_pass() {
    let mut sim = Sim::new(CarouselConfig::default());
    let c = &mut sim.carousel;
    let a = c
        .add(object("plain", ObjectLifetime::UntilRemoved))
        .unwrap();
    let k = c.add(mikey("mtk/1", ObjectLifetime::UntilRemoved)).unwrap();
    let p = c
        .add(protected("p", "mtk/1", ObjectLifetime::UntilRemoved))
        .unwrap();
    sim.run(8, Duration::from_millis(1));
    let order: Vec<&Sent> = sim.log.iter().collect();
    let o = |t| Sent::Object(t);
    assert!(matches!(order[0], Sent::Fdt { .. }));
    assert_eq!(order[1..4], [&o(k), &o(a), &o(p)]);
    assert!(matches!(order[4], Sent::Fdt { .. }));
    assert_eq!(order[5..8], [&o(k), &o(a), &o(p)]);
}

#[test]
fn key_object_added_mid_pass_precedes_what_it_protects() {
    let mut sim = Sim::new(CarouselConfig::default());
    let c = &mut sim.carousel;
    c.add(mikey("mtk/1", ObjectLifetime::UntilRemoved)).unwrap();
    c.add(object("a", ObjectLifetime::UntilRemoved)).unwrap();
    c.add(object("b", ObjectLifetime::UntilRemoved)).unwrap();
    sim.run(3, Duration::from_millis(1)); // FDT, mtk/1, a
    let k2 = sim.carousel.add(mikey("mtk/2", times(1))).unwrap();
    let x = sim.carousel.add(protected("x", "mtk/2", times(1))).unwrap();
    sim.run(6, Duration::from_millis(1));
    let first_fdt_after = sim.log[3..]
        .iter()
        .position(|s| matches!(s, Sent::Fdt { files, .. } if files.iter().any(|f| f.0 == x)))
        .unwrap()
        + 3;
    let key_at = index_of(&sim.log, &Sent::Object(k2));
    let x_at = index_of(&sim.log, &Sent::Object(x));
    assert!(first_fdt_after < key_at && key_at < x_at, "{:?}", sim.log);
}

#[test]
fn mikey_object_stays_until_its_last_protected_object_leaves() {
    let mut sim = Sim::new(CarouselConfig::default());
    let c = &mut sim.carousel;
    let k = c.add(mikey("mtk/1", times(1))).unwrap();
    let a = c.add(protected("a", "mtk/1", times(1))).unwrap();
    let b = c.add(protected("b", "mtk/1", times(3))).unwrap();
    sim.run(100, Duration::from_millis(1));
    let forget_k = index_of(&sim.log, &Sent::Forget(k));
    let forget_b = index_of(&sim.log, &Sent::Forget(b));
    let last_b = sim.log.iter().rposition(|s| *s == Sent::Object(b)).unwrap();
    assert!(forget_k > last_b && forget_k > forget_b);
    // Sent once per pass while protecting: three passes.
    let k_sends = sim.log.iter().filter(|s| **s == Sent::Object(k)).count();
    assert_eq!(k_sends, 3);
    assert!(index_of(&sim.log, &Sent::Object(k)) < index_of(&sim.log, &Sent::Object(a)));
    // Every FDT lists the key object while a protected object is listed.
    for (_, _, files) in fdts(&sim.log) {
        let has = |t: u128| files.iter().any(|f| f.0 == t);
        assert!(!(has(a) || has(b)) || has(k), "{files:?}");
    }
    assert!(sim.carousel.is_empty());
}

/// An object under an MTK whose MIKEY object has just left brings the same
/// message back under the same TOI while FDT instances naming it may still
/// be valid; a different message, or the same one after they expired, gets
/// a TOI of its own.
#[test]
fn a_mikey_message_keeps_one_toi_while_fdts_may_name_it() {
    let mut sim = Sim::new(CarouselConfig {
        fdt_interval: Duration::from_millis(500),
        fdt_lifetime_s: 4,
        ..CarouselConfig::default()
    });
    let message = |md5: u8| CarouselObject {
        content_md5: Some([md5; 16]),
        ..mikey("mtk/1", ObjectLifetime::UntilRemoved)
    };
    // As the download sender does: the key object, what it protects, then
    // the key object's own lifetime ends (it stays for what it protects).
    let k = sim.carousel.add(message(1)).unwrap();
    let a = sim.carousel.add(protected("a", "mtk/1", times(1))).unwrap();
    sim.carousel.remove(k).unwrap();
    sim.run(100, Duration::from_millis(1));
    assert!(sim.carousel.is_empty());
    assert!(sim.log.contains(&Sent::Forget(k)));
    // The next object under the same MTK: the same message, the same TOI.
    let again = sim.carousel.add(message(1)).unwrap();
    assert_eq!(again, k);
    let b = sim.carousel.add(protected("b", "mtk/1", times(1))).unwrap();
    sim.carousel.remove(again).unwrap();
    assert_ne!(b, a);
    sim.log.clear();
    sim.run(100, Duration::from_millis(1));
    assert!(index_of(&sim.log, &Sent::Object(k)) < index_of(&sim.log, &Sent::Object(b)));
    let listed: BTreeSet<u128> = fdts(&sim.log)
        .iter()
        .flat_map(|(_, _, files)| files.iter().filter(|f| f.1 == "mtk/1").map(|f| f.0))
        .collect();
    assert_eq!(listed, BTreeSet::from([k]), "one TOI for the message");
    // A new message under that name is another object.
    let other = sim.carousel.add(message(2)).unwrap();
    assert_ne!(other, k);
    sim.carousel.remove(other).unwrap();
    sim.run(10, Duration::from_millis(1));
    // Once every FDT that listed it has expired, its TOI is free again and
    // the same message comes back as a new object.
    sim.now += Duration::from_secs(5);
    sim.run(10, Duration::from_millis(1));
    let later = sim.carousel.add(message(1)).unwrap();
    assert_ne!(later, k);
}

#[test]
fn explicit_remove_of_a_key_object_waits_for_its_protected_objects() {
    let now = Instant::now();
    let mut c = Carousel::new(CarouselConfig::default(), now).unwrap();
    let k = c.add(mikey("mtk/1", ObjectLifetime::UntilRemoved)).unwrap();
    let p = c
        .add(protected("p", "mtk/1", ObjectLifetime::UntilRemoved))
        .unwrap();
    c.remove(k).unwrap();
    assert_eq!(c.len(), 2);
    c.remove(p).unwrap();
    assert!(c.is_empty());
    assert_eq!(c.remove(p), Err(CarouselError::UnknownToi(p)));
}

#[test]
fn fdt_id_changes_with_content_and_wraps_at_2_pow_20() {
    let mut sim = Sim::new(CarouselConfig {
        first_fdt_instance_id: FDT_INSTANCE_ID_MODULUS - 2,
        ..CarouselConfig::default()
    });
    let mut ids = Vec::new();
    for i in 0..4 {
        sim.carousel
            .add(object(&format!("o{i}"), ObjectLifetime::UntilRemoved))
            .unwrap();
        match sim.step(Duration::from_millis(1)) {
            Some(Sent::Fdt { id, files, .. }) => {
                assert_eq!(files.len(), i + 1);
                ids.push(id);
            }
            other => panic!("expected an FDT, got {other:?}"),
        }
    }
    assert_eq!(
        ids,
        [
            FDT_INSTANCE_ID_MODULUS - 2,
            FDT_INSTANCE_ID_MODULUS - 1,
            0,
            1
        ]
    );
    // Adding and removing before the next FDT leaves the content, and so
    // the ID, as it was.
    let t = sim
        .carousel
        .add(object("brief", ObjectLifetime::UntilRemoved))
        .unwrap();
    sim.carousel.remove(t).unwrap();
    assert_eq!(sim.step(Duration::ZERO), Some(Sent::Forget(t)));
    assert!(matches!(
        sim.step(Duration::ZERO),
        Some(Sent::Fdt { id: 1, .. })
    ));
}

#[test]
fn expires_is_refreshed_under_a_new_id_before_the_fdt_expires() {
    let mut sim = Sim::new(CarouselConfig {
        fdt_interval: Duration::from_secs(1),
        fdt_lifetime_s: 10,
        ..CarouselConfig::default()
    });
    sim.carousel
        .add(object("big", ObjectLifetime::UntilRemoved))
        .unwrap();
    // Each transmission of the object takes 300 ms.
    sim.run(300, Duration::from_millis(300));
    let fdts = fdts(&sim.log);
    let mut by_id: HashMap<u32, (u32, Vec<(u128, String)>)> = HashMap::new();
    for (id, expires, files) in &fdts {
        let first = by_id.entry(*id).or_insert((*expires, files.clone()));
        assert_eq!(first, &(*expires, files.clone()), "ID {id} re-used");
    }
    assert!(by_id.len() > 5, "Expires was never refreshed");
    // Replay with time: the last FDT sent before any instant is valid then.
    let mut now = sim.start;
    let mut valid_until = 0u32;
    for s in &sim.log {
        let ntp = NTP_START + (now - sim.start).as_secs() as u32;
        if valid_until != 0 {
            assert!(ntp < valid_until, "FDT expired at {ntp}");
        }
        if let Sent::Fdt { expires, .. } = s {
            assert!(*expires > ntp + 5);
            valid_until = *expires;
        }
        now += Duration::from_millis(300);
    }
}

#[test]
fn close_session_only_after_an_fdt() {
    let mut sim = Sim::new(CarouselConfig::default());
    sim.carousel
        .add(object("a", ObjectLifetime::UntilRemoved))
        .unwrap();
    sim.carousel.close();
    assert_eq!(sim.step(Duration::ZERO), None);
    assert_eq!(sim.step(Duration::ZERO), None);
    assert_eq!(
        sim.carousel.add(object("b", times(1))),
        Err(CarouselError::Closed)
    );

    let mut sim = Sim::new(CarouselConfig::default());
    sim.carousel
        .add(object("a", ObjectLifetime::UntilRemoved))
        .unwrap();
    sim.run(2, Duration::from_millis(1));
    sim.carousel.close();
    assert_eq!(sim.step(Duration::ZERO), Some(Sent::Close));
    assert_eq!(sim.step(Duration::ZERO), None);
    assert_eq!(sim.carousel.poll_at(), None);
}

#[test]
fn until_lifetime_ends_at_its_instant() {
    let mut sim = Sim::new(CarouselConfig::default());
    let until = sim.start + Duration::from_millis(50);
    let a = sim
        .carousel
        .add(object("a", ObjectLifetime::Until(until)))
        .unwrap();
    let b = sim
        .carousel
        .add(object("b", ObjectLifetime::UntilRemoved))
        .unwrap();
    sim.run(30, Duration::from_millis(10));
    let forget = index_of(&sim.log, &Sent::Forget(a));
    assert!(sim.log[forget + 1..].iter().all(|s| *s != Sent::Object(a)));
    let sends = sim.log[..forget]
        .iter()
        .filter(|s| **s == Sent::Object(a))
        .count();
    assert!(sends >= 2, "{:?}", sim.log);
    // The FDT after the removal lists only b, under a new ID.
    let after: Vec<_> = fdts(&sim.log[forget..]);
    assert_eq!(after[0].2, vec![(b, "b".to_string())]);
    assert_ne!(after[0].0, fdts(&sim.log[..forget]).last().unwrap().0);
}

#[test]
fn same_content_location_replaces_the_object() {
    let now = Instant::now();
    let mut c = Carousel::new(CarouselConfig::default(), now).unwrap();
    let old = c
        .add(object("manifest.mpd", ObjectLifetime::UntilRemoved))
        .unwrap();
    let new = c
        .add(object("manifest.mpd", ObjectLifetime::UntilRemoved))
        .unwrap();
    assert_ne!(old, new);
    assert_eq!(c.tois().collect::<Vec<_>>(), [new]);
    assert_eq!(c.poll(now, NTP_START).map(record), Some(Sent::Forget(old)));
}

#[test]
fn invalid_objects_and_configs_are_rejected() {
    let now = Instant::now();
    let mut c = Carousel::new(CarouselConfig::default(), now).unwrap();
    assert_eq!(
        c.add(protected("p", "mtk/9", times(1))),
        Err(CarouselError::UnknownKeyObject {
            content_location: "p".into(),
            key_uri: "mtk/9".into()
        })
    );
    let mut keyed_key = mikey("mtk/1", times(1));
    keyed_key.decryption_key_uri = Some("mtk/0".into());
    assert_eq!(
        c.add(keyed_key),
        Err(CarouselError::ProtectedKeyObject("mtk/1".into()))
    );
    c.add(mikey("mtk/1", times(1))).unwrap();
    c.add(protected("p", "mtk/1", times(1))).unwrap();
    assert_eq!(
        c.add(object("mtk/1", times(1))),
        Err(CarouselError::KeyObjectInUse("mtk/1".into()))
    );
    // Nor may a replacement name the key object it would replace.
    c.add(mikey("mtk/2", times(1))).unwrap();
    assert_eq!(
        c.add(protected("mtk/2", "mtk/2", times(1))),
        Err(CarouselError::KeyObjectInUse("mtk/2".into()))
    );

    let mut full = Carousel::new(
        CarouselConfig {
            max_toi: 2,
            ..CarouselConfig::default()
        },
        now,
    )
    .unwrap();
    full.add(object("a", times(1))).unwrap();
    full.add(object("b", times(1))).unwrap();
    assert!(matches!(
        full.add(object("c", times(1))),
        Err(CarouselError::ToisExhausted { max: 2, .. })
    ));
    // A TOI is free again once the caller was told to forget it.
    full.remove(1).unwrap();
    assert!(full.add(object("c", times(1))).is_err());
    assert_eq!(
        full.poll(now, NTP_START),
        Some(CarouselAction::Forget { toi: 1 })
    );
    assert_eq!(full.add(object("c", times(1))), Ok(1));

    let bad = |config| Carousel::new(config, now).unwrap_err();
    let base = CarouselConfig::default();
    assert_eq!(
        bad(CarouselConfig {
            fdt_lifetime_s: 3,
            ..base.clone()
        }),
        CarouselError::LifetimeTooShort {
            lifetime_s: 3,
            interval: Duration::from_secs(1)
        }
    );
    assert_eq!(
        bad(CarouselConfig {
            fdt_interval: Duration::ZERO,
            ..base.clone()
        }),
        CarouselError::ZeroFdtInterval
    );
    assert_eq!(
        bad(CarouselConfig {
            first_fdt_instance_id: FDT_INSTANCE_ID_MODULUS,
            ..base
        }),
        CarouselError::InstanceIdTooWide(FDT_INSTANCE_ID_MODULUS)
    );
}

#[derive(Debug, Clone)]
enum Op {
    Add {
        mikey: bool,
        key: u8,
        location: u8,
        lifetime: u8,
    },
    Remove(u8),
    Poll {
        actions: u8,
        step_ms: u16,
    },
    Close,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (any::<bool>(), 0u8..4, 0u8..12, 0u8..8).prop_map(|(mikey, key, location, lifetime)| {
            Op::Add { mikey, key, location, lifetime }
        }),
        2 => any::<u8>().prop_map(Op::Remove),
        6 => (1u8..20, 0u16..700).prop_map(|(actions, step_ms)| Op::Poll { actions, step_ms }),
        1 => Just(Op::Close),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    /// Random adds, removes, polls and closes against the invariants a
    /// receiver relies on.
    #[test]
    fn invariants_hold(ops in proptest::collection::vec(op(), 1..60), first_id in 0u32..FDT_INSTANCE_ID_MODULUS) {
        let mut sim = Sim::new(CarouselConfig {
            fdt_interval: Duration::from_millis(500),
            fdt_lifetime_s: 4,
            max_toi: 20,
            first_fdt_instance_id: first_id,
        });
        // ID → (Expires, files) as first sent.
        let mut instances: HashMap<u32, (u32, Vec<(u128, String)>)> = HashMap::new();
        let mut last_fdt: Option<FdtSeen> = None;
        let mut key_sent: BTreeSet<u128> = BTreeSet::new();
        let mut closed_at: Option<usize> = None;
        for op in ops {
            match op {
                Op::Add { mikey: is_mikey, key, location, lifetime } => {
                    let lifetime = match lifetime {
                        0..=3 => times(u32::from(lifetime) + 1),
                        4 | 5 => ObjectLifetime::Until(sim.now + Duration::from_millis(u64::from(lifetime) * 300)),
                        _ => ObjectLifetime::UntilRemoved,
                    };
                    let location = if is_mikey { format!("mtk/{}", location % 4) } else { format!("o{location}") };
                    let object = if is_mikey {
                        mikey(&location, lifetime)
                    } else if key > 0 {
                        protected(&location, &format!("mtk/{key}"), lifetime)
                    } else {
                        object(&location, lifetime)
                    };
                    let _ = sim.carousel.add(object);
                }
                Op::Remove(pick) => {
                    let tois: Vec<u128> = sim.carousel.tois().collect();
                    if !tois.is_empty() {
                        sim.carousel.remove(tois[usize::from(pick) % tois.len()]).unwrap();
                    }
                }
                Op::Poll { actions, step_ms } => {
                    for _ in 0..actions {
                        let before = sim.log.len();
                        let key_of: HashMap<u128, Option<String>> = sim.carousel.tois()
                            .map(|toi| (toi, sim.carousel.object(toi).and_then(|o| o.decryption_key_uri.clone()))).collect();
                        let ntp = sim.ntp();
                        let Some(sent) = sim.step(Duration::from_millis(u64::from(step_ms))) else { break };
                        match &sent {
                            Sent::Fdt { id, expires, files } => {
                                prop_assert!(!files.is_empty(), "empty FDT");
                                prop_assert!(*id < FDT_INSTANCE_ID_MODULUS);
                                prop_assert!(expires.wrapping_sub(ntp) as i32 > 1, "FDT about to expire");
                                // Lists exactly what is in the carousel.
                                let listed: BTreeSet<(u128, String)> = files.iter().cloned().collect();
                                let now_live: BTreeSet<(u128, String)> = sim.carousel.tois()
                                    .filter_map(|toi| sim.carousel.object(toi).map(|o| (toi, o.content_location.clone()))).collect();
                                prop_assert_eq!(listed, now_live);
                                let first = instances.entry(*id).or_insert((*expires, files.clone()));
                                prop_assert_eq!(&*first, &(*expires, files.clone()), "ID re-used");
                                if let Some((prev_id, prev_exp, prev_files)) = &last_fdt
                                    && (prev_exp != expires || prev_files != files)
                                {
                                    prop_assert_eq!(*id, (prev_id + 1) % FDT_INSTANCE_ID_MODULUS);
                                }
                                last_fdt = Some((*id, *expires, files.clone()));
                            }
                            Sent::Object(toi) => {
                                prop_assert!(*toi != 0 && *toi <= 20);
                                // Announced by the FDT on air.
                                let (_, _, files) = last_fdt.as_ref().unwrap();
                                let entry = files.iter().find(|f| f.0 == *toi);
                                prop_assert!(entry.is_some(), "TOI {} not in the FDT", toi);
                                let location = &entry.unwrap().1;
                                if location.starts_with("mtk/") {
                                    key_sent.insert(*toi);
                                }
                                // Its key object went before it.
                                if let Some(Some(key_uri)) = key_of.get(toi) {
                                    let key_toi = files.iter().find(|f| &f.1 == key_uri).map(|f| f.0);
                                    prop_assert!(key_toi.is_some_and(|k| key_sent.contains(&k)), "key not sent first");
                                }
                            }
                            Sent::Forget(toi) => {
                                prop_assert!(!sim.carousel.tois().any(|t| t == *toi));
                                key_sent.remove(toi);
                            }
                            Sent::Close => {
                                prop_assert!(last_fdt.is_some(), "close before any FDT");
                                prop_assert!(closed_at.is_none());
                                closed_at = Some(before);
                            }
                        }
                    }
                }
                Op::Close => sim.carousel.close(),
            }
            // Structural invariants after every operation.
            let tois: Vec<u128> = sim.carousel.tois().collect();
            let distinct: BTreeSet<u128> = tois.iter().copied().collect();
            prop_assert_eq!(distinct.len(), tois.len());
            prop_assert!(tois.iter().all(|&t| (1..=20).contains(&t)));
            for toi in &tois {
                let object = sim.carousel.object(*toi).unwrap();
                if let Some(key_uri) = &object.decryption_key_uri {
                    prop_assert!(
                        tois.iter().any(|&t| sim.carousel.object(t).is_some_and(|o| o.is_mikey && &o.content_location == key_uri)),
                        "key object of {} left before it", toi
                    );
                }
            }
        }
        if let Some(at) = closed_at {
            prop_assert!(sim.log[at + 1..].iter().all(|s| matches!(s, Sent::Forget(_))));
        }
    }
}
