//! The gateway's BM-SC client: one watch stream that keeps the MSKs of the configured
//! Key Groups, reconnecting with jittered exponential backoff, plus unary calls for
//! leases and the current MSK.
//!
//! The rest of the gateway reads [`MskClient::msks`] (a `watch` of an immutable
//! [`MskSet`] snapshot, cheap to clone and to read) and [`MskClient::status`]
//! (connection state and rejected-answer count, for readiness and metrics). An outage
//! never drops keys: the last good set stays published until a new snapshot from the
//! BM-SC replaces it. Answers that fail validation are logged, counted and ignored.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::watch;
use tokio::task::JoinHandle;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};
use tonic::{Code, Status};
use zeroize::Zeroize;

use super::backoff::{Backoff, random_unit};
use super::config::{ConfigError, MskClientConfig};
use super::msk_set::{MskRecord, MskSet, MskSetError, Upsert};
use super::proto::key_service_client::KeyServiceClient;
use super::proto::{self, msk_event::Event};
use super::validate::{
    LeaseAnswerError, LeaseAsk, LeaseRecord, MskAnswerError, MskScope, key_domain_id_from_wire,
    msk_from_wire, msk_id_in_scope,
};
use crate::protocol::keys::MskId;
use crate::runtime::metrics::{BmscMetrics, BmscRpc, BmscState, RpcFailure};

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// Where the watch stream stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConnectionState {
    /// Trying to (re)connect; `attempt` counts failures since the last good stream.
    Connecting {
        attempt: u32,
        last_error: Option<String>,
    },
    /// Stream up and the BM-SC's snapshot applied.
    Connected,
    /// The BM-SC refuses this client (bad credentials, unknown Key Domain or Key
    /// Group, no such service): retrying goes on at the backoff ceiling, but an
    /// operator has to fix something.
    Failed { reason: String },
}

/// Observable client health.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientStatus {
    pub connection: ConnectionState,
    /// BM-SC answers rejected by validation since start.
    pub rejected_answers: u64,
    /// Reasons of the latest rejections, oldest first, at most
    /// [`ClientStatus::RECENT_REJECTIONS`]; each names the field.
    pub recent_rejections: VecDeque<String>,
}

impl ClientStatus {
    pub const RECENT_REJECTIONS: usize = 16;
}

/// The series this state is exported as (`bmsc_connection_state{state}`).
impl From<&ConnectionState> for BmscState {
    fn from(state: &ConnectionState) -> Self {
        match state {
            ConnectionState::Connecting { .. } => Self::Connecting,
            ConnectionState::Connected => Self::Connected,
            ConnectionState::Failed { .. } => Self::Failed,
        }
    }
}

/// The client cannot be built from its configuration.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("{field} {path}: {source}")]
    File {
        field: &'static str,
        path: String,
        source: std::io::Error,
    },
    #[error("endpoint: {0}")]
    Endpoint(#[from] tonic::transport::Error),
}

/// A unary call to the BM-SC failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RpcError {
    #[error("BM-SC {call}: {code:?}: {message}")]
    Status {
        call: &'static str,
        code: Code,
        message: String,
    },
    #[error("BM-SC {call}: no answer within {timeout:?}")]
    Timeout {
        call: &'static str,
        timeout: Duration,
    },
}

/// The `reason` label of a failed call.
impl From<&RpcError> for RpcFailure {
    fn from(error: &RpcError) -> Self {
        match error {
            RpcError::Status { .. } => Self::Status,
            RpcError::Timeout { .. } => Self::Timeout,
        }
    }
}

/// A lease could not be obtained.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LeaseError {
    #[error("lease for MSK {msk_id:#010x}: the MSK is not held by this gateway")]
    UnknownMsk { msk_id: u32 },
    #[error("lease for MSK {msk_id:#010x}: counts must be at least 1")]
    ZeroCount { msk_id: u32 },
    #[error(transparent)]
    Rpc(#[from] RpcError),
    #[error("lease for MSK {msk_id:#010x} rejected: {source}")]
    Answer {
        msk_id: u32,
        source: LeaseAnswerError,
    },
}

/// The current MSK could not be obtained.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CurrentMskError {
    #[error("Key Group {key_group} is not configured for this gateway")]
    UnknownKeyGroup { key_group: u16 },
    #[error(transparent)]
    Rpc(#[from] RpcError),
    #[error("current MSK answer rejected: {0}")]
    Answer(#[from] MskAnswerError),
}

/// What the watch task and the unary calls share.
struct Inner {
    rpc: KeyServiceClient<Channel>,
    /// The Key Groups watched can change at run time (a configuration reload
    /// adds or removes sessions); a change restarts the watch stream.
    scope: watch::Sender<MskScope>,
    client_id: String,
    request_timeout: Duration,
    stream_idle_timeout: Duration,
    backoff: Backoff,
    msks: watch::Sender<Arc<MskSet>>,
    status: watch::Sender<ClientStatus>,
    /// Latest lease per MSK: a BM-SC that grants below it is refused.
    leases: Mutex<BTreeMap<MskId, LeaseRecord>>,
    /// Call durations and failures (inert when no recorder is installed).
    metrics: BmscMetrics,
}

impl Inner {
    fn reject(&self, what: &str, reason: String) {
        tracing::warn!(what, %reason, "BM-SC answer rejected");
        self.status.send_modify(|s| {
            s.rejected_answers += 1;
            if s.recent_rejections.len() == ClientStatus::RECENT_REJECTIONS {
                s.recent_rejections.pop_front();
            }
            s.recent_rejections.push_back(reason);
        });
    }

    fn set_connection(&self, connection: ConnectionState) {
        self.status.send_if_modified(|s| {
            let changed = s.connection != connection;
            s.connection = connection;
            changed
        });
    }

    async fn unary<T>(
        &self,
        call: &'static str,
        fut: impl Future<Output = Result<tonic::Response<T>, Status>>,
    ) -> Result<T, RpcError> {
        let started = std::time::Instant::now();
        let result = self.unary_untimed(call, fut).await;
        if let Some(rpc) = BmscRpc::from_call(call) {
            match &result {
                Ok(_) => self.metrics.rpc_completed(rpc, started.elapsed()),
                Err(e) => self.metrics.rpc_failed(rpc, RpcFailure::from(e)),
            }
        }
        result
    }

    async fn unary_untimed<T>(
        &self,
        call: &'static str,
        fut: impl Future<Output = Result<tonic::Response<T>, Status>>,
    ) -> Result<T, RpcError> {
        match tokio::time::timeout(self.request_timeout, fut).await {
            Ok(Ok(response)) => Ok(response.into_inner()),
            Ok(Err(status)) => Err(RpcError::Status {
                call,
                code: status.code(),
                message: status.message().to_owned(),
            }),
            Err(_) => Err(RpcError::Timeout {
                call,
                timeout: self.request_timeout,
            }),
        }
    }
}

/// The gateway's connection to the BM-SC. Dropping it stops the watch task.
pub struct MskClient {
    inner: Arc<Inner>,
    task: JoinHandle<()>,
}

impl Drop for MskClient {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn read_file(field: &'static str, path: &std::path::Path) -> Result<Vec<u8>, ClientError> {
    std::fs::read(path).map_err(|source| ClientError::File {
        field,
        path: path.display().to_string(),
        source,
    })
}

fn endpoint(config: &MskClientConfig) -> Result<Endpoint, ClientError> {
    let timeout = Duration::from_secs(config.request_timeout_s);
    let mut endpoint = Endpoint::from_shared(config.endpoint.clone())?
        .connect_timeout(timeout)
        .tcp_nodelay(true)
        .http2_keep_alive_interval(Duration::from_secs(config.stream_idle_timeout_s.max(2) / 2))
        .keep_alive_timeout(timeout)
        .keep_alive_while_idle(true);
    if let Some(files) = &config.tls {
        let ca = read_file("tls.ca_file", &files.ca_file)?;
        let mut tls = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(ca));
        if let (Some(cert), Some(key)) = (&files.cert_file, &files.key_file) {
            let cert = read_file("tls.cert_file", cert)?;
            let mut key = read_file("tls.key_file", key)?;
            tls = tls.identity(Identity::from_pem(cert, &key));
            key.zeroize();
        }
        if let Some(name) = &files.domain_name {
            tls = tls.domain_name(name.clone());
        }
        endpoint = endpoint.tls_config(tls)?;
    }
    Ok(endpoint)
}

impl MskClient {
    /// Validates `config`, reads the TLS files and starts the watch task. Returns at
    /// once; the connection is made in the background (see [`MskClient::status`]).
    /// Must be called inside a tokio runtime.
    pub fn start(config: MskClientConfig) -> Result<Self, ClientError> {
        config.validate()?;
        let channel = endpoint(&config)?.connect_lazy();
        let (msks, _) = watch::channel(Arc::new(MskSet::new()));
        let (status, _) = watch::channel(ClientStatus {
            connection: ConnectionState::Connecting {
                attempt: 0,
                last_error: None,
            },
            rejected_answers: 0,
            recent_rejections: VecDeque::new(),
        });
        let inner = Arc::new(Inner {
            rpc: KeyServiceClient::new(channel),
            scope: watch::Sender::new(MskScope {
                key_domain_id: config.key_domain_id,
                key_groups: config.key_groups.iter().copied().collect(),
            }),
            client_id: config.client_id.clone(),
            request_timeout: Duration::from_secs(config.request_timeout_s),
            stream_idle_timeout: Duration::from_secs(config.stream_idle_timeout_s),
            backoff: config.backoff(),
            msks,
            status,
            leases: Mutex::new(BTreeMap::new()),
            metrics: BmscMetrics::new(),
        });
        let task = tokio::spawn(watch_forever(Arc::clone(&inner)));
        Ok(Self { inner, task })
    }

    /// The MSKs held now; `changed()` fires on every update.
    pub fn msks(&self) -> watch::Receiver<Arc<MskSet>> {
        self.inner.msks.subscribe()
    }

    /// Connection state and rejection count; `changed()` fires on every update.
    pub fn status(&self) -> watch::Receiver<ClientStatus> {
        self.inner.status.subscribe()
    }

    /// The Key Groups whose MSKs are watched.
    pub fn key_groups(&self) -> Vec<u16> {
        self.inner
            .scope
            .borrow()
            .key_groups
            .iter()
            .copied()
            .collect()
    }

    /// Watches the MSKs of `key_groups` from now on (a reload added or removed
    /// sessions). The watch stream restarts with the new list; the MSKs held
    /// stay published meanwhile, and the BM-SC's new snapshot drops those of
    /// Key Groups no longer listed. Returns false when the list is unchanged.
    pub fn set_key_groups(&self, key_groups: &[u16]) -> bool {
        let groups: BTreeSet<u16> = key_groups.iter().copied().collect();
        self.inner.scope.send_if_modified(|scope| {
            let changed = scope.key_groups != groups;
            scope.key_groups = groups;
            changed
        })
    }

    /// Leases `mtk_ids` MTK IDs and `counters` MIKEY counters under `msk_id` (the
    /// BM-SC may grant fewer MTK IDs at the end of the window). The answer is checked
    /// against the MSK's window and against the previous lease for the MSK.
    pub async fn lease(
        &self,
        msk_id: MskId,
        mtk_ids: u16,
        counters: u32,
    ) -> Result<LeaseRecord, LeaseError> {
        if mtk_ids == 0 || counters == 0 {
            return Err(LeaseError::ZeroCount { msk_id: msk_id.0 });
        }
        let msk = self
            .inner
            .msks
            .borrow()
            .get(msk_id)
            .cloned()
            .ok_or(LeaseError::UnknownMsk { msk_id: msk_id.0 })?;
        let request = proto::LeaseRequest {
            key_domain_id: self.inner.scope.borrow().key_domain_id.0.to_vec(),
            msk_id: msk_id.0,
            client_id: self.inner.client_id.clone(),
            mtk_id_count: mtk_ids.into(),
            counter_count: counters,
        };
        let mut rpc = self.inner.rpc.clone();
        let wire = self
            .inner
            .unary("LeaseMtkIds", rpc.lease_mtk_ids(request))
            .await?;
        let ask = LeaseAsk {
            msk_id,
            mtk_ids,
            counters,
        };
        let mut leases = self
            .inner
            .leases
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        match super::validate::lease_from_wire(&wire, ask, &msk, leases.get(&msk_id)) {
            Ok(lease) => {
                leases.insert(msk_id, lease);
                Ok(lease)
            }
            Err(source) => {
                drop(leases);
                self.inner.reject("Lease", source.to_string());
                Err(LeaseError::Answer {
                    msk_id: msk_id.0,
                    source,
                })
            }
        }
    }

    /// Asks the BM-SC for the current MSK of `key_group` (checked like every MSK, not
    /// installed: the watch stream is the one source of installed keys).
    pub async fn current_msk(&self, key_group: u16) -> Result<MskRecord, CurrentMskError> {
        let scope = self.inner.scope.borrow().clone();
        if !scope.key_groups.contains(&key_group) {
            return Err(CurrentMskError::UnknownKeyGroup { key_group });
        }
        let request = proto::GetCurrentMskRequest {
            key_domain_id: scope.key_domain_id.0.to_vec(),
            key_group: key_group.into(),
        };
        let mut rpc = self.inner.rpc.clone();
        let wire = self
            .inner
            .unary("GetCurrentMsk", rpc.get_current_msk(request))
            .await?;
        msk_from_wire(wire, &scope).map_err(|e| {
            self.inner.reject("GetCurrentMsk", e.to_string());
            e.into()
        })
    }
}

/// Why a watch stream ended.
struct StreamEnd {
    reason: String,
    /// The BM-SC refused us: retrying alone will not help.
    refused: bool,
    /// The stream had delivered a full snapshot: the backoff starts over.
    was_healthy: bool,
    /// Ended on purpose because the Key Groups changed: reconnect at once.
    rescoped: bool,
}

fn refused(code: Code) -> bool {
    matches!(
        code,
        Code::InvalidArgument
            | Code::NotFound
            | Code::PermissionDenied
            | Code::Unauthenticated
            | Code::Unimplemented
            | Code::FailedPrecondition
    )
}

async fn watch_forever(inner: Arc<Inner>) {
    let mut attempt: u32 = 0;
    loop {
        let end = watch_once(&inner).await;
        if end.rescoped {
            tracing::info!(key_groups = ?inner.scope.borrow().key_groups, "Key Groups changed; restarting the BM-SC watch stream");
            attempt = 0;
            continue;
        }
        if end.was_healthy {
            attempt = 0;
        }
        tracing::warn!(reason = %end.reason, attempt, "BM-SC watch stream down; keeping the MSKs held");
        let delay = if end.refused {
            inner.set_connection(ConnectionState::Failed { reason: end.reason });
            // At the ceiling, still jittered.
            inner.backoff.delay(u32::MAX, random_unit())
        } else {
            inner.set_connection(ConnectionState::Connecting {
                attempt: attempt + 1,
                last_error: Some(end.reason),
            });
            inner.backoff.delay(attempt, random_unit())
        };
        tokio::time::sleep(delay).await;
        attempt = attempt.saturating_add(1);
    }
}

/// Runs one watch stream until it ends; applies its events to the published set.
async fn watch_once(inner: &Inner) -> StreamEnd {
    let end = |reason: String, refused: bool, was_healthy: bool| StreamEnd {
        reason,
        refused,
        was_healthy,
        rescoped: false,
    };
    let rescoped = || StreamEnd {
        reason: "Key Groups changed".into(),
        refused: false,
        was_healthy: true,
        rescoped: true,
    };
    let mut scope_changes = inner.scope.subscribe();
    let scope = scope_changes.borrow_and_update().clone();
    let request = proto::WatchMsksRequest {
        key_domain_id: scope.key_domain_id.0.to_vec(),
        key_groups: scope.key_groups.iter().map(|&g| g.into()).collect(),
        client_id: inner.client_id.clone(),
    };
    let mut rpc = inner.rpc.clone();
    let opened = tokio::select! {
        opened = inner.unary("WatchMsks", rpc.watch_msks(request)) => opened,
        _ = scope_changes.changed() => return rescoped(),
    };
    let mut stream = match opened {
        Ok(stream) => stream,
        Err(e) => {
            let refused = matches!(&e, RpcError::Status { code, .. } if refused(*code));
            return end(e.to_string(), refused, false);
        }
    };
    let mut working = MskSet::clone(&inner.msks.borrow());
    // IDs listed by the snapshot while it is being received; `None` once complete.
    let mut listed: Option<BTreeSet<MskId>> = Some(BTreeSet::new());
    loop {
        let healthy = listed.is_none();
        let next = tokio::select! {
            next = tokio::time::timeout(inner.stream_idle_timeout, stream.message()) => next,
            _ = scope_changes.changed() => return rescoped(),
        };
        let message = match next {
            Err(_) => {
                let reason = format!(
                    "no message from the BM-SC for {:?}",
                    inner.stream_idle_timeout
                );
                return end(reason, false, healthy);
            }
            Ok(Err(status)) => {
                let reason = format!("WatchMsks: {:?}: {}", status.code(), status.message());
                return end(reason, refused(status.code()) && !healthy, healthy);
            }
            Ok(Ok(None)) => {
                return end(
                    "WatchMsks: stream closed by the BM-SC".into(),
                    false,
                    healthy,
                );
            }
            Ok(Ok(Some(message))) => message,
        };
        let changed = match message.event {
            None => {
                inner.reject("MskEvent", MskAnswerError::EmptyEvent.to_string());
                false
            }
            Some(Event::MskAdded(msk)) | Some(Event::ValidityUpdated(msk)) => {
                if let Some(ids) = listed.as_mut() {
                    // Listed even if rejected below: a garbage copy of a key held from
                    // before must not make the snapshot drop the good one.
                    ids.insert(MskId(msk.msk_id));
                }
                install(inner, &scope, &mut working, msk)
            }
            Some(Event::Invalidated(msk_ref)) => invalidate(inner, &scope, &mut working, &msk_ref),
            Some(Event::SnapshotComplete(_)) => {
                if let Some(ids) = listed.take() {
                    for gone in working.retain_listed(&ids) {
                        tracing::info!(msk_id = %format_args!("{:#010x}", gone.0), "MSK no longer listed by the BM-SC; removed");
                    }
                }
                true
            }
            Some(Event::Heartbeat(_)) => false,
        };
        // The snapshot is published whole, once complete.
        if changed && listed.is_none() {
            working.prune_expired(unix_now());
            inner.msks.send_replace(Arc::new(working.clone()));
            // Connected only once the keys it implies are readable.
            if !healthy {
                inner.set_connection(ConnectionState::Connected);
            }
        }
    }
}

fn install(inner: &Inner, scope: &MskScope, working: &mut MskSet, msk: proto::Msk) -> bool {
    let record = match msk_from_wire(msk, scope) {
        Ok(record) => record,
        Err(e) => {
            inner.reject("Msk", e.to_string());
            return false;
        }
    };
    let id = record.msk_id;
    match working.upsert(record) {
        Ok(Upsert::Unchanged) => false,
        Ok(outcome) => {
            tracing::info!(msk_id = %format_args!("{:#010x}", id.0), ?outcome, "MSK installed");
            true
        }
        Err(e @ (MskSetError::KeyChanged { .. } | MskSetError::WasInvalidated { .. })) => {
            inner.reject("Msk", e.to_string());
            false
        }
    }
}

fn invalidate(
    inner: &Inner,
    scope: &MskScope,
    working: &mut MskSet,
    msk_ref: &proto::MskRef,
) -> bool {
    let checked = key_domain_id_from_wire(&msk_ref.key_domain_id, "MskRef.key_domain_id").and_then(
        |domain| {
            if domain == scope.key_domain_id {
                msk_id_in_scope(msk_ref.msk_id, "MskRef.msk_id", scope)
            } else {
                Err(MskAnswerError::KeyDomainMismatch {
                    field: "MskRef.key_domain_id",
                    got: super::validate::key_domain_hex(domain),
                    expected: super::validate::key_domain_hex(scope.key_domain_id),
                })
            }
        },
    );
    match checked {
        Ok(id) => {
            tracing::info!(msk_id = %format_args!("{:#010x}", id.0), "MSK invalidated by the BM-SC");
            // Tombstoned even if not held, so a late copy is never installed.
            working.invalidate(id);
            true
        }
        Err(e) => {
            inner.reject("MskRef", e.to_string());
            false
        }
    }
}
