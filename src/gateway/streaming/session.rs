//! A streaming session on air: RTP from encoders in, SRTP out to the session's
//! destination, MIKEY MTK messages to the same address on UDP 2269 (TS 33.246
//! §6.3.3.2.2).
//!
//! Two parts:
//! - the **ingest side** (`SessionIngest`, run by a worker of the gateway's
//!   [`IngestPool`] together with other sessions) receives RTP from every
//!   flow in bursts, checks each datagram, renumbers restarted encoders,
//!   protects it in place with the active MTK and sends the burst as GSO
//!   batches on the egress socket. It owns the [`SrtpSender`]; key changes
//!   reach it as [`KeyCommand`]s between bursts.
//! - the **key task** ([`KeyTask`], tokio) drives the MTK schedule; its
//!   events re-key the ingest side and send MTK messages to UDP 2269.

use super::ingest_workers::{IngestPool, IngestSession, IngestSlot, IngestWaker};
use crate::gateway::config::StreamingSession;
use crate::gateway::egress::{Egress, EgressKind, EgressStats};
use crate::gateway::keys::journal::KeyJournal;
pub use crate::gateway::keys::key_task::SessionState;
use crate::gateway::keys::key_task::{KeyEvents, KeyTask};
use crate::gateway::keys::mtk_keys::{LeaseSource, MtkKeys};
use crate::protocol::ingest::{IngestKind, IngestReject, SequenceContinuity, classify};
use crate::protocol::keys::{KeyDomainId, Mki, Mtk};
use crate::protocol::mtk_schedule::MtkSchedule;
use crate::protocol::profile::MIKEY_UDP_PORT;
use crate::protocol::srtp::{SrtpError, SrtpSender};
use crate::runtime::datagram_slab::{DatagramSlab, SLOTS, enable_arrival_timestamps};
use crate::runtime::key_service::MskSet;
use crate::runtime::log_limit::LogLimiter;
use crate::runtime::metrics::LatencyMetrics;
use crate::runtime::metrics::labels::{DropReason, LabelValue};
pub use crate::runtime::udp::MAX_EGRESS_DATAGRAM;
use crate::runtime::udp::{IngestOptions, ingest_socket};
use anyhow::{Context, Result};
use socket2::SockAddr;
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TryRecvError, sync_channel};
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime};
use tokio::sync::watch;

/// Key changes for the ingest side.
#[derive(Debug)]
pub enum KeyCommand {
    Install(Mki, Mtk),
    Activate(Mki),
    Retire(Mki),
    /// The MSK is gone (the reason says how): forget every key and send
    /// nothing until a new MTK is active.
    RevokeAll(String),
}

const DROP_REASON_COUNT: usize = DropReason::ALL.len();

/// Counters of one session, shared with metrics and tests.
#[derive(Debug, Default)]
pub struct SessionStats {
    /// Per flow, in configuration order.
    pub ingest_packets: Box<[AtomicU64]>,
    pub ingest_bytes: Box<[AtomicU64]>,
    pub protected_rtp: AtomicU64,
    pub protected_rtcp: AtomicU64,
    /// Indexed by [`DropReason::index`].
    pub dropped: [AtomicU64; DROP_REASON_COUNT],
    pub renumbered_restarts: AtomicU64,
    pub mtk_rotations: AtomicU64,
    pub mikey_sent: AtomicU64,
}

impl SessionStats {
    pub fn new(flows: usize) -> Self {
        let zeros = || (0..flows).map(|_| AtomicU64::new(0)).collect();
        Self {
            ingest_packets: zeros(),
            ingest_bytes: zeros(),
            ..Default::default()
        }
    }

    /// Datagrams received on every flow.
    pub fn ingest_total(&self) -> u64 {
        self.ingest_packets
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .sum()
    }

    pub fn dropped(&self, reason: DropReason) -> u64 {
        self.dropped[reason.index()].load(Ordering::Relaxed)
    }

    fn drop_one(&self, reason: DropReason) {
        self.dropped[reason.index()].fetch_add(1, Ordering::Relaxed);
    }
}

/// A running streaming session.
pub struct StreamingHandle {
    pub name: String,
    pub stats: Arc<SessionStats>,
    /// What this session's packets did at the egress socket.
    pub egress_stats: Arc<EgressStats>,
    pub state: watch::Receiver<SessionState>,
    ingest: Option<IngestSlot>,
    keys: tokio::task::JoinHandle<()>,
    ingest_addrs: Vec<SocketAddr>,
}

impl StreamingHandle {
    /// Local addresses the ingest sockets are bound to (useful with port 0).
    pub fn ingest_addrs(&self) -> &[SocketAddr] {
        &self.ingest_addrs
    }

    /// Stops the key task and ingest (its sockets close; batches already
    /// queued still leave).
    pub async fn stop(mut self) {
        self.keys.abort();
        let _ = (&mut self.keys).await;
        if let Some(slot) = self.ingest.take() {
            slot.remove().await;
        }
    }
}

/// What a session needs from the gateway.
pub struct SessionContext<L> {
    pub key_domain_id: KeyDomainId,
    pub msks: watch::Receiver<Arc<MskSet>>,
    pub leases: L,
    pub journal: Arc<Mutex<KeyJournal>>,
    pub lease_block: u16,
    pub egress: Egress,
    /// The workers that run streaming sessions' ingest.
    pub ingest: IngestPool,
}

/// Starts a session: binds its ingest sockets, hands them to an ingest worker
/// and spawns the key task.
pub fn start<L: LeaseSource + 'static>(
    session: &StreamingSession,
    ctx: SessionContext<L>,
) -> Result<StreamingHandle> {
    let srtp_config = session
        .srtp
        .srtp_config(MAX_SSRCS)
        .with_context(|| format!("session {}: srtp", session.name))?;
    let srtp =
        SrtpSender::new(srtp_config).with_context(|| format!("session {}: srtp", session.name))?;
    let mut flows = Vec::new();
    let mut ingest_addrs = Vec::new();
    for (i, flow) in session.flows.iter().enumerate() {
        let socket = ingest_socket(&IngestOptions {
            listen: flow.ingest,
            source: flow.ingest_source,
            interface: flow.ingest_interface,
        })
        .with_context(|| format!("session {} flow {i}", session.name))?;
        socket.set_nonblocking(true)?;
        if let Err(e) = enable_arrival_timestamps(&socket) {
            tracing::warn!(session = %session.name, error = %e, "no kernel receive timestamps: ingest_to_egress_latency_seconds stays empty");
        }
        ingest_addrs.push(socket.local_addr()?);
        flows.push(IngestFlow {
            socket,
            label: flow.label(i),
            rtp_dest: SocketAddr::new(session.destination, flow.port),
        });
    }
    let stats = Arc::new(SessionStats::new(session.flows.len()));
    let egress = ctx.egress.with_own_stats();
    let egress_stats = egress.stats().clone();
    let (ctl_tx, ctl_rx) = sync_channel(64);
    // The ingest side reports "on air" once it really protects with the new
    // MTK; the key task reports why nothing can be sent.
    let (state_tx, state) = watch::channel(SessionState::Starting);
    let state_tx = Arc::new(state_tx);
    let slot = ctx.ingest.reserve();
    ctx.ingest.start(
        &slot,
        Box::new(SessionIngest::new(
            session.name.clone(),
            flows,
            srtp,
            egress.clone(),
            ctl_rx,
            stats.clone(),
            state_tx.clone(),
        )),
    )?;
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
        events: StreamingKeyEvents {
            mikey_dest: SocketAddr::new(session.destination, MIKEY_UDP_PORT),
            egress,
            ctl: ctl_tx,
            waker: slot.waker(),
            stats: stats.clone(),
        },
        state: state_tx,
    };
    let keys = tokio::spawn(task.run());
    Ok(StreamingHandle {
        name: session.name.clone(),
        stats,
        egress_stats,
        state,
        ingest: Some(slot),
        keys,
        ingest_addrs,
    })
}

struct IngestFlow {
    socket: UdpSocket,
    /// The input's configured name, for log lines about what it sent.
    label: String,
    /// SRTP goes here, SRTCP to the next port (RFC 3550 §11).
    rtp_dest: SocketAddr,
}

/// The route (index into [`SessionIngest::dests`]) of a flow's SRTP; its
/// SRTCP takes the next one.
fn rtp_route(flow: usize) -> u16 {
    (2 * flow) as u16
}

fn route_kind(route: u16) -> EgressKind {
    if route.is_multiple_of(2) {
        EgressKind::Srtp
    } else {
        EgressKind::Srtcp
    }
}

/// The ingest side of one session, run by an ingest worker.
struct SessionIngest {
    name: String,
    flows: Vec<IngestFlow>,
    /// Per route: where a flow's SRTP and SRTCP go.
    dests: Vec<SockAddr>,
    egress: Egress,
    ctl: Receiver<KeyCommand>,
    stats: Arc<SessionStats>,
    srtp: SrtpSender,
    continuity: SequenceContinuity,
    max_ingest: usize,
    state: Arc<watch::Sender<SessionState>>,
    receive_failures: LogLimiter,
    send_failures: LogLimiter,
    /// Datagrams refused for what they hold (bad input, a protect error).
    refused: LogLimiter,
    latency: LatencyMetrics,
}

/// What one burst protected, counted once per burst.
#[derive(Default)]
struct BurstCounts {
    rtp: u64,
    rtcp: u64,
}

/// SSRCs a session protects at once (encoders that restart under a new SSRC
/// leave old ones behind until they age out).
const MAX_SSRCS: usize = 64;

impl SessionIngest {
    fn new(
        name: String,
        flows: Vec<IngestFlow>,
        srtp: SrtpSender,
        egress: Egress,
        ctl: Receiver<KeyCommand>,
        stats: Arc<SessionStats>,
        state: Arc<watch::Sender<SessionState>>,
    ) -> Self {
        let config = srtp.config();
        let max_ingest = MAX_EGRESS_DATAGRAM - config.rtp_overhead().max(config.rtcp_overhead());
        let dests = flows
            .iter()
            .flat_map(|f| {
                let rtcp = SocketAddr::new(f.rtp_dest.ip(), f.rtp_dest.port().wrapping_add(1));
                [SockAddr::from(f.rtp_dest), SockAddr::from(rtcp)]
            })
            .collect();
        Self {
            flows,
            dests,
            egress,
            ctl,
            stats,
            srtp,
            continuity: SequenceContinuity::new(MAX_SSRCS),
            max_ingest,
            state,
            receive_failures: LogLimiter::default(),
            send_failures: LogLimiter::default(),
            refused: LogLimiter::default(),
            latency: LatencyMetrics::new(&name),
            name,
        }
    }

    /// Applies pending key changes (none once the key task is gone: the
    /// session is being stopped).
    fn apply_key_commands(&mut self) {
        loop {
            let result = match self.ctl.try_recv() {
                Ok(KeyCommand::Install(mki, mtk)) => {
                    self.srtp.add_master_key(&mki.to_bytes(), &mtk)
                }
                Ok(KeyCommand::Activate(mki)) => self
                    .srtp
                    .set_active_key(&mki.to_bytes())
                    .map(|()| drop(self.state.send_replace(SessionState::OnAir { mki }))),
                Ok(KeyCommand::Retire(mki)) => self.srtp.remove_master_key(&mki.to_bytes()),
                Ok(KeyCommand::RevokeAll(reason)) => {
                    self.state.send_replace(SessionState::Halted { reason });
                    // A fresh context holds no key; per-SSRC indexes restart,
                    // which is safe because only new MTKs will be installed.
                    self.srtp = SrtpSender::new(*self.srtp.config()).expect("config was valid");
                    Ok(())
                }
                Err(TryRecvError::Empty | TryRecvError::Disconnected) => return,
            };
            if let Err(e) = result {
                tracing::error!(error = %e, "key change refused by the SRTP context");
            }
        }
    }

    /// Serves one burst of `flow`: receives it into `slab`, protects each
    /// datagram in its slot and sends the protected ones. True when the
    /// burst filled the slab.
    fn serve(&mut self, flow: usize, slab: &mut DatagramSlab) -> bool {
        let n = match slab.recv(&self.flows[flow].socket) {
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return false,
            Err(e) => {
                if let Some(suppressed) = self.receive_failures.allow(Instant::now()) {
                    tracing::warn!(
                        session = %self.name,
                        input = %self.flows[flow].label,
                        error = %e,
                        suppressed,
                        "ingest receive failed"
                    );
                }
                return false;
            }
        };
        let mut counts = BurstCounts::default();
        let mut bytes = 0;
        for i in 0..n {
            bytes += slab.received_len(i);
            self.forward(flow, slab, i, &mut counts);
        }
        self.stats.ingest_packets[flow].fetch_add(n as u64, Ordering::Relaxed);
        self.stats.ingest_bytes[flow].fetch_add(bytes as u64, Ordering::Relaxed);
        if counts.rtp + counts.rtcp > 0 {
            self.stats
                .protected_rtp
                .fetch_add(counts.rtp, Ordering::Relaxed);
            self.stats
                .protected_rtcp
                .fetch_add(counts.rtcp, Ordering::Relaxed);
            if let Some(e) = self.egress.send_slab(slab, &self.dests, route_kind)
                && let Some(suppressed) = self.send_failures.allow(Instant::now())
            {
                tracing::warn!(
                    session = %self.name,
                    error = %e,
                    suppressed,
                    "send failed (counted in egress_send_errors_total)"
                );
            }
            if let Some(age) = slab.oldest_age(SystemTime::now()) {
                self.latency.ingest_to_egress(age);
            }
        }
        n == SLOTS
    }

    /// Checks and protects datagram `i` of `slab` in place, routing it on
    /// success; a refused one is counted by reason and stays unrouted.
    fn forward(
        &mut self,
        flow: usize,
        slab: &mut DatagramSlab,
        i: usize,
        counts: &mut BurstCounts,
    ) {
        let n = slab.received_len(i);
        let checked = if n > slab.slot_len() {
            // Cut by the receive: its real length is all there is to check.
            Err(IngestReject::Oversize {
                len: n,
                max: self.max_ingest,
            })
        } else {
            classify(slab.datagram(i), self.max_ingest)
        };
        let kind = match checked {
            Ok(kind) => kind,
            Err(reject) => {
                self.stats.drop_one(match reject {
                    IngestReject::Oversize { .. } => DropReason::Oversize,
                    IngestReject::Malformed(_) => DropReason::Malformed,
                    IngestReject::Empty => DropReason::Empty,
                    IngestReject::MalformedRtcp(_) => DropReason::RtcpMalformed,
                });
                self.log_refused(flow, &reject);
                return;
            }
        };
        if self.srtp.active_key().is_none() {
            self.stats.drop_one(DropReason::NoKey);
            return;
        }
        let buf = slab.slot_mut(i);
        let (result, route) = match kind {
            IngestKind::Rtp {
                ssrc,
                sequence_number,
            } => {
                let before = self.continuity.restarts();
                self.continuity
                    .rewrite(&mut buf[..n], ssrc, sequence_number);
                if self.continuity.restarts() != before {
                    self.stats
                        .renumbered_restarts
                        .fetch_add(1, Ordering::Relaxed);
                }
                (self.srtp.protect(buf, n), rtp_route(flow))
            }
            IngestKind::Rtcp => (self.srtp.protect_rtcp(buf, n), rtp_route(flow) + 1),
        };
        match result {
            Ok(len) => {
                if route_kind(route) == EgressKind::Srtp {
                    counts.rtp += 1;
                } else {
                    counts.rtcp += 1;
                }
                slab.route(i, route, len);
            }
            Err(SrtpError::IndexReused { .. } | SrtpError::IndexBehindWindow { .. }) => {
                self.stats.drop_one(DropReason::Duplicate)
            }
            Err(SrtpError::TooManyStreams { .. }) => {
                self.stats.drop_one(DropReason::TooManyStreams)
            }
            Err(e) => {
                self.stats.drop_one(DropReason::ProtectError);
                self.log_refused(flow, &e);
            }
        }
    }

    /// Names the session, the input and the reason, at most once per
    /// interval (the drop counters stay exact).
    fn log_refused(&mut self, flow: usize, reason: &dyn std::fmt::Display) {
        if let Some(suppressed) = self.refused.allow(Instant::now()) {
            tracing::warn!(
                session = %self.name,
                input = %self.flows[flow].label,
                %reason,
                suppressed,
                "ingest datagram dropped"
            );
        }
    }
}

impl IngestSession for SessionIngest {
    fn sockets(&self) -> Vec<RawFd> {
        self.flows.iter().map(|f| f.socket.as_raw_fd()).collect()
    }

    fn readable(&mut self, flow: usize, slab: &mut DatagramSlab) -> bool {
        self.serve(flow, slab)
    }

    fn wake(&mut self) {
        self.apply_key_commands();
    }
}

/// Key events of a streaming session: key changes go to the ingest side
/// between bursts (its worker is woken for them); MTK messages go to the
/// session's address on UDP 2269.
struct StreamingKeyEvents {
    mikey_dest: SocketAddr,
    egress: Egress,
    ctl: SyncSender<KeyCommand>,
    waker: IngestWaker,
    stats: Arc<SessionStats>,
}

impl StreamingKeyEvents {
    fn command(&self, command: KeyCommand) -> bool {
        let sent = self.ctl.send(command).is_ok();
        self.waker.wake();
        sent
    }
}

impl KeyEvents for StreamingKeyEvents {
    fn install(&mut self, mki: Mki, mtk: Mtk) -> bool {
        self.command(KeyCommand::Install(mki, mtk))
    }

    fn announce(&mut self, _mki: Mki, message: &[u8]) -> bool {
        if self
            .egress
            .send_one(self.mikey_dest, EgressKind::Mikey, message)
        {
            self.stats.mikey_sent.fetch_add(1, Ordering::Relaxed);
        }
        true
    }

    fn activate(&mut self, mki: Mki) -> bool {
        self.stats.mtk_rotations.fetch_add(1, Ordering::Relaxed);
        self.command(KeyCommand::Activate(mki))
    }

    fn retire(&mut self, mki: Mki) -> bool {
        self.command(KeyCommand::Retire(mki))
    }

    fn revoke_all(&mut self, reason: String) -> bool {
        // Blocking send: a revocation must never be dropped for a full queue.
        self.command(KeyCommand::RevokeAll(reason))
    }
}
