//! Durable T counters of the MSK messages, one per UE's MUK (seed §6.4.6.1:
//! a UE drops a message whose counter is not after the last it accepted
//! under that MUK, in RFC 1982 terms). Counters are reserved in blocks: a
//! counter is sent only once the journal says every counter up to the end
//! of its block may have been used, so a restarted BM-SC continues above
//! every counter it ever sent, however many messages a second it sent.
//! Without a state directory the counters follow wall-clock seconds alone.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Context;

use crate::protocol::mikey::serial::serial_gt;
use crate::runtime::durable::write_atomically;

/// Counters reserved per write.
const BLOCK: u32 = 1024;
const FILE: &str = "muk-counters.json";

/// Per B-TID, the highest counter that may have been sent.
#[derive(Debug)]
pub struct CounterJournal {
    path: Option<PathBuf>,
    marks: BTreeMap<String, u32>,
}

impl CounterJournal {
    /// The journal in `state_dir` (none: counters are not journaled). A
    /// journal that exists but cannot be read is an error, never an empty
    /// start, which could repeat counters UEs have seen.
    pub fn open(state_dir: Option<&Path>) -> anyhow::Result<Self> {
        let Some(dir) = state_dir else {
            return Ok(Self {
                path: None,
                marks: BTreeMap::new(),
            });
        };
        std::fs::create_dir_all(dir).with_context(|| format!("state_dir {}", dir.display()))?;
        let path = dir.join(FILE);
        let marks = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .with_context(|| format!("MUK counter journal {}", path.display()))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeMap::new(),
            Err(e) => {
                return Err(e).with_context(|| format!("MUK counter journal {}", path.display()));
            }
        };
        Ok(Self {
            path: Some(path),
            marks,
        })
    }

    /// Every counter ever sent under the MUK of `b_tid` is at most this.
    pub fn mark(&self, b_tid: &str) -> Option<u32> {
        self.marks.get(b_tid).copied()
    }

    /// Makes `counter` safe to send under the MUK of `b_tid`: when it is
    /// beyond the journaled mark, the mark moves a block ahead of it, on
    /// disk, before this returns.
    pub fn cover(&mut self, b_tid: &str, counter: u32) -> std::io::Result<()> {
        let Some(path) = &self.path else {
            return Ok(());
        };
        if self
            .marks
            .get(b_tid)
            .is_some_and(|&mark| !serial_gt(counter, mark))
        {
            return Ok(());
        }
        let mut marks = self.marks.clone();
        marks.insert(b_tid.to_owned(), counter.wrapping_add(BLOCK));
        let text = serde_json::to_vec_pretty(&marks).expect("counter marks serialize");
        write_atomically(path, &text)?;
        self.marks = marks;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reopened_journal_is_above_every_counter_covered() {
        let dir = tempfile::tempdir().unwrap();
        let mut journal = CounterJournal::open(Some(dir.path())).unwrap();
        assert_eq!(journal.mark("ue-a"), None);
        journal.cover("ue-a", 1_000).unwrap();
        assert_eq!(journal.mark("ue-a"), Some(1_000 + BLOCK));
        // Inside the block: no write needed, the mark stays.
        journal.cover("ue-a", 1_500).unwrap();
        assert_eq!(journal.mark("ue-a"), Some(1_000 + BLOCK));
        journal.cover("ue-a", 1_000 + BLOCK + 1).unwrap();
        journal.cover("ue-b", 7).unwrap();
        let reopened = CounterJournal::open(Some(dir.path())).unwrap();
        assert_eq!(reopened.mark("ue-a"), Some(1_000 + 2 * BLOCK + 1));
        assert_eq!(reopened.mark("ue-b"), Some(7 + BLOCK));
    }

    #[test]
    fn an_unreadable_journal_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(FILE), b"{ not json").unwrap();
        let err = format!("{:#}", CounterJournal::open(Some(dir.path())).unwrap_err());
        assert!(err.contains("MUK counter journal"), "{err}");
        assert!(err.contains(FILE), "{err}");
    }

    #[test]
    fn without_a_state_directory_nothing_is_written() {
        let mut journal = CounterJournal::open(None).unwrap();
        journal.cover("ue-a", 5).unwrap();
        assert_eq!(journal.mark("ue-a"), None);
    }
}
