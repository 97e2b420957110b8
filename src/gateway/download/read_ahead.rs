//! The FLUTE sender's one read-ahead window over the spool file of the object
//! on air: one object is sent at a time, so one window per session bounds the
//! memory a session holds, however many objects wait in its carousel.

use std::fs::File;
use std::io;
use std::ops::Range;
use std::os::unix::fs::FileExt;

/// Spool bytes read per step.
pub const READ_AHEAD: usize = 1 << 20;

#[derive(Debug, Default)]
pub struct ReadAhead {
    /// The object the window holds bytes of.
    toi: Option<u128>,
    start: u64,
    window: Vec<u8>,
}

impl ReadAhead {
    /// The bytes of `range` of object `toi`, spooled in `file`: contiguous
    /// reads are served from the window, which moves forward in steps of
    /// [`READ_AHEAD`] bytes.
    pub fn bytes(&mut self, file: &File, toi: u128, range: Range<u64>) -> io::Result<&[u8]> {
        let len = (range.end - range.start) as usize;
        let inside = self.toi == Some(toi)
            && range.start >= self.start
            && range.end <= self.start + self.window.len() as u64;
        if !inside {
            self.window.resize(READ_AHEAD.max(len), 0);
            let mut filled = 0;
            while filled < self.window.len() {
                let n = file.read_at(&mut self.window[filled..], range.start + filled as u64)?;
                if n == 0 {
                    break;
                }
                filled += n;
            }
            self.window.truncate(filled);
            self.toi = Some(toi);
            self.start = range.start;
            if filled < len {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "spool file shorter than the object",
                ));
            }
        }
        let from = (range.start - self.start) as usize;
        Ok(&self.window[from..from + len])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serves_ranges_of_the_right_object_and_refuses_a_short_spool() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        let bytes_a: Vec<u8> = (0..READ_AHEAD + 500).map(|i| (i % 251) as u8).collect();
        std::fs::write(&a, &bytes_a).unwrap();
        std::fs::write(&b, [7u8; 100]).unwrap();
        let (a, b) = (File::open(a).unwrap(), File::open(b).unwrap());
        let mut read_ahead = ReadAhead::default();
        assert_eq!(read_ahead.bytes(&a, 1, 0..10).unwrap(), &bytes_a[..10]);
        // Past the first window: the window moves on.
        let end = bytes_a.len() as u64;
        assert_eq!(
            read_ahead.bytes(&a, 1, end - 600..end).unwrap(),
            &bytes_a[bytes_a.len() - 600..]
        );
        // Another object at the same offsets reads its own file.
        assert_eq!(read_ahead.bytes(&b, 2, 0..10).unwrap(), &[7u8; 10]);
        let short = read_ahead.bytes(&b, 2, 50..150).unwrap_err();
        assert_eq!(short.kind(), io::ErrorKind::UnexpectedEof);
    }
}
