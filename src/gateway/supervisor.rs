//! `mbms-gateway run`: the whole gateway from one configuration: the BM-SC
//! client, the key journal, one egress thread per distinct egress socket
//! setting, and every session. [`Gateway::reload`] moves a running gateway to
//! a new configuration session by session (see [`super::reload`]).

use super::config::{GatewayConfig, StreamingSession};
use super::download::ingest::{PushConfig, PushServer, PushSessions, serve_push};
use super::download::sender::SenderStats;
use super::download::{self, DownloadHandle, DownloadSession, DownloadStats};
use super::egress::{Egress, EgressStats};
use super::reload::{
    NamedSession, ReloadRefused, ReloadReport, SessionPlan, check_reloadable, plan,
};
use super::streaming::{self, SessionContext, SessionStats, StreamingHandle};
use crate::gateway::keys::journal::KeyJournal;
use crate::gateway::streaming::ingest_workers::IngestPool;
use crate::runtime::key_service::MskClient;
use crate::runtime::udp::{EgressOptions, egress_socket};
use anyhow::{Context, Result};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

/// Queue depth (batches) of each egress thread.
const EGRESS_QUEUE: usize = 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct EgressKey {
    ipv6: bool,
    interface: Option<IpAddr>,
    interface_index: u32,
    ttl: u32,
    dscp: u8,
}

impl EgressKey {
    fn of(s: &StreamingSession) -> Self {
        Self {
            ipv6: s.destination.is_ipv6(),
            interface: s.interface,
            interface_index: s.interface_index,
            ttl: s.ttl,
            dscp: s.dscp,
        }
    }

    fn of_download(d: &DownloadSession) -> Self {
        Self {
            ipv6: d.destination.is_ipv6(),
            interface: d.interface,
            interface_index: d.interface_index,
            ttl: d.ttl,
            dscp: d.dscp,
        }
    }
}

/// A running session of any kind, as a reload handles it.
pub trait RunningSession: Sized {
    /// What a restarted session takes over from the one it replaces, so its
    /// exported counters stay monotonic across the restart.
    type Carry;
    fn name(&self) -> &str;
    /// Stops the session cleanly (ingest first, queued packets still leave).
    fn shut_down(self) -> impl Future<Output = Self::Carry> + Send;
}

/// A streaming session's counters, carried into its restarted successor.
pub struct StreamingCarry {
    stats: Arc<SessionStats>,
    egress_stats: Arc<EgressStats>,
    flow_labels: Vec<String>,
}

impl RunningSession for StreamingHandle {
    type Carry = StreamingCarry;

    fn name(&self) -> &str {
        &self.name
    }

    async fn shut_down(self) -> StreamingCarry {
        let carry = StreamingCarry {
            stats: self.stats.clone(),
            egress_stats: self.egress_stats.clone(),
            flow_labels: Vec::new(),
        };
        self.stop().await;
        carry
    }
}

fn add(to: &AtomicU64, from: &AtomicU64) {
    to.fetch_add(from.load(Ordering::Relaxed), Ordering::Relaxed);
}

impl StreamingCarry {
    /// Adds the old counters to the new session's: counting is additive, so
    /// this is exact even while the new session already counts. Inputs
    /// are matched by label.
    fn continue_in(&self, session: &StreamingSession, handle: &StreamingHandle) {
        let (old, new) = (&self.stats, &handle.stats);
        for (i, flow) in session.flows.iter().enumerate() {
            if let Some(j) = self.flow_labels.iter().position(|l| *l == flow.label(i)) {
                add(&new.ingest_packets[i], &old.ingest_packets[j]);
                add(&new.ingest_bytes[i], &old.ingest_bytes[j]);
            }
        }
        add(&new.protected_rtp, &old.protected_rtp);
        add(&new.protected_rtcp, &old.protected_rtcp);
        for (to, from) in new.dropped.iter().zip(&old.dropped) {
            add(to, from);
        }
        add(&new.renumbered_restarts, &old.renumbered_restarts);
        add(&new.mtk_rotations, &old.mtk_rotations);
        add(&new.mikey_sent, &old.mikey_sent);
        continue_egress(&self.egress_stats, &handle.egress_stats);
    }
}

/// A download session's counters, carried into its restarted successor.
pub struct DownloadCarry {
    stats: Arc<DownloadStats>,
    sender_stats: Arc<SenderStats>,
    egress_stats: Arc<EgressStats>,
}

impl RunningSession for DownloadHandle {
    type Carry = DownloadCarry;

    fn name(&self) -> &str {
        &self.name
    }

    async fn shut_down(self) -> DownloadCarry {
        let carry = DownloadCarry {
            stats: self.stats.clone(),
            sender_stats: self.sender_stats.clone(),
            egress_stats: self.egress_stats.clone(),
        };
        self.stop().await;
        carry
    }
}

impl DownloadCarry {
    /// Adds the old counters to the new session's (see
    /// [`StreamingCarry::continue_in`]). The carousel gauge is not carried:
    /// the new session starts with an empty carousel.
    fn continue_in(&self, handle: &DownloadHandle) {
        let (old, new) = (&self.stats, &handle.stats);
        add(&new.objects_in, &old.objects_in);
        add(&new.bytes_in, &old.bytes_in);
        add(&new.objects_protected, &old.objects_protected);
        for (to, from) in new.rejected.iter().zip(&old.rejected) {
            add(to, from);
        }
        add(&new.mtk_rotations, &old.mtk_rotations);
        let (old, new) = (&self.sender_stats, &handle.sender_stats);
        for (to, from) in [
            (&new.objects_added, &old.objects_added),
            (&new.objects_completed, &old.objects_completed),
            (&new.objects_revoked, &old.objects_revoked),
            (&new.object_transmissions, &old.object_transmissions),
            (&new.fdt_instances_sent, &old.fdt_instances_sent),
            (&new.mikey_objects_added, &old.mikey_objects_added),
            (&new.mikey_transmissions, &old.mikey_transmissions),
            (&new.alc_packets, &old.alc_packets),
            (&new.alc_bytes, &old.alc_bytes),
            (&new.send_failures, &old.send_failures),
        ] {
            add(to, from);
        }
        continue_egress(&self.egress_stats, &handle.egress_stats);
    }
}

/// Adds an egress producer's counters to its successor's.
fn continue_egress(old: &EgressStats, new: &EgressStats) {
    for (to, from) in new.packets.iter().zip(&old.packets) {
        add(to, from);
    }
    for (to, from) in new.bytes.iter().zip(&old.bytes) {
        add(to, from);
    }
    add(&new.send_errors, &old.send_errors);
    add(&new.queue_full, &old.queue_full);
}

/// Stops the sessions a plan removes or restarts; returns what each of them
/// carries over (by name), for a restart or a later return of the name.
async fn stop_planned<C: NamedSession, H: RunningSession>(
    running: &mut Vec<H>,
    plan: &SessionPlan<'_, C>,
    report: &mut ReloadReport,
) -> HashMap<String, H::Carry> {
    let removed: HashSet<&str> = plan.removed.iter().map(String::as_str).collect();
    let changed: HashSet<&str> = plan.changed.iter().map(|c| c.name()).collect();
    let (stopping, keep): (Vec<H>, Vec<H>) = std::mem::take(running)
        .into_iter()
        .partition(|h| removed.contains(h.name()) || changed.contains(h.name()));
    *running = keep;
    let mut carried = HashMap::new();
    for handle in stopping {
        let name = handle.name().to_owned();
        let carry = handle.shut_down().await;
        if !changed.contains(name.as_str()) {
            tracing::info!(session = %name, "session stopped (removed from the configuration)");
            report.stopped.push(name.clone());
        }
        carried.insert(name, carry);
    }
    carried
}

/// Moves the carries of removed sessions to `retired`, and gives an added
/// session the carry of a removed one of its name: the exported counters of
/// a name stay monotonic when a session goes and comes back.
fn retire_and_revive<C: NamedSession, K>(
    carried: &mut HashMap<String, K>,
    retired: &mut HashMap<String, K>,
    plan: &SessionPlan<'_, C>,
) {
    for name in &plan.removed {
        if let Some(carry) = carried.remove(name) {
            retired.insert(name.clone(), carry);
        }
    }
    for session in &plan.added {
        if let Some(carry) = retired.remove(session.name()) {
            carried.insert(session.name().to_owned(), carry);
        }
    }
}

/// Starts the sessions a plan adds or restarts, then orders `running` as the
/// new configuration lists them. A session that fails to start is reported
/// and left out; the others run. Returns the carries of the sessions that
/// failed, for their next attempt.
async fn start_planned<C: NamedSession, H: RunningSession>(
    running: &mut Vec<H>,
    plan: &SessionPlan<'_, C>,
    mut carried: HashMap<String, H::Carry>,
    order: &[C],
    mut start: impl AsyncFnMut(&C, Option<&H::Carry>) -> Result<H>,
    report: &mut ReloadReport,
) -> HashMap<String, H::Carry> {
    let mut unstarted = HashMap::new();
    let starts = plan.added.iter().map(|c| (c, false));
    for (config, restart) in starts.chain(plan.changed.iter().map(|c| (c, true))) {
        let name = config.name();
        let carry = carried.remove(name);
        match start(config, carry.as_ref()).await {
            Ok(handle) => {
                running.push(handle);
                if restart {
                    tracing::info!(session = %name, "session restarted (its configuration changed)");
                    report.restarted.push(name.into());
                } else {
                    tracing::info!(session = %name, "session started (added to the configuration)");
                    report.started.push(name.into());
                }
            }
            Err(e) => {
                tracing::error!(session = %name, error = %format!("{e:#}"), "session failed to start");
                report.failed.push((name.into(), format!("{e:#}")));
                if let Some(carry) = carry {
                    unstarted.insert(name.to_owned(), carry);
                }
            }
        }
    }
    report.unchanged += plan.unchanged.len();
    running.sort_by_key(|h| order.iter().position(|c| c.name() == h.name()));
    unstarted
}

/// The configuration of the session named `name` among `sessions` (a
/// running session's configuration is always in the running configuration).
fn session_config<'a, C: NamedSession>(sessions: &'a [C], name: &str) -> &'a C {
    sessions
        .iter()
        .find(|c| c.name() == name)
        .expect("a running session is configured")
}

/// A running gateway.
pub struct Gateway {
    pub client: Arc<MskClient>,
    pub streaming: Vec<StreamingHandle>,
    pub download: Vec<DownloadHandle>,
    config: GatewayConfig,
    journal: Arc<Mutex<KeyJournal>>,
    egress: HashMap<EgressKey, Egress>,
    egress_threads: Vec<JoinHandle<()>>,
    /// The workers running the streaming sessions' ingest.
    streaming_ingest: IngestPool,
    ingest: Option<Ingest>,
    /// Sessions the last reload could not start, with the reason. They are
    /// left out of the running configuration, so the next reload of the
    /// same file starts them again.
    failed: BTreeMap<String, String>,
    /// Counters of removed sessions and of sessions that failed to start, by
    /// name, for a session of the same name a later reload starts. One entry
    /// per name ever removed: small, and bounded by the names an operator
    /// uses.
    retired_streaming: HashMap<String, StreamingCarry>,
    retired_download: HashMap<String, DownloadCarry>,
}

/// What feeds the download sessions once ingest started: the routes of the
/// sessions that take pushed objects, and the listener serving them, if one
/// is configured. Each session owns its watch folder and its route
/// ([`DownloadHandle::start_ingest`]); a reload can replace the listener
/// under the same routes.
struct Ingest {
    sessions: PushSessions,
    push: Option<PushEndpoint>,
}

/// A running push listener and what stops it.
struct PushEndpoint {
    server: PushServer,
    stop: tokio::sync::oneshot::Sender<()>,
}

impl PushEndpoint {
    async fn start(config: &PushConfig, state_dir: &Path, sessions: &PushSessions) -> Result<Self> {
        let (stop, stopped) = tokio::sync::oneshot::channel();
        let shutdown = async move {
            let _ = stopped.await;
        };
        let server = serve_push(config, state_dir, sessions.clone(), shutdown).await?;
        Ok(Self { server, stop })
    }

    /// Stops taking requests, lets the ones in flight finish.
    async fn stop(self) {
        let _ = self.stop.send(());
        let _ = self.server.join().await;
    }
}

impl Gateway {
    /// Starts everything the configuration describes. Must run inside a tokio
    /// runtime.
    pub fn start(config: &GatewayConfig) -> Result<Self> {
        let journal = KeyJournal::open(&config.state_dir)?;
        tracing::info!(journal = %journal.path().display(), "key journal open");
        let journal = Arc::new(Mutex::new(journal));
        let client = Arc::new(MskClient::start(config.bmsc.clone()).context("BM-SC client")?);
        let mut gateway = Self {
            client,
            streaming: Vec::new(),
            download: Vec::new(),
            config: config.clone(),
            journal,
            egress: HashMap::new(),
            egress_threads: Vec::new(),
            streaming_ingest: IngestPool::new(&config.ingest).context("ingest workers")?,
            ingest: None,
            failed: BTreeMap::new(),
            retired_streaming: HashMap::new(),
            retired_download: HashMap::new(),
        };
        for session in &config.streaming {
            let handle = gateway.start_streaming(session)?;
            gateway.streaming.push(handle);
        }
        for session in &config.download {
            let handle = gateway.start_download(session)?;
            gateway.download.push(handle);
        }
        Ok(gateway)
    }

    fn start_download(&mut self, session: &DownloadSession) -> Result<DownloadHandle> {
        let context = self.session_context(EgressKey::of_download(session), &session.name)?;
        download::start(
            session,
            context,
            &self.config.state_dir.join("spool").join(&session.name),
        )
    }

    /// Starts what feeds the download sessions: each session's watch folder
    /// and the HTTP push endpoint. Returns the push endpoint's address.
    /// Sessions a reload adds later are fed from their start.
    pub async fn start_ingest(&mut self) -> Result<Option<SocketAddr>> {
        let sessions = PushSessions::new();
        let push = match &self.config.push {
            Some(config) => {
                Some(PushEndpoint::start(config, &self.config.state_dir, &sessions).await?)
            }
            None => None,
        };
        let addr = push.as_ref().map(|p| p.server.local_addr());
        for handle in &mut self.download {
            let session = session_config(&self.config.download, &handle.name);
            handle.start_ingest(session, Some(&sessions))?;
        }
        self.ingest = Some(Ingest { sessions, push });
        Ok(addr)
    }

    /// The push endpoint's address, while it serves.
    pub fn push_addr(&self) -> Option<SocketAddr> {
        let push = self.ingest.as_ref()?.push.as_ref()?;
        Some(push.server.local_addr())
    }

    /// Moves the push endpoint to `new`: a listener on another address
    /// starts before the old one stops, so an uploader never finds none; on
    /// the same address the old one lets go of it first, and comes back if
    /// the new one cannot start. The sessions' routes are untouched.
    async fn reload_push(&mut self, new: Option<&PushConfig>) -> Result<()> {
        if self.config.push.as_ref() == new {
            return Ok(());
        }
        let state_dir = self.config.state_dir.clone();
        let Some(ingest) = &mut self.ingest else {
            return Ok(()); // not serving yet: start_ingest reads the new config
        };
        let previous = self.config.push.as_ref();
        match (ingest.push.take(), new) {
            (Some(old), Some(config)) if previous.is_some_and(|p| p.listen == config.listen) => {
                old.stop().await;
                match PushEndpoint::start(config, &state_dir, &ingest.sessions).await {
                    Ok(endpoint) => ingest.push = Some(endpoint),
                    Err(e) => {
                        if let Some(previous) = previous {
                            ingest.push = PushEndpoint::start(
                                previous,
                                &state_dir,
                                &ingest.sessions,
                            )
                            .await
                            .inspect_err(|again| {
                                tracing::error!(
                                    error = %format!("{again:#}"),
                                    "push endpoint down: neither the new nor the old settings start"
                                );
                            })
                            .ok();
                        }
                        return Err(e);
                    }
                }
            }
            (old, new) => {
                if let Some(config) = new {
                    match PushEndpoint::start(config, &state_dir, &ingest.sessions).await {
                        Ok(endpoint) => ingest.push = Some(endpoint),
                        Err(e) => {
                            ingest.push = old;
                            return Err(e);
                        }
                    }
                }
                if let Some(old) = old {
                    old.stop().await;
                }
            }
        }
        tracing::info!(push = ?self.push_addr(), "push endpoint reloaded");
        Ok(())
    }

    /// Starts feeding a session started after [`Self::start_ingest`]; stops
    /// it again when its ingest cannot start.
    async fn feed(
        &self,
        session: &DownloadSession,
        mut handle: DownloadHandle,
    ) -> Result<DownloadHandle> {
        let Some(ingest) = &self.ingest else {
            return Ok(handle);
        };
        match handle.start_ingest(session, Some(&ingest.sessions)) {
            Ok(()) => Ok(handle),
            Err(e) => {
                handle.stop().await;
                Err(e)
            }
        }
    }

    /// The configuration running now: the last one applied, without the
    /// sessions it could not start ([`Self::failed_sessions`]; their Key
    /// Groups stay in `bmsc.key_groups`, watched for the retry).
    pub fn config(&self) -> &GatewayConfig {
        &self.config
    }

    /// The egress thread for `session`'s socket settings, started on first use.
    fn egress_for(&mut self, key: EgressKey, session: &str) -> Result<Egress> {
        if let Some(egress) = self.egress.get(&key) {
            return Ok(egress.clone());
        }
        let socket = egress_socket(
            key.ipv6,
            &EgressOptions {
                interface: key.interface,
                interface_index: key.interface_index,
                ttl: key.ttl,
                dscp: key.dscp,
            },
        )
        .with_context(|| format!("egress socket of session {session}"))?;
        let name = format!("{}", self.egress_threads.len());
        let (egress, thread) = Egress::spawn(&name, socket, EGRESS_QUEUE)?;
        self.egress.insert(key, egress.clone());
        self.egress_threads.push(thread);
        Ok(egress)
    }

    /// What a session of any kind gets from the gateway: keys, leases, the
    /// journal and the egress thread for its socket settings.
    fn session_context(
        &mut self,
        key: EgressKey,
        session: &str,
    ) -> Result<SessionContext<Arc<MskClient>>> {
        Ok(SessionContext {
            key_domain_id: self.config.bmsc.key_domain_id,
            msks: self.client.msks(),
            leases: self.client.clone(),
            journal: self.journal.clone(),
            lease_block: self.config.lease_block,
            egress: self.egress_for(key, session)?,
            ingest: self.streaming_ingest.clone(),
        })
    }

    fn start_streaming(&mut self, session: &StreamingSession) -> Result<StreamingHandle> {
        let context = self.session_context(EgressKey::of(session), &session.name)?;
        streaming::start(session, context)
    }

    /// Moves the gateway to `new`: sessions removed stop, sessions added
    /// start, changed ones restart, equal ones keep running untouched. A
    /// configuration that changes process-wide settings is refused whole.
    pub async fn reload(&mut self, new: GatewayConfig) -> Result<ReloadReport, ReloadRefused> {
        check_reloadable(&self.config, &new)?;
        self.reload_push(new.push.as_ref())
            .await
            .map_err(|e| ReloadRefused::Push(format!("{e:#}")))?;
        let mut report = ReloadReport::default();
        let streaming_plan = plan(&self.config.streaming, &new.streaming);
        let mut carried = stop_planned(&mut self.streaming, &streaming_plan, &mut report).await;
        for (name, carry) in &mut carried {
            if let Some(old) = self.config.streaming.iter().find(|s| s.name == *name) {
                carry.flow_labels = old
                    .flows
                    .iter()
                    .enumerate()
                    .map(|(i, f)| f.label(i))
                    .collect();
            }
        }
        retire_and_revive(&mut carried, &mut self.retired_streaming, &streaming_plan);
        if self.client.set_key_groups(&new.bmsc.key_groups) {
            tracing::info!(key_groups = ?new.bmsc.key_groups, "BM-SC Key Groups updated");
        }
        let mut running = std::mem::take(&mut self.streaming);
        let unstarted = start_planned(
            &mut running,
            &streaming_plan,
            carried,
            &new.streaming,
            async |session, carry| {
                let handle = self.start_streaming(session)?;
                if let Some(carry) = carry {
                    carry.continue_in(session, &handle);
                }
                Ok(handle)
            },
            &mut report,
        )
        .await;
        self.streaming = running;
        self.retired_streaming.extend(unstarted);

        let download_plan = plan(&self.config.download, &new.download);
        let mut carried = stop_planned(&mut self.download, &download_plan, &mut report).await;
        retire_and_revive(&mut carried, &mut self.retired_download, &download_plan);
        let mut running = std::mem::take(&mut self.download);
        let unstarted = start_planned(
            &mut running,
            &download_plan,
            carried,
            &new.download,
            async |session, carry| {
                let handle = self.start_download(session)?;
                if let Some(carry) = carry {
                    carry.continue_in(&handle);
                }
                self.feed(session, handle).await
            },
            &mut report,
        )
        .await;
        self.download = running;
        self.retired_download.extend(unstarted);
        // Egress threads no session uses any more end once their last
        // producer is gone; they are joined at stop.
        let in_use: HashSet<EgressKey> = new
            .streaming
            .iter()
            .map(EgressKey::of)
            .chain(new.download.iter().map(EgressKey::of_download))
            .collect();
        self.egress.retain(|key, _| in_use.contains(key));
        self.failed = report.failed.iter().cloned().collect();
        let mut new = new;
        new.streaming.retain(|s| !self.failed.contains_key(&s.name));
        new.download.retain(|d| !self.failed.contains_key(&d.name));
        self.config = new;
        Ok(report)
    }

    /// Sessions configured but not running: the last reload could not start
    /// them (name → reason). The next reload tries them again.
    pub fn failed_sessions(&self) -> &BTreeMap<String, String> {
        &self.failed
    }

    /// A check that every data-path thread runs (egress threads, ingest
    /// workers, each download session's protect and FLUTE sender threads),
    /// which does not keep them running. `Err` names what stopped.
    pub fn data_path_liveness(&self) -> impl Fn() -> Result<(), String> + Send + Sync + 'static {
        let egress: Vec<_> = self.egress.values().map(Egress::liveness).collect();
        let ingest = self.streaming_ingest.liveness();
        let downloads: Vec<_> = self
            .download
            .iter()
            .map(|h| (h.name.clone(), h.liveness()))
            .collect();
        move || {
            if !egress.iter().all(|alive| alive()) {
                return Err("an egress thread stopped".into());
            }
            if !ingest() {
                return Err("an ingest worker stopped".into());
            }
            match downloads.iter().find(|(_, alive)| !alive()) {
                Some((name, _)) => Err(format!(
                    "download session {name}: its protect or FLUTE sender thread stopped"
                )),
                None => Ok(()),
            }
        }
    }

    /// Stops ingest first, lets the egress queues drain, then returns. The key
    /// journal is durable at every step (each mark is written and synced
    /// before a value under it is used), so nothing is left to flush.
    pub async fn stop(self) {
        if let Some(push) = self.ingest.and_then(|i| i.push) {
            push.stop().await;
        }
        for s in self.streaming {
            s.stop().await;
        }
        for d in self.download {
            d.stop().await;
        }
        drop(self.egress);
        let threads = self.egress_threads;
        let _ = tokio::task::spawn_blocking(move || {
            for t in threads {
                let _ = t.join();
            }
        })
        .await;
    }
}
