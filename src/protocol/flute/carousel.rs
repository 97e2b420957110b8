//! The sender state machine of one FLUTE download session (RFC 3926 §3, as
//! profiled by TS 26.346 §7): which FDT Instance and which object go next.
//!
//! Rules receivers in the field depend on (engineering notes, "Receivers in
//! the field"):
//! - Every FDT Instance lists every object still in the carousel, so a late
//!   joiner learns all of them (DASH manifest and init segment included) from
//!   any one instance; an empty FDT is never sent.
//! - A new FDT-Instance ID (20 bits, wrapping, RFC 3926 §3.4.1) whenever the
//!   content or the `Expires` changes; an ID is never re-sent with anything
//!   else than what it was first sent with.
//! - The FDT is re-sent at the start of every carousel pass and at least
//!   every `fdt_interval`, and gets a fresh `Expires` (hence a new ID) once
//!   half its lifetime is gone, so the instance on air never expires.
//! - A MIKEY MTK object (TS 33.246 §6.3.3.2.1) stays on air while any object
//!   whose `Decryption-KEY-URI` names it is in the carousel, is sent first in
//!   every pass and before the first transmission of an object it protects.
//! - No close-session packet before the first FDT.
//!
//! Sans-IO: the caller polls with `now` (and the wall clock as NTP seconds
//! for `Expires`), renders FDTs with its template, packetizes objects, and
//! paces the packets.

use std::collections::{BTreeMap, VecDeque};
use std::num::NonZeroU32;
use std::time::{Duration, Instant};

use thiserror::Error;

use super::fdt::{FdtFecOti, FdtFile, FdtInstance};
use super::toi::{DEFAULT_MAX_TOI, ToiAllocator};

/// FDT-Instance IDs are 20 bits in EXT_FDT (RFC 3926 §3.4.1).
pub const FDT_INSTANCE_ID_MODULUS: u32 = 1 << 20;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CarouselConfig {
    /// Longest time between two sends of the FDT.
    pub fdt_interval: Duration,
    /// `Expires` = wall clock + this many seconds. Must be more than twice
    /// `fdt_interval` (plus a second of NTP rounding) so a refreshed instance
    /// is on air before the previous one expires.
    pub fdt_lifetime_s: u32,
    /// Largest TOI before wrapping to 1 (see [`DEFAULT_MAX_TOI`]).
    pub max_toi: u128,
    /// ID of the first FDT Instance (e.g. continued after a restart).
    pub first_fdt_instance_id: u32,
}

impl Default for CarouselConfig {
    fn default() -> Self {
        Self {
            fdt_interval: Duration::from_secs(1),
            fdt_lifetime_s: 60,
            max_toi: DEFAULT_MAX_TOI,
            first_fdt_instance_id: 0,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum CarouselError {
    #[error(
        "FDT lifetime of {lifetime_s} s must exceed twice the FDT interval of {interval:?} plus 1 s"
    )]
    LifetimeTooShort { lifetime_s: u32, interval: Duration },
    #[error("FDT interval must be more than zero")]
    ZeroFdtInterval,
    #[error("first FDT-Instance ID {0} does not fit in 20 bits")]
    InstanceIdTooWide(u32),
    #[error("all {max} TOIs are in use; cannot add {content_location:?}")]
    ToisExhausted { max: u128, content_location: String },
    #[error(
        "{content_location:?}: Decryption-KEY-URI {key_uri:?} names no MIKEY object in the carousel"
    )]
    UnknownKeyObject {
        content_location: String,
        key_uri: String,
    },
    #[error("{0:?}: a MIKEY object cannot itself be protected (Decryption-KEY-URI set)")]
    ProtectedKeyObject(String),
    #[error(
        "{0:?}: replacing this MIKEY object by a non-MIKEY one strands the objects it protects"
    )]
    KeyObjectInUse(String),
    #[error("TOI {0} is not in the carousel")]
    UnknownToi(u128),
    #[error("the session is closed")]
    Closed,
}

/// How long an object stays in the carousel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ObjectLifetime {
    /// Sent this many times, then removed.
    Repetitions(NonZeroU32),
    /// Sent in every pass until this instant.
    Until(Instant),
    /// Sent in every pass until [`Carousel::remove`].
    UntilRemoved,
}

/// An object to carousel, with what its FDT entry says about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CarouselObject {
    pub content_location: String,
    pub content_type: Option<String>,
    /// Bytes as sent (after content encoding or DCF protection).
    pub transfer_length: u64,
    pub content_length: Option<u64>,
    pub content_md5: Option<[u8; 16]>,
    pub fec_oti: Option<FdtFecOti>,
    /// Content-Location of the MIKEY object holding the key of this object.
    pub decryption_key_uri: Option<String>,
    /// This object is a MIKEY MTK message.
    pub is_mikey: bool,
    pub lifetime: ObjectLifetime,
}

impl CarouselObject {
    fn fdt_file(&self, toi: u128) -> FdtFile {
        FdtFile {
            content_location: self.content_location.clone(),
            toi,
            content_length: self.content_length,
            transfer_length: Some(self.transfer_length),
            content_type: self.content_type.clone(),
            content_md5: self.content_md5,
            fec_oti: self.fec_oti.clone(),
            decryption_key_uri: self.decryption_key_uri.clone(),
        }
    }
}

/// What the caller must do now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CarouselAction<'a> {
    /// Render `fdt` and send it as TOI 0 with EXT_FDT carrying `instance_id`.
    /// Re-sends of one ID carry the same instance: the rendering can be cached
    /// by ID.
    SendFdt {
        instance_id: u32,
        fdt: &'a FdtInstance,
    },
    /// Send one transmission of the object with this TOI (e.g. one pass over
    /// its source symbols).
    SendObject { toi: u128 },
    /// The object left the carousel; its data may be dropped. Comes at a
    /// later poll than its last `SendObject`.
    Forget { toi: u128 },
    /// Send the close-session packet (A flag); nothing follows.
    CloseSession,
}

/// Order within a pass: MIKEY objects first, then the others as added.
type PassKey = (Rank, u64);

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Rank {
    Mikey,
    Other,
}

#[derive(Debug, Clone)]
struct Entry {
    object: CarouselObject,
    toi: u128,
    file: FdtFile,
    /// Transmissions left under `Repetitions`.
    repetitions_left: Option<u32>,
    /// The object's own lifetime is over; a MIKEY object may stay on for the
    /// objects it protects.
    lifetime_over: bool,
    sent: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CloseState {
    Open,
    Requested,
    Closed,
}

#[derive(Debug, Clone)]
pub struct Carousel {
    config: CarouselConfig,
    tois: ToiAllocator,
    objects: BTreeMap<PassKey, Entry>,
    next_seq: u64,
    /// Last object sent in the current pass; `None` at a pass start.
    cursor: Option<PassKey>,
    fdt: FdtInstance,
    fdt_id: u32,
    /// `fdt_id` has been sent: a content or Expires change needs a new ID.
    fdt_id_sent: bool,
    /// The carousel changed since `fdt` was built.
    content_changed: bool,
    /// The FDT opens the next pass.
    pass_start: bool,
    next_fdt_at: Option<Instant>,
    ever_sent_fdt: bool,
    forgotten: VecDeque<u128>,
    close: CloseState,
    last_poll: Instant,
    /// Earliest `Until` not yet reached: no scan for ended lifetimes before.
    next_until: Option<Instant>,
}

impl Carousel {
    pub fn new(config: CarouselConfig, now: Instant) -> Result<Self, CarouselError> {
        if config.fdt_interval.is_zero() {
            return Err(CarouselError::ZeroFdtInterval);
        }
        let needed = config.fdt_interval.saturating_mul(2) + Duration::from_secs(1);
        if Duration::from_secs(u64::from(config.fdt_lifetime_s)) <= needed {
            return Err(CarouselError::LifetimeTooShort {
                lifetime_s: config.fdt_lifetime_s,
                interval: config.fdt_interval,
            });
        }
        if config.first_fdt_instance_id >= FDT_INSTANCE_ID_MODULUS {
            return Err(CarouselError::InstanceIdTooWide(
                config.first_fdt_instance_id,
            ));
        }
        Ok(Self {
            tois: ToiAllocator::new(config.max_toi),
            fdt_id: config.first_fdt_instance_id,
            config,
            objects: BTreeMap::new(),
            next_seq: 0,
            cursor: None,
            fdt: FdtInstance {
                full_fdt: true,
                ..FdtInstance::default()
            },
            fdt_id_sent: false,
            content_changed: false,
            pass_start: true,
            next_fdt_at: None,
            ever_sent_fdt: false,
            forgotten: VecDeque::new(),
            close: CloseState::Open,
            last_poll: now,
            next_until: None,
        })
    }

    pub fn config(&self) -> &CarouselConfig {
        &self.config
    }

    /// Objects in the carousel (MIKEY objects included).
    pub fn len(&self) -> usize {
        self.objects.len()
    }

    pub fn is_empty(&self) -> bool {
        self.objects.is_empty()
    }

    /// TOIs in the carousel, in pass order.
    pub fn tois(&self) -> impl Iterator<Item = u128> + '_ {
        self.objects.values().map(|e| e.toi)
    }

    /// The object with this TOI.
    pub fn object(&self, toi: u128) -> Option<&CarouselObject> {
        self.objects
            .values()
            .find(|e| e.toi == toi)
            .map(|e| &e.object)
    }

    /// The ID the next FDT send carries if nothing changes before it.
    pub fn fdt_instance_id(&self) -> u32 {
        self.fdt_id
    }

    /// Adds an object and returns its TOI. An object with the Content-Location
    /// of one in the carousel replaces it (a new version of a manifest): the
    /// old TOI is forgotten and the next FDT lists only the new one.
    pub fn add(&mut self, object: CarouselObject) -> Result<u128, CarouselError> {
        if self.close != CloseState::Open {
            return Err(CarouselError::Closed);
        }
        if object.is_mikey && object.decryption_key_uri.is_some() {
            return Err(CarouselError::ProtectedKeyObject(object.content_location));
        }
        if let Some(key_uri) = &object.decryption_key_uri
            && self.key_object(key_uri).is_none()
        {
            return Err(CarouselError::UnknownKeyObject {
                content_location: object.content_location.clone(),
                key_uri: key_uri.clone(),
            });
        }
        let replaced = self.find_location(&object.content_location);
        let names_itself =
            object.decryption_key_uri.as_deref() == Some(object.content_location.as_str());
        if let Some(old) = replaced
            && self.objects[&old].object.is_mikey
            && !object.is_mikey
            && (names_itself || self.is_referenced(&object.content_location))
        {
            return Err(CarouselError::KeyObjectInUse(object.content_location));
        }
        let Some(toi) = self.tois.allocate() else {
            return Err(CarouselError::ToisExhausted {
                max: self.tois.max(),
                content_location: object.content_location,
            });
        };
        if let Some(old) = replaced {
            self.discard(old);
        }
        let rank = if object.is_mikey {
            Rank::Mikey
        } else {
            Rank::Other
        };
        let key = (rank, self.next_seq);
        self.next_seq += 1;
        let repetitions_left = match object.lifetime {
            ObjectLifetime::Repetitions(n) => Some(n.get()),
            ObjectLifetime::Until(until) => {
                self.next_until = Some(self.next_until.map_or(until, |t| t.min(until)));
                None
            }
            ObjectLifetime::UntilRemoved => None,
        };
        self.objects.insert(
            key,
            Entry {
                file: object.fdt_file(toi),
                object,
                toi,
                repetitions_left,
                lifetime_over: false,
                sent: 0,
            },
        );
        self.content_changed = true;
        Ok(toi)
    }

    /// Ends the object's own lifetime now. A MIKEY object still named by a
    /// protected object stays on until the last of those leaves.
    pub fn remove(&mut self, toi: u128) -> Result<(), CarouselError> {
        let key = self.find_toi(toi).ok_or(CarouselError::UnknownToi(toi))?;
        if let Some(entry) = self.objects.get_mut(&key) {
            entry.lifetime_over = true;
        }
        self.retire(key);
        Ok(())
    }

    /// Ends the session: the next poll returns `CloseSession` if an FDT was
    /// ever sent (a close before any FDT locks up some receivers), then
    /// nothing more.
    pub fn close(&mut self) {
        if self.close == CloseState::Open {
            self.close = CloseState::Requested;
        }
    }

    /// The next action at `now`; `now_ntp` is the wall clock in NTP seconds,
    /// for `Expires`. Call until it returns `None`.
    pub fn poll(&mut self, now: Instant, now_ntp: u32) -> Option<CarouselAction<'_>> {
        self.last_poll = self.last_poll.max(now);
        self.end_lifetimes(now);
        if let Some(toi) = self.forgotten.pop_front() {
            // Only now may the TOI name another object: the caller knows
            // this one is gone.
            self.tois.release(toi);
            return Some(CarouselAction::Forget { toi });
        }
        match self.close {
            CloseState::Open => {}
            CloseState::Requested => {
                self.close = CloseState::Closed;
                return self.ever_sent_fdt.then_some(CarouselAction::CloseSession);
            }
            CloseState::Closed => return None,
        }
        if self.objects.is_empty() {
            return None;
        }
        if self.fdt_due(now) {
            return Some(self.send_fdt(now, now_ntp));
        }
        let next = match self.cursor {
            Some((rank, seq)) => self.objects.range((rank, seq + 1)..).next(),
            None => self.objects.iter().next(),
        }
        .map(|(k, e)| (*k, e));
        let Some((key, entry)) = next else {
            // The pass is over: the FDT opens the next one.
            self.cursor = None;
            self.pass_start = true;
            return Some(self.send_fdt(now, now_ntp));
        };
        // A protected object's first transmission waits for its key object.
        let key_first = (entry.sent == 0)
            .then_some(entry.object.decryption_key_uri.as_deref())
            .flatten()
            .and_then(|uri| self.key_object(uri))
            .filter(|k| self.objects[k].sent == 0);
        let send = match key_first {
            Some(k) => k,
            None => {
                self.cursor = Some(key);
                key
            }
        };
        let toi = self.objects[&send].toi;
        self.count_transmission(send);
        Some(CarouselAction::SendObject { toi })
    }

    /// Only the FDT, if it is due at `now`: for a caller in the middle of a
    /// long object that interleaves FDTs at [`next_fdt_at`](Self::next_fdt_at).
    pub fn poll_fdt(&mut self, now: Instant, now_ntp: u32) -> Option<CarouselAction<'_>> {
        self.last_poll = self.last_poll.max(now);
        self.end_lifetimes(now);
        if self.close != CloseState::Open || self.objects.is_empty() || !self.fdt_due(now) {
            return None;
        }
        Some(self.send_fdt(now, now_ntp))
    }

    /// When the FDT must go out again at the latest.
    pub fn next_fdt_at(&self) -> Option<Instant> {
        if self.objects.is_empty() || self.close != CloseState::Open {
            return None;
        }
        Some(if self.content_changed || !self.ever_sent_fdt {
            self.last_poll
        } else {
            self.next_fdt_at.unwrap_or(self.last_poll)
        })
    }

    /// When to poll next: at once (the last poll's instant) while anything
    /// is to be sent (a non-empty carousel always has its next object), else
    /// `None` until [`add`](Self::add) or [`close`](Self::close).
    pub fn poll_at(&self) -> Option<Instant> {
        let busy = !self.forgotten.is_empty()
            || self.close == CloseState::Requested
            || (self.close == CloseState::Open && !self.objects.is_empty());
        busy.then_some(self.last_poll)
    }

    fn fdt_due(&self, now: Instant) -> bool {
        self.content_changed
            || !self.ever_sent_fdt
            || self.pass_start
            || self.next_fdt_at.is_none_or(|at| now >= at)
    }

    fn send_fdt(&mut self, now: Instant, now_ntp: u32) -> CarouselAction<'_> {
        let lifetime = self.config.fdt_lifetime_s;
        if self.content_changed {
            self.content_changed = false;
            let files: Vec<FdtFile> = self.objects.values().map(|e| e.file.clone()).collect();
            if files != self.fdt.files {
                self.fdt.files = files;
                self.new_instance(now_ntp);
            }
        }
        // Refresh once half the lifetime is gone; the interval is shorter
        // than that, so the instance on air never expires.
        let remaining = self.fdt.expires.wrapping_sub(now_ntp) as i32;
        if !self.fdt_id_sent || remaining <= (lifetime / 2) as i32 {
            self.new_instance(now_ntp);
        }
        self.fdt_id_sent = true;
        self.ever_sent_fdt = true;
        self.pass_start = false;
        self.next_fdt_at = Some(now + self.config.fdt_interval);
        CarouselAction::SendFdt {
            instance_id: self.fdt_id,
            fdt: &self.fdt,
        }
    }

    /// A new ID (unless the current one was never sent) and a new Expires.
    fn new_instance(&mut self, now_ntp: u32) {
        if self.fdt_id_sent {
            self.fdt_id = (self.fdt_id + 1) % FDT_INSTANCE_ID_MODULUS;
            self.fdt_id_sent = false;
        }
        self.fdt.expires = now_ntp.wrapping_add(self.config.fdt_lifetime_s);
    }

    /// Counts one transmission and ends the lifetime after the last one.
    fn count_transmission(&mut self, key: PassKey) {
        let Some(entry) = self.objects.get_mut(&key) else {
            return;
        };
        entry.sent += 1;
        if let Some(left) = entry.repetitions_left.as_mut() {
            *left = left.saturating_sub(1);
            if *left == 0 {
                entry.lifetime_over = true;
                self.retire(key);
            }
        }
    }

    /// Removes an object whose lifetime is over (a MIKEY object only once no
    /// object names it), then its key object if that was only waiting for it.
    fn retire(&mut self, key: PassKey) {
        let Some(entry) = self.objects.get(&key) else {
            return;
        };
        if entry.object.is_mikey {
            if !self.is_referenced(&entry.object.content_location) {
                self.discard(key);
            }
            return;
        }
        let key_uri = entry.object.decryption_key_uri.clone();
        self.discard(key);
        if let Some(uri) = key_uri
            && let Some(k) = self.key_object(&uri)
            && self.objects[&k].lifetime_over
        {
            self.retire(k);
        }
    }

    fn end_lifetimes(&mut self, now: Instant) {
        if self.next_until.is_none_or(|t| now < t) {
            return;
        }
        self.next_until = None;
        for entry in self.objects.values_mut() {
            if let ObjectLifetime::Until(until) = entry.object.lifetime
                && !entry.lifetime_over
            {
                if now >= until {
                    entry.lifetime_over = true;
                } else {
                    self.next_until = Some(self.next_until.map_or(until, |t| t.min(until)));
                }
            }
        }
        self.sweep();
    }

    /// Removes every object whose lifetime is over, then every MIKEY object
    /// whose lifetime is over and that no remaining object names.
    fn sweep(&mut self) {
        let done: Vec<PassKey> = self
            .objects
            .iter()
            .filter(|(_, e)| e.lifetime_over && !e.object.is_mikey)
            .map(|(k, _)| *k)
            .collect();
        for key in done {
            self.discard(key);
        }
        let keys_done: Vec<PassKey> = self
            .objects
            .iter()
            .filter(|(_, e)| {
                e.lifetime_over
                    && e.object.is_mikey
                    && !self.is_referenced(&e.object.content_location)
            })
            .map(|(k, _)| *k)
            .collect();
        for key in keys_done {
            self.discard(key);
        }
    }

    fn discard(&mut self, key: PassKey) {
        if let Some(entry) = self.objects.remove(&key) {
            self.forgotten.push_back(entry.toi);
            self.content_changed = true;
        }
    }

    fn is_referenced(&self, key_uri: &str) -> bool {
        self.objects
            .values()
            .any(|e| e.object.decryption_key_uri.as_deref() == Some(key_uri))
    }

    fn key_object(&self, key_uri: &str) -> Option<PassKey> {
        self.objects
            .range((Rank::Mikey, 0)..(Rank::Other, 0))
            .find(|(_, e)| e.object.content_location == key_uri)
            .map(|(k, _)| *k)
    }

    fn find_location(&self, content_location: &str) -> Option<PassKey> {
        self.objects
            .iter()
            .find(|(_, e)| e.object.content_location == content_location)
            .map(|(k, _)| *k)
    }

    fn find_toi(&self, toi: u128) -> Option<PassKey> {
        self.objects
            .iter()
            .find(|(_, e)| e.toi == toi)
            .map(|(k, _)| *k)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::profile;
    use proptest::prelude::*;
    use std::collections::{BTreeSet, HashMap};

    const NTP_START: u32 = 3_900_000_000;

    /// What went on air, as a receiver would see it.
    #[derive(Debug, Clone, PartialEq, Eq)]
    enum Sent {
        Fdt {
            id: u32,
            expires: u32,
            files: Vec<(u128, String)>,
        },
        Object(u128),
        Forget(u128),
        Close,
    }

    fn record(action: CarouselAction<'_>) -> Sent {
        match action {
            CarouselAction::SendFdt { instance_id, fdt } => Sent::Fdt {
                id: instance_id,
                expires: fdt.expires,
                files: fdt
                    .files
                    .iter()
                    .map(|f| (f.toi, f.content_location.clone()))
                    .collect(),
            },
            CarouselAction::SendObject { toi } => Sent::Object(toi),
            CarouselAction::Forget { toi } => Sent::Forget(toi),
            CarouselAction::CloseSession => Sent::Close,
        }
    }

    /// A sender loop: each transmission takes `step` of simulated time.
    struct Sim {
        carousel: Carousel,
        start: Instant,
        now: Instant,
        log: Vec<Sent>,
    }

    impl Sim {
        fn new(config: CarouselConfig) -> Self {
            let start = Instant::now();
            Self {
                carousel: Carousel::new(config, start).unwrap(),
                start,
                now: start,
                log: Vec::new(),
            }
        }

        fn ntp(&self) -> u32 {
            NTP_START + (self.now - self.start).as_secs() as u32
        }

        /// One poll; `None` when idle.
        fn step(&mut self, step: Duration) -> Option<Sent> {
            let ntp = self.ntp();
            let sent = self.carousel.poll(self.now, ntp).map(record)?;
            if matches!(sent, Sent::Fdt { .. } | Sent::Object(_)) {
                self.now += step;
            }
            self.log.push(sent.clone());
            Some(sent)
        }

        fn run(&mut self, actions: usize, step: Duration) {
            for _ in 0..actions {
                if self.step(step).is_none() {
                    break;
                }
            }
        }
    }

    fn object(location: &str, lifetime: ObjectLifetime) -> CarouselObject {
        CarouselObject {
            content_location: location.into(),
            content_type: Some("application/octet-stream".into()),
            transfer_length: 1000,
            content_length: Some(1000),
            content_md5: None,
            fec_oti: None,
            decryption_key_uri: None,
            is_mikey: false,
            lifetime,
        }
    }

    fn mikey(location: &str, lifetime: ObjectLifetime) -> CarouselObject {
        CarouselObject {
            content_type: Some(profile::flute::MIKEY_CONTENT_TYPE.into()),
            is_mikey: true,
            ..object(location, lifetime)
        }
    }

    fn protected(location: &str, key: &str, lifetime: ObjectLifetime) -> CarouselObject {
        CarouselObject {
            decryption_key_uri: Some(key.into()),
            ..object(location, lifetime)
        }
    }

    fn times(n: u32) -> ObjectLifetime {
        ObjectLifetime::Repetitions(NonZeroU32::new(n).unwrap())
    }

    /// (TOI, Content-Location) of each File of an FDT.
    type Listing = Vec<(u128, String)>;
    /// (Instance ID, Expires, Files).
    type FdtSeen = (u32, u32, Listing);

    fn fdts(log: &[Sent]) -> Vec<FdtSeen> {
        log.iter()
            .filter_map(|s| match s {
                Sent::Fdt { id, expires, files } => Some((*id, *expires, files.clone())),
                _ => None,
            })
            .collect()
    }

    fn index_of(log: &[Sent], wanted: &Sent) -> usize {
        log.iter()
            .position(|s| s == wanted)
            .unwrap_or_else(|| panic!("{wanted:?} never sent in {log:?}"))
    }

    #[test]
    fn nothing_is_sent_before_an_object_exists_and_the_fdt_goes_first() {
        let mut sim = Sim::new(CarouselConfig::default());
        assert_eq!(sim.step(Duration::ZERO), None);
        assert_eq!(sim.carousel.poll_at(), None);
        let toi = sim.carousel.add(object("a", times(1))).unwrap();
        assert_eq!(toi, 1);
        assert_eq!(sim.carousel.poll_at(), Some(sim.now));
        sim.run(10, Duration::from_millis(1));
        assert_eq!(
            sim.log,
            [
                Sent::Fdt {
                    id: 0,
                    expires: NTP_START + 60,
                    files: vec![(1, "a".into())]
                },
                Sent::Object(1),
                Sent::Forget(1),
            ]
        );
        // Empty again: no FDT without objects.
        assert_eq!(sim.carousel.poll_at(), None);
    }

    #[test]
    fn late_joiner_gets_every_object_and_a_full_fdt_within_one_pass() {
        let mut sim = Sim::new(CarouselConfig {
            fdt_interval: Duration::from_millis(35),
            ..CarouselConfig::default()
        });
        let c = &mut sim.carousel;
        c.add(object("manifest.mpd", ObjectLifetime::UntilRemoved))
            .unwrap();
        c.add(object("init.mp4", ObjectLifetime::UntilRemoved))
            .unwrap();
        c.add(mikey("mtk/1", ObjectLifetime::UntilRemoved)).unwrap();
        for i in 0..5 {
            c.add(protected(
                &format!("seg{i}.m4s"),
                "mtk/1",
                ObjectLifetime::UntilRemoved,
            ))
            .unwrap();
        }
        let all: BTreeSet<u128> = c.tois().collect();
        sim.run(400, Duration::from_millis(10));
        assert_eq!(sim.log.len(), 400);
        // From any action on, the next N object transmissions (N objects in
        // the carousel) and the action after them hold every object and an
        // FDT listing all of them, whatever FDTs the interval adds between.
        for i in 0..sim.log.len() / 2 {
            let mut objects = BTreeSet::new();
            let mut full_fdt = false;
            let mut counted = 0;
            for s in &sim.log[i..] {
                if counted == all.len() {
                    full_fdt |= matches!(s, Sent::Fdt { files, .. }
                        if files.iter().map(|(t, _)| *t).collect::<BTreeSet<_>>() == all);
                    break;
                }
                match s {
                    Sent::Object(t) => {
                        objects.insert(*t);
                        counted += 1;
                    }
                    Sent::Fdt { files, .. } => {
                        full_fdt |= files.iter().map(|(t, _)| *t).collect::<BTreeSet<_>>() == all;
                    }
                    _ => {}
                }
            }
            assert_eq!(objects, all, "objects after action {i}");
            assert!(full_fdt, "no full FDT after action {i}");
        }
        let interval_fdts = fdts(&sim.log).len() - sim.log.len() / (all.len() + 1);
        assert!(interval_fdts > 10, "the interval never added an FDT");
        // The interval FDT re-sends the same instance: one ID throughout.
        let ids: BTreeSet<u32> = fdts(&sim.log).iter().map(|f| f.0).collect();
        assert_eq!(ids.len(), 1);
    }

    #[test]
    fn fdt_renders_through_the_template_and_parses_back() {
        use crate::protocol::flute::fdt::FdtTemplate;
        let template = FdtTemplate::parse(
            "3gpp-rel12.xml",
            include_str!("../../../fdt-templates/3gpp-rel12.xml"),
        )
        .unwrap();
        let now = Instant::now();
        let mut c = Carousel::new(CarouselConfig::default(), now).unwrap();
        let k = c.add(mikey("mtk/1", ObjectLifetime::UntilRemoved)).unwrap();
        let mut segment = protected("seg1.m4s", "mtk/1", times(1));
        segment.content_md5 = Some([7; 16]);
        segment.fec_oti = Some(FdtFecOti {
            encoding_id: 0,
            max_source_block_length: Some(1024),
            encoding_symbol_length: Some(1400),
            scheme_specific_info: None,
        });
        let p = c.add(segment).unwrap();
        let Some(CarouselAction::SendFdt { instance_id, fdt }) = c.poll(now, NTP_START) else {
            panic!("the first action is not an FDT");
        };
        assert_eq!(instance_id, 0);
        let parsed = FdtInstance::parse(&template.render(fdt).unwrap()).unwrap();
        assert_eq!(&parsed, fdt);
        assert!(parsed.full_fdt);
        assert_eq!(parsed.expires, NTP_START + 60);
        let file = |toi| parsed.files.iter().find(|f| f.toi == toi).unwrap();
        assert_eq!(
            file(k).content_type.as_deref(),
            Some(profile::flute::MIKEY_CONTENT_TYPE)
        );
        assert_eq!(file(p).decryption_key_uri.as_deref(), Some("mtk/1"));
        assert_eq!(file(p).transfer_length, Some(1000));
    }

    #[test]
    fn mikey_object_is_sent_first_in_every_pass() {
        let mut sim = Sim::new(CarouselConfig::default());
        let c = &mut sim.carousel;
        let a = c
            .add(object("plain", ObjectLifetime::UntilRemoved))
            .unwrap();
        let k = c.add(mikey("mtk/1", ObjectLifetime::UntilRemoved)).unwrap();
        let p = c
            .add(protected("p", "mtk/1", ObjectLifetime::UntilRemoved))
            .unwrap();
        sim.run(8, Duration::from_millis(1));
        let order: Vec<&Sent> = sim.log.iter().collect();
        let o = |t| Sent::Object(t);
        assert!(matches!(order[0], Sent::Fdt { .. }));
        assert_eq!(order[1..4], [&o(k), &o(a), &o(p)]);
        assert!(matches!(order[4], Sent::Fdt { .. }));
        assert_eq!(order[5..8], [&o(k), &o(a), &o(p)]);
    }

    #[test]
    fn key_object_added_mid_pass_precedes_what_it_protects() {
        let mut sim = Sim::new(CarouselConfig::default());
        let c = &mut sim.carousel;
        c.add(mikey("mtk/1", ObjectLifetime::UntilRemoved)).unwrap();
        c.add(object("a", ObjectLifetime::UntilRemoved)).unwrap();
        c.add(object("b", ObjectLifetime::UntilRemoved)).unwrap();
        sim.run(3, Duration::from_millis(1)); // FDT, mtk/1, a
        let k2 = sim.carousel.add(mikey("mtk/2", times(1))).unwrap();
        let x = sim.carousel.add(protected("x", "mtk/2", times(1))).unwrap();
        sim.run(6, Duration::from_millis(1));
        let first_fdt_after = sim.log[3..]
            .iter()
            .position(|s| matches!(s, Sent::Fdt { files, .. } if files.iter().any(|f| f.0 == x)))
            .unwrap()
            + 3;
        let key_at = index_of(&sim.log, &Sent::Object(k2));
        let x_at = index_of(&sim.log, &Sent::Object(x));
        assert!(first_fdt_after < key_at && key_at < x_at, "{:?}", sim.log);
    }

    #[test]
    fn mikey_object_stays_until_its_last_protected_object_leaves() {
        let mut sim = Sim::new(CarouselConfig::default());
        let c = &mut sim.carousel;
        let k = c.add(mikey("mtk/1", times(1))).unwrap();
        let a = c.add(protected("a", "mtk/1", times(1))).unwrap();
        let b = c.add(protected("b", "mtk/1", times(3))).unwrap();
        sim.run(100, Duration::from_millis(1));
        let forget_k = index_of(&sim.log, &Sent::Forget(k));
        let forget_b = index_of(&sim.log, &Sent::Forget(b));
        let last_b = sim.log.iter().rposition(|s| *s == Sent::Object(b)).unwrap();
        assert!(forget_k > last_b && forget_k > forget_b);
        // Sent once per pass while protecting: three passes.
        let k_sends = sim.log.iter().filter(|s| **s == Sent::Object(k)).count();
        assert_eq!(k_sends, 3);
        assert!(index_of(&sim.log, &Sent::Object(k)) < index_of(&sim.log, &Sent::Object(a)));
        // Every FDT lists the key object while a protected object is listed.
        for (_, _, files) in fdts(&sim.log) {
            let has = |t: u128| files.iter().any(|f| f.0 == t);
            assert!(!(has(a) || has(b)) || has(k), "{files:?}");
        }
        assert!(sim.carousel.is_empty());
    }

    #[test]
    fn explicit_remove_of_a_key_object_waits_for_its_protected_objects() {
        let now = Instant::now();
        let mut c = Carousel::new(CarouselConfig::default(), now).unwrap();
        let k = c.add(mikey("mtk/1", ObjectLifetime::UntilRemoved)).unwrap();
        let p = c
            .add(protected("p", "mtk/1", ObjectLifetime::UntilRemoved))
            .unwrap();
        c.remove(k).unwrap();
        assert_eq!(c.len(), 2);
        c.remove(p).unwrap();
        assert!(c.is_empty());
        assert_eq!(c.remove(p), Err(CarouselError::UnknownToi(p)));
    }

    #[test]
    fn fdt_id_changes_with_content_and_wraps_at_2_pow_20() {
        let mut sim = Sim::new(CarouselConfig {
            first_fdt_instance_id: FDT_INSTANCE_ID_MODULUS - 2,
            ..CarouselConfig::default()
        });
        let mut ids = Vec::new();
        for i in 0..4 {
            sim.carousel
                .add(object(&format!("o{i}"), ObjectLifetime::UntilRemoved))
                .unwrap();
            match sim.step(Duration::from_millis(1)) {
                Some(Sent::Fdt { id, files, .. }) => {
                    assert_eq!(files.len(), i + 1);
                    ids.push(id);
                }
                other => panic!("expected an FDT, got {other:?}"),
            }
        }
        assert_eq!(
            ids,
            [
                FDT_INSTANCE_ID_MODULUS - 2,
                FDT_INSTANCE_ID_MODULUS - 1,
                0,
                1
            ]
        );
        // Adding and removing before the next FDT leaves the content, and so
        // the ID, as it was.
        let t = sim
            .carousel
            .add(object("brief", ObjectLifetime::UntilRemoved))
            .unwrap();
        sim.carousel.remove(t).unwrap();
        assert_eq!(sim.step(Duration::ZERO), Some(Sent::Forget(t)));
        assert!(matches!(
            sim.step(Duration::ZERO),
            Some(Sent::Fdt { id: 1, .. })
        ));
    }

    #[test]
    fn expires_is_refreshed_under_a_new_id_before_the_fdt_expires() {
        let mut sim = Sim::new(CarouselConfig {
            fdt_interval: Duration::from_secs(1),
            fdt_lifetime_s: 10,
            ..CarouselConfig::default()
        });
        sim.carousel
            .add(object("big", ObjectLifetime::UntilRemoved))
            .unwrap();
        // Each transmission of the object takes 300 ms.
        sim.run(300, Duration::from_millis(300));
        let fdts = fdts(&sim.log);
        let mut by_id: HashMap<u32, (u32, Vec<(u128, String)>)> = HashMap::new();
        for (id, expires, files) in &fdts {
            let first = by_id.entry(*id).or_insert((*expires, files.clone()));
            assert_eq!(first, &(*expires, files.clone()), "ID {id} re-used");
        }
        assert!(by_id.len() > 5, "Expires was never refreshed");
        // Replay with time: the last FDT sent before any instant is valid then.
        let mut now = sim.start;
        let mut valid_until = 0u32;
        for s in &sim.log {
            let ntp = NTP_START + (now - sim.start).as_secs() as u32;
            if valid_until != 0 {
                assert!(ntp < valid_until, "FDT expired at {ntp}");
            }
            if let Sent::Fdt { expires, .. } = s {
                assert!(*expires > ntp + 5);
                valid_until = *expires;
            }
            now += Duration::from_millis(300);
        }
    }

    #[test]
    fn close_session_only_after_an_fdt() {
        let mut sim = Sim::new(CarouselConfig::default());
        sim.carousel
            .add(object("a", ObjectLifetime::UntilRemoved))
            .unwrap();
        sim.carousel.close();
        assert_eq!(sim.step(Duration::ZERO), None);
        assert_eq!(sim.step(Duration::ZERO), None);
        assert_eq!(
            sim.carousel.add(object("b", times(1))),
            Err(CarouselError::Closed)
        );

        let mut sim = Sim::new(CarouselConfig::default());
        sim.carousel
            .add(object("a", ObjectLifetime::UntilRemoved))
            .unwrap();
        sim.run(2, Duration::from_millis(1));
        sim.carousel.close();
        assert_eq!(sim.step(Duration::ZERO), Some(Sent::Close));
        assert_eq!(sim.step(Duration::ZERO), None);
        assert_eq!(sim.carousel.poll_at(), None);
    }

    #[test]
    fn until_lifetime_ends_at_its_instant() {
        let mut sim = Sim::new(CarouselConfig::default());
        let until = sim.start + Duration::from_millis(50);
        let a = sim
            .carousel
            .add(object("a", ObjectLifetime::Until(until)))
            .unwrap();
        let b = sim
            .carousel
            .add(object("b", ObjectLifetime::UntilRemoved))
            .unwrap();
        sim.run(30, Duration::from_millis(10));
        let forget = index_of(&sim.log, &Sent::Forget(a));
        assert!(sim.log[forget + 1..].iter().all(|s| *s != Sent::Object(a)));
        let sends = sim.log[..forget]
            .iter()
            .filter(|s| **s == Sent::Object(a))
            .count();
        assert!(sends >= 2, "{:?}", sim.log);
        // The FDT after the removal lists only b, under a new ID.
        let after: Vec<_> = fdts(&sim.log[forget..]);
        assert_eq!(after[0].2, vec![(b, "b".to_string())]);
        assert_ne!(after[0].0, fdts(&sim.log[..forget]).last().unwrap().0);
    }

    #[test]
    fn same_content_location_replaces_the_object() {
        let now = Instant::now();
        let mut c = Carousel::new(CarouselConfig::default(), now).unwrap();
        let old = c
            .add(object("manifest.mpd", ObjectLifetime::UntilRemoved))
            .unwrap();
        let new = c
            .add(object("manifest.mpd", ObjectLifetime::UntilRemoved))
            .unwrap();
        assert_ne!(old, new);
        assert_eq!(c.tois().collect::<Vec<_>>(), [new]);
        assert_eq!(c.poll(now, NTP_START).map(record), Some(Sent::Forget(old)));
    }

    #[test]
    fn invalid_objects_and_configs_are_rejected() {
        let now = Instant::now();
        let mut c = Carousel::new(CarouselConfig::default(), now).unwrap();
        assert_eq!(
            c.add(protected("p", "mtk/9", times(1))),
            Err(CarouselError::UnknownKeyObject {
                content_location: "p".into(),
                key_uri: "mtk/9".into()
            })
        );
        let mut keyed_key = mikey("mtk/1", times(1));
        keyed_key.decryption_key_uri = Some("mtk/0".into());
        assert_eq!(
            c.add(keyed_key),
            Err(CarouselError::ProtectedKeyObject("mtk/1".into()))
        );
        c.add(mikey("mtk/1", times(1))).unwrap();
        c.add(protected("p", "mtk/1", times(1))).unwrap();
        assert_eq!(
            c.add(object("mtk/1", times(1))),
            Err(CarouselError::KeyObjectInUse("mtk/1".into()))
        );
        // Nor may a replacement name the key object it would replace.
        c.add(mikey("mtk/2", times(1))).unwrap();
        assert_eq!(
            c.add(protected("mtk/2", "mtk/2", times(1))),
            Err(CarouselError::KeyObjectInUse("mtk/2".into()))
        );

        let mut full = Carousel::new(
            CarouselConfig {
                max_toi: 2,
                ..CarouselConfig::default()
            },
            now,
        )
        .unwrap();
        full.add(object("a", times(1))).unwrap();
        full.add(object("b", times(1))).unwrap();
        assert!(matches!(
            full.add(object("c", times(1))),
            Err(CarouselError::ToisExhausted { max: 2, .. })
        ));
        // A TOI is free again once the caller was told to forget it.
        full.remove(1).unwrap();
        assert!(full.add(object("c", times(1))).is_err());
        assert_eq!(
            full.poll(now, NTP_START),
            Some(CarouselAction::Forget { toi: 1 })
        );
        assert_eq!(full.add(object("c", times(1))), Ok(1));

        let bad = |config| Carousel::new(config, now).unwrap_err();
        let base = CarouselConfig::default();
        assert_eq!(
            bad(CarouselConfig {
                fdt_lifetime_s: 3,
                ..base.clone()
            }),
            CarouselError::LifetimeTooShort {
                lifetime_s: 3,
                interval: Duration::from_secs(1)
            }
        );
        assert_eq!(
            bad(CarouselConfig {
                fdt_interval: Duration::ZERO,
                ..base.clone()
            }),
            CarouselError::ZeroFdtInterval
        );
        assert_eq!(
            bad(CarouselConfig {
                first_fdt_instance_id: FDT_INSTANCE_ID_MODULUS,
                ..base
            }),
            CarouselError::InstanceIdTooWide(FDT_INSTANCE_ID_MODULUS)
        );
    }

    #[derive(Debug, Clone)]
    enum Op {
        Add {
            mikey: bool,
            key: u8,
            location: u8,
            lifetime: u8,
        },
        Remove(u8),
        Poll {
            actions: u8,
            step_ms: u16,
        },
        Close,
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => (any::<bool>(), 0u8..4, 0u8..12, 0u8..8).prop_map(|(mikey, key, location, lifetime)| {
                Op::Add { mikey, key, location, lifetime }
            }),
            2 => any::<u8>().prop_map(Op::Remove),
            6 => (1u8..20, 0u16..700).prop_map(|(actions, step_ms)| Op::Poll { actions, step_ms }),
            1 => Just(Op::Close),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]

        /// Random adds, removes, polls and closes against the invariants a
        /// receiver relies on.
        #[test]
        fn invariants_hold(ops in proptest::collection::vec(op(), 1..60), first_id in 0u32..FDT_INSTANCE_ID_MODULUS) {
            let mut sim = Sim::new(CarouselConfig {
                fdt_interval: Duration::from_millis(500),
                fdt_lifetime_s: 4,
                max_toi: 20,
                first_fdt_instance_id: first_id,
            });
            // ID → (Expires, files) as first sent.
            let mut instances: HashMap<u32, (u32, Vec<(u128, String)>)> = HashMap::new();
            let mut last_fdt: Option<FdtSeen> = None;
            let mut key_sent: BTreeSet<u128> = BTreeSet::new();
            let mut closed_at: Option<usize> = None;
            for op in ops {
                match op {
                    Op::Add { mikey: is_mikey, key, location, lifetime } => {
                        let lifetime = match lifetime {
                            0..=3 => times(u32::from(lifetime) + 1),
                            4 | 5 => ObjectLifetime::Until(sim.now + Duration::from_millis(u64::from(lifetime) * 300)),
                            _ => ObjectLifetime::UntilRemoved,
                        };
                        let location = if is_mikey { format!("mtk/{}", location % 4) } else { format!("o{location}") };
                        let object = if is_mikey {
                            mikey(&location, lifetime)
                        } else if key > 0 {
                            protected(&location, &format!("mtk/{key}"), lifetime)
                        } else {
                            object(&location, lifetime)
                        };
                        let _ = sim.carousel.add(object);
                    }
                    Op::Remove(pick) => {
                        let tois: Vec<u128> = sim.carousel.tois().collect();
                        if !tois.is_empty() {
                            sim.carousel.remove(tois[usize::from(pick) % tois.len()]).unwrap();
                        }
                    }
                    Op::Poll { actions, step_ms } => {
                        for _ in 0..actions {
                            let before = sim.log.len();
                            let key_of: HashMap<u128, Option<String>> = sim.carousel.objects.values()
                                .map(|e| (e.toi, e.object.decryption_key_uri.clone())).collect();
                            let ntp = sim.ntp();
                            let Some(sent) = sim.step(Duration::from_millis(u64::from(step_ms))) else { break };
                            match &sent {
                                Sent::Fdt { id, expires, files } => {
                                    prop_assert!(!files.is_empty(), "empty FDT");
                                    prop_assert!(*id < FDT_INSTANCE_ID_MODULUS);
                                    prop_assert!(expires.wrapping_sub(ntp) as i32 > 1, "FDT about to expire");
                                    // Lists exactly what is in the carousel.
                                    let listed: BTreeSet<(u128, String)> = files.iter().cloned().collect();
                                    let now_live: BTreeSet<(u128, String)> = sim.carousel.objects.values()
                                        .map(|e| (e.toi, e.object.content_location.clone())).collect();
                                    prop_assert_eq!(listed, now_live);
                                    let first = instances.entry(*id).or_insert((*expires, files.clone()));
                                    prop_assert_eq!(&*first, &(*expires, files.clone()), "ID re-used");
                                    if let Some((prev_id, prev_exp, prev_files)) = &last_fdt
                                        && (prev_exp != expires || prev_files != files)
                                    {
                                        prop_assert_eq!(*id, (prev_id + 1) % FDT_INSTANCE_ID_MODULUS);
                                    }
                                    last_fdt = Some((*id, *expires, files.clone()));
                                }
                                Sent::Object(toi) => {
                                    prop_assert!(*toi != 0 && *toi <= 20);
                                    // Announced by the FDT on air.
                                    let (_, _, files) = last_fdt.as_ref().unwrap();
                                    let entry = files.iter().find(|f| f.0 == *toi);
                                    prop_assert!(entry.is_some(), "TOI {} not in the FDT", toi);
                                    let location = &entry.unwrap().1;
                                    if location.starts_with("mtk/") {
                                        key_sent.insert(*toi);
                                    }
                                    // Its key object went before it.
                                    if let Some(Some(key_uri)) = key_of.get(toi) {
                                        let key_toi = files.iter().find(|f| &f.1 == key_uri).map(|f| f.0);
                                        prop_assert!(key_toi.is_some_and(|k| key_sent.contains(&k)), "key not sent first");
                                    }
                                }
                                Sent::Forget(toi) => {
                                    prop_assert!(!sim.carousel.tois().any(|t| t == *toi));
                                    key_sent.remove(toi);
                                }
                                Sent::Close => {
                                    prop_assert!(last_fdt.is_some(), "close before any FDT");
                                    prop_assert!(closed_at.is_none());
                                    closed_at = Some(before);
                                }
                            }
                        }
                    }
                    Op::Close => sim.carousel.close(),
                }
                // Structural invariants after every operation.
                let tois: Vec<u128> = sim.carousel.tois().collect();
                let distinct: BTreeSet<u128> = tois.iter().copied().collect();
                prop_assert_eq!(distinct.len(), tois.len());
                prop_assert!(tois.iter().all(|&t| (1..=20).contains(&t)));
                for toi in &tois {
                    let object = sim.carousel.object(*toi).unwrap();
                    if let Some(key_uri) = &object.decryption_key_uri {
                        prop_assert!(
                            tois.iter().any(|&t| sim.carousel.object(t).is_some_and(|o| o.is_mikey && &o.content_location == key_uri)),
                            "key object of {} left before it", toi
                        );
                    }
                }
            }
            if let Some(at) = closed_at {
                prop_assert!(sim.log[at + 1..].iter().all(|s| matches!(s, Sent::Forget(_))));
            }
        }
    }
}
