//! A download session on air (TS 26.346 §7, TS 33.246 §6.6): objects in from
//! the watch folder, HTTP push or `mbms-gateway send`; each protected as a DCF
//! under the active MTK; sent over FLUTE with the MIKEY MTK message as an
//! object of the same session.
//!
//! Three parts:
//! - the **key task** ([`KeyTask`], tokio) drives the MTK schedule; its events
//!   put each new MTK's MIKEY message into the carousel ahead of the switch,
//!   and hand the protect worker the MTK to use from the switch on;
//! - the **protect worker** (an OS thread) turns each ingested object into a
//!   DCF in the session's spool;
//! - the **FLUTE sender** ([`FluteSender`], an OS thread) carousels, paces
//!   and packetizes.

use super::config::DownloadSession;
use super::ingest::{IngestedObject, PushSessions, WatchFolder, spawn_watch};
use super::protect::{ProtectError, ProtectRequest, ProtectionKey, protect_file};
use super::sender::{FluteSender, ObjectLifetimeSetting, SenderCommand, SenderConfig, SenderStats};
use crate::gateway::egress::EgressStats;
use crate::gateway::keys::key_task::{KeyEvents, KeyTask, SessionState};
use crate::gateway::keys::mtk_keys::{LeaseSource, MtkKeys};
use crate::gateway::streaming::SessionContext;
use crate::protocol::flute::carousel::Carousel;
use crate::protocol::keys::{KeyDomainId, Mki, Mtk};
use crate::protocol::mtk_schedule::MtkSchedule;
use crate::runtime::metrics::IngestMetrics;
use crate::runtime::metrics::labels::{IngestRejectReason, LabelValue};
use anyhow::{Context, Result};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{SyncSender, sync_channel};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, watch};

/// Objects waiting for protection per session.
pub const INGEST_QUEUE: usize = 256;
/// Commands waiting for the sender thread.
const SENDER_QUEUE: usize = 64;

/// The ingest reason an object was refused for.
fn reject_reason(e: &ProtectError) -> IngestRejectReason {
    match e {
        ProtectError::Unreadable { .. } | ProtectError::NotAFile { .. } => {
            IngestRejectReason::Unreadable
        }
        ProtectError::TooLarge { .. } => IngestRejectReason::TooLarge,
        ProtectError::DeletedWhileRead { .. } => IngestRejectReason::DeletedWhileRead,
        ProtectError::ChangedWhileRead { .. } => IngestRejectReason::ChangedWhileRead,
        ProtectError::Spool { .. } | ProtectError::Dcf { .. } => IngestRejectReason::SpoolFailed,
    }
}

const REJECT_REASONS: usize = IngestRejectReason::ALL.len();

/// Counters of one download session's input side.
#[derive(Debug, Default)]
pub struct DownloadStats {
    pub objects_in: AtomicU64,
    pub bytes_in: AtomicU64,
    pub objects_protected: AtomicU64,
    /// Indexed by [`IngestRejectReason::index`].
    pub rejected: [AtomicU64; REJECT_REASONS],
    pub mtk_rotations: AtomicU64,
}

impl DownloadStats {
    pub fn rejected(&self, reason: IngestRejectReason) -> u64 {
        self.rejected[reason.index()].load(Ordering::Relaxed)
    }
}

/// A running download session.
pub struct DownloadHandle {
    pub name: String,
    pub stats: Arc<DownloadStats>,
    pub sender_stats: Arc<SenderStats>,
    pub egress_stats: Arc<EgressStats>,
    pub state: watch::Receiver<SessionState>,
    queue: mpsc::Sender<IngestedObject>,
    stop: Arc<AtomicBool>,
    protect: Option<JoinHandle<()>>,
    sender: Option<JoinHandle<()>>,
    /// How many of the protect and FLUTE sender threads run.
    running: Arc<AtomicUsize>,
    keys: tokio::task::JoinHandle<()>,
    ingest: Option<SessionIngest>,
}

/// What feeds one session: its watch folder and its route on the push
/// endpoint. Owned by the session so a reload starts and stops them with it.
struct SessionIngest {
    watch: Option<(tokio::sync::oneshot::Sender<()>, WatchFolder)>,
    push: Option<PushSessions>,
}

impl DownloadHandle {
    /// A check that the session's protect and FLUTE sender threads run
    /// (or were stopped on purpose), which does not keep them running.
    pub fn liveness(&self) -> impl Fn() -> bool + Send + Sync + 'static {
        let (running, stop) = (self.running.clone(), self.stop.clone());
        move || stop.load(Ordering::Relaxed) || running.load(Ordering::Relaxed) == SESSION_THREADS
    }

    /// Where objects for this session go (watch folder, push, `send`).
    pub fn queue(&self) -> mpsc::Sender<IngestedObject> {
        self.queue.clone()
    }

    /// Starts feeding the session: its watch folder, if configured, and its
    /// route on the push endpoint `push` when the session accepts pushes.
    /// Must run within a Tokio runtime; at most once per session.
    pub fn start_ingest(
        &mut self,
        session: &DownloadSession,
        push: Option<&PushSessions>,
    ) -> Result<()> {
        debug_assert!(self.ingest.is_none(), "ingest already started");
        let metrics = IngestMetrics::new(&session.name);
        let watch = match &session.watch {
            Some(config) => {
                let (stop, stopped) = tokio::sync::oneshot::channel();
                let shutdown = async move {
                    let _ = stopped.await;
                };
                let folder = spawn_watch(
                    &session.name,
                    config,
                    self.queue(),
                    metrics.clone(),
                    shutdown,
                )
                .with_context(|| format!("download session {}", session.name))?;
                Some((stop, folder))
            }
            None => None,
        };
        let push = push.filter(|_| session.push).map(|sessions| {
            sessions.register(&session.name, self.queue(), metrics);
            sessions.clone()
        });
        self.ingest = Some(SessionIngest { watch, push });
        Ok(())
    }

    /// Stops ingest first (no new object is taken in), then the key task and
    /// both threads; the session is closed on the wire (A flag) and its spool
    /// emptied.
    pub async fn stop(mut self) {
        if let Some(ingest) = self.ingest.take() {
            if let Some(push) = ingest.push {
                push.unregister(&self.name);
            }
            if let Some((stop, folder)) = ingest.watch {
                let _ = stop.send(());
                if let Err(e) = folder.join().await {
                    tracing::warn!(session = %self.name, error = %format!("{e:#}"), "watch folder did not stop cleanly");
                }
            }
        }
        self.stop.store(true, Ordering::Relaxed);
        self.keys.abort();
        let _ = (&mut self.keys).await;
        drop(self.queue);
        for t in [self.protect.take(), self.sender.take()]
            .into_iter()
            .flatten()
        {
            let _ = tokio::task::spawn_blocking(move || t.join()).await;
        }
    }
}

/// Starts a download session. `spool_dir` is emptied and then holds the DCF
/// of every object in the carousel.
pub fn start<L: LeaseSource + 'static>(
    session: &DownloadSession,
    ctx: SessionContext<L>,
    spool_dir: &Path,
) -> Result<DownloadHandle> {
    let at = || format!("download session {}", session.name);
    let template = session.load_template().with_context(at)?;
    let carousel = Carousel::new(session.carousel.carousel_config(), Instant::now())
        .map_err(anyhow::Error::from)
        .with_context(at)?;
    if spool_dir.exists() {
        std::fs::remove_dir_all(spool_dir)
            .with_context(|| format!("emptying spool {}", spool_dir.display()))?;
    }
    std::fs::create_dir_all(spool_dir)
        .with_context(|| format!("creating spool {}", spool_dir.display()))?;

    let egress = ctx.egress.with_own_stats();
    let egress_stats = egress.stats().clone();
    let stats = Arc::new(DownloadStats::default());
    let sender_stats = Arc::new(SenderStats::default());
    let stop = Arc::new(AtomicBool::new(false));
    let (commands, command_rx) = sync_channel(SENDER_QUEUE);
    let (state_tx, state) = watch::channel(SessionState::Starting);
    let (key_tx, key_rx) = watch::channel(None);

    let lifetime = match session.carousel.object_lifetime {
        Some(d) => ObjectLifetimeSetting::For(d),
        None => ObjectLifetimeSetting::Repetitions(
            NonZeroU32::new(session.carousel.repetitions).unwrap_or(NonZeroU32::MIN),
        ),
    };
    let sender = FluteSender::new(
        SenderConfig {
            name: session.name.clone(),
            tsi: session.tsi,
            destination: SocketAddr::new(session.destination, session.port),
            max_packet: session.max_packet,
            fec: session.fec.scheme(),
            symbol_length: session.fec.symbol_length,
            max_source_block_length: session.fec.max_source_block_length,
            lifetime,
            bitrate: session.bitrate,
            fdt_copies: session.carousel.fdt_copies,
        },
        carousel,
        template,
        egress,
        command_rx,
        sender_stats.clone(),
        stop.clone(),
    )?;
    let running = Arc::new(AtomicUsize::new(0));
    let sender = spawn_counted(&running, format!("flute-{}", session.name), move || {
        sender.run()
    })?;

    let (queue, queue_rx) = mpsc::channel(INGEST_QUEUE);
    let worker = ProtectWorker {
        name: session.name.clone(),
        method: session.encryption.method(),
        content_md5: session.content_md5,
        max_size: session.max_object_size,
        spool_dir: spool_dir.to_owned(),
        keys: key_rx,
        state: state.clone(),
        commands: commands.clone(),
        stats: stats.clone(),
        metrics: IngestMetrics::new(&session.name),
        next_spool: 0,
    };
    let protect = spawn_counted(&running, format!("protect-{}", session.name), move || {
        worker.run(queue_rx)
    })?;

    let task = KeyTask {
        name: session.name.clone(),
        schedule: MtkSchedule::new(session.mtk.timing()),
        keys: MtkKeys::new(
            ctx.key_domain_id,
            session.key_group,
            ctx.leases,
            ctx.journal,
            ctx.lease_block,
        ),
        msks: ctx.msks,
        events: DownloadKeyEvents {
            key_domain_id: ctx.key_domain_id,
            mtks: HashMap::new(),
            messages: HashMap::new(),
            epoch: 0,
            commands,
            active: key_tx,
            state: Arc::new(state_tx.clone()),
            stats: stats.clone(),
        },
        state: Arc::new(state_tx),
    };
    let keys = tokio::spawn(task.run());
    Ok(DownloadHandle {
        name: session.name.clone(),
        stats,
        sender_stats,
        egress_stats,
        state,
        queue,
        stop,
        protect: Some(protect),
        sender: Some(sender),
        running,
        keys,
        ingest: None,
    })
}

/// The session's threads: both run until the session is stopped.
const SESSION_THREADS: usize = 2;

/// Counts a running thread in `running` until it ends, by return or panic.
fn spawn_counted(
    running: &Arc<AtomicUsize>,
    name: String,
    body: impl FnOnce() + Send + 'static,
) -> std::io::Result<JoinHandle<()>> {
    struct Counted(Arc<AtomicUsize>);
    impl Drop for Counted {
        fn drop(&mut self) {
            self.0.fetch_sub(1, Ordering::Relaxed);
        }
    }
    running.fetch_add(1, Ordering::Relaxed);
    let counted = Counted(running.clone());
    std::thread::Builder::new().name(name).spawn(move || {
        let _counted = counted;
        body()
    })
}

/// Key events of a download session (TS 33.246 §6.3.3.2.1: the MTK message
/// is an object of the same FLUTE session).
struct DownloadKeyEvents {
    key_domain_id: KeyDomainId,
    /// MTKs drawn and not yet retired.
    mtks: HashMap<Mki, Mtk>,
    /// The first MIKEY message of each MTK; it travels with the objects the
    /// MTK protects. Re-sends are the carousel's.
    messages: HashMap<Mki, Arc<[u8]>>,
    /// Bumped by every revocation.
    epoch: u64,
    commands: SyncSender<SenderCommand>,
    active: watch::Sender<Option<Arc<ProtectionKey>>>,
    state: Arc<watch::Sender<SessionState>>,
    stats: Arc<DownloadStats>,
}

impl KeyEvents for DownloadKeyEvents {
    fn install(&mut self, mki: Mki, mtk: Mtk) -> bool {
        self.mtks.insert(mki, mtk);
        true
    }

    fn announce(&mut self, mki: Mki, message: &[u8]) -> bool {
        self.messages.entry(mki).or_insert_with(|| message.into());
        true
    }

    fn activate(&mut self, mki: Mki) -> bool {
        let (Some(mtk), Some(message)) = (self.mtks.get(&mki), self.messages.get(&mki)) else {
            tracing::error!(
                msk_id = mki.msk_id.0,
                mtk_id = mki.mtk_id.0,
                "MTK or its MIKEY message missing at the switch; new objects stay under the previous MTK"
            );
            return true;
        };
        self.active.send_replace(Some(Arc::new(ProtectionKey::new(
            self.key_domain_id,
            mki,
            mtk.key.clone(),
            message.clone(),
            self.epoch,
        ))));
        self.state.send_replace(SessionState::OnAir { mki });
        self.stats.mtk_rotations.fetch_add(1, Ordering::Relaxed);
        true
    }

    fn retire(&mut self, mki: Mki) -> bool {
        self.mtks.remove(&mki);
        self.messages.remove(&mki);
        true
    }

    fn revoke_all(&mut self, reason: String) -> bool {
        self.epoch += 1;
        self.active.send_replace(None);
        self.mtks.clear();
        self.messages.clear();
        self.state.send_replace(SessionState::Halted { reason });
        self.commands
            .send(SenderCommand::RevokeAll { epoch: self.epoch })
            .is_ok()
    }
}

struct ProtectWorker {
    name: String,
    method: crate::protocol::dcf::EncryptionMethod,
    content_md5: bool,
    max_size: u64,
    spool_dir: PathBuf,
    keys: watch::Receiver<Option<Arc<ProtectionKey>>>,
    state: watch::Receiver<SessionState>,
    commands: SyncSender<SenderCommand>,
    stats: Arc<DownloadStats>,
    metrics: IngestMetrics,
    next_spool: u64,
}

impl ProtectWorker {
    fn run(mut self, mut queue: mpsc::Receiver<IngestedObject>) {
        while let Some(object) = queue.blocking_recv() {
            self.stats.objects_in.fetch_add(1, Ordering::Relaxed);
            let outcome = self.protect(&object);
            if let Err(e) = object.release() {
                tracing::warn!(session = %self.name, path = %object.path.display(), error = %e, "spooled upload not removed");
            }
            match outcome {
                Ok(protected) => {
                    self.stats.objects_protected.fetch_add(1, Ordering::Relaxed);
                    self.stats
                        .bytes_in
                        .fetch_add(protected.plaintext_len, Ordering::Relaxed);
                    tracing::info!(session = %self.name, object = %protected.content_location, bytes = protected.plaintext_len, "object protected");
                    if self
                        .commands
                        .send(SenderCommand::AddObject(protected))
                        .is_err()
                    {
                        return;
                    }
                }
                Err((reason, message)) => {
                    self.stats.rejected[reason.index()].fetch_add(1, Ordering::Relaxed);
                    self.metrics.rejected(reason);
                    tracing::warn!(session = %self.name, object = %object.content_location, reason = reason.as_str(), error = %message, "object not sent");
                }
            }
        }
    }

    /// The key to protect with: waits while the session is still starting
    /// (the first MTK is on its way); none once it has halted (fail closed).
    fn key(&mut self) -> Option<Arc<ProtectionKey>> {
        loop {
            if let Some(key) = self.keys.borrow().clone() {
                return Some(key);
            }
            if !matches!(*self.state.borrow(), SessionState::Starting) {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn protect(
        &mut self,
        object: &IngestedObject,
    ) -> Result<super::protect::ProtectedObject, (IngestRejectReason, String)> {
        let Some(key) = self.key() else {
            let why = match &*self.state.borrow() {
                SessionState::Halted { reason } => reason.clone(),
                _ => "no MTK".to_owned(),
            };
            return Err((IngestRejectReason::NoKey, format!("no valid key: {why}")));
        };
        self.next_spool += 1;
        let spool_path = self.spool_dir.join(format!("{}.dcf", self.next_spool));
        let content_type = object
            .content_type
            .as_deref()
            .unwrap_or("application/octet-stream");
        protect_file(
            ProtectRequest {
                source: &object.path,
                content_location: &object.content_location,
                content_type,
                method: self.method,
                content_md5: self.content_md5,
                max_size: self.max_size,
                spool_path,
            },
            &key,
        )
        .map_err(|e| (reject_reason(&e), e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A session thread that ends, by return or by panic, counts itself out,
    /// so the session's liveness check sees it.
    #[test]
    fn a_session_thread_that_ends_or_panics_is_counted_out() {
        let running = Arc::new(AtomicUsize::new(0));
        let (release, wait) = std::sync::mpsc::channel::<()>();
        let steady = spawn_counted(&running, "steady".into(), move || {
            let _ = wait.recv();
        })
        .unwrap();
        let failing =
            spawn_counted(&running, "failing".into(), || panic!("a data-path bug")).unwrap();
        assert!(failing.join().is_err());
        assert_eq!(running.load(Ordering::Relaxed), 1);
        release.send(()).unwrap();
        steady.join().unwrap();
        assert_eq!(running.load(Ordering::Relaxed), 0);
    }
}
