//! The reference BM-SC's UE-facing key management (TS 33.246 §6.3.2): the Key
//! Request function (HTTP with Digest, see [`http`]), the Membership function
//! (the UE file's `services`), and the Key Distribution function (MIKEY MSK
//! messages over UDP, see [`distribution`]). The MSKs are those of the gRPC
//! key server ([`BmscControl`]): UEs get exactly the keys the gateways'
//! MTK messages are protected with.

pub mod config;
pub mod counter_journal;
pub mod distribution;
pub mod http;

pub use config::{
    KeyManagementConfig, ProvisionedUe, UserServiceConfig, load_ue_file, parse_ue_file,
};
pub use distribution::{Distribution, DistributionStats};
pub use http::KEY_REQUEST_PATH;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::{broadcast, watch};
use tokio::task::JoinHandle;

use super::BmscControl;
use http::KeyRequestFunction;

/// Largest datagram read on the MSK socket (verification messages are small).
const RECV_BUFFER: usize = 2048;

/// The key management functions running beside a BM-SC.
pub struct RunningKeyManagement {
    /// Where the Key Request function listens.
    pub http_addr: SocketAddr,
    /// The local address MSK messages leave from.
    pub mikey_addr: SocketAddr,
    distribution: Arc<Distribution>,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl RunningKeyManagement {
    /// The Key Distribution function (solicited pulls, statistics).
    pub fn distribution(&self) -> &Arc<Distribution> {
        &self.distribution
    }

    /// Stops serving and waits for the tasks.
    pub async fn stop(mut self) {
        self.stop.send_replace(true);
        for task in self.tasks.drain(..) {
            let _ = task.await;
        }
    }
}

impl Drop for RunningKeyManagement {
    fn drop(&mut self) {
        self.stop.send_replace(true);
    }
}

/// Starts the Key Request and Key Distribution functions for the BM-SC behind
/// `control`; with a `state_dir` the MSK message counters are journaled there.
pub async fn start_key_management(
    config: &KeyManagementConfig,
    control: BmscControl,
    state_dir: Option<&std::path::Path>,
) -> anyhow::Result<RunningKeyManagement> {
    config.validate(&control.scope().key_groups)?;
    let algorithm = config.algorithm()?;
    let services = config.service_map();
    let ues = load_ue_file(&config.ue_file, &services)?;
    let counters = counter_journal::CounterJournal::open(state_dir)?;
    let tls = match &config.tls {
        Some(files) => Some(crate::runtime::tls::TlsAcceptor::from(
            files.server_config().context("key_management.tls")?,
        )),
        None => None,
    };
    let listener = TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("key_management.listen {}", config.listen))?;
    let socket = UdpSocket::bind(config.mikey_source)
        .await
        .with_context(|| format!("key_management.mikey_source {}", config.mikey_source))?;
    let http_addr = listener.local_addr()?;
    let mikey_addr = socket.local_addr()?;
    let socket = Arc::new(socket);
    // Subscribed before anything is served: no rotation falls between.
    let events = control.subscribe();
    let distribution = Arc::new(Distribution::new(
        config.naf_id.clone(),
        services,
        config.request_ack,
        ues,
        Arc::clone(&socket),
        control,
        counters,
    ));
    let function = Arc::new(KeyRequestFunction::new(
        Arc::clone(&distribution),
        config.naf_id.clone(),
        algorithm,
        Duration::from_secs(config.nonce_lifetime_s.into()),
    ));
    let (stop, stopped) = watch::channel(false);
    let tasks = vec![
        tokio::spawn(http::serve(listener, tls, function, stopped.clone())),
        tokio::spawn(push_changes(
            Arc::clone(&distribution),
            events,
            stopped.clone(),
        )),
        tokio::spawn(receive_acks(Arc::clone(&distribution), socket, stopped)),
    ];
    tracing::info!(%http_addr, %mikey_addr, "BM-SC key management serving");
    Ok(RunningKeyManagement {
        http_addr,
        mikey_addr,
        distribution,
        stop,
        tasks,
    })
}

/// Every change of the key server goes to the registered UEs.
async fn push_changes(
    distribution: Arc<Distribution>,
    mut events: broadcast::Receiver<crate::runtime::key_service::proto::MskEvent>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            _ = stopped(&mut stop) => return,
            received = events.recv() => match received {
                Ok(event) => distribution.on_event(&event).await,
                Err(broadcast::error::RecvError::Lagged(missed)) => {
                    // UEs recover missed updates by MSK requests (seed §6.3.2.2.3).
                    tracing::warn!(missed, "MSK push fell behind the key server");
                }
                Err(broadcast::error::RecvError::Closed) => return,
            },
        }
    }
}

async fn receive_acks(
    distribution: Arc<Distribution>,
    socket: Arc<UdpSocket>,
    mut stop: watch::Receiver<bool>,
) {
    let mut buf = [0u8; RECV_BUFFER];
    loop {
        tokio::select! {
            _ = stopped(&mut stop) => return,
            received = socket.recv_from(&mut buf) => match received {
                Ok((len, from)) => distribution.on_datagram(from, &buf[..len]),
                Err(e) => {
                    tracing::debug!(error = %e, "MSK socket receive failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
        }
    }
}

/// Resolves once `stop` turns true (or its sender is gone).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|&s| s).await;
}
