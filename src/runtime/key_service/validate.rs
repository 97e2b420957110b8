//! Checks every answer of the BM-SC before anything is installed: a wire `Msk` becomes
//! an [`MskRecord`], a wire `Lease` a [`LeaseRecord`], or a typed error that names the
//! field and the reason. Pure functions, no I/O; the client logs and counts rejects.

use std::collections::BTreeSet;

use zeroize::Zeroize;

use super::msk_set::MskRecord;
use super::proto;
use crate::protocol::keys::{KeyDomainId, Msk, MskId, MtkId};

/// A garbage MSK answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MskAnswerError {
    #[error("{field}: Key Domain ID must be 3 bytes, got {got}")]
    KeyDomainIdLength { field: &'static str, got: usize },
    #[error("{field}: Key Domain ID {got} is not the configured {expected}")]
    KeyDomainMismatch {
        field: &'static str,
        got: String,
        expected: String,
    },
    #[error("Msk.key of MSK {msk_id:#010x}: must be 16 bytes, got {got}")]
    KeyLength { msk_id: u32, got: usize },
    #[error("{field} {msk_id:#010x}: unknown Key Group {key_group} (not asked for)")]
    UnknownKeyGroup {
        field: &'static str,
        msk_id: u32,
        key_group: u16,
    },
    #[error("{field} {msk_id:#010x}: Key Number 0 means \"current\" and names no key")]
    ZeroKeyNumber { field: &'static str, msk_id: u32 },
    #[error("Msk.{field} of MSK {msk_id:#010x}: {value} exceeds the 16-bit MTK ID range")]
    SeqOutOfRange {
        field: &'static str,
        msk_id: u32,
        value: u32,
    },
    #[error(
        "Msk.not_after_unix of MSK {msk_id:#010x}: {not_after} is not after not_before_unix {not_before}"
    )]
    EmptyLifetime {
        msk_id: u32,
        not_before: i64,
        not_after: i64,
    },
    #[error("Msk.not_before_unix of MSK {msk_id:#010x}: {value} is before 1970")]
    NegativeTime { msk_id: u32, value: i64 },
    #[error("MskEvent.event: empty (no known event in the message)")]
    EmptyEvent,
}

/// A garbage lease answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LeaseAnswerError {
    #[error(transparent)]
    KeyDomain(#[from] MskAnswerError),
    #[error("Lease.msk_id: got {got:#010x}, asked for {asked:#010x}")]
    MskMismatch { got: u32, asked: u32 },
    #[error("Lease.{field}: [{first}, {last}] is inverted or empty")]
    Inverted {
        field: &'static str,
        first: u32,
        last: u32,
    },
    #[error(
        "Lease.first_mtk_id..last_mtk_id: [{first}, {last}] lies outside the window [{seq_l}, {seq_u}] of MSK {msk_id:#010x}"
    )]
    OutsideWindow {
        msk_id: u32,
        first: u32,
        last: u32,
        seq_l: u16,
        seq_u: u16,
    },
    #[error("Lease.{field}: {granted} granted, only {asked} asked for")]
    MoreThanAsked {
        field: &'static str,
        granted: u64,
        asked: u32,
    },
    #[error("Lease.{field}: starts at {first}, not above the previous grant ending at {previous}")]
    NotAbovePrevious {
        field: &'static str,
        first: u32,
        previous: u32,
    },
}

/// MTK IDs and MIKEY counters granted under one MSK, inclusive ranges.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaseRecord {
    pub msk_id: MskId,
    pub mtk_ids: (MtkId, MtkId),
    pub counters: (u32, u32),
}

impl LeaseRecord {
    pub fn mtk_id_count(&self) -> u32 {
        u32::from(self.mtk_ids.1.0) - u32::from(self.mtk_ids.0.0) + 1
    }

    pub fn counter_count(&self) -> u64 {
        u64::from(self.counters.1) - u64::from(self.counters.0) + 1
    }
}

/// What the client asked for, to hold the answer against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaseAsk {
    pub msk_id: MskId,
    pub mtk_ids: u16,
    pub counters: u32,
}

/// The MSKs a client subscribed to: answers outside it are garbage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MskScope {
    pub key_domain_id: KeyDomainId,
    pub key_groups: BTreeSet<u16>,
}

/// Hex of a Key Domain ID, as operators write it (e.g. `09f107`).
pub fn key_domain_hex(id: KeyDomainId) -> String {
    hex::encode(id.0)
}

/// Reads a 3-byte Key Domain ID from the wire.
pub fn key_domain_id_from_wire(
    bytes: &[u8],
    field: &'static str,
) -> Result<KeyDomainId, MskAnswerError> {
    <[u8; 3]>::try_from(bytes)
        .map(KeyDomainId)
        .map_err(|_| MskAnswerError::KeyDomainIdLength {
            field,
            got: bytes.len(),
        })
}

fn expect_key_domain(
    bytes: &[u8],
    field: &'static str,
    expected: KeyDomainId,
) -> Result<KeyDomainId, MskAnswerError> {
    let got = key_domain_id_from_wire(bytes, field)?;
    if got != expected {
        return Err(MskAnswerError::KeyDomainMismatch {
            field,
            got: key_domain_hex(got),
            expected: key_domain_hex(expected),
        });
    }
    Ok(got)
}

/// Checks an MSK ID against the scope: a known Key Group and a concrete Key Number.
pub fn msk_id_in_scope(
    raw: u32,
    field: &'static str,
    scope: &MskScope,
) -> Result<MskId, MskAnswerError> {
    let id = MskId(raw);
    if id.key_number() == MskId::CURRENT_KEY_NUMBER {
        return Err(MskAnswerError::ZeroKeyNumber { field, msk_id: raw });
    }
    if !scope.key_groups.contains(&id.key_group()) {
        return Err(MskAnswerError::UnknownKeyGroup {
            field,
            msk_id: raw,
            key_group: id.key_group(),
        });
    }
    Ok(id)
}

fn seq(value: u32, field: &'static str, msk_id: u32) -> Result<MtkId, MskAnswerError> {
    u16::try_from(value)
        .map(MtkId)
        .map_err(|_| MskAnswerError::SeqOutOfRange {
            field,
            msk_id,
            value,
        })
}

/// Converts a wire MSK into a record, or says which field is wrong. The wire copy of
/// the key is wiped either way.
pub fn msk_from_wire(mut wire: proto::Msk, scope: &MskScope) -> Result<MskRecord, MskAnswerError> {
    let record = check_msk(&wire, scope);
    wire.key.zeroize();
    record
}

fn check_msk(wire: &proto::Msk, scope: &MskScope) -> Result<MskRecord, MskAnswerError> {
    let key_domain_id = expect_key_domain(
        &wire.key_domain_id,
        "Msk.key_domain_id",
        scope.key_domain_id,
    )?;
    let msk_id = msk_id_in_scope(wire.msk_id, "Msk.msk_id", scope)?;
    let key = Msk::from_slice(&wire.key).ok_or(MskAnswerError::KeyLength {
        msk_id: wire.msk_id,
        got: wire.key.len(),
    })?;
    let seq_l = seq(wire.seq_l, "seq_l", wire.msk_id)?;
    let seq_u = seq(wire.seq_u, "seq_u", wire.msk_id)?;
    if wire.not_before_unix < 0 {
        return Err(MskAnswerError::NegativeTime {
            msk_id: wire.msk_id,
            value: wire.not_before_unix,
        });
    }
    if wire.not_after_unix <= wire.not_before_unix {
        return Err(MskAnswerError::EmptyLifetime {
            msk_id: wire.msk_id,
            not_before: wire.not_before_unix,
            not_after: wire.not_after_unix,
        });
    }
    Ok(MskRecord {
        key_domain_id,
        msk_id,
        key,
        validity: (seq_l, seq_u),
        not_before: wire.not_before_unix,
        not_after: wire.not_after_unix,
    })
}

/// The wire form of a record (server side).
pub fn msk_to_wire(record: &MskRecord) -> proto::Msk {
    proto::Msk {
        key_domain_id: record.key_domain_id.0.to_vec(),
        msk_id: record.msk_id.0,
        key: record.key.expose().to_vec(),
        seq_l: record.validity.0.0.into(),
        seq_u: record.validity.1.0.into(),
        not_before_unix: record.not_before,
        not_after_unix: record.not_after,
    }
}

fn range(first: u32, last: u32, field: &'static str) -> Result<(u32, u32), LeaseAnswerError> {
    if first > last {
        return Err(LeaseAnswerError::Inverted { field, first, last });
    }
    Ok((first, last))
}

/// Checks a granted lease against the request, the MSK's window and the previous
/// grant this client saw for the MSK (a BM-SC that goes backwards is refused).
pub fn lease_from_wire(
    wire: &proto::Lease,
    ask: LeaseAsk,
    msk: &MskRecord,
    previous: Option<&LeaseRecord>,
) -> Result<LeaseRecord, LeaseAnswerError> {
    expect_key_domain(
        &wire.key_domain_id,
        "Lease.key_domain_id",
        msk.key_domain_id,
    )?;
    if wire.msk_id != ask.msk_id.0 {
        return Err(LeaseAnswerError::MskMismatch {
            got: wire.msk_id,
            asked: ask.msk_id.0,
        });
    }
    let (first_mtk, last_mtk) = range(
        wire.first_mtk_id,
        wire.last_mtk_id,
        "first_mtk_id..last_mtk_id",
    )?;
    let (seq_l, seq_u) = (msk.validity.0.0, msk.validity.1.0);
    if first_mtk < u32::from(seq_l) || last_mtk > u32::from(seq_u) {
        return Err(LeaseAnswerError::OutsideWindow {
            msk_id: ask.msk_id.0,
            first: first_mtk,
            last: last_mtk,
            seq_l,
            seq_u,
        });
    }
    let counters = range(
        wire.first_counter,
        wire.last_counter,
        "first_counter..last_counter",
    )?;
    // Both ranges are inside u16 / u32 now, so the casts below are exact.
    let lease = LeaseRecord {
        msk_id: ask.msk_id,
        mtk_ids: (MtkId(first_mtk as u16), MtkId(last_mtk as u16)),
        counters,
    };
    if lease.mtk_id_count() > u32::from(ask.mtk_ids) {
        return Err(LeaseAnswerError::MoreThanAsked {
            field: "first_mtk_id..last_mtk_id",
            granted: lease.mtk_id_count().into(),
            asked: ask.mtk_ids.into(),
        });
    }
    if lease.counter_count() > u64::from(ask.counters) {
        return Err(LeaseAnswerError::MoreThanAsked {
            field: "first_counter..last_counter",
            granted: lease.counter_count(),
            asked: ask.counters,
        });
    }
    if let Some(prev) = previous {
        if lease.mtk_ids.0 <= prev.mtk_ids.1 {
            return Err(LeaseAnswerError::NotAbovePrevious {
                field: "first_mtk_id",
                first: first_mtk,
                previous: prev.mtk_ids.1.0.into(),
            });
        }
        if lease.counters.0 <= prev.counters.1 {
            return Err(LeaseAnswerError::NotAbovePrevious {
                field: "first_counter",
                first: lease.counters.0,
                previous: prev.counters.1,
            });
        }
    }
    Ok(lease)
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOMAIN: KeyDomainId = KeyDomainId([0x09, 0xf1, 0x07]);

    fn scope() -> MskScope {
        MskScope {
            key_domain_id: DOMAIN,
            key_groups: BTreeSet::from([1, 2]),
        }
    }

    fn good() -> proto::Msk {
        proto::Msk {
            key_domain_id: DOMAIN.0.to_vec(),
            msk_id: 0x0001_0003,
            key: vec![0x5a; 16],
            seq_l: 1,
            seq_u: 0xFFFF,
            not_before_unix: 1_000,
            not_after_unix: 2_000,
        }
    }

    fn reject(edit: impl FnOnce(&mut proto::Msk)) -> String {
        let mut wire = good();
        edit(&mut wire);
        msk_from_wire(wire, &scope()).unwrap_err().to_string()
    }

    #[test]
    fn good_msk_converts_and_round_trips() {
        let record = msk_from_wire(good(), &scope()).unwrap();
        assert_eq!(record.msk_id, MskId::new(1, 3));
        assert_eq!(record.key, Msk::new([0x5a; 16]));
        assert_eq!(record.validity, (MtkId(1), MtkId(0xFFFF)));
        let back = msk_to_wire(&record);
        assert_eq!(msk_from_wire(back, &scope()).unwrap(), record);
    }

    #[test]
    fn inverted_window_is_accepted_as_invalidation() {
        let mut wire = good();
        wire.seq_l = 9;
        wire.seq_u = 8;
        assert!(msk_from_wire(wire, &scope()).unwrap().is_invalidated());
    }

    #[test]
    fn each_garbage_field_is_named() {
        assert_eq!(
            reject(|m| m.key.truncate(15)),
            "Msk.key of MSK 0x00010003: must be 16 bytes, got 15"
        );
        assert_eq!(
            reject(|m| m.key_domain_id.push(0)),
            "Msk.key_domain_id: Key Domain ID must be 3 bytes, got 4"
        );
        assert_eq!(
            reject(|m| m.key_domain_id = vec![1, 2, 3]),
            "Msk.key_domain_id: Key Domain ID 010203 is not the configured 09f107"
        );
        assert_eq!(
            reject(|m| m.msk_id = 0x0007_0001),
            "Msk.msk_id 0x00070001: unknown Key Group 7 (not asked for)"
        );
        assert_eq!(
            reject(|m| m.msk_id = 0x0001_0000),
            "Msk.msk_id 0x00010000: Key Number 0 means \"current\" and names no key"
        );
        assert_eq!(
            reject(|m| m.seq_u = 0x1_0000),
            "Msk.seq_u of MSK 0x00010003: 65536 exceeds the 16-bit MTK ID range"
        );
        assert_eq!(
            reject(|m| m.seq_l = u32::MAX),
            "Msk.seq_l of MSK 0x00010003: 4294967295 exceeds the 16-bit MTK ID range"
        );
        assert_eq!(
            reject(|m| m.not_after_unix = m.not_before_unix),
            "Msk.not_after_unix of MSK 0x00010003: 1000 is not after not_before_unix 1000"
        );
        assert_eq!(
            reject(|m| m.not_before_unix = -1),
            "Msk.not_before_unix of MSK 0x00010003: -1 is before 1970"
        );
    }

    #[test]
    fn errors_and_debug_never_show_the_key() {
        let text = format!("{:?} {}", good(), reject(|m| m.key.truncate(15)));
        assert!(!text.contains("90") && !text.contains("5a"), "{text}");
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(4096))]

        /// Any wire MSK: an error, or a record that satisfies every invariant.
        #[test]
        fn any_wire_msk_is_rejected_or_sound(
            domain in proptest::prop_oneof![
                proptest::strategy::Just(DOMAIN.0.to_vec()),
                proptest::collection::vec(proptest::prelude::any::<u8>(), 0..5),
            ],
            group in 0u32..3,
            number in 0u32..3,
            key in proptest::collection::vec(proptest::prelude::any::<u8>(), 15..17),
            seq_l in 0xFFF0u32..0x1_0002,
            seq_u in 0xFFF0u32..0x1_0002,
            not_before in -1i64..3,
            not_after in -1i64..3,
        ) {
            let msk_id = (group << 16) | number;
            let wire = proto::Msk {
                key_domain_id: domain.clone(),
                msk_id,
                key: key.clone(),
                seq_l,
                seq_u,
                not_before_unix: not_before,
                not_after_unix: not_after,
            };
            if let Ok(r) = msk_from_wire(wire, &scope()) {
                proptest::prop_assert_eq!(domain.as_slice(), &DOMAIN.0[..]);
                proptest::prop_assert_eq!(&r.key.expose()[..], key.as_slice());
                proptest::prop_assert!(scope().key_groups.contains(&r.key_group()));
                proptest::prop_assert!(r.msk_id.key_number() != 0);
                proptest::prop_assert_eq!((u32::from(r.validity.0.0), u32::from(r.validity.1.0)), (seq_l, seq_u));
                proptest::prop_assert!(0 <= r.not_before && r.not_before < r.not_after);
            }
        }

        /// Any wire lease: an error, or ranges inside the window and the request.
        #[test]
        fn any_wire_lease_is_rejected_or_sound(
            first_mtk: u32, last_mtk: u32, first_counter: u32, last_counter: u32,
            seq_l: u16, seq_u: u16,
        ) {
            let window = msk(seq_l, seq_u);
            let wire = wire_lease((first_mtk, last_mtk), (first_counter, last_counter));
            if let Ok(l) = lease_from_wire(&wire, ASK, &window, None) {
                proptest::prop_assert!(window.covers(l.mtk_ids.0) && window.covers(l.mtk_ids.1));
                proptest::prop_assert!(l.mtk_ids.0 <= l.mtk_ids.1 && l.counters.0 <= l.counters.1);
                proptest::prop_assert!(l.mtk_id_count() <= u32::from(ASK.mtk_ids));
                proptest::prop_assert!(l.counter_count() <= u64::from(ASK.counters));
            }
        }
    }

    fn msk(seq_l: u16, seq_u: u16) -> MskRecord {
        let mut wire = good();
        wire.seq_l = seq_l.into();
        wire.seq_u = seq_u.into();
        msk_from_wire(wire, &scope()).unwrap()
    }

    fn wire_lease(mtk: (u32, u32), counters: (u32, u32)) -> proto::Lease {
        proto::Lease {
            key_domain_id: DOMAIN.0.to_vec(),
            msk_id: 0x0001_0003,
            first_mtk_id: mtk.0,
            last_mtk_id: mtk.1,
            first_counter: counters.0,
            last_counter: counters.1,
        }
    }

    const ASK: LeaseAsk = LeaseAsk {
        msk_id: MskId::new(1, 3),
        mtk_ids: 10,
        counters: 100,
    };

    #[test]
    fn good_lease_converts() {
        let lease =
            lease_from_wire(&wire_lease((11, 20), (101, 200)), ASK, &msk(1, 100), None).unwrap();
        assert_eq!(lease.mtk_ids, (MtkId(11), MtkId(20)));
        assert_eq!(lease.counters, (101, 200));
        assert_eq!((lease.mtk_id_count(), lease.counter_count()), (10, 100));
        // A shorter grant at the end of the window is fine.
        let tail =
            lease_from_wire(&wire_lease((95, 100), (1, 1)), ASK, &msk(1, 100), None).unwrap();
        assert_eq!(tail.mtk_id_count(), 6);
    }

    #[test]
    fn each_garbage_lease_is_named() {
        let window = msk(10, 100);
        let prev = LeaseRecord {
            msk_id: ASK.msk_id,
            mtk_ids: (MtkId(10), MtkId(19)),
            counters: (1, 100),
        };
        let check = |wire: proto::Lease| {
            lease_from_wire(&wire, ASK, &window, Some(&prev))
                .unwrap_err()
                .to_string()
        };
        assert_eq!(
            check(wire_lease((30, 29), (101, 200))),
            "Lease.first_mtk_id..last_mtk_id: [30, 29] is inverted or empty"
        );
        assert_eq!(
            check(wire_lease((30, 31), (201, 200))),
            "Lease.first_counter..last_counter: [201, 200] is inverted or empty"
        );
        assert_eq!(
            check(wire_lease((95, 104), (101, 200))),
            "Lease.first_mtk_id..last_mtk_id: [95, 104] lies outside the window [10, 100] of MSK 0x00010003"
        );
        assert_eq!(
            check(wire_lease((5, 9), (101, 200))),
            "Lease.first_mtk_id..last_mtk_id: [5, 9] lies outside the window [10, 100] of MSK 0x00010003"
        );
        assert_eq!(
            check(wire_lease((20, 30), (101, 200))),
            "Lease.first_mtk_id..last_mtk_id: 11 granted, only 10 asked for"
        );
        assert_eq!(
            check(wire_lease((20, 29), (101, 201))),
            "Lease.first_counter..last_counter: 101 granted, only 100 asked for"
        );
        assert_eq!(
            check(wire_lease((19, 28), (101, 200))),
            "Lease.first_mtk_id: starts at 19, not above the previous grant ending at 19"
        );
        assert_eq!(
            check(wire_lease((20, 29), (100, 199))),
            "Lease.first_counter: starts at 100, not above the previous grant ending at 100"
        );
        let mut other = wire_lease((20, 29), (101, 200));
        other.msk_id = 0x0001_0004;
        assert_eq!(
            check(other),
            "Lease.msk_id: got 0x00010004, asked for 0x00010003"
        );
    }
}
