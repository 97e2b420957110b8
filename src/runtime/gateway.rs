//! `mbms-gateway run`: the whole gateway from one configuration: the BM-SC
//! client, the key journal, one egress thread per distinct egress socket
//! setting, and every session.

use super::bmsc::MskClient;
use super::config::{GatewayConfig, StreamingSession};
use super::download::ingest::{PushServer, PushSessions, WatchFolder, serve_push, spawn_watch};
use super::download::{self, DownloadHandle, DownloadSession};
use super::egress::Egress;
use super::journal::KeyJournal;
use super::metrics::IngestMetrics;
use super::streaming::{self, SessionContext, StreamingHandle};
use super::udp::{EgressOptions, egress_socket};
use anyhow::{Context, Result};
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
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

/// A running gateway.
pub struct Gateway {
    pub client: Arc<MskClient>,
    pub streaming: Vec<StreamingHandle>,
    pub download: Vec<DownloadHandle>,
    egress: HashMap<EgressKey, Egress>,
    egress_threads: Vec<JoinHandle<()>>,
    ingest: Option<Ingest>,
}

/// The watch folders and the push endpoint feeding the download sessions.
struct Ingest {
    stop: tokio::sync::watch::Sender<bool>,
    folders: Vec<WatchFolder>,
    push: Option<PushServer>,
}

impl Gateway {
    /// Starts everything the configuration describes. Must run inside a tokio
    /// runtime.
    pub fn start(config: &GatewayConfig) -> Result<Self> {
        let journal = KeyJournal::open(&config.state_dir)?;
        tracing::info!(journal = %journal.path().display(), "key journal open");
        let journal = Arc::new(Mutex::new(journal));
        let client = Arc::new(MskClient::start(config.bmsc.clone()).context("BM-SC client")?);
        let mut egress: HashMap<EgressKey, Egress> = HashMap::new();
        let mut egress_threads = Vec::new();
        let keys = config
            .streaming
            .iter()
            .map(|s| (EgressKey::of(s), &s.name))
            .chain(
                config
                    .download
                    .iter()
                    .map(|d| (EgressKey::of_download(d), &d.name)),
            );
        for (key, name) in keys {
            if egress.contains_key(&key) {
                continue;
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
            .with_context(|| format!("egress socket of session {name}"))?;
            let (e, thread) = Egress::spawn(&format!("{}", egress.len()), socket, EGRESS_QUEUE)?;
            egress.insert(key, e);
            egress_threads.push(thread);
        }
        let streaming = streaming::start_all(
            &config.streaming,
            config.bmsc.key_domain_id,
            &client,
            journal.clone(),
            config.lease_block,
            |s| Ok(egress[&EgressKey::of(s)].clone()),
        )?;
        let download = config
            .download
            .iter()
            .map(|d| {
                download::start(
                    d,
                    SessionContext {
                        key_domain_id: config.bmsc.key_domain_id,
                        msks: client.msks(),
                        leases: client.clone(),
                        journal: journal.clone(),
                        lease_block: config.lease_block,
                        egress: egress[&EgressKey::of_download(d)].clone(),
                    },
                    &config.state_dir.join("spool").join(&d.name),
                )
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            client,
            streaming,
            download,
            egress,
            egress_threads,
            ingest: None,
        })
    }

    /// Starts what feeds the download sessions: each session's watch folder
    /// and the HTTP push endpoint. Returns the push endpoint's address.
    pub async fn start_ingest(&mut self, config: &GatewayConfig) -> Result<Option<SocketAddr>> {
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let shutdown = move || {
            let mut stopped = stopped.clone();
            async move {
                let _ = stopped.wait_for(|s| *s).await;
            }
        };
        let mut folders = Vec::new();
        let sessions = PushSessions::new();
        for (handle, session) in self.download.iter().zip(&config.download) {
            let metrics = IngestMetrics::new(&session.name);
            if let Some(watch) = &session.watch {
                folders.push(
                    spawn_watch(
                        &session.name,
                        watch,
                        handle.queue(),
                        metrics.clone(),
                        shutdown(),
                    )
                    .with_context(|| format!("download session {}", session.name))?,
                );
            }
            if session.push {
                sessions.register(&session.name, handle.queue(), metrics);
            }
        }
        let push = match &config.push {
            Some(push) => Some(serve_push(push, &config.state_dir, sessions, shutdown()).await?),
            None => None,
        };
        let addr = push.as_ref().map(PushServer::local_addr);
        self.ingest = Some(Ingest {
            stop,
            folders,
            push,
        });
        Ok(addr)
    }

    /// True while every egress thread runs.
    pub fn egress_alive(&self) -> bool {
        self.egress.values().all(Egress::is_alive)
    }

    /// A check of every egress thread that does not keep them running.
    pub fn egress_liveness(&self) -> impl Fn() -> bool + Send + Sync + 'static {
        let checks: Vec<_> = self.egress.values().map(Egress::liveness).collect();
        move || checks.iter().all(|alive| alive())
    }

    /// Stops ingest first, lets the egress queues drain, then returns. The key
    /// journal is durable at every step, so nothing is left to flush.
    pub async fn stop(self) {
        if let Some(ingest) = self.ingest {
            let _ = ingest.stop.send(true);
            for folder in ingest.folders {
                let _ = folder.join().await;
            }
            if let Some(push) = ingest.push {
                let _ = push.join().await;
            }
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
