//! When to create, announce, switch to and forget MTKs (TS 33.246 §6.3.3.2).
//!
//! A session protects with one *active* MTK. A *pending* MTK is created and its
//! MIKEY message sent at least `lead` before it becomes active, so receivers hold
//! it before the first packet under it arrives (§6.3.3.2.2 "may be sent before
//! the RTP traffic changes over"). The MIKEY messages of the active and the
//! pending MTK are re-sent every `resend` interval so late joiners catch up
//! (reliability by periodic re-sending). After a switch the previous MTK is kept
//! for `retire_after` so packets still in flight can be matched, then dropped.
//!
//! Sans-IO: the caller polls with `now` and performs the actions; the schedule
//! never creates keys itself. MTKs are named by their [`Mki`] (MSK ID ‖ MTK ID),
//! which is unique for the session.

use super::keys::Mki;
use std::time::{Duration, Instant};

/// Timing of the MTK lifecycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MtkTiming {
    /// How long one MTK stays active.
    pub period: Duration,
    /// Also switch after this many packets (or objects) under one MTK.
    pub max_packets: Option<u64>,
    /// The next MTK's message goes out at least this long before the switch.
    pub lead: Duration,
    /// Re-send interval of the MIKEY messages on air.
    pub resend: Duration,
    /// How long a replaced MTK is kept after the switch.
    pub retire_after: Duration,
    /// Wait before asking again when an MTK could not be created.
    pub retry: Duration,
}

/// What the caller must do now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MtkAction {
    /// Create an MTK (allocate an MTK ID, draw a key) that becomes active at
    /// `activate_at`, then call [`MtkSchedule::prepared`] or
    /// [`MtkSchedule::prepare_failed`].
    Prepare { activate_at: Instant },
    /// Send a MIKEY MTK message for this MTK, with a fresh counter.
    Announce(Mki),
    /// Protect from now on with this MTK.
    Activate(Mki),
    /// Drop this MTK: nothing more is protected or matched with it.
    Retire(Mki),
}

#[derive(Debug, Clone)]
pub struct MtkSchedule {
    timing: MtkTiming,
    active: Option<(Mki, Instant)>,
    pending: Option<(Mki, Instant)>,
    retiring: Option<(Mki, Instant)>,
    /// `Some(t)`: a Prepare was handed out; no new one before an answer.
    /// After a failure, `retry_at` holds when to ask again.
    awaiting_prepare: bool,
    retry_at: Option<Instant>,
    announce_queue: [Option<Mki>; 2],
    /// When the queued announcements became due.
    announce_at: Option<Instant>,
    next_resend: Option<Instant>,
    packets: u64,
    rotation_requested: bool,
}

impl MtkSchedule {
    pub fn new(timing: MtkTiming) -> Self {
        Self {
            timing,
            active: None,
            pending: None,
            retiring: None,
            awaiting_prepare: false,
            retry_at: None,
            announce_queue: [None; 2],
            announce_at: None,
            next_resend: None,
            packets: 0,
            rotation_requested: false,
        }
    }

    pub fn timing(&self) -> &MtkTiming {
        &self.timing
    }

    /// The MTK currently protecting traffic.
    pub fn active(&self) -> Option<Mki> {
        self.active.map(|(mki, _)| mki)
    }

    /// The MTK announced for the next switch.
    pub fn pending(&self) -> Option<Mki> {
        self.pending.map(|(mki, _)| mki)
    }

    /// Counts packets (or objects) protected under the active MTK.
    pub fn on_protected(&mut self, n: u64) {
        self.packets = self.packets.saturating_add(n);
    }

    /// The MTK asked for by the last `Prepare` exists now; its message is due
    /// at once.
    pub fn prepared(&mut self, mki: Mki, activate_at: Instant, now: Instant) {
        self.awaiting_prepare = false;
        self.retry_at = None;
        self.rotation_requested = false;
        self.pending = Some((mki, activate_at));
        self.queue_announce(mki);
        self.announce_at.get_or_insert(now);
    }

    /// The MTK could not be created (no valid MSK, MTK IDs used up): ask again
    /// after `retry`. The active MTK, if any, stays as it is; whether it may still
    /// be used is the key manager's decision (fail closed on an invalid MSK).
    pub fn prepare_failed(&mut self, now: Instant) {
        self.awaiting_prepare = false;
        self.retry_at = Some(now + self.timing.retry);
    }

    /// Starts a switch to a new MTK as soon as possible (the MSK of the active
    /// MTK ends soon, or a newer MSK became current), still announced `lead`
    /// ahead. No effect while a new MTK is already pending.
    pub fn request_rotation(&mut self) {
        self.rotation_requested = true;
    }

    /// Forgets every MTK (the MSK behind them became invalid): traffic must
    /// stop until a new MTK is prepared and active.
    pub fn revoke_all(&mut self) -> impl Iterator<Item = Mki> + use<> {
        let gone = [
            self.active.take().map(|(mki, _)| mki),
            self.pending.take().map(|(mki, _)| mki),
            self.retiring.take().map(|(mki, _)| mki),
        ];
        self.announce_queue = [None; 2];
        self.announce_at = None;
        self.next_resend = None;
        self.packets = 0;
        gone.into_iter().flatten()
    }

    /// Next action due at `now`, if any. Call until it returns `None`.
    pub fn poll(&mut self, now: Instant) -> Option<MtkAction> {
        if let Some(mki) = self.pop_announce() {
            return Some(MtkAction::Announce(mki));
        }
        if let Some((mki, at)) = self.pending
            && now >= at
        {
            // A key still waiting for its retirement (a retire delay as long
            // as the period, an early switch) goes first: after this switch
            // it would be two switches old, and with one slot for it, it
            // would otherwise never be retired and fill the SRTP key ring.
            if let Some((older, _)) = self.retiring.take() {
                return Some(MtkAction::Retire(older));
            }
            self.pending = None;
            if let Some((old, _)) = self.active.replace((mki, now)) {
                self.retiring = Some((old, now + self.timing.retire_after));
            }
            self.packets = 0;
            self.next_resend.get_or_insert(now + self.timing.resend);
            return Some(MtkAction::Activate(mki));
        }
        if let Some((mki, at)) = self.retiring
            && now >= at
        {
            self.retiring = None;
            return Some(MtkAction::Retire(mki));
        }
        if let Some(at) = self.next_resend
            && now >= at
        {
            self.next_resend = Some(now + self.timing.resend);
            if let Some((mki, _)) = self.pending {
                self.queue_announce(mki);
                self.announce_at.get_or_insert(now);
            }
            if let Some((mki, _)) = self.active {
                return Some(MtkAction::Announce(mki));
            }
            return self.pop_announce().map(MtkAction::Announce);
        }
        if let Some(activate_at) = self.prepare_due(now) {
            self.awaiting_prepare = true;
            return Some(MtkAction::Prepare { activate_at });
        }
        None
    }

    /// The earliest instant at which [`poll`](Self::poll) may have something to
    /// do, for the caller's timer. `None` when only an outside event
    /// (`prepared`, `on_protected`) can make progress.
    pub fn poll_at(&self) -> Option<Instant> {
        [
            self.announce_at,
            self.pending.map(|(_, t)| t),
            self.retiring.map(|(_, t)| t),
            self.next_resend,
            self.prepare_at(),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    fn prepare_at(&self) -> Option<Instant> {
        if self.awaiting_prepare || self.pending.is_some() {
            return None;
        }
        if let Some(at) = self.retry_at {
            return Some(at);
        }
        // With no active MTK the next one is due at once (see `prepare_due`).
        self.active.map(|(_, since)| {
            (since + self.timing.period)
                .checked_sub(self.timing.lead)
                .unwrap_or(since)
        })
    }

    fn prepare_due(&self, now: Instant) -> Option<Instant> {
        if self.awaiting_prepare || self.pending.is_some() {
            return None;
        }
        if let Some(at) = self.retry_at
            && now < at
        {
            return None;
        }
        let Some((_, since)) = self.active else {
            return Some(now);
        };
        let by_time = since + self.timing.period;
        let by_count = self
            .timing
            .max_packets
            .is_some_and(|max| self.packets >= max);
        if by_count || self.rotation_requested {
            return Some(now + self.timing.lead);
        }
        (now + self.timing.lead >= by_time).then(|| by_time.max(now + self.timing.lead))
    }

    fn queue_announce(&mut self, mki: Mki) {
        if self.announce_queue.contains(&Some(mki)) {
            return;
        }
        if let Some(slot) = self.announce_queue.iter_mut().find(|s| s.is_none()) {
            *slot = Some(mki);
        }
    }

    fn pop_announce(&mut self) -> Option<Mki> {
        let first = self.announce_queue[0].take();
        self.announce_queue[0] = self.announce_queue[1].take();
        if self.announce_queue[0].is_none() {
            self.announce_at = None;
        }
        first
    }
}
