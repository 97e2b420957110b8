//! The reference BM-SC's lease ledger: per MSK, the next MTK ID and the next MIKEY
//! counter to grant, and per Key Group the next Key Number to generate.
//!
//! Grants only go up, so two gateways sharing an MSK never get overlapping ranges.
//! With a state directory, every change is written to disk (temp file, fsync,
//! rename, fsync of the directory) *before* it is granted, so a restarted BM-SC
//! continues above everything it ever handed out.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::protocol::keys::{KeyDomainId, MskId, MtkId};
use crate::runtime::durable::write_atomically;
use crate::runtime::key_service::msk_set::MskRecord;
use crate::runtime::key_service::validate::LeaseRecord;

const STATE_FILE: &str = "bmsc-leases.toml";

/// Why a lease cannot be granted.
#[derive(Debug, thiserror::Error)]
pub enum GrantError {
    #[error("{field} must be at least 1")]
    ZeroCount { field: &'static str },
    #[error("MTK-ID window of MSK {msk_id:#010x} is used up (SEQu = {seq_u})")]
    MtkIdsExhausted { msk_id: u32, seq_u: u16 },
    #[error("MIKEY counter space of MSK {msk_id:#010x} is used up")]
    CountersExhausted { msk_id: u32 },
    #[error("Key Numbers of Key Group {key_group} are used up")]
    KeyNumbersExhausted { key_group: u16 },
    #[error("lease state could not be saved: {0}")]
    State(#[from] StateError),
}

/// The state file cannot be read or written.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {reason}")]
    Format { path: PathBuf, reason: String },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct MskMarks {
    msk_id: u32,
    /// Next MTK ID to grant; up to SEQu + 1.
    next_mtk_id: u32,
    /// Next counter to grant; up to 2^32.
    next_counter: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct GroupMarks {
    key_group: u16,
    next_key_number: u32,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct StateFile {
    key_domain_id: String,
    #[serde(default)]
    msk: Vec<MskMarks>,
    #[serde(default)]
    key_group: Vec<GroupMarks>,
}

/// High-water marks of everything granted, optionally persisted.
#[derive(Debug)]
pub struct LeaseBook {
    key_domain_id: KeyDomainId,
    path: Option<PathBuf>,
    msks: BTreeMap<MskId, MskMarks>,
    groups: BTreeMap<u16, u32>,
}

impl LeaseBook {
    /// An in-memory ledger (no restart safety).
    pub fn in_memory(key_domain_id: KeyDomainId) -> Self {
        Self {
            key_domain_id,
            path: None,
            msks: BTreeMap::new(),
            groups: BTreeMap::new(),
        }
    }

    /// Opens (or starts) the ledger in `state_dir`.
    pub fn open(state_dir: &Path, key_domain_id: KeyDomainId) -> Result<Self, StateError> {
        let path = state_dir.join(STATE_FILE);
        let io = |source| StateError::Io {
            path: path.clone(),
            source,
        };
        fs::create_dir_all(state_dir).map_err(io)?;
        let mut book = Self::in_memory(key_domain_id);
        match fs::read_to_string(&path) {
            Ok(text) => {
                let format = |reason: String| StateError::Format {
                    path: path.clone(),
                    reason,
                };
                let state: StateFile = toml::from_str(&text).map_err(|e| format(e.to_string()))?;
                let domain = hex::encode(key_domain_id.0);
                if state.key_domain_id != domain {
                    return Err(format(format!(
                        "written for Key Domain ID {}, configured is {domain}",
                        state.key_domain_id
                    )));
                }
                book.msks = state.msk.iter().map(|m| (MskId(m.msk_id), *m)).collect();
                book.groups = state
                    .key_group
                    .iter()
                    .map(|g| (g.key_group, g.next_key_number))
                    .collect();
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io(e)),
        }
        book.path = Some(path);
        Ok(book)
    }

    /// Grants the next `mtk_ids` MTK IDs (cut at SEQu) and `counters` counters under
    /// `msk`, persisting the new marks first.
    pub fn grant(
        &mut self,
        msk: &MskRecord,
        mtk_ids: u32,
        counters: u32,
    ) -> Result<LeaseRecord, GrantError> {
        if mtk_ids == 0 {
            return Err(GrantError::ZeroCount {
                field: "mtk_id_count",
            });
        }
        if counters == 0 {
            return Err(GrantError::ZeroCount {
                field: "counter_count",
            });
        }
        let id = msk.msk_id;
        let (seq_l, seq_u) = (u32::from(msk.validity.0.0), u32::from(msk.validity.1.0));
        let marks = self.msks.get(&id).copied().unwrap_or(MskMarks {
            msk_id: id.0,
            next_mtk_id: seq_l,
            next_counter: 1,
        });
        let first_mtk = marks.next_mtk_id.max(seq_l);
        if first_mtk > seq_u {
            return Err(GrantError::MtkIdsExhausted {
                msk_id: id.0,
                seq_u: msk.validity.1.0,
            });
        }
        let last_mtk = first_mtk.saturating_add(mtk_ids - 1).min(seq_u);
        let first_counter = marks.next_counter;
        if first_counter > u64::from(u32::MAX) {
            return Err(GrantError::CountersExhausted { msk_id: id.0 });
        }
        let last_counter = (first_counter + u64::from(counters) - 1).min(u64::from(u32::MAX));
        let next = MskMarks {
            msk_id: id.0,
            next_mtk_id: last_mtk + 1,
            next_counter: last_counter + 1,
        };
        let previous = self.msks.insert(id, next);
        if let Err(e) = self.save() {
            // Not on disk, so not granted: roll back.
            match previous {
                Some(p) => self.msks.insert(id, p),
                None => self.msks.remove(&id),
            };
            return Err(e.into());
        }
        // The bounds above keep both ranges inside u16 / u32.
        Ok(LeaseRecord {
            msk_id: id,
            mtk_ids: (MtkId(first_mtk as u16), MtkId(last_mtk as u16)),
            counters: (first_counter as u32, last_counter as u32),
        })
    }

    /// Reserves the next Key Number of `key_group` (1, 2, …; 0 means "current" and is
    /// never used), persisting the reservation so a restart never repeats an MSK ID.
    pub fn next_key_number(&mut self, key_group: u16) -> Result<u16, GrantError> {
        let number = self.groups.get(&key_group).copied().unwrap_or(1).max(1);
        let key_number =
            u16::try_from(number).map_err(|_| GrantError::KeyNumbersExhausted { key_group })?;
        let previous = self.groups.insert(key_group, number + 1);
        if let Err(e) = self.save() {
            match previous {
                Some(p) => self.groups.insert(key_group, p),
                None => self.groups.remove(&key_group),
            };
            return Err(e.into());
        }
        Ok(key_number)
    }

    fn save(&self) -> Result<(), StateError> {
        let Some(path) = &self.path else {
            return Ok(());
        };
        let state = StateFile {
            key_domain_id: hex::encode(self.key_domain_id.0),
            msk: self.msks.values().copied().collect(),
            key_group: self
                .groups
                .iter()
                .map(|(&key_group, &next_key_number)| GroupMarks {
                    key_group,
                    next_key_number,
                })
                .collect(),
        };
        let text = toml::to_string(&state).map_err(|e| StateError::Format {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        write_atomically(path, text.as_bytes()).map_err(|source| StateError::Io {
            path: path.clone(),
            source,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::keys::Msk;

    const DOMAIN: KeyDomainId = KeyDomainId([0x09, 0xf1, 0x07]);

    fn msk(number: u16, seq_l: u16, seq_u: u16) -> MskRecord {
        MskRecord {
            key_domain_id: DOMAIN,
            msk_id: MskId::new(1, number),
            key: Msk::new([3; 16]),
            validity: (MtkId(seq_l), MtkId(seq_u)),
            not_before: 0,
            not_after: 10,
        }
    }

    fn ranges(l: &LeaseRecord) -> ((u16, u16), (u32, u32)) {
        ((l.mtk_ids.0.0, l.mtk_ids.1.0), l.counters)
    }

    #[test]
    fn grants_go_up_per_msk_and_stop_at_seq_u() {
        let mut book = LeaseBook::in_memory(DOMAIN);
        let a = msk(1, 10, 25);
        assert_eq!(
            ranges(&book.grant(&a, 10, 100).unwrap()),
            ((10, 19), (1, 100))
        );
        assert_eq!(
            ranges(&book.grant(&a, 10, 5).unwrap()),
            ((20, 25), (101, 105))
        );
        let err = book.grant(&a, 1, 1).unwrap_err().to_string();
        assert_eq!(
            err,
            "MTK-ID window of MSK 0x00010001 is used up (SEQu = 25)"
        );
        // Another MSK has its own marks.
        assert_eq!(
            ranges(&book.grant(&msk(2, 1, 0xFFFF), 2, 2).unwrap()),
            ((1, 2), (1, 2))
        );
        assert!(matches!(
            book.grant(&a, 0, 1),
            Err(GrantError::ZeroCount { .. })
        ));
    }

    #[test]
    fn top_of_the_16_bit_window_is_reachable_once() {
        let mut book = LeaseBook::in_memory(DOMAIN);
        let top = msk(1, 0xFFFE, 0xFFFF);
        assert_eq!(ranges(&book.grant(&top, 5, 1).unwrap()).0, (0xFFFE, 0xFFFF));
        assert!(matches!(
            book.grant(&top, 1, 1),
            Err(GrantError::MtkIdsExhausted { .. })
        ));
    }

    #[test]
    fn marks_survive_reopen_and_refuse_other_domain() {
        let dir = tempfile::tempdir().unwrap();
        let a = msk(1, 1, 1000);
        {
            let mut book = LeaseBook::open(dir.path(), DOMAIN).unwrap();
            book.grant(&a, 100, 7).unwrap();
            assert_eq!(book.next_key_number(1).unwrap(), 1);
            assert_eq!(book.next_key_number(1).unwrap(), 2);
        }
        let mut book = LeaseBook::open(dir.path(), DOMAIN).unwrap();
        assert_eq!(ranges(&book.grant(&a, 1, 1).unwrap()), ((101, 101), (8, 8)));
        assert_eq!(book.next_key_number(1).unwrap(), 3);
        assert!(!dir.path().join("bmsc-leases.toml.tmp").exists());
        let err = LeaseBook::open(dir.path(), KeyDomainId([1, 2, 3])).unwrap_err();
        assert!(
            err.to_string().contains("written for Key Domain ID 09f107"),
            "{err}"
        );
    }
}
