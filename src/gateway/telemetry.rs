//! Connects a running gateway to metrics and readiness. The data path counts in
//! plain atomics; a scrape hook copies them into the exporter, so a scrape costs
//! the data path nothing. Readiness (design §3): every session on air with a
//! valid MSK, every egress thread alive, the BM-SC reachable.
//!
//! After a reload, [`GatewayTelemetry::sync`] follows the sessions of both
//! kinds: checks of removed sessions go, started and restarted ones are
//! watched.

use super::config::DescribeError;
use super::download::sender::SenderStats;
use super::download::{DownloadHandle, DownloadStats};
use super::egress::EgressStats;
use super::streaming::{SessionState, SessionStats, StreamingHandle};
use super::supervisor::Gateway;
use crate::protocol::sdp::StreamingDescription;
use crate::runtime::admin::{AdminViews, Readiness, SessionDescriptions};
use crate::runtime::key_service::ConnectionState;
use crate::runtime::key_service::MskSet;
use crate::runtime::metrics::{
    BmscMetrics, BmscState, DropReason, EgressMetrics, GatewayMetrics, InputMetrics, LabelValue,
    Metrics, MikeyTransport, ScrapeHook, SessionKind, SessionMetrics, SessionTotals,
};
use crate::runtime::wall_clock;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::watch;

/// The metric handles of one session and the counters they copy.
struct WatchedSession {
    name: String,
    session: SessionMetrics,
    egress: EgressMetrics,
    /// Also what identifies the running session: a restarted session is a
    /// new handle with new counters.
    egress_stats: Arc<EgressStats>,
    kind: WatchedKind,
    state: watch::Receiver<SessionState>,
    msks: watch::Receiver<Arc<MskSet>>,
}

/// The counters only one kind of session has.
enum WatchedKind {
    Streaming {
        inputs: Vec<InputMetrics>,
        stats: Arc<SessionStats>,
    },
    Download {
        stats: Arc<DownloadStats>,
        sender: Arc<SenderStats>,
    },
}

impl WatchedSession {
    /// Seconds and MTK IDs left on the MSK behind the MTK on air (0 and 0
    /// when nothing is on air).
    fn msk_left(&self, now_unix: i64) -> (u64, u64) {
        let SessionState::OnAir { mki } = &*self.state.borrow() else {
            return (0, 0);
        };
        let msks = self.msks.borrow();
        msks.get(mki.msk_id).map_or((0, 0), |msk| {
            (
                u64::try_from(msk.not_after - now_unix).unwrap_or(0),
                u64::from(msk.validity.1.0.saturating_sub(mki.mtk_id.0)),
            )
        })
    }

    fn observe(&self, now_unix: i64) {
        let (seconds, mtk_ids) = self.msk_left(now_unix);
        self.session
            .msk_validity(Duration::from_secs(seconds), mtk_ids);
        self.session.observe(&self.kind.totals());
        if let WatchedKind::Streaming { inputs, stats } = &self.kind {
            for (i, input) in inputs.iter().enumerate() {
                input.observe(
                    stats.ingest_packets[i].load(Ordering::Relaxed),
                    stats.ingest_bytes[i].load(Ordering::Relaxed),
                );
            }
        }
        self.egress.observe(&self.egress_stats.totals());
    }
}

impl WatchedKind {
    /// The session's own counters, as its series show them.
    fn totals(&self) -> SessionTotals {
        let load = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        let mut totals = SessionTotals::default();
        match self {
            WatchedKind::Streaming { stats, .. } => {
                for reason in DropReason::ALL {
                    totals.dropped[reason.index()] = stats.dropped(*reason);
                }
                totals.mtk_rotations = load(&stats.mtk_rotations);
                totals.mikey_sent[MikeyTransport::Udp.index()] = load(&stats.mikey_sent);
            }
            WatchedKind::Download { stats, sender } => {
                totals.mtk_rotations = load(&stats.mtk_rotations);
                totals.mikey_sent[MikeyTransport::Flute.index()] =
                    load(&sender.mikey_transmissions);
                totals.flute_objects = load(&sender.object_transmissions);
                totals.fdt_instances = load(&sender.fdt_instances_sent);
            }
        }
        totals
    }
}

/// Keeps a gateway's metrics and readiness checks current while it lives.
pub struct GatewayTelemetry {
    readiness: Readiness,
    metrics: Metrics,
    gateway_metrics: GatewayMetrics,
    sessions: Arc<Mutex<Vec<WatchedSession>>>,
    /// Sessions marked not ready because a reload could not start them.
    failed: Mutex<Vec<String>>,
    descriptions: SessionDescriptions,
    /// The last description of each streaming session, with its version.
    described: Mutex<BTreeMap<String, StreamingDescription>>,
    _hook: ScrapeHook,
}

fn readiness_name(session: &str) -> String {
    format!("session {session}")
}

/// Registers the gateway's metrics, readiness checks and session
/// descriptions.
pub fn watch_gateway(gateway: &Gateway, views: &AdminViews) -> GatewayTelemetry {
    let AdminViews {
        metrics,
        readiness,
        descriptions,
    } = views;
    let status = gateway.client.status();
    readiness.probe("bmsc", move || match &status.borrow().connection {
        ConnectionState::Connected => Ok(()),
        ConnectionState::Connecting {
            attempt,
            last_error,
        } => Err(format!(
            "connecting (attempt {attempt}){}",
            last_error
                .as_deref()
                .map(|e| format!(": {e}"))
                .unwrap_or_default()
        )),
        ConnectionState::Failed { reason } => Err(reason.clone()),
    });

    let sessions: Arc<Mutex<Vec<WatchedSession>>> = Arc::default();
    let bmsc = BmscMetrics::new();
    let status = gateway.client.status();
    let hook = {
        let sessions = sessions.clone();
        metrics.on_scrape(move || {
            let status = status.borrow();
            bmsc.observe(BmscState::from(&status.connection), status.rejected_answers);
            let now_unix = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs() as i64);
            for session in lock(&sessions).iter() {
                session.observe(now_unix);
            }
        })
    };
    let telemetry = GatewayTelemetry {
        readiness: readiness.clone(),
        metrics: metrics.clone(),
        gateway_metrics: GatewayMetrics::new(),
        sessions,
        failed: Mutex::default(),
        descriptions: descriptions.clone(),
        described: Mutex::default(),
        _hook: hook,
    };
    telemetry.sync(gateway);
    telemetry
}

/// Ready while the session is on air; otherwise the reason it is not.
fn state_readiness(state: &SessionState) -> Result<(), String> {
    match state {
        SessionState::OnAir { .. } => Ok(()),
        SessionState::Starting => Err("starting: no MTK yet".into()),
        SessionState::Halted { reason } => Err(reason.clone()),
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl GatewayTelemetry {
    /// The process-wide metrics (reload results, session counts).
    pub fn gateway_metrics(&self) -> &GatewayMetrics {
        &self.gateway_metrics
    }

    /// Follows the gateway's sessions: drops what is gone, watches what is
    /// new (a restarted session is a new handle with new counters).
    pub fn sync(&self, gateway: &Gateway) {
        let mut watched = lock(&self.sessions);
        let running: Vec<&dyn Watchable> = gateway
            .streaming
            .iter()
            .map(|h| h as &dyn Watchable)
            .chain(gateway.download.iter().map(|h| h as &dyn Watchable))
            .collect();
        let current = |w: &WatchedSession| {
            running
                .iter()
                .any(|h| h.name() == w.name && Arc::ptr_eq(h.egress_stats(), &w.egress_stats))
        };
        for gone in watched.iter().filter(|w| !current(w)) {
            self.readiness.remove(&readiness_name(&gone.name));
            // A removed session's series leave the scrape; a restarted one
            // (same name, new handle) keeps them.
            if !running.iter().any(|h| h.name() == gone.name) {
                self.metrics.withdraw_session(&gone.name);
            }
        }
        watched.retain(current);
        for handle in running {
            let stats = handle.egress_stats();
            if !watched.iter().any(|w| Arc::ptr_eq(&w.egress_stats, stats)) {
                watched.push(self.watch(gateway, handle));
            }
        }
        // A configured session that is not running keeps the gateway not
        // ready until a reload starts it or drops it from the file.
        let mut failed = lock(&self.failed);
        for name in failed.drain(..) {
            if !watched.iter().any(|w| w.name == name) {
                self.readiness.remove(&readiness_name(&name));
            }
        }
        for (name, reason) in gateway.failed_sessions() {
            self.readiness.set(
                readiness_name(name),
                Err(format!("failed to start: {reason}")),
            );
            failed.push(name.clone());
        }
        self.readiness
            .probe_live("data path", gateway.data_path_liveness());
        self.gateway_metrics
            .sessions(SessionKind::Streaming, gateway.streaming.len());
        self.gateway_metrics
            .sessions(SessionKind::Download, gateway.download.len());
        self.describe(gateway);
    }

    /// Keeps `/sessions/NAME/sdp` current for the running streaming
    /// sessions. A description keeps its version while it is unchanged and
    /// takes the time of the change (NTP seconds) otherwise (RFC 4566 §5.2).
    fn describe(&self, gateway: &Gateway) {
        let key_domain = gateway.config().bmsc.key_domain_id;
        let now = wall_clock::ntp_now();
        let mut described = lock(&self.described);
        let mut current = BTreeMap::new();
        let mut pages = BTreeMap::new();
        for session in &gateway.config().streaming {
            let previous = described.get(&session.name);
            let page = match session.description(key_domain, previous.map_or(now, |p| p.version)) {
                Ok(mut description) => {
                    if previous != Some(&description) {
                        description.version = now;
                    }
                    let sdp = description.to_sdp().map_err(|e| e.to_string());
                    current.insert(session.name.clone(), description);
                    sdp
                }
                Err(e) => Err(e.to_string()),
            };
            pages.insert(session.name.clone(), page);
        }
        for session in &gateway.config().download {
            let reason = DescribeError::Download(session.name.clone()).to_string();
            pages.insert(session.name.clone(), Err(reason));
        }
        *described = current;
        self.descriptions.replace(pages);
    }

    /// Starts watching one session: its readiness check and its metrics.
    fn watch(&self, gateway: &Gateway, handle: &dyn Watchable) -> WatchedSession {
        let name = handle.name();
        self.metrics.restore_session(name);
        let check = handle.state().clone();
        self.readiness.probe(readiness_name(name), move || {
            state_readiness(&check.borrow())
        });
        WatchedSession {
            name: name.to_owned(),
            session: SessionMetrics::new(name),
            egress: EgressMetrics::new(name),
            egress_stats: handle.egress_stats().clone(),
            kind: handle.kind(gateway),
            state: handle.state().clone(),
            msks: gateway.client.msks(),
        }
    }
}

/// What telemetry reads of a running session of either kind.
trait Watchable {
    fn name(&self) -> &str;
    fn egress_stats(&self) -> &Arc<EgressStats>;
    fn state(&self) -> &watch::Receiver<SessionState>;
    fn kind(&self, gateway: &Gateway) -> WatchedKind;
}

impl Watchable for StreamingHandle {
    fn name(&self) -> &str {
        &self.name
    }
    fn egress_stats(&self) -> &Arc<EgressStats> {
        &self.egress_stats
    }
    fn state(&self) -> &watch::Receiver<SessionState> {
        &self.state
    }
    fn kind(&self, gateway: &Gateway) -> WatchedKind {
        WatchedKind::Streaming {
            inputs: input_metrics(gateway, &self.name),
            stats: self.stats.clone(),
        }
    }
}

impl Watchable for DownloadHandle {
    fn name(&self) -> &str {
        &self.name
    }
    fn egress_stats(&self) -> &Arc<EgressStats> {
        &self.egress_stats
    }
    fn state(&self) -> &watch::Receiver<SessionState> {
        &self.state
    }
    fn kind(&self, _gateway: &Gateway) -> WatchedKind {
        WatchedKind::Download {
            stats: self.stats.clone(),
            sender: self.sender_stats.clone(),
        }
    }
}

/// The per-input metrics of the streaming session `name`.
fn input_metrics(gateway: &Gateway, name: &str) -> Vec<InputMetrics> {
    gateway
        .config()
        .streaming
        .iter()
        .find(|s| s.name == name)
        .map(|s| {
            s.flows
                .iter()
                .enumerate()
                .map(|(i, f)| InputMetrics::new(name, &f.label(i)))
                .collect()
        })
        .unwrap_or_default()
}
