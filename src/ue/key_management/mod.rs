//! A UE's key management (TS 33.246 §6.3.2) around the sans-IO
//! [`UeMskStore`]: it registers to its MBMS User Services over HTTP Digest,
//! receives MIKEY MSK messages on its UDP port (answering the V bit with a
//! verification message), sends MSK requests when a solicited pull, a missed
//! key update or its own start asks for them (with the Service
//! Announcement's back-off), and deregisters when it stops.
//!
//! Receivers (the streaming probe, a download probe) read the MSKs through
//! [`UeKeys`]: the MSKs the UE holds now, updated as messages arrive, and a
//! way to report traffic under an MSK the UE lacks.

pub mod client;
pub mod config;

pub use client::{KeyRequestClient, KeyRequestError};
pub use config::UeConfig;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use crate::protocol::key_request::{
    KeyRef, KeyRequest, KeyResponse, MskOutcome, Status, UeKeyError, UeMskStore,
};
use crate::protocol::keys::{KeyDomainId, MskId};
use crate::protocol::mikey::{MikeyError, build_msk_ack};
use crate::runtime::key_service::{MskRecord, MskSet};

/// Largest datagram read on the MSK port.
const RECV_BUFFER: usize = 2048;
/// Missing-MSK reports queued at most (more are dropped: one is enough).
const MISSING_QUEUE: usize = 64;

/// The MSKs a UE holds, for the receivers that decrypt with them. Cheap to
/// clone; every clone sees updates.
#[derive(Clone)]
pub struct UeKeys {
    key_domain_id: KeyDomainId,
    msks: watch::Receiver<Arc<MskSet>>,
    missing: mpsc::Sender<KeyRef>,
}

impl std::fmt::Debug for UeKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UeKeys")
            .field("key_domain_id", &self.key_domain_id)
            .field("msks", &self.msks.borrow().len())
            .finish()
    }
}

impl UeKeys {
    pub fn key_domain_id(&self) -> KeyDomainId {
        self.key_domain_id
    }

    /// The MSKs held now (lifetimes are unknown to a UE: not_before 0,
    /// not_after `i64::MAX`; validity is the MSK's MTK ID interval).
    pub fn current(&self) -> Arc<MskSet> {
        Arc::clone(&self.msks.borrow())
    }

    /// A receiver that sees every change.
    pub fn watch(&self) -> watch::Receiver<Arc<MskSet>> {
        self.msks.clone()
    }

    /// Traffic arrived under `msk_id`, which the UE does not hold: a missed
    /// key update (seed §6.3.2.2.3). The UE requests it (once, with back-off).
    pub fn report_missing(&self, msk_id: MskId) {
        let _ = self.missing.try_send(KeyRef {
            key_domain_id: self.key_domain_id,
            msk_id,
        });
    }

    /// Waits until `done` holds for the MSKs held (or the UE stopped).
    pub async fn wait_until(&mut self, mut done: impl FnMut(&MskSet) -> bool) -> bool {
        self.msks.wait_for(|set| done(set)).await.is_ok()
    }
}

/// What the UE did, for reports and tests.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct UeStats {
    pub registered: bool,
    pub msk_messages: u64,
    pub msks_stored: u64,
    pub msks_evicted: u64,
    pub validity_updates: u64,
    pub invalidations: u64,
    pub solicited_pulls: u64,
    pub replayed: u64,
    pub bad_mac: u64,
    pub malformed: u64,
    pub acks_sent: u64,
    pub msk_requests: u64,
    pub msk_request_failures: u64,
    pub keys_refused: u64,
}

/// A running UE agent.
pub struct RunningUe {
    keys: UeKeys,
    stats: Arc<Mutex<UeStats>>,
    mikey_addr: SocketAddr,
    stop: watch::Sender<bool>,
    task: Option<JoinHandle<()>>,
}

impl RunningUe {
    pub fn keys(&self) -> UeKeys {
        self.keys.clone()
    }

    pub fn stats(&self) -> UeStats {
        lock(&self.stats).clone()
    }

    /// Where the UE receives MSK messages.
    pub fn mikey_addr(&self) -> SocketAddr {
        self.mikey_addr
    }

    /// Deregisters from every User Service, then stops.
    pub async fn stop(mut self) -> UeStats {
        self.stop.send_replace(true);
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
        lock(&self.stats).clone()
    }
}

impl Drop for RunningUe {
    fn drop(&mut self) {
        self.stop.send_replace(true);
    }
}

fn lock(stats: &Mutex<UeStats>) -> MutexGuard<'_, UeStats> {
    stats
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn random_u32() -> u32 {
    let mut b = [0u8; 4];
    // A failed OS random source only makes the back-off less random.
    let _ = getrandom::fill(&mut b);
    u32::from_be_bytes(b)
}

/// Binds the MSK port, registers to the configured User Services (an error if
/// the BM-SC cannot be reached or refuses every service), and runs the agent.
pub async fn start_ue(config: UeConfig) -> anyhow::Result<RunningUe> {
    let socket = UdpSocket::bind(config.mikey_listen)
        .await
        .map_err(|e| anyhow::anyhow!("UE MSK port {}: {e}", config.mikey_listen))?;
    let mikey_addr = socket.local_addr()?;
    let mut client = KeyRequestClient::new(
        &config.key_request_url,
        config.sa.clone(),
        config.ca_file.as_deref(),
    )?;
    let stats = Arc::new(Mutex::new(UeStats::default()));
    let answer = client
        .send(&KeyRequest::Register {
            service_ids: config.services.clone(),
        })
        .await?;
    let KeyResponse::Registration(items) = answer else {
        anyhow::bail!("registration answered with an MSK response");
    };
    let registered: Vec<String> = items
        .iter()
        .filter(|(_, s)| *s == Status::Ok)
        .map(|(id, _)| id.clone())
        .collect();
    for (id, status) in &items {
        if *status != Status::Ok {
            tracing::warn!(service = %id, code = status.code(), "registration refused");
        }
    }
    anyhow::ensure!(
        !registered.is_empty(),
        "the BM-SC refused every User Service: {items:?}"
    );
    lock(&stats).registered = true;
    let (msks_tx, msks_rx) = watch::channel(Arc::new(MskSet::new()));
    let (missing_tx, missing_rx) = mpsc::channel(MISSING_QUEUE);
    let (stop, stopped) = watch::channel(false);
    let keys = UeKeys {
        key_domain_id: config.key_domain_id,
        msks: msks_rx,
        missing: missing_tx,
    };
    let agent = Agent {
        store: UeMskStore::new(config.backoff, config.retry, config.max_retry),
        epoch: Instant::now(),
        muk: config.sa.muk(),
        client,
        socket,
        msks: msks_tx,
        stats: Arc::clone(&stats),
        registered,
        ack_counter: 0,
    };
    // Key management starts with the current MSK of each Key Group: the push
    // after registration usually satisfies it before the back-off ends.
    let initial: Vec<KeyRef> = config
        .key_groups
        .iter()
        .map(|&group| KeyRef {
            key_domain_id: config.key_domain_id,
            msk_id: MskId::new(group, MskId::CURRENT_KEY_NUMBER),
        })
        .collect();
    let task = tokio::spawn(agent.run(initial, missing_rx, stopped));
    Ok(RunningUe {
        keys,
        stats,
        mikey_addr,
        stop,
        task: Some(task),
    })
}

struct Agent {
    store: UeMskStore,
    epoch: Instant,
    muk: crate::protocol::keys::Muk,
    client: KeyRequestClient,
    socket: UdpSocket,
    msks: watch::Sender<Arc<MskSet>>,
    stats: Arc<Mutex<UeStats>>,
    registered: Vec<String>,
    /// T of this UE's verification messages.
    ack_counter: u32,
}

impl Agent {
    fn now(&self) -> Duration {
        self.epoch.elapsed()
    }

    async fn run(
        mut self,
        initial: Vec<KeyRef>,
        mut missing: mpsc::Receiver<KeyRef>,
        mut stop: watch::Receiver<bool>,
    ) {
        for key in initial {
            let now = self.now();
            self.store.need(key, now, random_u32());
        }
        let mut buf = [0u8; RECV_BUFFER];
        loop {
            let wake = self
                .store
                .next_due()
                .map_or(Duration::from_secs(3600), |due| {
                    due.saturating_sub(self.now())
                });
            tokio::select! {
                _ = stopped(&mut stop) => break,
                received = self.socket.recv_from(&mut buf) => match received {
                    Ok((len, from)) => {
                        let datagram = buf[..len].to_vec();
                        self.on_datagram(from, &datagram).await;
                    }
                    Err(e) => {
                        tracing::debug!(error = %e, "UE MSK port receive failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                },
                Some(key) = missing.recv() => {
                    let now = self.now();
                    if !self.store.is_pending(key) && self.store.get(key.key_domain_id, key.msk_id).is_none() {
                        tracing::info!(msk_id = %format_args!("{:08x}", key.msk_id.0), "missed MSK update: requesting it");
                        self.store.need(key, now, random_u32());
                    }
                }
                _ = tokio::time::sleep(wake) => self.send_due_requests().await,
            }
        }
        self.deregister().await;
    }

    async fn on_datagram(&mut self, from: SocketAddr, bytes: &[u8]) {
        let now = self.now();
        lock(&self.stats).msk_messages += 1;
        match self
            .store
            .on_msk_message(&self.muk, bytes, now, random_u32())
        {
            Ok(reception) => {
                {
                    let mut stats = lock(&self.stats);
                    match reception.outcome {
                        MskOutcome::Stored { evicted, .. } => {
                            stats.msks_stored += 1;
                            stats.msks_evicted += u64::from(evicted.is_some());
                        }
                        MskOutcome::Replaced { .. } => stats.msks_stored += 1,
                        MskOutcome::ValidityUpdated { .. } | MskOutcome::UnknownMsk { .. } => {
                            stats.validity_updates += 1
                        }
                        MskOutcome::Invalidated { .. } => stats.invalidations += 1,
                        MskOutcome::SolicitedPull { .. } => stats.solicited_pulls += 1,
                    }
                }
                tracing::debug!(outcome = ?reception.outcome, "MSK message accepted");
                if reception.ack_requested {
                    self.acknowledge(from, bytes).await;
                }
                self.publish();
            }
            Err(e) => {
                let mut stats = lock(&self.stats);
                match e {
                    UeKeyError::Mikey(MikeyError::Replayed { .. }) => stats.replayed += 1,
                    UeKeyError::Mikey(MikeyError::BadMac) => stats.bad_mac += 1,
                    _ => stats.malformed += 1,
                }
                tracing::debug!(%from, error = %e, "MSK message dropped");
            }
        }
    }

    /// The verification message for an accepted MSK message with the V bit
    /// (seed §6.3.2.3.1), back to where it came from.
    async fn acknowledge(&mut self, to: SocketAddr, message: &[u8]) {
        self.ack_counter = self.ack_counter.wrapping_add(1);
        let counter = self.ack_counter;
        let mut ack = Vec::new();
        match build_msk_ack(&self.muk, message, counter, &mut ack) {
            Ok(()) => {
                if self.socket.send_to(&ack, to).await.is_ok() {
                    lock(&self.stats).acks_sent += 1;
                }
            }
            Err(e) => tracing::debug!(error = %e, "no verification message"),
        }
    }

    /// The MSKs held, as the receivers read them.
    fn publish(&self) {
        let mut set = MskSet::new();
        for stored in self.store.msks() {
            let record = MskRecord {
                key_domain_id: stored.key_domain_id,
                msk_id: stored.msk_id,
                key: stored.msk.clone(),
                validity: (stored.validity.seq_l, stored.validity.seq_u),
                not_before: 0,
                not_after: i64::MAX,
            };
            if let Err(e) = set.upsert(record) {
                tracing::warn!(error = %e, "MSK not published");
            }
        }
        self.msks.send_replace(Arc::new(set));
    }

    async fn send_due_requests(&mut self) {
        let now = self.now();
        let keys = self.store.due_requests(now);
        if keys.is_empty() {
            return;
        }
        lock(&self.stats).msk_requests += 1;
        match self
            .client
            .send(&KeyRequest::Msk { keys: keys.clone() })
            .await
        {
            Ok(KeyResponse::Msk(items)) => {
                for (key, status) in items {
                    if status != Status::Ok {
                        lock(&self.stats).keys_refused += 1;
                        tracing::warn!(msk_id = %format_args!("{:08x}", key.msk_id.0), code = status.code(), "MSK request refused");
                    }
                    self.store.on_request_status(key, status);
                }
            }
            Ok(KeyResponse::Registration(_)) => {
                lock(&self.stats).msk_request_failures += 1;
            }
            Err(e) => {
                lock(&self.stats).msk_request_failures += 1;
                tracing::warn!(error = %e, "MSK request failed; retrying later");
            }
        }
    }

    async fn deregister(&mut self) {
        if self.registered.is_empty() {
            return;
        }
        let request = KeyRequest::Deregister {
            service_ids: std::mem::take(&mut self.registered),
        };
        match tokio::time::timeout(Duration::from_secs(5), self.client.send(&request)).await {
            Ok(Ok(_)) => lock(&self.stats).registered = false,
            Ok(Err(e)) => tracing::warn!(error = %e, "deregistration failed"),
            Err(_) => tracing::warn!("deregistration timed out"),
        }
    }
}

/// Resolves once `stop` turns true (or its sender is gone).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|&s| s).await;
}
