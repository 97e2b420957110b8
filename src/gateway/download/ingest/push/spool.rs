//! The push spool: each upload streams into its own file there, so an object
//! never sits whole in memory, and the file is removed if the upload fails.

use http_body_util::BodyExt;
use hyper::body::{Body, Incoming};
use std::io;
use std::path::{Path, PathBuf};
use tokio::io::AsyncWriteExt;

/// Writes reach the disk in chunks of this size (one blocking-pool hop each).
const WRITE_BUFFER_BYTES: usize = 256 * 1024;

const SPOOL_PREFIX: &str = "push-";
const SPOOL_SUFFIX: &str = ".spool";

/// Why an upload did not complete.
#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    #[error("body exceeds the {limit}-byte object limit")]
    TooLarge { limit: u64 },
    #[error("request body could not be read: {0}")]
    Body(hyper::Error),
    #[error("spool file {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
}

/// A spool file being written; removed on drop unless [`Spooled::keep`] was
/// called, so every early return cleans up.
#[derive(Debug)]
pub struct Spooled {
    path: PathBuf,
    kept: bool,
}

impl Spooled {
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Hands the file over to its new owner (the session that sends it).
    pub fn keep(mut self) -> PathBuf {
        self.kept = true;
        std::mem::take(&mut self.path)
    }
}

impl Drop for Spooled {
    fn drop(&mut self) {
        if !self.kept
            && let Err(e) = std::fs::remove_file(&self.path)
            && e.kind() != io::ErrorKind::NotFound
        {
            tracing::warn!(file = %self.path.display(), error = %e, "push spool file not removed");
        }
    }
}

/// Creates the spool folder and removes upload files a previous run left.
pub fn prepare(dir: &Path) -> io::Result<()> {
    std::fs::create_dir_all(dir)?;
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let ours = name
            .to_str()
            .is_some_and(|n| n.starts_with(SPOOL_PREFIX) && n.ends_with(SPOOL_SUFFIX));
        if ours && entry.file_type()?.is_file() {
            std::fs::remove_file(entry.path())?;
        }
    }
    Ok(())
}

/// Streams `body` into a new file in `dir`, refusing it as soon as it passes
/// `limit` bytes. Returns the file and its length.
pub async fn spool_body(
    dir: &Path,
    mut body: Incoming,
    limit: u64,
) -> Result<(Spooled, u64), SpoolError> {
    if body.size_hint().lower() > limit {
        return Err(SpoolError::TooLarge { limit });
    }
    let (spooled, file) = create(dir).await?;
    let io_error = |source| SpoolError::Io {
        path: spooled.path().to_owned(),
        source,
    };
    let mut writer = tokio::io::BufWriter::with_capacity(WRITE_BUFFER_BYTES, file);
    let mut written: u64 = 0;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(SpoolError::Body)?;
        let Ok(data) = frame.into_data() else {
            continue; // Trailers carry nothing of the object.
        };
        written += data.len() as u64;
        if written > limit {
            return Err(SpoolError::TooLarge { limit });
        }
        writer.write_all(&data).await.map_err(io_error)?;
    }
    writer.flush().await.map_err(io_error)?;
    let mut file = writer.into_inner();
    file.flush().await.map_err(io_error)?;
    Ok((spooled, written))
}

async fn create(dir: &Path) -> Result<(Spooled, tokio::fs::File), SpoolError> {
    loop {
        let path = dir.join(format!(
            "{SPOOL_PREFIX}{:016x}{SPOOL_SUFFIX}",
            rand::random::<u64>()
        ));
        match tokio::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .await
        {
            Ok(file) => return Ok((Spooled { path, kept: false }, file)),
            // A 64-bit name collision: draw again.
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(source) => return Err(SpoolError::Io { path, source }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prepare_removes_only_leftover_uploads() {
        let dir = tempfile::tempdir().unwrap();
        let spool = dir.path().join("spool");
        prepare(&spool).unwrap();
        std::fs::write(spool.join("push-00000000000000ab.spool"), b"old").unwrap();
        std::fs::write(spool.join("operator-notes.txt"), b"keep").unwrap();
        prepare(&spool).unwrap();
        let left: Vec<_> = std::fs::read_dir(&spool)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(left, ["operator-notes.txt"]);
    }

    #[test]
    fn a_dropped_spool_file_is_removed_and_a_kept_one_stays() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("push-1.spool");
        std::fs::write(&path, b"x").unwrap();
        drop(Spooled {
            path: path.clone(),
            kept: false,
        });
        assert!(!path.exists());
        std::fs::write(&path, b"x").unwrap();
        let kept = Spooled {
            path: path.clone(),
            kept: false,
        }
        .keep();
        assert_eq!(kept, path);
        assert!(path.exists());
    }
}
