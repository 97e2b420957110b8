//! The UE's MSK store as TS 33.246 describes it (seed §6.3.2.1, §6.3.2.2,
//! §6.4.6, §6.5): MSK messages opened under the MUK with a replay counter per
//! MUK, at most two MSKs per (Key Domain ID, Key Group) with the older dropped
//! on a third, MTK messages opened with a replay counter and current MTK ID per
//! MSK, a solicited pull or traffic under an unknown MSK (a missed key update)
//! turned into an MSK request, and those requests spread by the Service
//! Announcement's back-off parameters (TS 26.346 `offsetTime`,
//! `randomTimePeriod`) and retried until the MSK arrives.
//!
//! Sans-IO: `now` is a [`Duration`] since any fixed origin, randomness a `u32`
//! from the caller.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use thiserror::Error;

use super::bodies::{KeyRef, Status};
use crate::protocol::keys::{KeyDomainId, Msk, MskId, Muk};
use crate::protocol::mikey::{
    MikeyError, MskUpdate, MtkIdInterval, MtkReceptionState, MukReceptionState, OpenedMtk,
    PeekedMessage, open_msk_message, open_mtk_message, peek_message,
};

/// At most this many MSKs per (Key Domain ID, Key Group) (seed §6.3.2.1;
/// TS 31.102 EF_MSK).
pub const MSKS_PER_KEY_GROUP: usize = 2;
/// Most MSK requests waiting at once, so hostile traffic naming ever new MSK
/// IDs cannot grow memory.
pub const MAX_PENDING_REQUESTS: usize = 64;

/// Back-off mode (TS 26.346 §9.3.2 as referenced by seed §6.3.2.1A): an MSK
/// request is sent `offset` plus a uniformly random part of `random_period`
/// after the need arises, so a crowd of UEs does not ask at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct BackOff {
    pub offset: Duration,
    pub random_period: Duration,
}

impl BackOff {
    /// The delay for `random` (uniform over `u32`).
    pub fn delay(&self, random: u32) -> Duration {
        let fraction = f64::from(random) / (f64::from(u32::MAX) + 1.0);
        self.offset + self.random_period.mul_f64(fraction)
    }
}

/// One MSK held by the UE.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredMsk {
    pub key_domain_id: KeyDomainId,
    pub msk_id: MskId,
    pub msk: Msk,
    /// Key Validity data: the MTK ID interval [SEQl, SEQu] (seed §6.5.3).
    pub validity: MtkIdInterval,
    /// Replay counter and current MTK ID of MTK messages under this MSK
    /// (seed §6.4.6.2).
    mtk_state: MtkReceptionState,
    arrival: u64,
}

/// What an accepted MSK message did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MskOutcome {
    /// A new MSK; `evicted` is the older MSK of its Key Group dropped to make room.
    Stored {
        key: KeyRef,
        evicted: Option<MskId>,
    },
    /// A new key (or the same key re-sent) under an MSK ID already held.
    Replaced {
        key: KeyRef,
    },
    ValidityUpdated {
        key: KeyRef,
    },
    /// SEQl > SEQu: the MSK was deleted (seed §6.3.2.1B).
    Invalidated {
        key: KeyRef,
    },
    /// Validity data for an MSK the UE does not hold: nothing to update.
    UnknownMsk {
        key: KeyRef,
    },
    /// The BM-SC asks for the current MSK of a Key Group; an MSK request for
    /// `key` (Key Number 0) is now pending (seed §6.3.2.2.4).
    SolicitedPull {
        key: KeyRef,
    },
}

/// An accepted MSK message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MskReception {
    pub outcome: MskOutcome,
    /// The V bit: answer with a MIKEY verification message.
    pub ack_requested: bool,
}

/// Why the UE dropped a message.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum UeKeyError {
    #[error(transparent)]
    Mikey(#[from] MikeyError),
    #[error("an MSK message arrived where an MTK message was expected, or the reverse")]
    WrongKind,
    #[error("MTK message under MSK {:08x} of Key Domain {}, which the UE does not hold: an MSK request is pending", .key.msk_id.0, hex::encode(.key.key_domain_id.0))]
    MissingMsk { key: KeyRef },
}

/// A pending MSK request.
#[derive(Debug, Clone, Copy)]
struct Pending {
    due: Duration,
    attempts: u32,
}

/// The UE's key state.
#[derive(Debug)]
pub struct UeMskStore {
    muk_states: HashMap<Vec<u8>, MukReceptionState>,
    groups: BTreeMap<(KeyDomainId, u16), Vec<StoredMsk>>,
    pending: BTreeMap<KeyRef, Pending>,
    backoff: BackOff,
    retry_after: Duration,
    max_retry_after: Duration,
    arrivals: u64,
}

impl UeMskStore {
    /// `retry_after`: how long to wait for a requested MSK before asking
    /// again (doubling per attempt up to `max_retry_after`).
    pub fn new(backoff: BackOff, retry_after: Duration, max_retry_after: Duration) -> Self {
        Self {
            muk_states: HashMap::new(),
            groups: BTreeMap::new(),
            pending: BTreeMap::new(),
            backoff,
            retry_after,
            max_retry_after: max_retry_after.max(retry_after),
            arrivals: 0,
        }
    }

    /// Every MSK held.
    pub fn msks(&self) -> impl Iterator<Item = &StoredMsk> {
        self.groups.values().flatten()
    }

    pub fn get(&self, key_domain_id: KeyDomainId, msk_id: MskId) -> Option<&StoredMsk> {
        self.groups
            .get(&(key_domain_id, msk_id.key_group()))?
            .iter()
            .find(|m| m.msk_id == msk_id)
    }

    fn get_mut(&mut self, key: KeyRef) -> Option<&mut StoredMsk> {
        self.groups
            .get_mut(&(key.key_domain_id, key.msk_id.key_group()))?
            .iter_mut()
            .find(|m| m.msk_id == key.msk_id)
    }

    /// The MSK messages' replay counter of a MUK (by its MUK ID bytes).
    pub fn muk_counter(&self, muk_id: &[u8]) -> Option<u32> {
        self.muk_states.get(muk_id)?.last_counter
    }

    /// Opens an MSK message under `muk` (seed §6.4.6.1, §6.5.3). The replay
    /// counter of the message's MUK changes only when the message verifies.
    pub fn on_msk_message(
        &mut self,
        muk: &Muk,
        bytes: &[u8],
        now: Duration,
        random: u32,
    ) -> Result<MskReception, UeKeyError> {
        let PeekedMessage::Msk(info) = peek_message(bytes)? else {
            return Err(UeKeyError::WrongKind);
        };
        let muk_id = info.muk_id.to_bytes();
        let mut state = self.muk_states.get(&muk_id).copied().unwrap_or_default();
        let opened = open_msk_message(muk, &mut state, bytes)?;
        self.muk_states.insert(muk_id, state);
        let domain = opened.key_domain_id;
        let outcome = match opened.update {
            MskUpdate::Delivery {
                msk_id,
                msk,
                validity,
            } => {
                let key = KeyRef {
                    key_domain_id: domain,
                    msk_id,
                };
                if validity.seq_l > validity.seq_u {
                    self.invalidate(key)
                } else {
                    self.store(key, msk, validity)
                }
            }
            MskUpdate::ValidityUpdate { msk_id, validity } => {
                let key = KeyRef {
                    key_domain_id: domain,
                    msk_id,
                };
                if validity.seq_l > validity.seq_u {
                    self.invalidate(key)
                } else if let Some(stored) = self.get_mut(key) {
                    stored.validity = validity;
                    stored.mtk_state.validity = Some(validity);
                    MskOutcome::ValidityUpdated { key }
                } else {
                    MskOutcome::UnknownMsk { key }
                }
            }
            MskUpdate::SolicitedPull {
                key_domain_id,
                key_group,
            } => {
                let key = KeyRef {
                    key_domain_id,
                    msk_id: MskId::new(key_group, MskId::CURRENT_KEY_NUMBER),
                };
                self.need(key, now, random);
                MskOutcome::SolicitedPull { key }
            }
        };
        Ok(MskReception {
            outcome,
            ack_requested: opened.verification_requested,
        })
    }

    fn store(&mut self, key: KeyRef, msk: Msk, validity: MtkIdInterval) -> MskOutcome {
        self.arrivals += 1;
        let arrival = self.arrivals;
        self.satisfied(key);
        if let Some(stored) = self.get_mut(key) {
            // A different key under the same ID starts a fresh MTK history; the
            // same key re-sent keeps it, so old MTK messages stay replays.
            if stored.msk != msk {
                stored.mtk_state = MtkReceptionState::default();
            }
            stored.msk = msk;
            stored.validity = validity;
            stored.mtk_state.validity = Some(validity);
            return MskOutcome::Replaced { key };
        }
        let group = self
            .groups
            .entry((key.key_domain_id, key.msk_id.key_group()))
            .or_default();
        let mut evicted = None;
        if group.len() >= MSKS_PER_KEY_GROUP
            && let Some(oldest) = group
                .iter()
                .enumerate()
                .min_by_key(|(_, m)| m.arrival)
                .map(|(i, _)| i)
        {
            evicted = Some(group.remove(oldest).msk_id);
        }
        group.push(StoredMsk {
            key_domain_id: key.key_domain_id,
            msk_id: key.msk_id,
            msk,
            validity,
            mtk_state: MtkReceptionState {
                validity: Some(validity),
                ..MtkReceptionState::default()
            },
            arrival,
        });
        MskOutcome::Stored { key, evicted }
    }

    fn invalidate(&mut self, key: KeyRef) -> MskOutcome {
        let group_key = (key.key_domain_id, key.msk_id.key_group());
        if let Some(group) = self.groups.get_mut(&group_key) {
            group.retain(|m| m.msk_id != key.msk_id);
            if group.is_empty() {
                self.groups.remove(&group_key);
            }
        }
        self.pending.remove(&key);
        MskOutcome::Invalidated { key }
    }

    /// Opens an MTK message (seed §6.4.6.2): under an MSK the UE holds, with
    /// that MSK's replay counter and current MTK ID; under one it lacks, an
    /// MSK request for it becomes pending (missed key update, seed §6.3.2.2.3).
    pub fn on_mtk_message(
        &mut self,
        bytes: &[u8],
        now: Duration,
        random: u32,
    ) -> Result<OpenedMtk, UeKeyError> {
        let PeekedMessage::Mtk(ids) = peek_message(bytes)? else {
            return Err(UeKeyError::WrongKind);
        };
        let key = KeyRef {
            key_domain_id: ids.key_domain_id,
            msk_id: ids.msk_id,
        };
        match self.get_mut(key) {
            Some(stored) => Ok(open_mtk_message(&stored.msk, &mut stored.mtk_state, bytes)?),
            None => {
                self.need(key, now, random);
                Err(UeKeyError::MissingMsk { key })
            }
        }
    }

    /// Makes an MSK request for `key` pending, due after the back-off delay;
    /// one already pending keeps its time. Returns whether it is pending.
    pub fn need(&mut self, key: KeyRef, now: Duration, random: u32) -> bool {
        if self.pending.contains_key(&key) {
            return true;
        }
        if self.pending.len() >= MAX_PENDING_REQUESTS {
            return false;
        }
        self.pending.insert(
            key,
            Pending {
                due: now + self.backoff.delay(random),
                attempts: 0,
            },
        );
        true
    }

    /// The MSK requests to send now. Each stays pending, due again after the
    /// retry interval, until its MSK arrives or the BM-SC refuses it.
    pub fn due_requests(&mut self, now: Duration) -> Vec<KeyRef> {
        let (retry, max) = (self.retry_after, self.max_retry_after);
        let mut due = Vec::new();
        for (key, pending) in &mut self.pending {
            if pending.due <= now {
                due.push(*key);
                let factor = 1u32 << pending.attempts.min(16);
                pending.due = now + retry.saturating_mul(factor).min(max);
                pending.attempts = pending.attempts.saturating_add(1);
            }
        }
        due
    }

    /// When the next pending request is due, if any.
    pub fn next_due(&self) -> Option<Duration> {
        self.pending.values().map(|p| p.due).min()
    }

    pub fn is_pending(&self, key: KeyRef) -> bool {
        self.pending.contains_key(&key)
    }

    /// Takes the BM-SC's per-key answer: a refusal ends the request (asking
    /// again would get the same answer); success waits for the MIKEY delivery.
    pub fn on_request_status(&mut self, key: KeyRef, status: Status) {
        if status != Status::Ok {
            self.pending.remove(&key);
        }
    }

    /// An MSK arrived: the request for it, and one for the current MSK of its
    /// Key Group, are answered.
    fn satisfied(&mut self, key: KeyRef) {
        self.pending.remove(&key);
        self.pending.remove(&KeyRef {
            key_domain_id: key.key_domain_id,
            msk_id: MskId::new(key.msk_id.key_group(), MskId::CURRENT_KEY_NUMBER),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::keys::{Mtk, MtkId, MtkKey, MtkSalt};
    use crate::protocol::mikey::id::id_type;
    use crate::protocol::mikey::{
        Id, MskMessageContent, MskMessageParams, MtkMessageParams, MukId, build_msk_message,
        build_mtk_message,
    };

    const DOMAIN: KeyDomainId = KeyDomainId([0x09, 0xf1, 0x07]);
    const MUK: [u8; 32] = [7; 32];
    const T0: Duration = Duration::from_secs(1000);

    fn key(group: u16, number: u16) -> KeyRef {
        KeyRef {
            key_domain_id: DOMAIN,
            msk_id: MskId::new(group, number),
        }
    }

    fn window(l: u16, u: u16) -> MtkIdInterval {
        MtkIdInterval {
            seq_l: MtkId(l),
            seq_u: MtkId(u),
        }
    }

    fn msk_message(counter: u32, content: MskMessageContent<'_>) -> Vec<u8> {
        let params = MskMessageParams {
            key_domain_id: DOMAIN,
            counter,
            muk_id: MukId {
                idi: Id::new(id_type::URI, b"bmsc.example").unwrap(),
                idr: Id::new(id_type::NAI, b"btid@bsf").unwrap(),
            },
            rand: [counter as u8; 16],
            csb_id: counter,
            content,
        };
        let mut out = Vec::new();
        build_msk_message(&Muk::new(MUK), &params, &mut out);
        out
    }

    fn delivery(counter: u32, group: u16, number: u16, key_byte: u8) -> Vec<u8> {
        let msk = Msk::new([key_byte; 16]);
        msk_message(
            counter,
            MskMessageContent::Delivery {
                msk_id: MskId::new(group, number),
                msk: &msk,
                validity: window(1, 100),
                request_ack: false,
            },
        )
    }

    fn mtk_message(msk_id: MskId, key_byte: u8, mtk_id: u16, counter: u32) -> Vec<u8> {
        let mtk = Mtk {
            key: MtkKey::new([mtk_id as u8; 16]),
            salt: MtkSalt::new([1; 14]),
        };
        let params = MtkMessageParams {
            key_domain_id: DOMAIN,
            msk_id,
            mtk_id: MtkId(mtk_id),
            counter,
            mtk: &mtk,
            rand: [2; 16],
            csb_id: 3,
        };
        let mut out = Vec::new();
        build_mtk_message(&Msk::new([key_byte; 16]), &params, &mut out);
        out
    }

    fn store() -> UeMskStore {
        UeMskStore::new(
            BackOff {
                offset: Duration::from_secs(2),
                random_period: Duration::from_secs(10),
            },
            Duration::from_secs(5),
            Duration::from_secs(60),
        )
    }

    fn receive(s: &mut UeMskStore, bytes: &[u8]) -> Result<MskOutcome, UeKeyError> {
        s.on_msk_message(&Muk::new(MUK), bytes, T0, 0)
            .map(|r| r.outcome)
    }

    #[test]
    fn replayed_msk_message_is_dropped() {
        let mut s = store();
        let m = delivery(10, 1, 1, 0xa1);
        assert!(matches!(receive(&mut s, &m), Ok(MskOutcome::Stored { .. })));
        assert_eq!(
            receive(&mut s, &m),
            Err(UeKeyError::Mikey(MikeyError::Replayed {
                counter: 10,
                last: 10
            }))
        );
        // An older counter (RFC 1982) is a replay too, a newer one is not.
        assert!(matches!(
            receive(&mut s, &delivery(9, 1, 2, 0xa2)),
            Err(UeKeyError::Mikey(MikeyError::Replayed { .. }))
        ));
        assert!(receive(&mut s, &delivery(11, 1, 2, 0xa2)).is_ok());
        assert_eq!(s.muk_counter(b"bmsc.examplebtid@bsf"), Some(11));
    }

    #[test]
    fn wrong_muk_changes_nothing() {
        let mut s = store();
        let m = delivery(10, 1, 1, 0xa1);
        assert_eq!(
            s.on_msk_message(&Muk::new([8; 32]), &m, T0, 0),
            Err(UeKeyError::Mikey(MikeyError::BadMac))
        );
        assert_eq!(s.msks().count(), 0);
        assert_eq!(s.muk_counter(b"bmsc.examplebtid@bsf"), None);
    }

    #[test]
    fn third_msk_in_a_key_group_evicts_the_older() {
        let mut s = store();
        receive(&mut s, &delivery(1, 1, 1, 0xa1)).unwrap();
        receive(&mut s, &delivery(2, 1, 2, 0xa2)).unwrap();
        receive(&mut s, &delivery(3, 2, 1, 0xb1)).unwrap(); // another group
        assert_eq!(
            receive(&mut s, &delivery(4, 1, 3, 0xa3)),
            Ok(MskOutcome::Stored {
                key: key(1, 3),
                evicted: Some(MskId::new(1, 1))
            })
        );
        let held: Vec<u32> = s.msks().map(|m| m.msk_id.0).collect();
        assert_eq!(held, [0x0001_0002, 0x0001_0003, 0x0002_0001]);
    }

    #[test]
    fn validity_update_and_invalidation() {
        let mut s = store();
        receive(&mut s, &delivery(1, 1, 1, 0xa1)).unwrap();
        let update = |counter, l, u| {
            msk_message(
                counter,
                MskMessageContent::ValidityUpdate {
                    msk_id: MskId::new(1, 1),
                    validity: window(l, u),
                    request_ack: false,
                },
            )
        };
        assert_eq!(
            receive(&mut s, &update(2, 5, 50)),
            Ok(MskOutcome::ValidityUpdated { key: key(1, 1) })
        );
        assert_eq!(
            s.get(DOMAIN, MskId::new(1, 1)).unwrap().validity,
            window(5, 50)
        );
        // MTK IDs outside the new window are refused.
        assert!(matches!(
            s.on_mtk_message(&mtk_message(MskId::new(1, 1), 0xa1, 60, 1), T0, 0),
            Err(UeKeyError::Mikey(MikeyError::OutsideValidity { .. }))
        ));
        assert_eq!(
            receive(&mut s, &update(3, 9, 8)),
            Ok(MskOutcome::Invalidated { key: key(1, 1) })
        );
        assert!(s.get(DOMAIN, MskId::new(1, 1)).is_none());
        assert_eq!(
            receive(&mut s, &update(4, 1, 8)),
            Ok(MskOutcome::UnknownMsk { key: key(1, 1) })
        );
    }

    #[test]
    fn mtk_with_an_old_mtk_id_is_dropped() {
        let mut s = store();
        receive(&mut s, &delivery(1, 1, 1, 0xa1)).unwrap();
        let id = MskId::new(1, 1);
        let opened = s
            .on_mtk_message(&mtk_message(id, 0xa1, 5, 100), T0, 0)
            .unwrap();
        assert_eq!(opened.mtk.key.expose(), &[5; 16]);
        assert_eq!(
            s.on_mtk_message(&mtk_message(id, 0xa1, 5, 101), T0, 0),
            Err(UeKeyError::Mikey(MikeyError::StaleMtkId {
                mtk_id: MtkId(5),
                current: MtkId(5)
            }))
        );
        assert!(matches!(
            s.on_mtk_message(&mtk_message(id, 0xa1, 4, 102), T0, 0),
            Err(UeKeyError::Mikey(MikeyError::StaleMtkId { .. }))
        ));
        // Per-MSK replay counter.
        assert!(matches!(
            s.on_mtk_message(&mtk_message(id, 0xa1, 6, 100), T0, 0),
            Err(UeKeyError::Mikey(MikeyError::Replayed { .. }))
        ));
        assert!(
            s.on_mtk_message(&mtk_message(id, 0xa1, 6, 103), T0, 0)
                .is_ok()
        );
        // The same MSK re-sent keeps the MTK history.
        receive(&mut s, &delivery(2, 1, 1, 0xa1)).unwrap();
        assert!(matches!(
            s.on_mtk_message(&mtk_message(id, 0xa1, 6, 104), T0, 0),
            Err(UeKeyError::Mikey(MikeyError::StaleMtkId { .. }))
        ));
    }

    #[test]
    fn solicited_pull_makes_an_msk_request_pending_with_back_off() {
        let mut s = store();
        let pull = msk_message(5, MskMessageContent::SolicitedPull { key_group: 1 });
        let reception = s
            .on_msk_message(&Muk::new(MUK), &pull, T0, u32::MAX / 2)
            .unwrap();
        assert_eq!(
            reception.outcome,
            MskOutcome::SolicitedPull { key: key(1, 0) }
        );
        assert!(!reception.ack_requested);
        // offset 2 s + half of the 10 s random period.
        assert!(s.due_requests(T0 + Duration::from_millis(6_999)).is_empty());
        assert_eq!(s.due_requests(T0 + Duration::from_secs(7)), [key(1, 0)]);
        // Retried (5 s, then 10 s) until the MSK arrives.
        assert!(s.due_requests(T0 + Duration::from_secs(8)).is_empty());
        assert_eq!(s.due_requests(T0 + Duration::from_secs(12)), [key(1, 0)]);
        assert_eq!(s.next_due(), Some(T0 + Duration::from_secs(22)));
        receive(&mut s, &delivery(6, 1, 4, 0xa4)).unwrap();
        assert!(!s.is_pending(key(1, 0)));
        assert_eq!(s.next_due(), None);
    }

    #[test]
    fn missed_key_update_requests_the_msk_in_use() {
        let mut s = store();
        receive(&mut s, &delivery(1, 1, 1, 0xa1)).unwrap();
        let unknown = MskId::new(1, 2);
        let message = mtk_message(unknown, 0xa2, 1, 1);
        assert_eq!(
            s.on_mtk_message(&message, T0, 0),
            Err(UeKeyError::MissingMsk { key: key(1, 2) })
        );
        assert_eq!(s.due_requests(T0 + Duration::from_secs(2)), [key(1, 2)]);
        receive(&mut s, &delivery(2, 1, 2, 0xa2)).unwrap();
        assert!(!s.is_pending(key(1, 2)));
        assert!(s.on_mtk_message(&message, T0, 0).is_ok());
    }

    #[test]
    fn refused_request_is_not_retried_and_pending_is_bounded() {
        let mut s = store();
        assert!(s.need(key(1, 0), T0, 0));
        s.on_request_status(key(1, 0), Status::Forbidden);
        assert!(!s.is_pending(key(1, 0)));
        for n in 0..MAX_PENDING_REQUESTS as u16 {
            assert!(s.need(key(3, n + 1), T0, 0));
        }
        assert!(!s.need(key(4, 1), T0, 0));
    }

    proptest::proptest! {
        #[test]
        fn random_datagrams_never_panic_or_change_state(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..200)) {
            let mut s = store();
            let _ = s.on_msk_message(&Muk::new(MUK), &bytes, T0, 0);
            proptest::prop_assert_eq!(s.msks().count(), 0);
            let _ = s.on_mtk_message(&bytes, T0, 0);
        }
    }

    #[test]
    fn kind_confusion_is_refused() {
        let mut s = store();
        let mtk = mtk_message(MskId::new(1, 1), 1, 1, 1);
        assert_eq!(
            s.on_msk_message(&Muk::new(MUK), &mtk, T0, 0),
            Err(UeKeyError::WrongKind)
        );
        assert_eq!(
            s.on_mtk_message(&delivery(1, 1, 1, 1), T0, 0),
            Err(UeKeyError::WrongKind)
        );
    }
}
