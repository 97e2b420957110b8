//! Per-SSRC state in a table allocated once, at context creation: the packet
//! path never allocates, and a flood of new SSRCs cannot grow memory.

use super::SrtpError;

#[derive(Debug)]
pub(super) struct Streams<T> {
    entries: Vec<(u32, T)>,
    capacity: usize,
}

impl<T: Default> Streams<T> {
    pub(super) fn new(capacity: usize) -> Self {
        Self {
            entries: Vec::with_capacity(capacity),
            capacity,
        }
    }

    pub(super) fn get(&self, ssrc: u32) -> Option<&T> {
        self.entries
            .iter()
            .find(|(s, _)| *s == ssrc)
            .map(|(_, t)| t)
    }

    /// The state of `ssrc`, created empty on first use while there is room.
    pub(super) fn get_or_insert(&mut self, ssrc: u32) -> Result<&mut T, SrtpError> {
        let pos = match self.entries.iter().position(|(s, _)| *s == ssrc) {
            Some(pos) => pos,
            None if self.entries.len() < self.capacity => {
                self.entries.push((ssrc, T::default()));
                self.entries.len() - 1
            }
            None => {
                return Err(SrtpError::TooManyStreams {
                    ssrc,
                    capacity: self.capacity,
                });
            }
        };
        Ok(&mut self.entries[pos].1)
    }

    /// Forgets `ssrc` (a stream that ended, RFC 3550 BYE).
    pub(super) fn remove(&mut self, ssrc: u32) -> bool {
        let before = self.entries.len();
        self.entries.retain(|(s, _)| *s != ssrc);
        self.entries.len() != before
    }
}
