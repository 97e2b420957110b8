//! `mbms-gateway send`: one-shot delivery of files over one download session
//! of a gateway configuration. The session runs exactly as under `run`
//! (same keys, journal, carousel and pacing); once every file has had all
//! its transmissions the session is closed on the wire and the command ends.

use super::ingest::{IngestedObject, ObjectOrigin, content_type};
use crate::gateway::Gateway;
use crate::gateway::config::GatewayConfig;
use crate::gateway::keys::key_task::SessionState;
use crate::protocol::flute::content_location::content_location_from_segments;
use anyhow::{Context, Result, bail};
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::time::Duration;

/// Where a one-shot send stands.
#[derive(Debug, Clone, Copy, Default)]
pub struct SendProgress {
    pub files: u64,
    /// Files protected and in the carousel or done.
    pub protected: u64,
    /// Files whose transmissions are all done.
    pub sent: u64,
    pub refused: u64,
    pub alc_bytes: u64,
}

/// Sends `paths` over the download session `session` (the only one when
/// `None`), calling `progress` as it goes. Fails when any file was refused.
pub async fn send_files(
    config: &GatewayConfig,
    session: Option<&str>,
    paths: &[PathBuf],
    on_air_timeout: Duration,
    mut progress: impl FnMut(SendProgress),
) -> Result<SendProgress> {
    let chosen = match session {
        Some(name) => config
            .download
            .iter()
            .find(|d| d.name == name)
            .with_context(|| format!("no download session named {name:?}"))?,
        None => match config.download.as_slice() {
            [only] => only,
            [] => bail!("the configuration has no download session"),
            _ => bail!("the configuration has several download sessions: name one with --session"),
        },
    };
    let mut objects = Vec::new();
    for path in paths {
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .with_context(|| format!("{}: no UTF-8 file name", path.display()))?;
        let location = content_location_from_segments([name])
            .with_context(|| format!("{}: not usable as a Content-Location", path.display()))?;
        objects.push(IngestedObject {
            content_location: location,
            content_type: content_type::guess(name).map(str::to_owned),
            path: path.clone(),
            origin: ObjectOrigin::Send,
            spooled: false,
        });
    }
    let mut one = config.clone();
    one.streaming.clear();
    one.download = vec![chosen.clone()];
    one.download[0].watch = None;
    one.push = None;
    one.bmsc.key_groups = vec![chosen.key_group];
    let gateway = Gateway::start(&one)?;
    let handle = &gateway.download[0];
    let mut state = handle.state.clone();
    let on_air = tokio::time::timeout(
        on_air_timeout,
        state.wait_for(|s| matches!(s, SessionState::OnAir { .. })),
    )
    .await;
    if !matches!(on_air, Ok(Ok(_))) {
        let why = match &*handle.state.borrow() {
            SessionState::Halted { reason } => reason.clone(),
            _ => "no MTK yet".to_owned(),
        };
        gateway.stop().await;
        bail!(
            "session {} did not go on air within {on_air_timeout:?}: {why}",
            chosen.name
        );
    }
    let queue = handle.queue();
    let files = objects.len() as u64;
    for object in objects {
        queue.send(object).await.context("the session stopped")?;
    }
    let snapshot = || {
        let s = &handle.stats;
        let t = &handle.sender_stats;
        SendProgress {
            files,
            protected: s.objects_protected.load(Ordering::Relaxed),
            sent: t.objects_completed.load(Ordering::Relaxed),
            refused: s
                .rejected
                .iter()
                .map(|r| r.load(Ordering::Relaxed))
                .sum::<u64>()
                + t.send_failures.load(Ordering::Relaxed)
                + t.objects_revoked.load(Ordering::Relaxed),
            alc_bytes: t.alc_bytes.load(Ordering::Relaxed),
        }
    };
    loop {
        let now = snapshot();
        progress(now);
        if now.sent + now.refused >= files {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let last = snapshot();
    gateway.stop().await;
    if last.refused > 0 {
        bail!(
            "{} of {files} file(s) refused (see the log for why)",
            last.refused
        );
    }
    Ok(last)
}
