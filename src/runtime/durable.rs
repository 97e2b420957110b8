//! Durable small files (key journal, BM-SC lease ledger).

use std::fs;
use std::io::Write;
use std::path::Path;

/// Replaces `path` so that a crash leaves either the old or the new content: write a
/// temp file, fsync it, rename over `path`, fsync the directory (the rename itself).
pub fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut tmp_name = path.file_name().unwrap_or_default().to_os_string();
    tmp_name.push(".tmp");
    let tmp = dir.join(tmp_name);
    let mut file = fs::File::create(&tmp)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    drop(file);
    fs::rename(&tmp, path)?;
    fs::File::open(dir)?.sync_all()
}
