//! The probe: a receiver that does what a UE does with a streaming session
//! (seed §6.4.6.2, §6.5; design §5 "probe"). It joins the session's multicast
//! group on the SRTP ports and the MIKEY port, opens MTK messages with the MSKs
//! it holds, decrypts SRTP under the MTK the MKI names, and counts what it saw
//! into a [`ProbeReport`], which [`ProbeExpect`] checks.
//!
//! Each socket has its own thread with a short read timeout; the threads share
//! one state behind a mutex (the rates a probe sees make that cheap), so
//! [`ProbeHandle::snapshot`] gives a live report while the probe runs.

mod download;
mod keys;
mod report;
mod streaming;

pub use download::{
    DownloadProbeConfig, DownloadProbeHandle, DownloadReport, ObjectOutcome, ObjectStatus,
    start_download_probe,
};

pub use keys::ProbeKeySource;
pub use report::{MikeyStats, ProbeExpect, ProbeReport, SrtpStats, StreamStats};
pub use streaming::{MAX_HELD_PACKETS, RESET_AFTER_FAILURES};

use crate::protocol::keys::KeyDomainId;
use crate::protocol::profile::MIKEY_UDP_PORT;
use crate::protocol::srtp::{RocTransmission, SrtpConfig};
use crate::runtime::key_service::load_key_file;
use crate::runtime::key_service::{MskClient, MskScope};
use crate::runtime::udp::{IngestOptions, ingest_socket};
use anyhow::{Context, Result};
use keys::{MikeyReceiver, MskStore};
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use streaming::SrtpSide;

/// How often blocked reads wake up to look at the stop flag and held packets.
const POLL_INTERVAL: Duration = Duration::from_millis(50);
/// Largest datagram read.
const RECV_BUFFER: usize = 2048;

/// What to listen to and with which keys.
#[derive(Debug, Clone)]
pub struct StreamingProbeConfig {
    /// The session's multicast group (or a local unicast address).
    pub group: IpAddr,
    /// The SRTP ports of the session's streams.
    pub ports: Vec<u16>,
    /// Local IPv4 address of the interface to join on (`None`: the kernel's choice).
    pub interface: Option<IpAddr>,
    /// Where MTK messages arrive; [`MIKEY_UDP_PORT`] in a real session.
    pub mikey_port: u16,
    pub key_source: ProbeKeySource,
    /// Only MTK messages of this Key Domain are opened.
    pub key_domain_id: KeyDomainId,
    /// Stop after this long (`None`: until [`ProbeHandle::stop`]).
    pub duration: Option<Duration>,
    /// How long a packet whose MKI names an MTK not received yet is kept for a
    /// retry (at most [`MAX_HELD_PACKETS`] packets). Zero disables holding.
    pub unknown_mki_hold: Duration,
    /// How the session's packets carry the ROC (RFC 4771); it must match
    /// the session's `[streaming.srtp]` settings.
    pub roc: RocTransmission,
    /// Only for a session that does not carry the ROC ([`RocTransmission::None`]):
    /// the highest ROC tried for the first packet of a stream, for a probe
    /// joining after the sender's SEQ wrapped (see
    /// [`SrtpReceiver::set_max_initial_roc`]).
    ///
    /// [`SrtpReceiver::set_max_initial_roc`]: crate::protocol::srtp::SrtpReceiver::set_max_initial_roc
    pub max_initial_roc: u32,
}

impl StreamingProbeConfig {
    /// A probe on `group` / `ports` with the defaults: MIKEY on port 2269, no
    /// time limit, a 2 s hold for unknown MKIs, the profile's ROC
    /// transmission, and (without it) late joins up to ROC 64.
    pub fn new(
        group: IpAddr,
        ports: Vec<u16>,
        key_domain_id: KeyDomainId,
        key_source: ProbeKeySource,
    ) -> Self {
        Self {
            group,
            ports,
            interface: None,
            mikey_port: MIKEY_UDP_PORT,
            key_source,
            key_domain_id,
            duration: None,
            unknown_mki_hold: Duration::from_secs(2),
            roc: SrtpConfig::mbms().roc,
            max_initial_roc: 64,
        }
    }
}

/// The probe's state, shared by its socket threads.
struct Core {
    started: Instant,
    mikey: MikeyReceiver,
    srtp: SrtpSide,
}

impl Core {
    fn report(&self) -> ProbeReport {
        ProbeReport {
            elapsed_s: self.started.elapsed().as_secs_f64(),
            mikey: self.mikey.stats.clone(),
            srtp: self.srtp.stats.clone(),
            streams: self.srtp.streams(),
        }
    }
}

/// What keeps a BM-SC watch alive while the probe runs.
struct BmscWatch {
    client: MskClient,
    runtime: tokio::runtime::Runtime,
}

/// A running probe.
pub struct ProbeHandle {
    core: Arc<Mutex<Core>>,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
    bmsc: Option<BmscWatch>,
}

impl ProbeHandle {
    /// The report so far; the probe keeps running.
    pub fn snapshot(&self) -> ProbeReport {
        lock(&self.core).report()
    }

    /// True once the configured duration has passed (or after a stop).
    pub fn is_finished(&self) -> bool {
        self.threads.iter().all(|t| t.is_finished())
    }

    /// Stops the probe and returns the final report.
    pub fn stop(self) -> ProbeReport {
        self.stop.store(true, Ordering::Relaxed);
        self.wait()
    }

    /// Waits until the configured duration has passed, then returns the final
    /// report. Without a duration this waits for a [`ProbeHandle::stop`] that
    /// cannot come: use `stop` instead.
    pub fn wait(mut self) -> ProbeReport {
        for thread in self.threads.drain(..) {
            if thread.join().is_err() {
                tracing::error!("a probe thread panicked");
            }
        }
        self.end_bmsc_watch();
        lock(&self.core).report()
    }

    fn end_bmsc_watch(&mut self) {
        if let Some(BmscWatch { client, runtime }) = self.bmsc.take() {
            drop(client);
            // Never blocks, so a handle may be dropped inside async code.
            runtime.shutdown_background();
        }
    }
}

impl Drop for ProbeHandle {
    /// A dropped probe stops its threads (they notice within one poll interval).
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        self.end_bmsc_watch();
    }
}

fn lock(core: &Mutex<Core>) -> MutexGuard<'_, Core> {
    // A panicked thread leaves counters, not broken invariants: keep reporting.
    core.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Starts a probe: loads or subscribes to the MSKs, joins the group on every
/// port, and starts one thread per socket.
pub fn start_streaming_probe(config: StreamingProbeConfig) -> Result<ProbeHandle> {
    anyhow::ensure!(
        !config.ports.is_empty(),
        "the probe needs at least one SRTP port"
    );
    let (store, bmsc) = key_store(&config.key_source, config.key_domain_id)?;
    let srtp = SrtpSide::new(
        &config.ports,
        config.unknown_mki_hold,
        config.roc,
        config.max_initial_roc,
    )
    .context("SRTP receiver")?;
    let core = Arc::new(Mutex::new(Core {
        started: Instant::now(),
        mikey: MikeyReceiver::new(config.key_domain_id, store),
        srtp,
    }));
    let stop = Arc::new(AtomicBool::new(false));
    let deadline = config.duration.map(|d| Instant::now() + d);

    let mut sockets = vec![(Role::Mikey, open(&config, config.mikey_port)?)];
    for (index, &port) in config.ports.iter().enumerate() {
        sockets.push((Role::Srtp(index), open(&config, port)?));
    }
    let mut threads = Vec::with_capacity(sockets.len());
    for (role, socket) in sockets {
        let (core, stop) = (Arc::clone(&core), Arc::clone(&stop));
        let thread = std::thread::Builder::new()
            .name(format!("probe-{role:?}"))
            .spawn(move || receive_loop(role, &socket, &core, &stop, deadline))
            .context("spawning a probe thread")?;
        threads.push(thread);
    }
    Ok(ProbeHandle {
        core,
        stop,
        threads,
        bmsc,
    })
}

/// Runs a probe until `stop` turns true (or its duration passes) and returns
/// the final report; for async callers such as the CLI.
pub async fn run_streaming_probe(
    config: StreamingProbeConfig,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> Result<ProbeReport> {
    let handle = tokio::task::spawn_blocking(move || start_streaming_probe(config)).await??;
    let mut tick = tokio::time::interval(POLL_INTERVAL);
    while !*stop.borrow() && !handle.is_finished() {
        tokio::select! {
            changed = stop.changed() => if changed.is_err() { break },
            _ = tick.tick() => {}
        }
    }
    Ok(tokio::task::spawn_blocking(move || handle.stop()).await?)
}

fn key_store(
    key_source: &ProbeKeySource,
    key_domain_id: KeyDomainId,
) -> Result<(MskStore, Option<BmscWatch>)> {
    match key_source {
        ProbeKeySource::Static(records) => Ok((MskStore::fixed(records.clone()), None)),
        ProbeKeySource::KeyFile { path, key_groups } => {
            let scope = MskScope {
                key_domain_id,
                key_groups: key_groups.iter().copied().collect(),
            };
            Ok((MskStore::fixed(load_key_file(path, &scope)?), None))
        }
        ProbeKeySource::Ue(keys) => {
            anyhow::ensure!(
                keys.key_domain_id() == key_domain_id,
                "the UE's Key Domain ID differs from the probe's"
            );
            Ok((MskStore::Ue(keys.clone()), None))
        }
        ProbeKeySource::Bmsc(client_config) => {
            anyhow::ensure!(
                client_config.key_domain_id == key_domain_id,
                "the BM-SC client's Key Domain ID differs from the probe's"
            );
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .thread_name("probe-bmsc")
                .enable_all()
                .build()
                .context("BM-SC client runtime")?;
            // `enter`, not `block_on`: callers may be inside another runtime.
            let client = {
                let _context = runtime.enter();
                MskClient::start(client_config.clone()).context("BM-SC client")?
            };
            let store = MskStore::Watched(client.msks());
            Ok((store, Some(BmscWatch { client, runtime })))
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Role {
    Mikey,
    Srtp(usize),
}

fn open(config: &StreamingProbeConfig, port: u16) -> Result<UdpSocket> {
    let listen = SocketAddr::new(config.group, port);
    let socket = ingest_socket(&IngestOptions {
        listen,
        source: None,
        interface: config.interface,
    })
    .with_context(|| format!("probe socket {listen}"))?;
    socket
        .set_read_timeout(Some(POLL_INTERVAL))
        .context("probe socket read timeout")?;
    Ok(socket)
}

fn receive_loop(
    role: Role,
    socket: &UdpSocket,
    core: &Mutex<Core>,
    stop: &AtomicBool,
    deadline: Option<Instant>,
) {
    let mut buf = [0u8; RECV_BUFFER];
    loop {
        let now = Instant::now();
        if stop.load(Ordering::Relaxed) || deadline.is_some_and(|d| now >= d) {
            return;
        }
        let received = match socket.recv(&mut buf) {
            Ok(len) => Some(len),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                None
            }
            Err(e) => {
                tracing::warn!(error = %e, ?role, "probe receive failed");
                std::thread::sleep(POLL_INTERVAL);
                None
            }
        };
        let now = Instant::now();
        let mut core = lock(core);
        match (role, received) {
            (Role::Mikey, Some(len)) => {
                if let Some(accepted) = core.mikey.receive(&buf[..len]) {
                    core.srtp.install(accepted.mki, &accepted.mtk, now);
                }
            }
            (Role::Srtp(index), Some(len)) => core.srtp.receive(index, &mut buf[..len], now),
            (_, None) => {}
        }
        core.srtp.expire(now);
    }
}
