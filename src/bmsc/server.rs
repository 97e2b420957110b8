//! The reference BM-SC key server: serves `KeyService` from a key file or from
//! generated, rotating MSKs, grants non-overlapping lease ranges, and pushes every
//! change to all watching gateways.

use std::collections::BTreeSet;
use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use tokio::net::TcpListener;
use tokio::sync::{broadcast, mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio_stream::wrappers::{ReceiverStream, TcpListenerStream};
use tonic::transport::{Certificate, Identity, Server, ServerTlsConfig};
use tonic::{Request, Response, Status};
use zeroize::Zeroize;

use super::config::{BmscConfig, GenerateConfig, KeySource, ServerTlsFiles};
use super::key_management::{KeyManagementConfig, start_key_management};
use super::lease_book::{GrantError, LeaseBook};
use crate::protocol::keys::{Msk, MskId, MtkId};
use crate::runtime::key_service::load_key_file;
use crate::runtime::key_service::msk_set::{MskRecord, MskSet, Upsert};
use crate::runtime::key_service::proto::key_service_server::{KeyService, KeyServiceServer};
use crate::runtime::key_service::proto::{self, msk_event::Event};
use crate::runtime::key_service::validate::{
    MskAnswerError, MskScope, key_domain_hex, key_domain_id_from_wire, msk_id_in_scope, msk_to_wire,
};

/// Events buffered per watcher before a slow one is cut off (it then reconnects and
/// gets a fresh snapshot).
const EVENT_BUFFER: usize = 256;

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// State shared by the gRPC handlers, the rotation tasks and [`BmscControl`].
struct Shared {
    scope: MskScope,
    /// Held while publishing, so a new watcher's snapshot and its event subscription
    /// line up: nothing is missed, nothing arrives twice.
    msks: Mutex<MskSet>,
    events: broadcast::Sender<proto::MskEvent>,
    book: Arc<Mutex<LeaseBook>>,
    heartbeat: Duration,
    stopping: watch::Sender<bool>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic elsewhere while holding the lock leaves consistent data behind (every
    // update is a single insert or remove), so poisoning is not fatal.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Shared {
    /// Installs `record` (new MSK, new validity, or SEQl > SEQu = invalidation) and
    /// tells every watcher.
    fn publish(&self, record: MskRecord) -> anyhow::Result<()> {
        let mut msks = lock(&self.msks);
        let event = match msks.upsert(record.clone())? {
            Upsert::Unchanged => return Ok(()),
            Upsert::Added => Event::MskAdded(msk_to_wire(&record)),
            // An inverted window travels as such: receivers read it as invalidation.
            Upsert::Updated | Upsert::Invalidated => Event::ValidityUpdated(msk_to_wire(&record)),
        };
        tracing::info!(
            msk_id = %format_args!("{:#010x}", record.msk_id.0),
            not_before = record.not_before,
            not_after = record.not_after,
            invalidated = record.is_invalidated(),
            "MSK published"
        );
        // No receiver is not an error: nobody is watching yet.
        let _ = self.events.send(proto::MskEvent { event: Some(event) });
        Ok(())
    }

    fn invalidate(&self, msk_id: MskId) -> bool {
        let mut msks = lock(&self.msks);
        let held = msks.invalidate(msk_id);
        if held {
            tracing::info!(msk_id = %format_args!("{:#010x}", msk_id.0), "MSK invalidated");
            let _ = self.events.send(proto::MskEvent {
                event: Some(Event::Invalidated(proto::MskRef {
                    key_domain_id: self.scope.key_domain_id.0.to_vec(),
                    msk_id: msk_id.0,
                })),
            });
        }
        held
    }

    fn check_domain(&self, bytes: &[u8], field: &'static str) -> Result<(), Status> {
        let got = key_domain_id_from_wire(bytes, field).map_err(invalid_argument)?;
        if got != self.scope.key_domain_id {
            return Err(Status::not_found(format!(
                "{field}: Key Domain ID {} is not served (this BM-SC serves {})",
                key_domain_hex(got),
                key_domain_hex(self.scope.key_domain_id)
            )));
        }
        Ok(())
    }

    fn check_group(&self, raw: u32, field: &'static str) -> Result<u16, Status> {
        match u16::try_from(raw) {
            Ok(group) if self.scope.key_groups.contains(&group) => Ok(group),
            _ => Err(Status::not_found(format!(
                "{field}: Key Group {raw} is not served"
            ))),
        }
    }
}

fn invalid_argument(e: MskAnswerError) -> Status {
    Status::invalid_argument(e.to_string())
}

fn event_msk_id(event: &proto::MskEvent) -> Option<MskId> {
    match event.event.as_ref()? {
        Event::MskAdded(m) | Event::ValidityUpdated(m) => Some(MskId(m.msk_id)),
        Event::Invalidated(r) => Some(MskId(r.msk_id)),
        Event::SnapshotComplete(_) | Event::Heartbeat(_) => None,
    }
}

/// The gRPC face of [`Shared`].
struct KeyServiceImpl {
    shared: Arc<Shared>,
}

#[tonic::async_trait]
impl KeyService for KeyServiceImpl {
    type WatchMsksStream = ReceiverStream<Result<proto::MskEvent, Status>>;

    async fn watch_msks(
        &self,
        request: Request<proto::WatchMsksRequest>,
    ) -> Result<Response<Self::WatchMsksStream>, Status> {
        let req = request.into_inner();
        let shared = &self.shared;
        shared.check_domain(&req.key_domain_id, "WatchMsksRequest.key_domain_id")?;
        if req.key_groups.is_empty() {
            return Err(Status::invalid_argument(
                "WatchMsksRequest.key_groups: empty",
            ));
        }
        let groups = req
            .key_groups
            .iter()
            .map(|&g| shared.check_group(g, "WatchMsksRequest.key_groups"))
            .collect::<Result<BTreeSet<u16>, Status>>()?;
        let now = unix_now();
        let (snapshot, events) = {
            let msks = lock(&shared.msks);
            let snapshot: Vec<proto::Msk> = msks
                .iter()
                .filter(|r| groups.contains(&r.key_group()) && !r.is_expired_at(now))
                .map(msk_to_wire)
                .collect();
            (snapshot, shared.events.subscribe())
        };
        tracing::info!(client_id = %req.client_id, ?groups, msks = snapshot.len(), "watch started");
        let (tx, rx) = mpsc::channel(EVENT_BUFFER);
        let stream = WatchStream {
            tx,
            groups,
            heartbeat: shared.heartbeat,
            client_id: req.client_id,
        };
        tokio::spawn(stream.run(snapshot, events, shared.stopping.subscribe()));
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    async fn get_current_msk(
        &self,
        request: Request<proto::GetCurrentMskRequest>,
    ) -> Result<Response<proto::Msk>, Status> {
        let req = request.into_inner();
        let shared = &self.shared;
        shared.check_domain(&req.key_domain_id, "GetCurrentMskRequest.key_domain_id")?;
        let group = shared.check_group(req.key_group, "GetCurrentMskRequest.key_group")?;
        let msks = lock(&shared.msks);
        msks.current_for(group, unix_now())
            .map(|r| Response::new(msk_to_wire(r)))
            .ok_or_else(|| Status::not_found(format!("Key Group {group} has no valid MSK now")))
    }

    async fn lease_mtk_ids(
        &self,
        request: Request<proto::LeaseRequest>,
    ) -> Result<Response<proto::Lease>, Status> {
        let req = request.into_inner();
        let shared = &self.shared;
        shared.check_domain(&req.key_domain_id, "LeaseRequest.key_domain_id")?;
        let msk_id = msk_id_in_scope(req.msk_id, "LeaseRequest.msk_id", &shared.scope)
            .map_err(invalid_argument)?;
        let record = {
            let msks = lock(&shared.msks);
            match msks.get(msk_id) {
                Some(r) if r.is_expired_at(unix_now()) => {
                    return Err(Status::failed_precondition(format!(
                        "MSK {:#010x} has expired",
                        msk_id.0
                    )));
                }
                Some(r) => r.clone(),
                None if msks.was_invalidated(msk_id) => {
                    return Err(Status::failed_precondition(format!(
                        "MSK {:#010x} was invalidated",
                        msk_id.0
                    )));
                }
                None => {
                    return Err(Status::not_found(format!(
                        "MSK {:#010x} is unknown",
                        msk_id.0
                    )));
                }
            }
        };
        let book = Arc::clone(&shared.book);
        let (mtk_ids, counters) = (req.mtk_id_count, req.counter_count);
        // The grant fsyncs the ledger: keep it off the async workers.
        let granted =
            tokio::task::spawn_blocking(move || lock(&book).grant(&record, mtk_ids, counters))
                .await
                .map_err(|e| Status::internal(format!("lease task failed: {e}")))?;
        let lease = granted.map_err(|e| {
            let text = format!("LeaseRequest for MSK {:#010x}: {e}", msk_id.0);
            match e {
                GrantError::ZeroCount { .. } => Status::invalid_argument(text),
                GrantError::MtkIdsExhausted { .. }
                | GrantError::CountersExhausted { .. }
                | GrantError::KeyNumbersExhausted { .. } => Status::resource_exhausted(text),
                GrantError::State(_) => Status::unavailable(text),
            }
        })?;
        tracing::info!(client_id = %req.client_id, msk_id = %format_args!("{:#010x}", msk_id.0),
            mtk_ids = ?(lease.mtk_ids.0.0, lease.mtk_ids.1.0), counters = ?lease.counters, "lease granted");
        Ok(Response::new(proto::Lease {
            key_domain_id: shared.scope.key_domain_id.0.to_vec(),
            msk_id: msk_id.0,
            first_mtk_id: lease.mtk_ids.0.0.into(),
            last_mtk_id: lease.mtk_ids.1.0.into(),
            first_counter: lease.counters.0,
            last_counter: lease.counters.1,
        }))
    }
}

/// One watcher: snapshot, end marker, then filtered events and heartbeats until the
/// client leaves, falls behind, or the server stops.
struct WatchStream {
    tx: mpsc::Sender<Result<proto::MskEvent, Status>>,
    groups: BTreeSet<u16>,
    heartbeat: Duration,
    client_id: String,
}

impl WatchStream {
    async fn send(&self, event: Event) -> bool {
        self.tx
            .send(Ok(proto::MskEvent { event: Some(event) }))
            .await
            .is_ok()
    }

    async fn run(
        self,
        snapshot: Vec<proto::Msk>,
        mut events: broadcast::Receiver<proto::MskEvent>,
        mut stopping: watch::Receiver<bool>,
    ) {
        for msk in snapshot {
            if !self.send(Event::MskAdded(msk)).await {
                return;
            }
        }
        if !self
            .send(Event::SnapshotComplete(proto::SnapshotComplete {}))
            .await
        {
            return;
        }
        let mut ticks =
            tokio::time::interval_at(tokio::time::Instant::now() + self.heartbeat, self.heartbeat);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let interval_s = u32::try_from(self.heartbeat.as_secs()).unwrap_or(u32::MAX);
        loop {
            tokio::select! {
                _ = async { drop(stopping.wait_for(|&stop| stop).await) } => {
                    let _ = self.tx.send(Err(Status::unavailable("BM-SC is shutting down"))).await;
                    return;
                }
                received = events.recv() => match received {
                    Ok(event) => {
                        let wanted = event_msk_id(&event).is_some_and(|id| self.groups.contains(&id.key_group()));
                        if wanted && self.tx.send(Ok(event)).await.is_err() {
                            return;
                        }
                    }
                    Err(broadcast::error::RecvError::Lagged(missed)) => {
                        tracing::warn!(client_id = %self.client_id, missed, "watcher fell behind; closing its stream");
                        let _ = self.tx.send(Err(Status::aborted("watch stream fell behind; reconnect for a fresh snapshot"))).await;
                        return;
                    }
                    Err(broadcast::error::RecvError::Closed) => return,
                },
                _ = ticks.tick() => {
                    let beat = Event::Heartbeat(proto::Heartbeat { server_time_unix: unix_now(), interval_s });
                    if !self.send(beat).await {
                        return;
                    }
                }
                _ = self.tx.closed() => return,
            }
        }
    }
}

/// Rust-side control of a running BM-SC (tests, demo, deregistration logic).
#[derive(Clone)]
pub struct BmscControl {
    shared: Arc<Shared>,
}

impl BmscControl {
    /// Withdraws an MSK and tells every watcher. Returns whether it was held.
    pub fn invalidate(&self, msk_id: MskId) -> bool {
        self.shared.invalidate(msk_id)
    }

    /// Adds an MSK (or updates the validity of a held one) and tells every watcher.
    pub fn publish(&self, record: MskRecord) -> anyhow::Result<()> {
        anyhow::ensure!(
            record.key_domain_id == self.shared.scope.key_domain_id
                && self.shared.scope.key_groups.contains(&record.key_group()),
            "MSK {:#010x} is outside the served Key Domain / Key Groups",
            record.msk_id.0
        );
        self.shared.publish(record)
    }

    /// A copy of the MSKs held now.
    pub fn msks(&self) -> MskSet {
        lock(&self.shared.msks).clone()
    }

    /// Every later MSK change, as the gateways' watch streams see it (the Key
    /// Distribution function pushes the same MSKs to UEs).
    pub fn subscribe(&self) -> broadcast::Receiver<proto::MskEvent> {
        self.shared.events.subscribe()
    }

    /// The Key Domain and Key Groups served.
    pub fn scope(&self) -> &MskScope {
        &self.shared.scope
    }
}

/// A configured BM-SC, ready to serve.
pub struct Bmsc {
    shared: Arc<Shared>,
    tls: Option<ServerTlsConfig>,
    generate: Option<GenerateConfig>,
    listen: SocketAddr,
    key_management: Option<KeyManagementConfig>,
    /// Where the lease book and the MUK counter journal live.
    state_dir: Option<std::path::PathBuf>,
}

/// A BM-SC serving in a background task (see [`Bmsc::spawn`]).
pub struct RunningBmsc {
    pub local_addr: SocketAddr,
    pub control: BmscControl,
    stop: oneshot::Sender<()>,
    task: JoinHandle<anyhow::Result<()>>,
}

impl RunningBmsc {
    /// Stops serving (watch streams end with UNAVAILABLE) and waits for the server.
    pub async fn stop(self) -> anyhow::Result<()> {
        let _ = self.stop.send(());
        self.task.await.context("BM-SC task")?
    }
}

impl Bmsc {
    /// Loads keys, lease state and TLS material named by `config`.
    pub fn from_config(config: &BmscConfig) -> anyhow::Result<Self> {
        config.validate()?;
        let scope = MskScope {
            key_domain_id: config.key_domain_id,
            key_groups: config.key_groups.iter().copied().collect(),
        };
        let book = match &config.state_dir {
            Some(dir) => LeaseBook::open(dir, config.key_domain_id)?,
            None => LeaseBook::in_memory(config.key_domain_id),
        };
        let mut msks = MskSet::new();
        let generate = match &config.keys {
            KeySource::File { path } => {
                for record in load_key_file(path, &scope)? {
                    msks.upsert(record)
                        .with_context(|| format!("key file {}", path.display()))?;
                }
                None
            }
            KeySource::Generate(g) => Some(g.clone()),
        };
        let tls = config.tls.as_ref().map(server_tls).transpose()?;
        let (events, _) = broadcast::channel(EVENT_BUFFER);
        let shared = Arc::new(Shared {
            scope,
            msks: Mutex::new(msks),
            events,
            book: Arc::new(Mutex::new(book)),
            heartbeat: Duration::from_secs(config.heartbeat_interval_s.into()),
            stopping: watch::Sender::new(false),
        });
        Ok(Self {
            shared,
            tls,
            generate,
            listen: config.listen,
            key_management: config.key_management.clone(),
            state_dir: config.state_dir.clone(),
        })
    }

    pub fn control(&self) -> BmscControl {
        BmscControl {
            shared: Arc::clone(&self.shared),
        }
    }

    /// Serves on `listener` until `shutdown` completes.
    pub async fn run(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()>,
    ) -> anyhow::Result<()> {
        let local = listener.local_addr()?;
        let control = self.control();
        let mut builder = Server::builder();
        let tls_on = self.tls.is_some();
        if let Some(tls) = self.tls {
            builder = builder.tls_config(tls).context("server TLS")?;
        }
        let rotations: Vec<JoinHandle<()>> = match &self.generate {
            Some(g) => self
                .shared
                .scope
                .key_groups
                .iter()
                .map(|&group| tokio::spawn(rotate(Arc::clone(&self.shared), group, g.clone())))
                .collect(),
            None => Vec::new(),
        };
        let key_management = match &self.key_management {
            Some(km) => Some(start_key_management(km, control, self.state_dir.as_deref()).await?),
            None => None,
        };
        let stopping = self.shared.stopping.clone();
        let signal = async move {
            shutdown.await;
            stopping.send_replace(true);
        };
        tracing::info!(%local, tls = tls_on, "BM-SC serving");
        let result = builder
            .add_service(KeyServiceServer::new(KeyServiceImpl {
                shared: Arc::clone(&self.shared),
            }))
            .serve_with_incoming_shutdown(TcpListenerStream::new(listener), signal)
            .await;
        for task in rotations {
            task.abort();
        }
        if let Some(km) = key_management {
            km.stop().await;
        }
        result.context("gRPC server")
    }

    /// Binds `listen` from the config and serves until `shutdown`.
    pub async fn serve(self, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
        let listener = TcpListener::bind(self.listen)
            .await
            .with_context(|| format!("bind {}", self.listen))?;
        self.run(listener, shutdown).await
    }

    /// Serves on `listener` in a background task; for tests and the demo, which bind
    /// port 0 and learn the address from [`RunningBmsc::local_addr`].
    pub fn spawn(self, listener: TcpListener) -> anyhow::Result<RunningBmsc> {
        let local_addr = listener.local_addr()?;
        let control = self.control();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(self.run(listener, async move {
            let _ = stopped.await;
        }));
        Ok(RunningBmsc {
            local_addr,
            control,
            stop,
            task,
        })
    }
}

/// Serves the BM-SC described by `config` until `shutdown` completes.
pub async fn serve(config: BmscConfig, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
    Bmsc::from_config(&config)?.serve(shutdown).await
}

fn read_pem(path: &Path, what: &str) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("{what} {}", path.display()))
}

fn server_tls(files: &ServerTlsFiles) -> anyhow::Result<ServerTlsConfig> {
    let cert = read_pem(&files.cert_file, "tls.cert_file")?;
    let mut key = read_pem(&files.key_file, "tls.key_file")?;
    let mut tls = ServerTlsConfig::new().identity(Identity::from_pem(&cert, &key));
    key.zeroize();
    if let Some(ca) = &files.client_ca_file {
        tls = tls.client_ca_root(Certificate::from_pem(read_pem(ca, "tls.client_ca_file")?));
    }
    Ok(tls)
}

/// Generates the MSKs of one Key Group on the configured schedule.
async fn rotate(shared: Arc<Shared>, key_group: u16, schedule: GenerateConfig) {
    let mut not_before = unix_now();
    loop {
        if let Err(e) = generate_one(&shared, key_group, &schedule, not_before).await {
            tracing::error!(key_group, error = %e, "MSK generation failed; rotation stopped");
            return;
        }
        lock(&shared.msks).prune_expired(unix_now());
        not_before += i64::from(schedule.rotate_every_s);
        let announce_at = not_before - i64::from(schedule.announce_ahead_s);
        let wait = u64::try_from(announce_at - unix_now()).unwrap_or(0);
        tokio::time::sleep(Duration::from_secs(wait)).await;
    }
}

async fn generate_one(
    shared: &Arc<Shared>,
    key_group: u16,
    schedule: &GenerateConfig,
    not_before: i64,
) -> anyhow::Result<()> {
    let book = Arc::clone(&shared.book);
    let key_number =
        tokio::task::spawn_blocking(move || lock(&book).next_key_number(key_group)).await??;
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).map_err(|e| anyhow::anyhow!("OS random source: {e}"))?;
    let key = Msk::new(bytes);
    bytes.zeroize();
    shared.publish(MskRecord {
        key_domain_id: shared.scope.key_domain_id,
        msk_id: MskId::new(key_group, key_number),
        key,
        validity: (MtkId(schedule.seq_l), MtkId(schedule.seq_u)),
        not_before,
        not_after: not_before + i64::from(schedule.lifetime_s),
    })
}
