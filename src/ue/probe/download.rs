//! The probe for download sessions (seed §6.3.3.2.1, §6.6): joins the FLUTE
//! session, rebuilds objects (repairing with FEC), opens the MIKEY objects
//! with the MSKs it holds under the UE rules, decrypts each DCF with the MTK
//! its `Decryption-KEY-URI` names, checks Content-MD5, writes the files to an
//! output folder, and reports every object as complete, incomplete or failed
//! with the reason.

use super::keys::{MikeyReceiver, MskStore};
use super::report::MikeyStats;
use super::{BmscWatch, POLL_INTERVAL, ProbeKeySource, key_store};
use crate::protocol::dcf::{DcfHeader, DcfReader, HeaderParse};
use crate::protocol::flute::fdt::FdtFile;
use crate::protocol::flute::receiver::{FluteReceiver, ReceiverEvent};
use crate::protocol::keys::{KeyDomainId, Mki, Mtk};
use crate::protocol::profile;
use crate::runtime::udp::{IngestOptions, ingest_socket, set_int_option};
use anyhow::{Context, Result};
use md5::{Digest, Md5};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Largest ALC datagram read.
const RECV_BUFFER: usize = 65_536;
/// Protected objects kept while their MIKEY object is not in yet.
const MAX_WAITING_FOR_KEY: usize = 64;

#[derive(Debug, Clone)]
pub struct DownloadProbeConfig {
    /// The session's multicast group (or a local unicast address) and port.
    pub group: IpAddr,
    pub port: u16,
    /// Only this TSI (any when `None`).
    pub tsi: Option<u16>,
    /// Local IPv4 address of the interface to join on.
    pub interface: Option<IpAddr>,
    pub key_source: ProbeKeySource,
    pub key_domain_id: KeyDomainId,
    /// Where decrypted files are written (under their Content-Location).
    pub output_dir: Option<PathBuf>,
    /// Stop after this long (`None`: until stopped).
    pub duration: Option<Duration>,
    /// Largest object accepted.
    pub max_object_len: u64,
    /// Fraction of datagrams dropped on arrival, before any processing: a
    /// lossy link for labs and tests (0 in service).
    pub simulated_loss: f64,
    pub loss_seed: u64,
}

impl DownloadProbeConfig {
    pub fn new(
        group: IpAddr,
        port: u16,
        key_domain_id: KeyDomainId,
        key_source: ProbeKeySource,
    ) -> Self {
        Self {
            group,
            port,
            tsi: None,
            interface: None,
            key_source,
            key_domain_id,
            output_dir: None,
            duration: None,
            max_object_len: 1 << 30,
            simulated_loss: 0.0,
            loss_seed: 1,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ObjectStatus {
    /// Received, decrypted and verified (and written, with an output folder).
    Complete,
    /// Announced in the FDT but not (yet) all received, or its key not in.
    Incomplete,
    /// Received but refused: the reason says why.
    Failed,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ObjectOutcome {
    pub status: ObjectStatus,
    /// Plaintext bytes (complete objects).
    pub bytes: u64,
    /// MD5 of the plaintext, hex (complete objects).
    pub md5: Option<String>,
    /// Versions received under this Content-Location (a manifest is replaced).
    pub versions: u32,
    pub reason: Option<String>,
    /// When the (last) version was complete and verified, in milliseconds
    /// since the Unix epoch: delivery time against the file's arrival.
    pub completed_unix_ms: Option<u64>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct DownloadReport {
    pub elapsed_s: f64,
    pub packets: u64,
    pub bytes: u64,
    /// Datagrams dropped by `simulated_loss`.
    pub packets_dropped_by_loss: u64,
    pub rejected_packets: u64,
    pub fdt_instances: u64,
    pub session_closed: bool,
    pub mikey: MikeyStats,
    /// MIKEY objects received (each opened once).
    pub mikey_objects: u64,
    /// By Content-Location; MIKEY objects are not listed.
    pub objects: BTreeMap<String, ObjectOutcome>,
}

impl DownloadReport {
    pub fn count(&self, status: ObjectStatus) -> usize {
        self.objects.values().filter(|o| o.status == status).count()
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_default()
    }
}

struct Core {
    started: Instant,
    receiver: FluteReceiver,
    mikey: MikeyReceiver,
    /// MTKs by the Content-Location of the MIKEY object that carried them.
    mtks: HashMap<String, (Mki, Mtk)>,
    waiting: Vec<(FdtFile, Vec<u8>)>,
    /// MIKEY objects under an MSK not held yet.
    unopened: Vec<(String, Vec<u8>)>,
    objects: BTreeMap<String, ObjectOutcome>,
    output_dir: Option<PathBuf>,
    dropped: u64,
    closed: bool,
    mikey_objects: u64,
}

impl Core {
    fn handle(&mut self, event: ReceiverEvent) {
        match event {
            ReceiverEvent::Fdt { .. } => {}
            ReceiverEvent::SessionClosed => self.closed = true,
            ReceiverEvent::Object { file, data } => {
                if file.content_type.as_deref() == Some(profile::flute::MIKEY_CONTENT_TYPE) {
                    self.mikey_objects += 1;
                    self.open_mikey(file.content_location, data);
                } else {
                    self.open(*file, data);
                }
            }
        }
    }

    /// Opens a MIKEY object; one under an MSK not held yet is kept (bounded)
    /// and opened once the MSK arrives (the missed-key case).
    fn open_mikey(&mut self, location: String, data: Vec<u8>) {
        match self.mikey.receive(&data) {
            Some(accepted) => {
                let mki = Mki::from_bytes(accepted.mki);
                self.mtks.insert(location, (mki, accepted.mtk));
                let waiting = std::mem::take(&mut self.waiting);
                for (file, data) in waiting {
                    self.open(file, data);
                }
            }
            None if !self.mikey.holds_msk_for(&data)
                && self.unopened.len() < MAX_WAITING_FOR_KEY =>
            {
                self.unopened.push((location, data));
            }
            None => {}
        }
    }

    /// Retries the MIKEY objects whose MSK has arrived since.
    fn retry_unopened(&mut self) {
        if self.unopened.is_empty() {
            return;
        }
        let (ready, rest): (Vec<_>, Vec<_>) = std::mem::take(&mut self.unopened)
            .into_iter()
            .partition(|(_, data)| self.mikey.holds_msk_for(data));
        self.unopened = rest;
        for (location, data) in ready {
            self.open_mikey(location, data);
        }
    }

    /// Decrypts (when protected) and stores one object.
    fn open(&mut self, file: FdtFile, data: Vec<u8>) {
        let location = file.content_location.clone();
        let result = match &file.decryption_key_uri {
            None => Ok(data),
            Some(uri) => match self.mtks.get(uri) {
                Some((mki, mtk)) => decrypt(&data, *mki, mtk),
                None => {
                    if self.waiting.len() < MAX_WAITING_FOR_KEY {
                        self.waiting.push((file, data));
                    }
                    return;
                }
            },
        };
        let outcome = result.and_then(|plain| {
            if let Some(dir) = &self.output_dir {
                write_output(dir, &location, &plain)?;
            }
            Ok(plain)
        });
        let versions = self.objects.get(&location).map_or(0, |o| o.versions) + 1;
        let entry = match outcome {
            Ok(plain) => ObjectOutcome {
                status: ObjectStatus::Complete,
                bytes: plain.len() as u64,
                md5: Some(hex::encode(Md5::digest(&plain))),
                versions,
                reason: None,
                completed_unix_ms: std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .ok()
                    .map(|d| d.as_millis() as u64),
            },
            Err(reason) => {
                tracing::warn!(object = %location, %reason, "object failed");
                ObjectOutcome {
                    status: ObjectStatus::Failed,
                    bytes: 0,
                    md5: None,
                    versions,
                    reason: Some(reason),
                    completed_unix_ms: None,
                }
            }
        };
        self.objects.insert(location, entry);
    }

    fn report(&self) -> DownloadReport {
        let stats = self.receiver.stats();
        let mut objects = self.objects.clone();
        for file in self.receiver.pending_files() {
            if file.content_type.as_deref() == Some(profile::flute::MIKEY_CONTENT_TYPE) {
                continue;
            }
            objects
                .entry(file.content_location.clone())
                .or_insert_with(|| incomplete("not all of its symbols were received".into()));
        }
        for (file, _) in &self.waiting {
            let uri = file.decryption_key_uri.clone().unwrap_or_default();
            objects.insert(
                file.content_location.clone(),
                incomplete(format!("its MTK object {uri} was not opened")),
            );
        }
        DownloadReport {
            elapsed_s: self.started.elapsed().as_secs_f64(),
            packets: stats.packets,
            bytes: stats.bytes,
            packets_dropped_by_loss: self.dropped,
            rejected_packets: stats.rejected_packets,
            fdt_instances: stats.fdt_instances,
            session_closed: self.closed,
            mikey: self.mikey.stats.clone(),
            mikey_objects: self.mikey_objects,
            objects,
        }
    }
}

fn incomplete(reason: String) -> ObjectOutcome {
    ObjectOutcome {
        status: ObjectStatus::Incomplete,
        bytes: 0,
        md5: None,
        versions: 0,
        reason: Some(reason),
        completed_unix_ms: None,
    }
}

/// Opens a DCF with the MTK its key URI named; the DCF's own MBMS-Key-ID must
/// name the same MTK.
fn decrypt(data: &[u8], mki: Mki, mtk: &Mtk) -> Result<Vec<u8>, String> {
    let (header, header_len) = match DcfHeader::parse(data).map_err(|e| format!("DCF: {e}"))? {
        HeaderParse::Complete { header, header_len } => (header, header_len),
        HeaderParse::NeedMore { .. } => return Err("DCF truncated before its headers end".into()),
    };
    if let Some(id) = header.key_id()
        && (id.msk_id != mki.msk_id || id.mtk_id != mki.mtk_id)
    {
        return Err(format!(
            "DCF names MTK {:08x}/{} but its Decryption-KEY-URI carries {:08x}/{}",
            id.msk_id.0, id.mtk_id.0, mki.msk_id.0, mki.mtk_id.0
        ));
    }
    let mut reader = DcfReader::new(header, &mtk.key);
    let mut plain = Vec::with_capacity(data.len());
    reader.decrypt(&data[header_len..], &mut plain);
    reader.finish(&mut plain).map_err(|e| format!("DCF: {e}"))?;
    Ok(plain)
}

/// Writes `data` under `dir` at the Content-Location's path (scheme and
/// authority dropped, `.`/`..` segments refused).
fn write_output(dir: &Path, location: &str, data: &[u8]) -> Result<(), String> {
    let path = location.split_once("://").map_or(location, |(_, rest)| {
        rest.split_once('/').map_or("", |(_, p)| p)
    });
    let mut out = dir.to_path_buf();
    for segment in path.split('/').filter(|s| !s.is_empty()) {
        if segment == "." || segment == ".." {
            return Err(format!(
                "Content-Location {location:?} leaves the output folder"
            ));
        }
        out.push(segment);
    }
    if out == dir {
        return Err(format!("Content-Location {location:?} names no file"));
    }
    if let Some(parent) = out.parent() {
        std::fs::create_dir_all(parent).map_err(|e| format!("{}: {e}", parent.display()))?;
    }
    std::fs::write(&out, data).map_err(|e| format!("{}: {e}", out.display()))
}

/// A running download probe.
pub struct DownloadProbeHandle {
    core: Arc<Mutex<Core>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    bmsc: Option<BmscWatch>,
}

impl DownloadProbeHandle {
    pub fn snapshot(&self) -> DownloadReport {
        lock(&self.core).report()
    }

    pub fn is_finished(&self) -> bool {
        self.thread.as_ref().is_none_or(|t| t.is_finished())
    }

    pub fn stop(mut self) -> DownloadReport {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take()
            && t.join().is_err()
        {
            tracing::error!("the download probe thread panicked");
        }
        if let Some(BmscWatch { client, runtime }) = self.bmsc.take() {
            drop(client);
            runtime.shutdown_background();
        }
        lock(&self.core).report()
    }
}

impl Drop for DownloadProbeHandle {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(BmscWatch { client, runtime }) = self.bmsc.take() {
            drop(client);
            runtime.shutdown_background();
        }
    }
}

fn lock(core: &Mutex<Core>) -> MutexGuard<'_, Core> {
    core.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Starts a download probe: joins the group and receives on one thread.
pub fn start_download_probe(config: DownloadProbeConfig) -> Result<DownloadProbeHandle> {
    anyhow::ensure!(
        (0.0..1.0).contains(&config.simulated_loss),
        "simulated loss {} is not in 0..1",
        config.simulated_loss
    );
    let (store, bmsc): (MskStore, _) = key_store(&config.key_source, config.key_domain_id)?;
    if let Some(dir) = &config.output_dir {
        std::fs::create_dir_all(dir).with_context(|| format!("output folder {}", dir.display()))?;
    }
    let core = Arc::new(Mutex::new(Core {
        started: Instant::now(),
        receiver: FluteReceiver::new(config.tsi.map(u64::from), config.max_object_len),
        mikey: MikeyReceiver::new(config.key_domain_id, store),
        mtks: HashMap::new(),
        waiting: Vec::new(),
        unopened: Vec::new(),
        objects: BTreeMap::new(),
        output_dir: config.output_dir.clone(),
        dropped: 0,
        closed: false,
        mikey_objects: 0,
    }));
    let socket = open(&config)?;
    let stop = Arc::new(AtomicBool::new(false));
    let deadline = config.duration.map(|d| Instant::now() + d);
    let thread = {
        let (core, stop) = (core.clone(), stop.clone());
        let mut loss = StdRng::seed_from_u64(config.loss_seed);
        let p = config.simulated_loss;
        std::thread::Builder::new()
            .name("probe-flute".into())
            .spawn(move || {
                let mut buf = vec![0u8; RECV_BUFFER];
                let mut events = Vec::new();
                loop {
                    if stop.load(Ordering::Relaxed) || deadline.is_some_and(|d| Instant::now() >= d)
                    {
                        return;
                    }
                    let len = match socket.recv(&mut buf) {
                        Ok(len) => len,
                        Err(e)
                            if matches!(
                                e.kind(),
                                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                            ) =>
                        {
                            lock(&core).retry_unopened();
                            continue;
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "download probe receive failed");
                            std::thread::sleep(POLL_INTERVAL);
                            continue;
                        }
                    };
                    let mut core = lock(&core);
                    if p > 0.0 && loss.random_bool(p) {
                        core.dropped += 1;
                        continue;
                    }
                    if let Err(e) = core.receiver.receive(&buf[..len], &mut events) {
                        tracing::debug!(error = %e, "FLUTE packet rejected");
                    }
                    for event in events.drain(..) {
                        core.handle(event);
                    }
                    core.retry_unopened();
                }
            })
            .context("spawning the download probe thread")?
    };
    Ok(DownloadProbeHandle {
        core,
        stop,
        thread: Some(thread),
        bmsc,
    })
}

fn open(config: &DownloadProbeConfig) -> Result<UdpSocket> {
    let listen = SocketAddr::new(config.group, config.port);
    let socket = ingest_socket(&IngestOptions {
        listen,
        source: None,
        interface: config.interface,
    })
    .with_context(|| format!("download probe socket {listen}"))?;
    // Bursts of a fast session must not overflow the default buffer: ask
    // past `rmem_max` when privileged (SO_RCVBUFFORCE), else up to it.
    let size: libc::c_int = 16 << 20;
    let forced = set_int_option(&socket, libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, size).is_ok();
    if !forced {
        let _ = socket2::SockRef::from(&socket).set_recv_buffer_size(size as usize);
    }
    socket
        .set_read_timeout(Some(POLL_INTERVAL))
        .context("download probe socket read timeout")?;
    Ok(socket)
}
