//! The key journal: durable high-water marks of MTK IDs and MIKEY counters per
//! MSK (design §3 "Counters survive"). A mark is written (temp file, fsync,
//! rename, fsync of the directory) before any value below it is used, so after a
//! crash or restart every session continues above every value it ever sent.
//!
//! A journal that exists but cannot be read is an error, never an empty start:
//! starting from zero could repeat counters the UEs have already seen.

use crate::protocol::keys::{KeyDomainId, MskId};
use crate::runtime::durable::write_atomically;
use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

const FILE_NAME: &str = "key-journal.toml";
const FORMAT_VERSION: u32 = 1;

/// Durable marks of one MSK: every MTK ID and counter below these may have been
/// sent.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MskMarks {
    pub mtk_id_until: u64,
    pub counter_until: u64,
}

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct JournalFile {
    version: u32,
    /// Keyed by `hex(Key Domain ID)-hex(MSK ID)`.
    #[serde(default)]
    msk: BTreeMap<String, MskMarks>,
}

#[derive(Debug)]
pub struct KeyJournal {
    path: PathBuf,
    state: JournalFile,
}

fn msk_key(domain: KeyDomainId, msk: MskId) -> String {
    let d = domain.0;
    format!("{:02x}{:02x}{:02x}-{:08x}", d[0], d[1], d[2], msk.0)
}

impl KeyJournal {
    /// Opens (or creates) the journal in `dir`.
    pub fn open(dir: &Path) -> Result<Self> {
        fs::create_dir_all(dir)
            .with_context(|| format!("key journal directory {}", dir.display()))?;
        let path = dir.join(FILE_NAME);
        let state = match fs::read_to_string(&path) {
            Ok(text) => {
                let state: JournalFile = toml::from_str(&text)
                    .with_context(|| format!("key journal {} is corrupt; refusing to start from zero (see README: recovering a lost journal)", path.display()))?;
                anyhow::ensure!(
                    state.version == FORMAT_VERSION,
                    "key journal {}: unsupported format version {}",
                    path.display(),
                    state.version
                );
                state
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => JournalFile {
                version: FORMAT_VERSION,
                ..Default::default()
            },
            Err(e) => {
                return Err(e).with_context(|| format!("reading key journal {}", path.display()));
            }
        };
        Ok(Self { path, state })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn marks(&self, domain: KeyDomainId, msk: MskId) -> MskMarks {
        self.state
            .msk
            .get(&msk_key(domain, msk))
            .copied()
            .unwrap_or_default()
    }

    /// Raises the marks of one MSK (never lowers them) and makes them durable
    /// before returning.
    pub fn raise(&mut self, domain: KeyDomainId, msk: MskId, marks: MskMarks) -> Result<()> {
        let entry = self.state.msk.entry(msk_key(domain, msk)).or_default();
        let raised = MskMarks {
            mtk_id_until: entry.mtk_id_until.max(marks.mtk_id_until),
            counter_until: entry.counter_until.max(marks.counter_until),
        };
        if raised == *entry {
            return Ok(());
        }
        *entry = raised;
        self.write()
    }

    /// Forgets MSKs that are no longer needed (expired or invalidated), so the
    /// journal does not grow without bound.
    pub fn retain(&mut self, mut keep: impl FnMut(KeyDomainId, MskId) -> bool) -> Result<()> {
        let before = self.state.msk.len();
        self.state.msk.retain(|k, _| match parse_key(k) {
            Some((d, m)) => keep(d, m),
            None => true,
        });
        if self.state.msk.len() != before {
            self.write()?;
        }
        Ok(())
    }

    fn write(&self) -> Result<()> {
        let text = toml::to_string(&self.state).context("encoding key journal")?;
        write_atomically(&self.path, text.as_bytes())
            .with_context(|| format!("writing key journal {}", self.path.display()))
    }
}

fn parse_key(k: &str) -> Option<(KeyDomainId, MskId)> {
    let (d, m) = k.split_once('-')?;
    let d = u32::from_str_radix(d, 16).ok()?;
    let m = u32::from_str_radix(m, 16).ok()?;
    let [_, a, b, c] = d.to_be_bytes();
    Some((KeyDomainId([a, b, c]), MskId(m)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tempdir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("mbms-journal-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn marks_survive_reopen_and_never_go_down() {
        let dir = tempdir("reopen");
        let d = KeyDomainId([0x64, 0xf0, 0x00]);
        let m = MskId::new(1, 2);
        let mut j = KeyJournal::open(&dir).unwrap();
        j.raise(
            d,
            m,
            MskMarks {
                mtk_id_until: 10,
                counter_until: 100,
            },
        )
        .unwrap();
        j.raise(
            d,
            m,
            MskMarks {
                mtk_id_until: 5,
                counter_until: 200,
            },
        )
        .unwrap();
        let j = KeyJournal::open(&dir).unwrap();
        assert_eq!(
            j.marks(d, m),
            MskMarks {
                mtk_id_until: 10,
                counter_until: 200
            }
        );
        assert_eq!(j.marks(d, MskId::new(1, 3)), MskMarks::default());
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_corrupt_journal_is_an_error_naming_the_file() {
        let dir = tempdir("corrupt");
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join(FILE_NAME), "version = 1\n[msk.\"x\"\nmtk").unwrap();
        let err = format!("{:#}", KeyJournal::open(&dir).unwrap_err());
        assert!(
            err.contains("key-journal.toml") && err.contains("corrupt"),
            "{err}"
        );
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn retain_drops_forgotten_msks() {
        let dir = tempdir("retain");
        let d = KeyDomainId([1, 2, 3]);
        let mut j = KeyJournal::open(&dir).unwrap();
        for n in 1..=3 {
            j.raise(
                d,
                MskId::new(7, n),
                MskMarks {
                    mtk_id_until: 1,
                    counter_until: 1,
                },
            )
            .unwrap();
        }
        j.retain(|_, m| m.key_number() != 2).unwrap();
        let j = KeyJournal::open(&dir).unwrap();
        assert_eq!(j.marks(d, MskId::new(7, 2)), MskMarks::default());
        assert_eq!(j.marks(d, MskId::new(7, 3)).counter_until, 1);
        fs::remove_dir_all(&dir).unwrap();
    }
}
