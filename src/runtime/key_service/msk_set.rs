//! The MSKs a gateway holds and which one is current: pure selection rules, no clock.
//!
//! TS 33.246 §6.3.2.1: an MSK is named by Key Domain ID and MSK ID (Key Group ‖ Key
//! Number) and may protect MTKs whose IDs lie in its key validity window [SEQl, SEQu];
//! SEQl > SEQu marks it invalidated. Every decision here takes `now` (unix seconds) as
//! an argument, so it is tested without a clock.

use std::collections::{BTreeMap, BTreeSet};

use crate::protocol::keys::{KeyDomainId, Msk, MskId, MtkId};

/// One MSK as received from the BM-SC and checked (see `validate`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MskRecord {
    pub key_domain_id: KeyDomainId,
    pub msk_id: MskId,
    pub key: Msk,
    /// Key validity [SEQl, SEQu] in MTK IDs; SEQl > SEQu means invalidated.
    pub validity: (MtkId, MtkId),
    /// Unix seconds from which the MSK may be used.
    pub not_before: i64,
    /// Unix seconds from which the MSK must no longer be used (exclusive end).
    pub not_after: i64,
}

impl MskRecord {
    pub fn key_group(&self) -> u16 {
        self.msk_id.key_group()
    }

    /// SEQl > SEQu: the BM-SC withdrew the MSK (TS 33.246 §6.3.2.1).
    pub fn is_invalidated(&self) -> bool {
        self.validity.0 > self.validity.1
    }

    /// Usable at `now`: inside its lifetime and not invalidated.
    pub fn is_valid_at(&self, now: i64) -> bool {
        !self.is_invalidated() && self.not_before <= now && now < self.not_after
    }

    pub fn is_expired_at(&self, now: i64) -> bool {
        now >= self.not_after
    }

    /// Whether `mtk_id` lies in the key validity window.
    pub fn covers(&self, mtk_id: MtkId) -> bool {
        self.validity.0 <= mtk_id && mtk_id <= self.validity.1
    }
}

/// What [`MskSet::upsert`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Upsert {
    Added,
    /// Same MSK ID and key, new validity or lifetime.
    Updated,
    /// Identical to the record already held (e.g. a snapshot after a reconnect).
    Unchanged,
    /// The record carried SEQl > SEQu: the MSK was removed.
    Invalidated,
}

/// Updates that would make the set unsafe to use.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MskSetError {
    /// Receivers hold the old key under this ID; a different key under the same ID
    /// would make them derive wrong MTKs without noticing.
    #[error("MSK {msk_id:#010x}: key changed under an MSK ID already in use")]
    KeyChanged { msk_id: u32 },
    /// Invalidation is final: an MSK once withdrawn never comes back.
    #[error("MSK {msk_id:#010x}: was invalidated and cannot be added again")]
    WasInvalidated { msk_id: u32 },
}

/// The MSKs of one Key Domain, keyed by MSK ID, with tombstones for invalidated ones.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MskSet {
    records: BTreeMap<MskId, MskRecord>,
    invalidated: BTreeSet<MskId>,
}

impl MskSet {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn get(&self, msk_id: MskId) -> Option<&MskRecord> {
        self.records.get(&msk_id)
    }

    pub fn len(&self) -> usize {
        self.records.len()
    }

    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = &MskRecord> {
        self.records.values()
    }

    pub fn was_invalidated(&self, msk_id: MskId) -> bool {
        self.invalidated.contains(&msk_id)
    }

    /// The MSK to use for new MTKs of `key_group` at `now`: among the records of the
    /// group that are valid at `now`, the one that became valid last (the newest
    /// announced key takes over as soon as its lifetime starts); ties go to the
    /// higher MSK ID.
    pub fn current_for(&self, key_group: u16, now: i64) -> Option<&MskRecord> {
        self.group(key_group)
            .filter(|r| r.is_valid_at(now))
            .max_by_key(|r| (r.not_before, r.msk_id))
    }

    /// The MSK of `key_group` that becomes current next after `now`, if announced.
    pub fn next_for(&self, key_group: u16, now: i64) -> Option<&MskRecord> {
        self.group(key_group)
            .filter(|r| !r.is_invalidated() && r.not_before > now)
            .min_by_key(|r| (r.not_before, r.msk_id))
    }

    fn group(&self, key_group: u16) -> impl Iterator<Item = &MskRecord> {
        let first = MskId::new(key_group, 0);
        let last = MskId::new(key_group, u16::MAX);
        self.records.range(first..=last).map(|(_, r)| r)
    }

    /// Adds a record or replaces the one with the same MSK ID. A record with
    /// SEQl > SEQu invalidates the MSK.
    pub fn upsert(&mut self, record: MskRecord) -> Result<Upsert, MskSetError> {
        let id = record.msk_id;
        if self.invalidated.contains(&id) {
            return if record.is_invalidated() {
                Ok(Upsert::Unchanged)
            } else {
                Err(MskSetError::WasInvalidated { msk_id: id.0 })
            };
        }
        if let Some(held) = self.records.get(&id)
            && held.key != record.key
        {
            return Err(MskSetError::KeyChanged { msk_id: id.0 });
        }
        if record.is_invalidated() {
            self.invalidate(id);
            return Ok(Upsert::Invalidated);
        }
        Ok(match self.records.insert(id, record.clone()) {
            None => Upsert::Added,
            Some(old) if old == record => Upsert::Unchanged,
            Some(_) => Upsert::Updated,
        })
    }

    /// Withdraws an MSK for good. Returns whether it was held.
    pub fn invalidate(&mut self, msk_id: MskId) -> bool {
        self.invalidated.insert(msk_id);
        self.records.remove(&msk_id).is_some()
    }

    /// Drops records whose lifetime ended at or before `now`. Returns how many.
    pub fn prune_expired(&mut self, now: i64) -> usize {
        let before = self.records.len();
        self.records.retain(|_, r| !r.is_expired_at(now));
        before - self.records.len()
    }

    /// Keeps only the MSKs whose IDs are in `listed`: after a full snapshot from the
    /// BM-SC, anything it did not list is expired or withdrawn. Returns the removed IDs.
    pub fn retain_listed(&mut self, listed: &BTreeSet<MskId>) -> Vec<MskId> {
        let gone: Vec<MskId> = self
            .records
            .keys()
            .filter(|id| !listed.contains(id))
            .copied()
            .collect();
        for id in &gone {
            self.records.remove(id);
        }
        gone
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOMAIN: KeyDomainId = KeyDomainId([0x09, 0xf1, 0x07]);

    fn record(group: u16, number: u16, not_before: i64, not_after: i64) -> MskRecord {
        MskRecord {
            key_domain_id: DOMAIN,
            msk_id: MskId::new(group, number),
            key: Msk::new([number as u8; 16]),
            validity: (MtkId(1), MtkId(0xFFFF)),
            not_before,
            not_after,
        }
    }

    #[test]
    fn current_is_the_latest_started_valid_msk() {
        let mut set = MskSet::new();
        set.upsert(record(1, 1, 100, 400)).unwrap();
        set.upsert(record(1, 2, 200, 500)).unwrap();
        set.upsert(record(1, 3, 300, 600)).unwrap();
        set.upsert(record(2, 9, 0, 1000)).unwrap();

        assert_eq!(set.current_for(1, 99), None, "nothing started yet");
        assert_eq!(set.current_for(1, 100).unwrap().msk_id, MskId::new(1, 1));
        assert_eq!(set.current_for(1, 199).unwrap().msk_id, MskId::new(1, 1));
        assert_eq!(set.current_for(1, 200).unwrap().msk_id, MskId::new(1, 2));
        assert_eq!(set.current_for(1, 450).unwrap().msk_id, MskId::new(1, 3));
        assert_eq!(set.current_for(1, 600), None, "not_after is exclusive");
        assert_eq!(set.current_for(2, 450).unwrap().msk_id, MskId::new(2, 9));
        assert_eq!(set.current_for(3, 450), None, "unknown group");
    }

    #[test]
    fn next_is_the_earliest_announced_msk() {
        let mut set = MskSet::new();
        set.upsert(record(1, 1, 100, 400)).unwrap();
        set.upsert(record(1, 3, 300, 600)).unwrap();
        set.upsert(record(1, 2, 200, 500)).unwrap();
        assert_eq!(set.next_for(1, 150).unwrap().msk_id, MskId::new(1, 2));
        assert_eq!(set.next_for(1, 300), None);
    }

    #[test]
    fn ties_on_start_go_to_the_higher_msk_id() {
        let mut set = MskSet::new();
        set.upsert(record(1, 4, 100, 400)).unwrap();
        set.upsert(record(1, 5, 100, 300)).unwrap();
        assert_eq!(set.current_for(1, 150).unwrap().msk_id, MskId::new(1, 5));
        assert_eq!(set.current_for(1, 350).unwrap().msk_id, MskId::new(1, 4));
    }

    #[test]
    fn invalidation_removes_and_is_final() {
        let mut set = MskSet::new();
        set.upsert(record(1, 1, 100, 400)).unwrap();
        set.upsert(record(1, 2, 200, 500)).unwrap();
        assert!(set.invalidate(MskId::new(1, 2)));
        assert_eq!(set.current_for(1, 250).unwrap().msk_id, MskId::new(1, 1));
        assert_eq!(set.get(MskId::new(1, 2)), None);
        assert_eq!(
            set.upsert(record(1, 2, 200, 500)),
            Err(MskSetError::WasInvalidated {
                msk_id: 0x0001_0002
            })
        );
        assert!(set.was_invalidated(MskId::new(1, 2)));
    }

    #[test]
    fn inverted_window_in_an_update_invalidates() {
        let mut set = MskSet::new();
        set.upsert(record(1, 1, 100, 400)).unwrap();
        let mut withdrawn = record(1, 1, 100, 400);
        withdrawn.validity = (MtkId(10), MtkId(9));
        assert_eq!(set.upsert(withdrawn.clone()), Ok(Upsert::Invalidated));
        assert_eq!(set.current_for(1, 150), None);
        assert_eq!(set.upsert(withdrawn), Ok(Upsert::Unchanged));
    }

    #[test]
    fn replacing_same_id_updates_validity_but_never_the_key() {
        let mut set = MskSet::new();
        assert_eq!(set.upsert(record(1, 1, 100, 400)), Ok(Upsert::Added));
        assert_eq!(set.upsert(record(1, 1, 100, 400)), Ok(Upsert::Unchanged));
        let mut narrowed = record(1, 1, 100, 300);
        narrowed.validity = (MtkId(50), MtkId(60));
        assert_eq!(set.upsert(narrowed), Ok(Upsert::Updated));
        let held = set.get(MskId::new(1, 1)).unwrap();
        assert_eq!(
            (held.validity, held.not_after),
            ((MtkId(50), MtkId(60)), 300)
        );

        let mut rekeyed = record(1, 1, 100, 300);
        rekeyed.key = Msk::new([0xEE; 16]);
        assert_eq!(
            set.upsert(rekeyed),
            Err(MskSetError::KeyChanged {
                msk_id: 0x0001_0001
            })
        );
        assert_eq!(set.get(MskId::new(1, 1)).unwrap().key, Msk::new([1; 16]));
    }

    #[test]
    fn prune_and_retain_listed() {
        let mut set = MskSet::new();
        set.upsert(record(1, 1, 100, 200)).unwrap();
        set.upsert(record(1, 2, 150, 300)).unwrap();
        set.upsert(record(1, 3, 250, 400)).unwrap();
        assert_eq!(set.prune_expired(200), 1);
        assert_eq!(set.len(), 2);
        let listed = BTreeSet::from([MskId::new(1, 3)]);
        assert_eq!(set.retain_listed(&listed), vec![MskId::new(1, 2)]);
        assert_eq!(
            set.iter().map(|r| r.msk_id).collect::<Vec<_>>(),
            [MskId::new(1, 3)]
        );
    }

    #[test]
    fn window_coverage() {
        let mut r = record(1, 1, 0, 10);
        r.validity = (MtkId(5), MtkId(7));
        assert!(
            !r.covers(MtkId(4)) && r.covers(MtkId(5)) && r.covers(MtkId(7)) && !r.covers(MtkId(8))
        );
    }
}
