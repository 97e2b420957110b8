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
    /// The object whose last transmission was handed out by `poll`.
    last_transmission: Option<PassKey>,
    /// MIKEY objects that left while FDT instances listing them may still be
    /// valid at receivers: their TOIs stay reserved, and the same message
    /// coming back gets its TOI back (one TOI per MIKEY message).
    departed_keys: Vec<DepartedKey>,
}

/// A MIKEY object gone from the carousel, its TOI held until `until`.
#[derive(Debug, Clone)]
struct DepartedKey {
    content_location: String,
    content_md5: Option<[u8; 16]>,
    transfer_length: u64,
    toi: u128,
    /// When the last FDT instance that listed it expires.
    until: Instant,
}

impl DepartedKey {
    fn is(&self, object: &CarouselObject) -> bool {
        object.is_mikey
            && object.content_md5.is_some()
            && self.content_location == object.content_location
            && self.content_md5 == object.content_md5
            && self.transfer_length == object.transfer_length
    }
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
            last_transmission: None,
            departed_keys: Vec::new(),
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

    /// A MIKEY object with this Content-Location is in the carousel. False
    /// from the poll that retires it on, even before its `Forget` is handed
    /// out: an object protected by its key must then bring it back.
    pub fn has_key_object(&self, key_uri: &str) -> bool {
        self.key_object(key_uri).is_some()
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
        let returning = self.departed_keys.iter().position(|d| d.is(&object));
        let toi = match returning {
            // Its TOI was never released; a Forget not yet handed out is moot.
            Some(at) => {
                let toi = self.departed_keys.swap_remove(at).toi;
                self.forgotten.retain(|t| *t != toi);
                toi
            }
            None => self
                .tois
                .allocate()
                .ok_or_else(|| CarouselError::ToisExhausted {
                    max: self.tois.max(),
                    content_location: object.content_location.clone(),
                })?,
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
        self.retire_last_transmission();
        self.end_lifetimes(now);
        self.release_departed_keys(now);
        if let Some(toi) = self.forgotten.pop_front() {
            // Only now may the TOI name another object: the caller knows
            // this one is gone. A departed MIKEY object's TOI stays held.
            if !self.departed_keys.iter().any(|d| d.toi == toi) {
                self.tois.release(toi);
            }
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
                // Retired at the next `poll`, once the caller has sent this
                // transmission: until then FDTs (`poll_fdt`) still list it,
                // so a receiver completing it can name it.
                self.last_transmission = Some(key);
            }
        }
    }

    /// Ends the lifetime of the object whose last transmission the caller
    /// has finished.
    fn retire_last_transmission(&mut self) {
        if let Some(key) = self.last_transmission.take()
            && let Some(entry) = self.objects.get_mut(&key)
        {
            entry.lifetime_over = true;
            self.retire(key);
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
            if entry.object.is_mikey {
                // Receivers may hold an FDT instance naming it until the
                // last one sent expires.
                let lifetime = Duration::from_secs(u64::from(self.config.fdt_lifetime_s));
                self.departed_keys.push(DepartedKey {
                    content_location: entry.object.content_location,
                    content_md5: entry.object.content_md5,
                    transfer_length: entry.object.transfer_length,
                    toi: entry.toi,
                    until: self.last_poll + lifetime,
                });
            }
            self.forgotten.push_back(entry.toi);
            self.content_changed = true;
        }
    }

    /// Frees the TOIs of departed MIKEY objects no valid FDT instance lists
    /// any more (once their `Forget` is out).
    fn release_departed_keys(&mut self, now: Instant) {
        let forgotten = &self.forgotten;
        let tois = &mut self.tois;
        self.departed_keys.retain(|d| {
            let held = now < d.until || forgotten.contains(&d.toi);
            if !held {
                tois.release(d.toi);
            }
            held
        });
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
