//! Connects a running gateway to metrics and readiness. The data path counts in
//! plain atomics; a scrape hook copies them into the exporter, so a scrape costs
//! the data path nothing. Readiness (design §3): every session on air with a
//! valid MSK, every egress thread alive, the BM-SC reachable.

use super::admin::Readiness;
use super::bmsc::ConnectionState;
use super::config::GatewayConfig;
use super::gateway::Gateway;
use super::metrics::{
    BmscMetrics, EgressMetrics, InputMetrics, Metrics, ScrapeHook, SessionMetrics,
};
use super::streaming::SessionState;
use std::sync::atomic::Ordering;

/// Registers the gateway's metrics and readiness checks; metrics stay current
/// while the returned hook lives.
pub fn watch_gateway(
    gateway: &Gateway,
    config: &GatewayConfig,
    metrics: &Metrics,
    readiness: &Readiness,
) -> ScrapeHook {
    let mut sessions = Vec::new();
    for (handle, session) in gateway.streaming.iter().zip(&config.streaming) {
        let inputs: Vec<InputMetrics> = session
            .flows
            .iter()
            .enumerate()
            .map(|(i, f)| InputMetrics::new(&session.name, &f.label(i)))
            .collect();
        sessions.push((
            SessionMetrics::new(&session.name),
            inputs,
            EgressMetrics::new(&session.name),
            handle.stats.clone(),
            handle.egress_stats.clone(),
        ));
        session_readiness(readiness, &session.name, handle.state.clone());
    }
    let mut downloads = Vec::new();
    for (handle, session) in gateway.download.iter().zip(&config.download) {
        downloads.push((
            SessionMetrics::new(&session.name),
            EgressMetrics::new(&session.name),
            handle.stats.clone(),
            handle.sender_stats.clone(),
            handle.egress_stats.clone(),
        ));
        session_readiness(readiness, &session.name, handle.state.clone());
    }
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
    let egress_alive = gateway.egress_liveness();
    readiness.probe("egress threads", move || {
        if egress_alive() {
            Ok(())
        } else {
            Err("an egress sender thread stopped".into())
        }
    });

    let bmsc = BmscMetrics::new();
    let status = gateway.client.status();
    metrics.on_scrape(move || {
        bmsc.observe(&status.borrow());
        for (session, inputs, egress, stats, egress_stats) in &sessions {
            session.observe_streaming(stats);
            for (i, input) in inputs.iter().enumerate() {
                input.observe(
                    stats.ingest_packets[i].load(Ordering::Relaxed),
                    stats.ingest_bytes[i].load(Ordering::Relaxed),
                );
            }
            egress.observe(egress_stats);
        }
        for (session, egress, stats, sender, egress_stats) in &downloads {
            session.observe_download(stats, sender);
            egress.observe(egress_stats);
        }
    })
}

/// Ready while the session is on air; otherwise the reason it is not.
fn session_readiness(
    readiness: &Readiness,
    name: &str,
    state: tokio::sync::watch::Receiver<SessionState>,
) {
    readiness.probe(format!("session {name}"), move || match &*state.borrow() {
        SessionState::OnAir { .. } => Ok(()),
        SessionState::Starting => Err("starting: no MTK yet".into()),
        SessionState::Halted { reason } => Err(reason.clone()),
    });
}
