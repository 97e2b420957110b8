//! `mbms-gateway run` as a service: start from a configuration file, serve the
//! admin endpoint, tell systemd when ready (sd_notify), reload on `SIGHUP` and
//! stop cleanly on `SIGTERM` / `SIGINT`.
//!
//! - `SIGHUP`: the file is read again. An invalid file, or one that changes
//!   process-wide settings, is refused: the running configuration stays, an
//!   error is logged and `config_reloads_total{result="refused"}` counts it.
//!   Otherwise sessions are added, removed and restarted by name
//!   ([`Gateway::reload`]); untouched sessions keep running.
//! - `SIGTERM`: ingest stops, egress queues drain, the process exits 0. The
//!   key journal is synced at every write, so it is already complete.

use super::config::GatewayConfig;
use super::supervisor::Gateway;
use super::telemetry::{GatewayTelemetry, watch_gateway};
use crate::runtime::admin::{AdminViews, Readiness, serve_admin};
use crate::runtime::metrics::{self, ReloadResult};
use crate::runtime::sd_notify::{Notifier, watchdog_interval};
use anyhow::{Context, Result};
use std::path::Path;
use std::time::Duration;
use tokio::signal::unix::{SignalKind, signal};

/// Runs the gateway described by the file at `config_path` until `SIGTERM` or
/// `SIGINT`.
pub async fn run_gateway(config_path: &Path) -> Result<()> {
    // Handlers first: a SIGHUP during start-up must not kill the process.
    let mut hangup = signal(SignalKind::hangup()).context("SIGHUP handler")?;
    let mut term = signal(SignalKind::terminate()).context("SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("SIGINT handler")?;
    let config = GatewayConfig::load(config_path)?;
    let metrics = metrics::install().context("metrics recorder")?;
    let notifier = Notifier::from_env().context("$NOTIFY_SOCKET")?;
    let views = AdminViews::new(metrics, Readiness::new());
    let mut gateway = Gateway::start(&config)?;
    if let Some(push) = gateway.start_ingest().await? {
        tracing::info!(%push, "HTTP push endpoint listening");
    }
    let telemetry = watch_gateway(&gateway, &views);
    let (stop_admin, admin_stopped) = tokio::sync::oneshot::channel::<()>();
    let admin = serve_admin(&config.admin, views, async move {
        let _ = admin_stopped.await;
    })
    .await?;
    tracing::info!(
        streaming = gateway.streaming.len(),
        download = gateway.download.len(),
        admin = %admin.local_addr(),
        "gateway running"
    );
    notify(&notifier, |n| n.ready(&status_line(&gateway)));
    let watchdog = watchdog_interval().filter(|_| notifier.is_some());
    // Without a watchdog the tick is disabled in the select below.
    let mut watchdog_tick = tokio::time::interval(watchdog.unwrap_or(Duration::from_secs(3600)));
    loop {
        tokio::select! {
            _ = hangup.recv() => {
                notify(&notifier, Notifier::reloading);
                let result = reload(&mut gateway, &telemetry, config_path).await;
                telemetry.gateway_metrics().reloaded(result);
                notify(&notifier, |n| n.ready(&status_line(&gateway)));
            }
            _ = term.recv() => {
                tracing::info!("SIGTERM: stopping");
                break;
            }
            _ = int.recv() => {
                tracing::info!("SIGINT: stopping");
                break;
            }
            _ = watchdog_tick.tick(), if watchdog.is_some() => {
                // A dead data-path thread is mended only by a restart: let
                // the watchdog fire.
                match gateway.data_path_liveness()() {
                    Ok(()) => notify(&notifier, Notifier::watchdog),
                    Err(e) => tracing::error!(error = %e, "data path broken; watchdog not fed"),
                }
            }
        }
    }
    notify(&notifier, Notifier::stopping);
    gateway.stop().await;
    let _ = stop_admin.send(());
    admin.join().await?;
    tracing::info!("gateway stopped");
    Ok(())
}

/// Sends a notification when running under systemd; a failure is logged, the
/// gateway goes on.
fn notify(notifier: &Option<Notifier>, send: impl FnOnce(&Notifier) -> std::io::Result<()>) {
    if let Some(n) = notifier
        && let Err(e) = send(n)
    {
        tracing::warn!(error = %e, "sd_notify failed");
    }
}

fn status_line(gateway: &Gateway) -> String {
    format!(
        "{} streaming and {} download session(s)",
        gateway.streaming.len(),
        gateway.download.len()
    )
}

/// One `SIGHUP`: reads the file again and applies it, or keeps the running
/// configuration when it is refused.
async fn reload(
    gateway: &mut Gateway,
    telemetry: &GatewayTelemetry,
    config_path: &Path,
) -> ReloadResult {
    tracing::info!(config = %config_path.display(), "SIGHUP: reloading the configuration");
    let new = match GatewayConfig::load(config_path) {
        Ok(new) => new,
        Err(e) => {
            tracing::error!(error = %format!("{e:#}"), "configuration reload refused; the running configuration stays");
            return ReloadResult::Refused;
        }
    };
    let report = match gateway.reload(new).await {
        Ok(report) => report,
        Err(e) => {
            tracing::error!(error = %e, "configuration reload refused; the running configuration stays");
            return ReloadResult::Refused;
        }
    };
    telemetry.sync(gateway);
    tracing::info!(
        started = ?report.started,
        stopped = ?report.stopped,
        restarted = ?report.restarted,
        unchanged = report.unchanged,
        failed = ?report.failed.iter().map(|(name, _)| name).collect::<Vec<_>>(),
        "configuration reloaded"
    );
    if report.failed.is_empty() {
        ReloadResult::Applied
    } else {
        ReloadResult::Partial
    }
}
