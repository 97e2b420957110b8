//! Protection of one object for a download session: the source file is read
//! in chunks, encrypted as an OMA DRM v2 DCF under the active MTK (TS 33.246
//! §6.6.3) and written to the session's spool, with the MD5 of the DCF bytes
//! for the FDT's Content-MD5 (RFC 3926 §3.4.2: the digest of the object as
//! it is delivered). Encryption, the digest and the spool write run on three
//! threads a chunk apart. The object is never whole in memory, and a source that
//! shrinks, grows or disappears while it is read is refused.

use crate::protocol::dcf::{DcfParams, DcfWriteError, DcfWriter, EncryptionMethod, MbmsKeyId};
use crate::protocol::keys::{KeyDomainId, Mki, MtkKey};
use crate::protocol::profile::flute::mikey_content_location;
use md5::{Digest, Md5};
use rand::RngCore;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, mpsc};
use thiserror::Error;

/// Plaintext read per step: the unit the protect threads pass on.
pub const CHUNK: usize = 1024 * 1024;

/// The MTK new objects are protected with, and where its key travels.
pub struct ProtectionKey {
    pub mki: Mki,
    pub key_id: MbmsKeyId,
    pub key: MtkKey,
    /// Content-Location of the MIKEY object carrying this MTK.
    pub key_uri: String,
    /// That MIKEY MTK message.
    pub message: Arc<[u8]>,
    /// Revocation epoch: objects of an older epoch are never sent.
    pub epoch: u64,
}

impl ProtectionKey {
    /// The MTK `key` named `mki` in Key Domain `key_domain_id`, carried by the
    /// MIKEY `message` at its usual Content-Location.
    pub fn new(
        key_domain_id: KeyDomainId,
        mki: Mki,
        key: MtkKey,
        message: Arc<[u8]>,
        epoch: u64,
    ) -> Self {
        Self {
            mki,
            key_id: MbmsKeyId {
                key_domain_id,
                msk_id: mki.msk_id,
                mtk_id: mki.mtk_id,
            },
            key,
            key_uri: mikey_content_location(mki),
            message,
            epoch,
        }
    }
}

impl std::fmt::Debug for ProtectionKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProtectionKey")
            .field("mki", &self.mki)
            .field("key_uri", &self.key_uri)
            .finish_non_exhaustive()
    }
}

/// One object as it will be sent.
#[derive(Debug, Clone)]
pub struct ProtectedObject {
    pub content_location: String,
    /// The DCF in the spool; the session deletes it when the object leaves.
    pub spool_path: PathBuf,
    /// Bytes of the DCF (Content-Length = Transfer-Length: no content coding).
    pub transfer_length: u64,
    /// MD5 of the DCF bytes, unless the session leaves Content-MD5 out.
    pub content_md5: Option<[u8; 16]>,
    /// Content-Location of the MIKEY object with the MTK, and its message.
    pub key_uri: String,
    pub key_message: Arc<[u8]>,
    pub epoch: u64,
    pub mki: Mki,
    /// Bytes of the source.
    pub plaintext_len: u64,
}

/// Why an object was not protected. Names the file; never key bytes.
#[derive(Debug, Error)]
pub enum ProtectError {
    #[error("{path}: cannot be read: {source}")]
    Unreadable { path: PathBuf, source: io::Error },
    #[error("{path}: {size} bytes exceed the session limit of {limit} bytes")]
    TooLarge {
        path: PathBuf,
        size: u64,
        limit: u64,
    },
    #[error("{path}: is not a regular file")]
    NotAFile { path: PathBuf },
    #[error("{path}: deleted or replaced while it was read")]
    DeletedWhileRead { path: PathBuf },
    #[error("{path}: changed while it was read ({expected} bytes at open, {got} read)")]
    ChangedWhileRead {
        path: PathBuf,
        expected: u64,
        got: u64,
    },
    #[error("spool file {path}: {source}")]
    Spool { path: PathBuf, source: io::Error },
    #[error("{path}: DCF: {source}")]
    Dcf {
        path: PathBuf,
        source: DcfWriteError,
    },
}

/// What to protect and how.
pub struct ProtectRequest<'a> {
    pub source: &'a Path,
    pub content_location: &'a str,
    /// MIME type of the plaintext (the DCF's ContentType).
    pub content_type: &'a str,
    pub method: EncryptionMethod,
    /// Compute the DCF's MD5 for the FDT's Content-MD5.
    pub content_md5: bool,
    pub max_size: u64,
    pub spool_path: PathBuf,
}

/// Protects `req.source` into `req.spool_path` under `key`. On error the
/// spool file is removed.
pub fn protect_file(
    req: ProtectRequest<'_>,
    key: &ProtectionKey,
) -> Result<ProtectedObject, ProtectError> {
    let result = write_dcf(&req, key);
    if result.is_err() {
        let _ = std::fs::remove_file(&req.spool_path);
    }
    result
}

fn write_dcf(
    req: &ProtectRequest<'_>,
    key: &ProtectionKey,
) -> Result<ProtectedObject, ProtectError> {
    let path = req.source;
    let unreadable = |source| ProtectError::Unreadable {
        path: path.to_owned(),
        source,
    };
    let source = File::open(path).map_err(unreadable)?;
    let opened = source.metadata().map_err(unreadable)?;
    write_from(source, &opened, req, key)
}

/// Protects the already open `source` (`opened` is its metadata at open).
fn write_from(
    source: File,
    opened: &std::fs::Metadata,
    req: &ProtectRequest<'_>,
    key: &ProtectionKey,
) -> Result<ProtectedObject, ProtectError> {
    let path = req.source;
    if !opened.is_file() {
        return Err(ProtectError::NotAFile {
            path: path.to_owned(),
        });
    }
    let size = opened.len();
    if size > req.max_size {
        return Err(ProtectError::TooLarge {
            path: path.to_owned(),
            size,
            limit: req.max_size,
        });
    }
    let mut iv = [0u8; 16];
    rand::rng().fill_bytes(&mut iv);
    let params = DcfParams {
        content_type: req.content_type.to_owned(),
        content_id: format!("cid:{}", req.content_location),
        rights_issuer_url: String::new(),
        textual_headers: vec![key.key_id.textual_header()],
        method: req.method,
        plaintext_len: size,
    };
    let writer = DcfWriter::new(params, &key.key, iv).map_err(|source| ProtectError::Dcf {
        path: path.to_owned(),
        source,
    })?;
    let spool = File::create(&req.spool_path).map_err(|source| ProtectError::Spool {
        path: req.spool_path.clone(),
        source,
    })?;
    spool_dcf(source, opened, writer, spool, req, key)
}

/// Writes the DCF of `writer` over `source` into `spool`.
fn spool_dcf(
    mut source: File,
    opened: &std::fs::Metadata,
    writer: DcfWriter,
    spool: File,
    req: &ProtectRequest<'_>,
    key: &ProtectionKey,
) -> Result<ProtectedObject, ProtectError> {
    let path = req.source;
    // Encryption, the digest and the spool write run on three threads, a
    // chunk apart, so an object is protected at the pace of the slowest of
    // them rather than their sum.
    let (encrypted, digest, spooled) = std::thread::scope(|scope| {
        let (recycle, spent) = mpsc::channel();
        let (to_spool, spool_queue) = mpsc::channel();
        let spooling = spawn(scope, "spool", move || {
            spool_chunks(spool, spool_queue, recycle)
        })?;
        let (next, digesting) = if req.content_md5 {
            let (to_digest, digest_queue) = mpsc::channel();
            let digest = move || digest_chunks(digest_queue, to_spool);
            (to_digest, Some(spawn(scope, "digest", digest)?))
        } else {
            (to_spool, None)
        };
        let mut handoff = Handoff {
            next,
            spent,
            unused: CHUNKS_IN_FLIGHT,
        };
        let encrypted = encrypt_source(&mut source, writer, opened, path, &mut handoff);
        drop(handoff);
        let digest = digesting.map(joined);
        Ok((encrypted, digest, joined(spooling)))
    })
    .map_err(|source| ProtectError::Spool {
        path: req.spool_path.clone(),
        source,
    })?;
    // A spool failure stops the encryption early: report it first.
    let transfer_length = spooled.map_err(|source| ProtectError::Spool {
        path: req.spool_path.clone(),
        source,
    })?;
    encrypted?;
    Ok(ProtectedObject {
        content_location: req.content_location.to_owned(),
        spool_path: req.spool_path.clone(),
        transfer_length,
        content_md5: digest,
        key_uri: key.key_uri.clone(),
        key_message: key.message.clone(),
        epoch: key.epoch,
        mki: key.mki,
        plaintext_len: opened.len(),
    })
}

/// Chunk buffers going round encryption, digest and spool write: one at each
/// and one waiting, so memory stays at a few chunks whatever the object size.
const CHUNKS_IN_FLIGHT: usize = 4;

/// A thread of the chain; the OS may refuse one (thread limit, memory).
fn spawn<'scope, T: Send + 'scope>(
    scope: &'scope std::thread::Scope<'scope, '_>,
    stage: &str,
    f: impl FnOnce() -> T + Send + 'scope,
) -> io::Result<std::thread::ScopedJoinHandle<'scope, T>> {
    std::thread::Builder::new()
        .name(format!("protect-{stage}"))
        .spawn_scoped(scope, f)
}

fn joined<T>(thread: std::thread::ScopedJoinHandle<'_, T>) -> T {
    thread
        .join()
        .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
}

/// The MD5 of every chunk, each passed on to `next` once digested.
fn digest_chunks(chunks: mpsc::Receiver<Vec<u8>>, next: mpsc::Sender<Vec<u8>>) -> [u8; 16] {
    let mut md5 = Md5::new();
    for chunk in chunks {
        md5.update(&chunk);
        if next.send(chunk).is_err() {
            break;
        }
    }
    md5.finalize().into()
}

/// Writes every chunk to `file`, each sent back to `recycle` once written.
/// Returns the bytes written.
fn spool_chunks(
    mut file: File,
    chunks: mpsc::Receiver<Vec<u8>>,
    recycle: mpsc::Sender<Vec<u8>>,
) -> io::Result<u64> {
    let mut written = 0;
    for chunk in chunks {
        file.write_all(&chunk)?;
        written += chunk.len() as u64;
        let _ = recycle.send(chunk);
    }
    Ok(written)
}

/// The encrypting end of the chunk chain.
struct Handoff {
    next: mpsc::Sender<Vec<u8>>,
    spent: mpsc::Receiver<Vec<u8>>,
    /// Buffers not yet allocated.
    unused: usize,
}

impl Handoff {
    /// An empty buffer; `None` once the chain has stopped (on a spool error).
    fn buffer(&mut self) -> Option<Vec<u8>> {
        if self.unused > 0 {
            self.unused -= 1;
            return Some(Vec::with_capacity(CHUNK + 16));
        }
        let mut chunk = self.spent.recv().ok()?;
        chunk.clear();
        Some(chunk)
    }

    /// False once the chain has stopped.
    fn pass(&mut self, chunk: Vec<u8>) -> bool {
        self.next.send(chunk).is_ok()
    }
}

/// Reads `source` to its end and passes its ciphertext on, refusing a source
/// that changes while it is read. Returns early, with `Ok`, when the chain
/// stops: the spool error is the one to report.
fn encrypt_source(
    source: &mut File,
    mut writer: DcfWriter,
    opened: &std::fs::Metadata,
    path: &Path,
    handoff: &mut Handoff,
) -> Result<(), ProtectError> {
    let unreadable = |source| ProtectError::Unreadable {
        path: path.to_owned(),
        source,
    };
    let dcf_error = |source| ProtectError::Dcf {
        path: path.to_owned(),
        source,
    };
    let changed = |got| ProtectError::ChangedWhileRead {
        path: path.to_owned(),
        expected: opened.len(),
        got,
    };
    let Some(mut header) = handoff.buffer() else {
        return Ok(());
    };
    header.extend_from_slice(writer.header());
    if !handoff.pass(header) {
        return Ok(());
    }
    let mut plain = vec![0u8; CHUNK];
    let mut read = 0u64;
    loop {
        let n = source.read(&mut plain).map_err(unreadable)?;
        if n == 0 {
            break;
        }
        read += n as u64;
        if read > opened.len() {
            return Err(changed(read));
        }
        let Some(mut cipher) = handoff.buffer() else {
            return Ok(());
        };
        writer
            .encrypt(&plain[..n], &mut cipher)
            .map_err(dcf_error)?;
        if !handoff.pass(cipher) {
            return Ok(());
        }
    }
    if read != opened.len() {
        return Err(changed(read));
    }
    // An open file reads to the end even once unlinked: look again by name.
    match std::fs::metadata(path) {
        Ok(now) if now.ino() == opened.ino() && now.dev() == opened.dev() => {}
        _ => {
            return Err(ProtectError::DeletedWhileRead {
                path: path.to_owned(),
            });
        }
    }
    let Some(mut last) = handoff.buffer() else {
        return Ok(());
    };
    writer.finish(&mut last).map_err(dcf_error)?;
    handoff.pass(last);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::dcf::EncryptionMethod;
    use crate::protocol::keys::{MskId, MtkId};

    fn key() -> ProtectionKey {
        let mki = Mki {
            msk_id: MskId(0x0001_0002),
            mtk_id: MtkId(3),
        };
        ProtectionKey::new(
            KeyDomainId([1, 2, 3]),
            mki,
            MtkKey::new([7; 16]),
            Arc::from(&b"mikey"[..]),
            0,
        )
    }

    fn request<'a>(dir: &Path, source: &'a Path) -> ProtectRequest<'a> {
        ProtectRequest {
            source,
            content_location: "a.bin",
            content_type: "application/octet-stream",
            method: EncryptionMethod::Aes128Cbc,
            content_md5: true,
            max_size: 1 << 20,
            spool_path: dir.join("a.dcf"),
        }
    }

    #[test]
    fn a_file_deleted_while_it_is_read_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.bin");
        std::fs::write(&path, vec![5u8; 100_000]).unwrap();
        let source = File::open(&path).unwrap();
        let opened = source.metadata().unwrap();
        std::fs::remove_file(&path).unwrap();
        let req = request(dir.path(), &path);
        let result = write_from(source, &opened, &req, &key());
        assert!(
            matches!(result, Err(ProtectError::DeletedWhileRead { .. })),
            "{result:?}"
        );
        assert!(result.unwrap_err().to_string().contains("a.bin"));
    }

    #[test]
    fn a_file_replaced_while_it_is_read_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.bin");
        std::fs::write(&path, vec![5u8; 1000]).unwrap();
        let source = File::open(&path).unwrap();
        let opened = source.metadata().unwrap();
        // A packager renames a new version into place under the same name.
        let next = dir.path().join("next.bin");
        std::fs::write(&next, vec![6u8; 1000]).unwrap();
        std::fs::rename(&next, &path).unwrap();
        let req = request(dir.path(), &path);
        assert!(matches!(
            write_from(source, &opened, &req, &key()),
            Err(ProtectError::DeletedWhileRead { .. })
        ));
    }

    #[test]
    fn a_complete_file_becomes_a_dcf_with_the_md5_of_its_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.bin");
        std::fs::write(&path, vec![5u8; 1000]).unwrap();
        let protected = protect_file(request(dir.path(), &path), &key()).unwrap();
        let dcf = std::fs::read(&protected.spool_path).unwrap();
        assert_eq!(protected.transfer_length, dcf.len() as u64);
        assert_eq!(
            protected.content_md5,
            Some(<[u8; 16]>::from(Md5::digest(&dcf)))
        );
        assert_eq!(protected.plaintext_len, 1000);
    }

    #[test]
    fn a_session_without_content_md5_computes_none_and_writes_the_same_dcf() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.bin");
        std::fs::write(&path, vec![5u8; 5000]).unwrap();
        let req = ProtectRequest {
            content_md5: false,
            ..request(dir.path(), &path)
        };
        let protected = protect_file(req, &key()).unwrap();
        assert_eq!(protected.content_md5, None);
        let dcf = std::fs::read(&protected.spool_path).unwrap();
        assert_eq!(protected.transfer_length, dcf.len() as u64);
        // A DCF all the same: its header, then the ciphertext of 5000 bytes.
        assert!(dcf.len() > 5000, "{}", dcf.len());
    }

    /// Objects of several chunks, not a whole number of blocks, through both
    /// threads: the spool holds a DCF that decrypts to the source, whose MD5
    /// is the one reported.
    #[test]
    fn a_file_of_many_chunks_decrypts_to_its_source() {
        use crate::protocol::dcf::{DcfHeader, DcfReader, HeaderParse};
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.bin");
        let source: Vec<u8> = (0..5 * CHUNK + 7).map(|i| (i * 31 % 251) as u8).collect();
        std::fs::write(&path, &source).unwrap();
        for method in [EncryptionMethod::Aes128Cbc, EncryptionMethod::Aes128Ctr] {
            let req = ProtectRequest {
                method,
                max_size: 1 << 30,
                ..request(dir.path(), &path)
            };
            let protected = protect_file(req, &key()).unwrap();
            let dcf = std::fs::read(&protected.spool_path).unwrap();
            assert_eq!(protected.transfer_length, dcf.len() as u64);
            assert_eq!(
                protected.content_md5,
                Some(<[u8; 16]>::from(Md5::digest(&dcf)))
            );
            let HeaderParse::Complete { header, header_len } = DcfHeader::parse(&dcf).unwrap()
            else {
                panic!("{method:?}: header incomplete");
            };
            let mut reader = DcfReader::new(header, &key().key);
            let mut plain = Vec::new();
            reader.decrypt(&dcf[header_len..], &mut plain);
            reader.finish(&mut plain).unwrap();
            assert!(plain == source, "{method:?}: plaintext differs");
        }
    }

    /// A spool that fails to take the DCF stops every thread of the chain
    /// (none is left waiting for a chunk) and is reported as a spool error.
    #[test]
    fn a_failing_spool_stops_the_chain_and_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.bin");
        std::fs::write(&path, vec![5u8; 3 * CHUNK]).unwrap();
        let req = request(dir.path(), &path);
        std::fs::write(&req.spool_path, b"").unwrap();
        for content_md5 in [true, false] {
            let req = ProtectRequest {
                content_md5,
                ..request(dir.path(), &path)
            };
            let source = File::open(&path).unwrap();
            let opened = source.metadata().unwrap();
            let params = DcfParams {
                content_type: "application/octet-stream".into(),
                content_id: "cid:a".into(),
                rights_issuer_url: String::new(),
                textual_headers: Vec::new(),
                method: EncryptionMethod::Aes128Cbc,
                plaintext_len: opened.len(),
            };
            let writer = DcfWriter::new(params, &key().key, [0; 16]).unwrap();
            // Opened for reading only: every write fails.
            let spool = File::open(&req.spool_path).unwrap();
            let result = spool_dcf(source, &opened, writer, spool, &req, &key());
            let error = result.unwrap_err();
            assert!(matches!(error, ProtectError::Spool { .. }), "{error:?}");
            assert!(error.to_string().contains("a.dcf"), "{error}");
        }
    }
}
