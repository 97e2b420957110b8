//! The probe's MSKs and its MIKEY MTK message reception (seed §6.4.6.2, §6.5):
//! pick the MSK by the MSK ID in EXT, open the message with that MSK's
//! reception state, and hand the MTK on as an SRTP master key named by its MKI.

use super::report::MikeyStats;
use crate::protocol::keys::{KeyDomainId, Mki, MskId, Mtk};
use crate::protocol::mikey::{
    MikeyError, MtkIdInterval, MtkReceptionState, PeekedMessage, open_mtk_message, peek_message,
};
use crate::runtime::key_service::{MskClientConfig, MskRecord, MskSet};
use crate::ue::key_management::UeKeys;
use std::collections::{BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use tokio::sync::watch;

/// Where the probe gets its MSKs.
#[derive(Debug, Clone)]
pub enum ProbeKeySource {
    /// A key file in the reference BM-SC's format (see
    /// [`load_key_file`](crate::runtime::key_service::load_key_file)), restricted to
    /// these Key Groups.
    KeyFile { path: PathBuf, key_groups: Vec<u16> },
    /// MSKs given directly (tests, the demo).
    Static(Vec<MskRecord>),
    /// A BM-SC, watched like the gateway does: MSKs it delivers later are used
    /// as they arrive.
    Bmsc(MskClientConfig),
    /// The MSKs of a UE agent (registration and MIKEY MSK delivery, see
    /// [`crate::ue::key_management`]); MTK messages under an MSK it lacks are
    /// reported to it as a missed key update.
    Ue(UeKeys),
}

/// The MSKs the probe can open MTK messages with.
pub(super) enum MskStore {
    Fixed(HashMap<MskId, MskRecord>),
    Watched(watch::Receiver<Arc<MskSet>>),
    Ue(UeKeys),
}

impl MskStore {
    pub(super) fn fixed(records: Vec<MskRecord>) -> Self {
        Self::Fixed(records.into_iter().map(|r| (r.msk_id, r)).collect())
    }

    fn with<R>(&self, msk_id: MskId, f: impl FnOnce(&MskRecord) -> R) -> Option<R> {
        match self {
            Self::Fixed(map) => map.get(&msk_id).map(f),
            Self::Watched(rx) => rx.borrow().get(msk_id).map(f),
            Self::Ue(keys) => keys.current().get(msk_id).map(f),
        }
    }

    /// Tells a UE key source that traffic names an MSK it lacks.
    fn report_missing(&self, msk_id: MskId) {
        if let Self::Ue(keys) = self {
            keys.report_missing(msk_id);
        }
    }
}

/// An MTK accepted from a MIKEY message, ready for the SRTP receivers.
pub(super) struct AcceptedMtk {
    pub(super) mki: [u8; Mki::LEN],
    pub(super) mtk: Mtk,
}

/// MTK message reception with per-MSK replay and MTK ID state.
pub(super) struct MikeyReceiver {
    key_domain_id: KeyDomainId,
    store: MskStore,
    states: HashMap<MskId, MtkReceptionState>,
    missed: BTreeSet<MskId>,
    pub(super) stats: MikeyStats,
}

/// Most MSK IDs remembered as missed, so hostile traffic cannot grow memory.
const MAX_MISSED_IDS: usize = 64;

impl MikeyReceiver {
    pub(super) fn new(key_domain_id: KeyDomainId, store: MskStore) -> Self {
        Self {
            key_domain_id,
            store,
            states: HashMap::new(),
            missed: BTreeSet::new(),
            stats: MikeyStats::default(),
        }
    }

    /// True when the store holds the MSK an MTK message names, so a message
    /// that came before its MSK can be opened now.
    pub(super) fn holds_msk_for(&self, message: &[u8]) -> bool {
        match peek_message(message) {
            Ok(PeekedMessage::Mtk(ids)) => self.store.with(ids.msk_id, |_| ()).is_some(),
            _ => false,
        }
    }

    /// Processes one datagram from the MIKEY port.
    pub(super) fn receive(&mut self, bytes: &[u8]) -> Option<AcceptedMtk> {
        self.stats.received += 1;
        let ids = match peek_message(bytes) {
            Ok(PeekedMessage::Mtk(ids)) => ids,
            Ok(PeekedMessage::Msk(_)) => {
                self.stats.malformed += 1;
                tracing::debug!("MSK message on the MTK port ignored");
                return None;
            }
            Err(e) => {
                self.count_rejection(&e);
                return None;
            }
        };
        if ids.key_domain_id != self.key_domain_id {
            self.stats.wrong_key_domain += 1;
            return None;
        }
        let state = self.states.entry(ids.msk_id).or_default();
        let opened = self.store.with(ids.msk_id, |record| {
            state.validity = Some(MtkIdInterval {
                seq_l: record.validity.0,
                seq_u: record.validity.1,
            });
            open_mtk_message(&record.key, state, bytes)
        });
        match opened {
            None => {
                self.stats.missed_key += 1;
                self.store.report_missing(ids.msk_id);
                if self.missed.len() < MAX_MISSED_IDS && self.missed.insert(ids.msk_id) {
                    self.stats.missed_msk_ids = self
                        .missed
                        .iter()
                        .map(|id| format!("{:08x}", id.0))
                        .collect();
                }
                tracing::debug!(msk_id = ids.msk_id.0, "MTK message under an unknown MSK");
                None
            }
            Some(Err(e)) => {
                self.count_rejection(&e);
                None
            }
            Some(Ok(opened)) => {
                self.stats.accepted += 1;
                let mki = Mki {
                    msk_id: opened.key_ids.msk_id,
                    mtk_id: opened.key_ids.mtk_id,
                };
                Some(AcceptedMtk {
                    mki: mki.to_bytes(),
                    mtk: opened.mtk,
                })
            }
        }
    }

    fn count_rejection(&mut self, error: &MikeyError) {
        let stats = &mut self.stats;
        match error {
            MikeyError::StaleMtkId { .. } => stats.repeats += 1,
            MikeyError::Replayed { .. } => stats.replayed += 1,
            MikeyError::BadMac => stats.bad_mac += 1,
            MikeyError::OutsideValidity { .. } => stats.outside_validity += 1,
            MikeyError::Malformed(_)
            | MikeyError::MissingPayload(_)
            | MikeyError::DuplicatePayload(_)
            | MikeyError::UnexpectedPayload(_)
            | MikeyError::WrongMessageKind(_)
            | MikeyError::Unsupported { .. } => stats.malformed += 1,
        }
        if !matches!(error, MikeyError::StaleMtkId { .. }) {
            tracing::debug!(%error, "MTK message rejected");
        }
    }
}
