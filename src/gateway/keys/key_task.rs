//! The key task of a session (tokio): drives the [`MtkSchedule`] for one Key
//! Group, draws MTKs under the current MSK, has their MIKEY MTK messages built
//! ahead of each switch and re-built with a fresh counter for re-sends, and
//! stops traffic (fail closed) when the MSK behind the active MTK is no longer
//! valid. What a key event means on the wire is the session's business: a
//! streaming session sends the message to UDP 2269 and re-keys its SRTP
//! context; a download session carousels the message as a FLUTE object and
//! protects new objects under the new MTK ([`KeyEvents`]).

use super::mtk_keys::{LeaseSource, MtkKeys};
use crate::protocol::keys::{Mki, Mtk};
use crate::protocol::mtk_schedule::{MtkAction, MtkSchedule};
use crate::runtime::key_service::MskSet;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::watch;

/// Whether a session may send, for readiness and logs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionState {
    Starting,
    OnAir {
        mki: Mki,
    },
    /// Fail closed: nothing is sent, and this says why.
    Halted {
        reason: String,
    },
}

/// What a session does with the key task's decisions. Each method returns
/// false when the session's data path is gone (the task then ends).
pub trait KeyEvents: Send {
    /// A new MTK, ahead of its switch.
    fn install(&mut self, mki: Mki, mtk: Mtk) -> bool;
    /// A MIKEY MTK message for `mki` (first announcement or re-send).
    fn announce(&mut self, mki: Mki, message: &[u8]) -> bool;
    /// From now on protect with `mki`.
    fn activate(&mut self, mki: Mki) -> bool;
    /// `mki` is no longer used for new traffic.
    fn retire(&mut self, mki: Mki) -> bool;
    /// The MSK is gone (the reason says how): forget every key and send
    /// nothing until a new MTK is active. Must not be dropped for a full queue.
    fn revoke_all(&mut self, reason: String) -> bool;
}

pub fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

pub struct KeyTask<L, E> {
    pub name: String,
    pub schedule: MtkSchedule,
    pub keys: MtkKeys<L>,
    pub msks: watch::Receiver<Arc<MskSet>>,
    pub events: E,
    pub state: Arc<watch::Sender<SessionState>>,
}

impl<L: LeaseSource, E: KeyEvents> KeyTask<L, E> {
    pub async fn run(mut self) {
        let mut message = Vec::with_capacity(256);
        loop {
            let now = Instant::now();
            let now_unix = unix_now();
            let msks = self.msks.borrow_and_update().clone();
            if !self.check_msk(&msks, now_unix) {
                return;
            }
            while let Some(action) = self.schedule.poll(now) {
                if !self.act(action, &msks, now, now_unix, &mut message).await {
                    return;
                }
            }
            let wake = self
                .schedule
                .poll_at()
                .map_or(Duration::from_millis(200), |at| {
                    at.saturating_duration_since(Instant::now())
                });
            tokio::select! {
                _ = tokio::time::sleep(wake.min(Duration::from_millis(200))) => {}
                changed = self.msks.changed() => if changed.is_err() { return },
            }
        }
    }

    /// Fail closed when the active MTK's MSK is gone; rotate early when it ends
    /// soon or a newer MSK has become current. False when the session is gone.
    fn check_msk(&mut self, msks: &MskSet, now_unix: i64) -> bool {
        let Some(active) = self.schedule.active() else {
            return true;
        };
        if !self.keys.usable(active, msks, now_unix) {
            let reason = format!(
                "MSK {:#010x} of Key Group {} is no longer valid",
                active.msk_id.0,
                self.keys.key_group()
            );
            tracing::error!(session = %self.name, %reason, "halting: nothing is sent without a valid MSK");
            for mki in self.schedule.revoke_all() {
                self.keys.forget(mki);
            }
            return self.events.revoke_all(reason);
        }
        let t = self.schedule.timing();
        let margin = (t.lead + t.resend).as_secs() as i64 + 1;
        let ends_soon = self
            .keys
            .msk_seconds_left(active, now_unix)
            .is_some_and(|left| left <= margin);
        let newer = msks
            .current_for(self.keys.key_group(), now_unix)
            .is_some_and(|m| m.msk_id != active.msk_id);
        if (ends_soon || newer) && self.schedule.pending().is_none() {
            self.schedule.request_rotation();
        }
        true
    }

    /// Performs one schedule action; false when the session is gone.
    async fn act(
        &mut self,
        action: MtkAction,
        msks: &MskSet,
        now: Instant,
        now_unix: i64,
        message: &mut Vec<u8>,
    ) -> bool {
        match action {
            MtkAction::Prepare { activate_at } => match self.keys.new_mtk(msks, now_unix).await {
                Ok((mki, mtk)) => {
                    self.schedule.prepared(mki, activate_at, now);
                    self.events.install(mki, mtk)
                }
                Err(e) => {
                    self.schedule.prepare_failed(now);
                    self.report_prepare_failure(&e.to_string());
                    true
                }
            },
            MtkAction::Announce(mki) => {
                message.clear();
                match self.keys.mtk_message(mki, msks, now_unix, message).await {
                    Ok(()) => self.events.announce(mki, message),
                    Err(e) => {
                        tracing::warn!(session = %self.name, error = %e, "MTK message not built");
                        true
                    }
                }
            }
            MtkAction::Activate(mki) => {
                tracing::info!(session = %self.name, msk_id = format_args!("{:#010x}", mki.msk_id.0), mtk_id = mki.mtk_id.0, "MTK switch");
                self.events.activate(mki)
            }
            MtkAction::Retire(mki) => {
                self.keys.forget(mki);
                self.events.retire(mki)
            }
        }
    }

    fn report_prepare_failure(&mut self, reason: &str) {
        let state = self.state.borrow().clone();
        match state {
            SessionState::Halted { reason: ref old } if old == reason => {}
            // At start the BM-SC snapshot may simply not be in yet.
            SessionState::Starting => {
                tracing::info!(session = %self.name, %reason, "waiting for a valid MSK; nothing is sent until then");
                self.state.send_replace(SessionState::Halted {
                    reason: reason.to_owned(),
                });
            }
            _ if self.schedule.active().is_none() => {
                tracing::error!(session = %self.name, %reason, "halting: no MTK can be drawn");
                self.state.send_replace(SessionState::Halted {
                    reason: reason.to_owned(),
                });
            }
            _ => {
                tracing::warn!(session = %self.name, error = %reason, "next MTK not ready; the current one stays")
            }
        }
    }
}
