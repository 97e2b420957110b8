//! MTKs of one session: drawn under the current MSK of its Key Group, with MTK
//! IDs and MIKEY counters taken from ranges leased from the BM-SC (so instances
//! sharing an MSK never collide) and made durable in the key journal before use
//! (so a restart never repeats one). Builds the MIKEY MTK messages (TS 33.246
//! §6.3.3.2) that announce them.

use super::journal::{KeyJournal, MskMarks};
use crate::protocol::keys::{KeyDomainId, Mki, MskId, Mtk, MtkId, MtkKey, MtkSalt};
use crate::protocol::mikey::{MtkMessageParams, build_mtk_message};
use crate::protocol::reservation::{Reservation, Take};
use crate::runtime::key_service::{
    LeaseError, LeaseRecord, MskClient, MskRecord, MskSet, RpcError,
};
use rand::RngCore;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use thiserror::Error;
use tonic::Code;

/// Why no MTK (or no MTK message) could be made. Each one stops the session from
/// starting a new MTK; none of them carries key bytes.
#[derive(Debug, Error)]
pub enum MtkKeyError {
    #[error("no valid MSK for Key Group {key_group}")]
    NoValidMsk { key_group: u16 },
    #[error("MSK {msk_id:#010x} is no longer valid")]
    MskGone { msk_id: u32 },
    #[error("MSK {msk_id:#010x}: MTK IDs up to SEQu {seq_u} are used up")]
    MtkIdsExhausted { msk_id: u32, seq_u: u16 },
    #[error("leasing MTK IDs / counters under MSK {msk_id:#010x}: {reason}")]
    Lease { msk_id: u32, reason: String },
    #[error("key journal: {0:#}")]
    Journal(anyhow::Error),
    #[error("unknown MTK {0:?}")]
    UnknownMtk(Mki),
}

/// Where MTK IDs and counters come from.
pub trait LeaseSource: Send + Sync {
    fn lease(
        &self,
        msk_id: MskId,
        mtk_ids: u16,
        counters: u32,
    ) -> impl Future<Output = Result<LeaseRecord, LeaseError>> + Send;
}

impl LeaseSource for Arc<MskClient> {
    async fn lease(
        &self,
        msk_id: MskId,
        mtk_ids: u16,
        counters: u32,
    ) -> Result<LeaseRecord, LeaseError> {
        MskClient::lease(self.as_ref(), msk_id, mtk_ids, counters).await
    }
}

/// MTK IDs and counters of one MSK: the current lease, consumed through
/// journal-backed reservations.
struct MskAllocation {
    mtk_ids: Reservation,
    counters: Reservation,
}

pub struct MtkKeys<L> {
    key_domain_id: KeyDomainId,
    key_group: u16,
    leases: L,
    journal: Arc<Mutex<KeyJournal>>,
    lease_block: u16,
    allocations: HashMap<MskId, MskAllocation>,
    mtks: HashMap<Mki, (Mtk, MskRecord)>,
}

/// Counters leased per MTK: enough for a period of re-sends.
const COUNTERS_PER_MTK: u32 = 256;
/// Values made durable per journal write.
const JOURNAL_BLOCK: u64 = 16;

impl<L: LeaseSource> MtkKeys<L> {
    pub fn new(
        key_domain_id: KeyDomainId,
        key_group: u16,
        leases: L,
        journal: Arc<Mutex<KeyJournal>>,
        lease_block: u16,
    ) -> Self {
        Self {
            key_domain_id,
            key_group,
            leases,
            journal,
            lease_block: lease_block.max(1),
            allocations: HashMap::new(),
            mtks: HashMap::new(),
        }
    }

    pub fn key_group(&self) -> u16 {
        self.key_group
    }

    /// Draws a new MTK under the current MSK of the Key Group at `now_unix`.
    pub async fn new_mtk(
        &mut self,
        msks: &MskSet,
        now_unix: i64,
    ) -> Result<(Mki, Mtk), MtkKeyError> {
        let msk =
            msks.current_for(self.key_group, now_unix)
                .cloned()
                .ok_or(MtkKeyError::NoValidMsk {
                    key_group: self.key_group,
                })?;
        let mtk_id = MtkId(self.take(&msk, Value::MtkId).await? as u16);
        let mut key = [0u8; 16];
        let mut salt = [0u8; 14];
        rand::rng().fill_bytes(&mut key);
        rand::rng().fill_bytes(&mut salt);
        let mtk = Mtk {
            key: MtkKey::new(key),
            salt: MtkSalt::new(salt),
        };
        zeroize::Zeroize::zeroize(&mut key);
        zeroize::Zeroize::zeroize(&mut salt);
        let mki = Mki {
            msk_id: msk.msk_id,
            mtk_id,
        };
        self.mtks.insert(mki, (mtk.clone(), msk));
        Ok((mki, mtk))
    }

    /// A MIKEY MTK message for `mki` with a fresh counter, RAND and CSB ID,
    /// appended to `out`. Fails when the MSK is no longer valid at `now_unix`.
    pub async fn mtk_message(
        &mut self,
        mki: Mki,
        msks: &MskSet,
        now_unix: i64,
        out: &mut Vec<u8>,
    ) -> Result<(), MtkKeyError> {
        let (mtk, msk) = self
            .mtks
            .get(&mki)
            .cloned()
            .ok_or(MtkKeyError::UnknownMtk(mki))?;
        if !msk_still_valid(msks, &msk, now_unix) {
            return Err(MtkKeyError::MskGone {
                msk_id: msk.msk_id.0,
            });
        }
        let counter = self.take(&msk, Value::Counter).await? as u32;
        let mut rng = rand::rng();
        let mut rand = [0u8; 16];
        rng.fill_bytes(&mut rand);
        let params = MtkMessageParams {
            key_domain_id: self.key_domain_id,
            msk_id: msk.msk_id,
            mtk_id: mki.mtk_id,
            counter,
            mtk: &mtk,
            rand,
            csb_id: rng.next_u32(),
        };
        build_mtk_message(&msk.key, &params, out);
        Ok(())
    }

    /// True while the MSK under `mki` may still protect traffic at `now_unix`
    /// (known, not invalidated, not expired, MTK ID inside its window).
    pub fn usable(&self, mki: Mki, msks: &MskSet, now_unix: i64) -> bool {
        self.mtks
            .get(&mki)
            .is_some_and(|(_, msk)| msk_still_valid(msks, msk, now_unix) && msk.covers(mki.mtk_id))
    }

    /// Seconds the MSK under `mki` stays valid, for early rotation.
    pub fn msk_seconds_left(&self, mki: Mki, now_unix: i64) -> Option<i64> {
        self.mtks.get(&mki).map(|(_, msk)| msk.not_after - now_unix)
    }

    pub fn forget(&mut self, mki: Mki) {
        self.mtks.remove(&mki);
    }

    async fn take(&mut self, msk: &MskRecord, which: Value) -> Result<u64, MtkKeyError> {
        let mut fresh_lease = false;
        loop {
            let alloc = match self.allocations.get_mut(&msk.msk_id) {
                Some(a) => a,
                None => {
                    let a = self.lease(msk).await?;
                    fresh_lease = true;
                    self.allocations.entry(msk.msk_id).or_insert(a)
                }
            };
            let reservation = match which {
                Value::MtkId => &mut alloc.mtk_ids,
                Value::Counter => &mut alloc.counters,
            };
            match reservation.take() {
                Take::Value(v) => return Ok(v),
                Take::Persist { reserve_until } => {
                    let marks = match which {
                        Value::MtkId => MskMarks {
                            mtk_id_until: reserve_until,
                            counter_until: 0,
                        },
                        Value::Counter => MskMarks {
                            mtk_id_until: 0,
                            counter_until: reserve_until,
                        },
                    };
                    self.journal
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .raise(self.key_domain_id, msk.msk_id, marks)
                        .map_err(MtkKeyError::Journal)?;
                    reservation.reserved(reserve_until);
                }
                Take::Exhausted => {
                    self.allocations.remove(&msk.msk_id);
                    if fresh_lease {
                        // A new lease that lies wholly below the journal's marks:
                        // the BM-SC granted values this gateway may already have
                        // sent. Refuse rather than repeat them.
                        return Err(MtkKeyError::Lease {
                            msk_id: msk.msk_id.0,
                            reason: "the BM-SC granted a range below values already journaled here"
                                .into(),
                        });
                    }
                }
            }
        }
    }

    fn durable(&self, msk: &MskRecord) -> MskMarks {
        self.journal
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .marks(self.key_domain_id, msk.msk_id)
    }

    /// Leases the next ranges, resuming above the journal's marks.
    async fn lease(&mut self, msk: &MskRecord) -> Result<MskAllocation, MtkKeyError> {
        let counters = u32::from(self.lease_block) * COUNTERS_PER_MTK;
        let lease = self
            .leases
            .lease(msk.msk_id, self.lease_block, counters)
            .await
            .map_err(|e| match e {
                // The BM-SC refuses a lease past SEQu with RESOURCE_EXHAUSTED.
                LeaseError::Rpc(RpcError::Status {
                    code: Code::ResourceExhausted,
                    ..
                }) => MtkKeyError::MtkIdsExhausted {
                    msk_id: msk.msk_id.0,
                    seq_u: msk.validity.1.0,
                },
                other => MtkKeyError::Lease {
                    msk_id: msk.msk_id.0,
                    reason: other.to_string(),
                },
            })?;
        let marks = self.durable(msk);
        Ok(MskAllocation {
            mtk_ids: Reservation::resume(
                u64::from(lease.mtk_ids.0.0),
                marks.mtk_id_until,
                u64::from(lease.mtk_ids.1.0) + 1,
                JOURNAL_BLOCK,
            ),
            counters: Reservation::resume(
                u64::from(lease.counters.0),
                marks.counter_until,
                u64::from(lease.counters.1) + 1,
                JOURNAL_BLOCK * 8,
            ),
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Value {
    MtkId,
    Counter,
}

fn msk_still_valid(msks: &MskSet, msk: &MskRecord, now_unix: i64) -> bool {
    msks.get(msk.msk_id)
        .is_some_and(|current| !current.is_invalidated() && current.is_valid_at(now_unix))
}
