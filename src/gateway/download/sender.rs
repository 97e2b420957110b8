//! The FLUTE sender thread of one download session: drives the
//! [`Carousel`] (which FDT and object go next), packetizes objects with the
//! session's FEC from memory (MIKEY objects, FDTs) or from the spool (DCF
//! objects, read ahead in large chunks), holds the session to its bitrate with
//! the [`Pacer`], and hands GSO batches to the egress thread. While a long
//! object is on air the FDT is interleaved at the carousel's interval, so a
//! receiver that joins mid-object learns the whole carousel.

use super::protect::ProtectedObject;
use super::read_ahead::ReadAhead;
use crate::gateway::egress::{Batcher, Egress, EgressKind};
use crate::protocol::flute::carousel::{Carousel, CarouselAction, CarouselObject, ObjectLifetime};
use crate::protocol::flute::fdt::{FdtFecOti, FdtInstance, FdtTemplate};
use crate::protocol::flute::fec::{FecObjectSender, FecScheme};
use crate::protocol::flute::lct;
use crate::protocol::flute::object_sender::{ObjectKind, ObjectSenderConfig};
use crate::protocol::pacer::Pacer;
use crate::protocol::profile;
use crate::runtime::metrics::LatencyMetrics;
use crate::runtime::wall_clock;
use std::collections::HashMap;
use std::fs::File;
use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, TryRecvError};
use std::time::{Duration, Instant};

/// Work for the sender thread, in the order it must happen.
#[derive(Debug)]
pub enum SenderCommand {
    /// A protected object to carousel. The MIKEY object of its MTK joins
    /// the carousel with the first object the MTK protects, and stays while
    /// any such object does.
    AddObject(ProtectedObject),
    /// The MSK is gone: every object leaves the carousel at once, and
    /// objects protected before this epoch are dropped on arrival.
    RevokeAll { epoch: u64 },
}

/// Counters of one download session's sender.
#[derive(Debug, Default)]
pub struct SenderStats {
    pub objects_added: AtomicU64,
    /// Objects whose carousel lifetime ended (all transmissions done).
    pub objects_completed: AtomicU64,
    /// Objects withdrawn because their MSK was no longer valid.
    pub objects_revoked: AtomicU64,
    /// Transmissions of file objects sent to their last packet.
    pub object_transmissions: AtomicU64,
    /// Transmissions of MIKEY objects sent to their last packet: MIKEY
    /// messages on the FLUTE session.
    pub mikey_transmissions: AtomicU64,
    pub fdt_instances_sent: AtomicU64,
    pub mikey_objects_added: AtomicU64,
    pub alc_packets: AtomicU64,
    pub alc_bytes: AtomicU64,
    /// Objects refused by the carousel or the packetizer.
    pub send_failures: AtomicU64,
    /// Objects waiting in or being sent by the carousel (MIKEY included).
    pub carousel_objects: AtomicU64,
}

/// How the session sends.
#[derive(Debug, Clone)]
pub struct SenderConfig {
    pub name: String,
    pub tsi: u16,
    pub destination: SocketAddr,
    pub max_packet: usize,
    pub fec: FecScheme,
    pub symbol_length: Option<u16>,
    pub max_source_block_length: u32,
    pub lifetime: ObjectLifetimeSetting,
    pub bitrate: u64,
    /// Times each FDT Instance is sent back to back.
    pub fdt_copies: u32,
}

/// How long each object stays in the carousel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ObjectLifetimeSetting {
    Repetitions(NonZeroU32),
    For(Duration),
}

/// Packets per pacer grant: the largest burst the wire sees from a session.
const BURST_PACKETS: usize = 16;
/// Longest idle wait for a command.
const IDLE_WAIT: Duration = Duration::from_millis(100);

/// NTP seconds of the wall clock, for FDT `Expires` (32 bits, era 0).
fn ntp_now() -> u32 {
    wall_clock::ntp_now() as u32
}

enum Content {
    Memory(Vec<u8>),
    Spool { file: File, path: PathBuf },
}

impl Content {
    /// The bytes of `range` of object `toi` (contiguous reads of a spooled
    /// object are served from `read_ahead`).
    fn bytes<'a>(
        &'a self,
        toi: u128,
        range: std::ops::Range<u64>,
        read_ahead: &'a mut ReadAhead,
    ) -> std::io::Result<&'a [u8]> {
        match self {
            Self::Memory(data) => Ok(&data[range.start as usize..range.end as usize]),
            Self::Spool { file, .. } => read_ahead.bytes(file, toi, range),
        }
    }
}

struct Entry {
    content: Content,
    packets: FecObjectSender,
    /// A MIKEY MTK message rather than a file.
    mikey: bool,
}

/// The sender of one session.
pub struct FluteSender {
    config: SenderConfig,
    carousel: Carousel,
    template: FdtTemplate,
    entries: HashMap<u128, Entry>,
    /// Objects protected before this revocation epoch are not sent.
    epoch: u64,
    /// The object being sent, if a transmission is under way.
    current: Option<u128>,
    /// The last rendered FDT, by instance ID.
    fdt: Option<(u32, Vec<u8>)>,
    pacing: Pacing,
    read_ahead: ReadAhead,
    latency: LatencyMetrics,
    batcher: Batcher,
    packet: Vec<u8>,
    stats: Arc<SenderStats>,
    commands: Receiver<SenderCommand>,
    stop: Arc<AtomicBool>,
    commands_closed: bool,
}

impl FluteSender {
    pub fn new(
        config: SenderConfig,
        carousel: Carousel,
        template: FdtTemplate,
        egress: Egress,
        commands: Receiver<SenderCommand>,
        stats: Arc<SenderStats>,
        stop: Arc<AtomicBool>,
    ) -> anyhow::Result<Self> {
        let burst = (config.max_packet * BURST_PACKETS) as u64;
        let pacer = Pacer::new(config.bitrate, burst, Instant::now())?;
        Ok(Self {
            packet: vec![0; config.max_packet],
            latency: LatencyMetrics::new(&config.name),
            read_ahead: ReadAhead::default(),
            config,
            carousel,
            template,
            entries: HashMap::new(),
            epoch: 0,
            current: None,
            fdt: None,
            pacing: Pacing::new(pacer),
            batcher: Batcher::new(egress),
            stats,
            commands,
            stop,
            commands_closed: false,
        })
    }

    /// Runs until stopped (or every command sender is gone and the carousel
    /// is empty), then closes the session on the wire.
    pub fn run(mut self) {
        while self.step() {}
        self.carousel.close();
        while let Some(action) = self.carousel.poll(Instant::now(), ntp_now()).map(owned) {
            match action {
                OwnedAction::Close => self.send_close(),
                OwnedAction::Forget(toi) => self.forget(toi),
                _ => break,
            }
        }
        for (_, entry) in self.entries.drain() {
            remove_spool(&entry.content);
        }
        self.batcher.flush();
    }

    /// Takes the commands that arrived, then does one thing: a burst of the
    /// object on air, or the carousel's next action, or an idle wait. False
    /// once the sender is to close.
    fn step(&mut self) -> bool {
        if self.stop.load(Ordering::Relaxed) {
            return false;
        }
        self.apply_commands();
        if self.commands_closed && self.carousel.is_empty() && self.current.is_none() {
            return false;
        }
        let now = Instant::now();
        if let Some(toi) = self.current {
            if let Some(CarouselAction::SendFdt { instance_id, fdt }) =
                self.carousel.poll_fdt(now, ntp_now())
            {
                let fdt = fdt.clone();
                self.send_fdt(instance_id, &fdt);
            }
            self.send_burst(toi);
            return true;
        }
        let action = self.carousel.poll(now, ntp_now()).map(owned);
        match action {
            Some(OwnedAction::SendFdt(id, fdt)) => self.send_fdt(id, &fdt),
            Some(OwnedAction::SendObject(toi)) => self.start_transmission(toi),
            Some(OwnedAction::Forget(toi)) => self.forget(toi),
            Some(OwnedAction::Close) => self.send_close(),
            None => self.wait_for_command(),
        }
        true
    }

    fn apply_commands(&mut self) {
        loop {
            match self.commands.try_recv() {
                Ok(command) => self.apply(command),
                Err(TryRecvError::Empty) => return,
                Err(TryRecvError::Disconnected) => {
                    self.commands_closed = true;
                    return;
                }
            }
        }
    }

    fn wait_for_command(&mut self) {
        self.pacing.idle();
        self.batcher.flush();
        if self.commands_closed {
            std::thread::sleep(IDLE_WAIT);
            return;
        }
        let wait = self
            .carousel
            .next_fdt_at()
            .map_or(IDLE_WAIT, |at| at.saturating_duration_since(Instant::now()))
            .min(IDLE_WAIT);
        match self.commands.recv_timeout(wait) {
            Ok(command) => self.apply(command),
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => self.commands_closed = true,
        }
    }

    fn apply(&mut self, command: SenderCommand) {
        match command {
            SenderCommand::AddObject(object) if object.epoch < self.epoch => {
                let _ = std::fs::remove_file(&object.spool_path);
                self.stats.objects_revoked.fetch_add(1, Ordering::Relaxed);
            }
            SenderCommand::AddObject(object) => {
                let content = match File::open(&object.spool_path) {
                    Ok(file) => Content::Spool {
                        file,
                        path: object.spool_path.clone(),
                    },
                    Err(e) => {
                        tracing::error!(session = %self.config.name, object = %object.content_location, error = %e, "spool file lost; object not sent");
                        self.stats.send_failures.fetch_add(1, Ordering::Relaxed);
                        return;
                    }
                };
                let lifetime = match self.config.lifetime {
                    ObjectLifetimeSetting::Repetitions(n) => ObjectLifetime::Repetitions(n),
                    ObjectLifetimeSetting::For(d) => ObjectLifetime::Until(Instant::now() + d),
                };
                let entry = CarouselObject {
                    content_location: object.content_location.clone(),
                    content_type: Some(profile::dcf::CONTENT_TYPE.to_owned()),
                    transfer_length: object.transfer_length,
                    content_length: Some(object.transfer_length),
                    content_md5: object.content_md5,
                    fec_oti: None,
                    decryption_key_uri: Some(object.key_uri.clone()),
                    is_mikey: false,
                    lifetime,
                };
                let key_toi = self.key_object(&object.key_uri, &object.key_message);
                if self.add(entry, content, self.config.fec).is_some() {
                    self.stats.objects_added.fetch_add(1, Ordering::Relaxed);
                }
                // From now on the MIKEY object stays exactly as long as an
                // object it protects is in the carousel.
                if let Some(toi) = key_toi {
                    let _ = self.carousel.remove(toi);
                }
            }
            SenderCommand::RevokeAll { epoch } => {
                self.epoch = self.epoch.max(epoch);
                let tois: Vec<u128> = self.carousel.tois().collect();
                let mut revoked = 0;
                for toi in tois {
                    if self.carousel.object(toi).is_some_and(|o| !o.is_mikey) {
                        revoked += 1;
                    }
                    let _ = self.carousel.remove(toi);
                }
                self.current = None;
                self.stats
                    .objects_revoked
                    .fetch_add(revoked, Ordering::Relaxed);
            }
        }
        self.stats
            .carousel_objects
            .store(self.carousel.len() as u64, Ordering::Relaxed);
    }

    /// Adds an object with its packetizer; `None` (counted, logged) when the
    /// carousel or the packetizer refuses it.
    fn add(
        &mut self,
        mut object: CarouselObject,
        content: Content,
        fec: FecScheme,
    ) -> Option<u128> {
        let location = object.content_location.clone();
        let fail = |this: &mut Self, reason: String| {
            tracing::error!(session = %this.config.name, object = %location, %reason, "object not sent");
            this.stats.send_failures.fetch_add(1, Ordering::Relaxed);
            remove_spool(&content);
            None
        };
        // The TOI is only known once added, and the OTI only once the
        // packetizer exists: build it for TOI 1 first to learn the OTI, which
        // does not depend on the TOI.
        let packets = match self.packetizer(1, object.transfer_length, fec) {
            Ok(p) => p,
            Err(e) => return fail(self, e.to_string()),
        };
        object.fec_oti = Some(FdtFecOti::from(packets.oti()));
        let toi = match self.carousel.add(object.clone()) {
            Ok(toi) => toi,
            Err(e) => return fail(self, e.to_string()),
        };
        let packets = match self.packetizer(toi, object.transfer_length, fec) {
            Ok(p) => p,
            Err(e) => {
                let _ = self.carousel.remove(toi);
                return fail(self, e.to_string());
            }
        };
        let mikey = object.is_mikey;
        self.entries.insert(
            toi,
            Entry {
                content,
                packets,
                mikey,
            },
        );
        Some(toi)
    }

    /// Puts the MIKEY object named `key_uri` into the carousel unless it is
    /// there; returns its TOI when it was added now. The carousel sends it
    /// before the first transmission of any object it protects. The carousel
    /// alone says whether it is there: it retires a key object with the last
    /// object it protects, a poll before it hands out the `Forget`.
    fn key_object(&mut self, key_uri: &str, message: &[u8]) -> Option<u128> {
        if self.carousel.has_key_object(key_uri) {
            return None;
        }
        let message = message.to_vec();
        let object = CarouselObject {
            content_location: key_uri.to_owned(),
            content_type: Some(profile::flute::MIKEY_CONTENT_TYPE.to_owned()),
            transfer_length: message.len() as u64,
            content_length: Some(message.len() as u64),
            content_md5: Some(md5_of(&message)),
            fec_oti: None,
            decryption_key_uri: None,
            is_mikey: true,
            lifetime: ObjectLifetime::UntilRemoved,
        };
        let toi = self.add(object, Content::Memory(message), FecScheme::CompactNoCode)?;
        self.stats
            .mikey_objects_added
            .fetch_add(1, Ordering::Relaxed);
        Some(toi)
    }

    fn packetizer(
        &self,
        toi: u128,
        transfer_length: u64,
        fec: FecScheme,
    ) -> Result<FecObjectSender, crate::protocol::flute::FluteError> {
        let mut config = ObjectSenderConfig::new(
            u64::from(self.config.tsi),
            ObjectKind::File { toi },
            transfer_length,
            self.config.max_packet,
        );
        if let Some(e) = self.config.symbol_length {
            config.symbol_length = config.symbol_length.min(e);
        }
        config.max_source_block_length = self.config.max_source_block_length;
        FecObjectSender::new(&config, fec)
    }

    fn start_transmission(&mut self, toi: u128) {
        if let Some(entry) = self.entries.get_mut(&toi) {
            entry.packets.rewind();
            self.current = Some(toi);
        }
    }

    /// Sends what the pacer allows of the current object, up to one burst.
    fn send_burst(&mut self, toi: u128) {
        let Some(entry) = self.entries.get_mut(&toi) else {
            self.current = None;
            return;
        };
        let mut sent = 0;
        while sent < BURST_PACKETS {
            let Some(request) = entry.packets.next_symbol() else {
                break;
            };
            let symbol = match entry
                .content
                .bytes(toi, request.range, &mut self.read_ahead)
            {
                Ok(s) => s,
                Err(e) => {
                    tracing::error!(session = %self.config.name, toi = %toi, error = %e, "spool read failed; object withdrawn");
                    self.stats.send_failures.fetch_add(1, Ordering::Relaxed);
                    let _ = self.carousel.remove(toi);
                    self.current = None;
                    return;
                }
            };
            let n = match entry.packets.write_packet(symbol, &mut self.packet) {
                Ok(n) => n,
                Err(e) => {
                    tracing::error!(session = %self.config.name, toi = %toi, error = %e, "packetizing failed; object withdrawn");
                    self.stats.send_failures.fetch_add(1, Ordering::Relaxed);
                    let _ = self.carousel.remove(toi);
                    self.current = None;
                    return;
                }
            };
            if !self.pacing.wait(&self.stop, &mut self.batcher, n) {
                return;
            }
            self.batcher
                .push(self.config.destination, EgressKind::Alc, &self.packet[..n]);
            self.pacing.handed_over();
            self.stats.alc_packets.fetch_add(1, Ordering::Relaxed);
            self.stats.alc_bytes.fetch_add(n as u64, Ordering::Relaxed);
            sent += 1;
        }
        self.pacing.record(&self.latency);
        if entry.packets.is_complete() {
            self.current = None;
            let transmissions = if entry.mikey {
                &self.stats.mikey_transmissions
            } else {
                &self.stats.object_transmissions
            };
            transmissions.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn send_fdt(&mut self, instance_id: u32, fdt: &FdtInstance) {
        if self.fdt.as_ref().is_none_or(|(id, _)| *id != instance_id) {
            match self.template.render(fdt) {
                Ok(xml) => self.fdt = Some((instance_id, xml.into_bytes())),
                Err(e) => {
                    tracing::error!(session = %self.config.name, error = %e, "FDT not rendered");
                    return;
                }
            }
        }
        let Some((_, xml)) = self.fdt.take() else {
            return;
        };
        let config = ObjectSenderConfig::new(
            u64::from(self.config.tsi),
            ObjectKind::FdtInstance { instance_id },
            xml.len() as u64,
            self.config.max_packet,
        );
        match FecObjectSender::new(&config, FecScheme::CompactNoCode) {
            Ok(mut packets) => {
                // Each copy is the whole instance again: a receiver that lost
                // a packet of one copy completes the instance from another.
                let copies = u64::from(self.config.fdt_copies.max(1));
                let total = packets.packet_count() * copies;
                let mut sent = 0;
                while sent < total {
                    if packets.is_complete() {
                        packets.rewind();
                    }
                    let Some(Ok(n)) = packets.next_packet(&xml, &mut self.packet) else {
                        break;
                    };
                    sent += 1;
                    if !self.pacing.wait(&self.stop, &mut self.batcher, n) {
                        break;
                    }
                    self.batcher
                        .push(self.config.destination, EgressKind::Alc, &self.packet[..n]);
                    self.pacing.handed_over();
                    self.stats.alc_packets.fetch_add(1, Ordering::Relaxed);
                    self.stats.alc_bytes.fetch_add(n as u64, Ordering::Relaxed);
                }
                self.pacing.record(&self.latency);
                self.stats
                    .fdt_instances_sent
                    .fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => {
                tracing::error!(session = %self.config.name, error = %e, "FDT not packetized")
            }
        }
        self.fdt = Some((instance_id, xml));
    }

    /// The last packet of the current FDT again, with A (close session) set
    /// (RFC 5651 §5.1): receivers may end the session at once.
    fn send_close(&mut self) {
        let Some((instance_id, xml)) = self.fdt.take() else {
            return;
        };
        let mut config = ObjectSenderConfig::new(
            u64::from(self.config.tsi),
            ObjectKind::FdtInstance { instance_id },
            xml.len() as u64,
            self.config.max_packet,
        );
        config.close_session = true;
        if let Ok(mut packets) = FecObjectSender::new(&config, FecScheme::CompactNoCode) {
            let mut last = None;
            while let Some(Ok(n)) = packets.next_packet(&xml, &mut self.packet) {
                last = Some(n);
            }
            if let Some(n) = last {
                lct::set_close_session(&mut self.packet[..n], true);
                self.batcher
                    .push(self.config.destination, EgressKind::Alc, &self.packet[..n]);
                self.stats.alc_packets.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.batcher.flush();
    }

    fn forget(&mut self, toi: u128) {
        if let Some(entry) = self.entries.remove(&toi) {
            remove_spool(&entry.content);
            if matches!(entry.content, Content::Spool { .. }) {
                self.stats.objects_completed.fetch_add(1, Ordering::Relaxed);
            }
        }
        if self.current == Some(toi) {
            self.current = None;
        }
        self.stats
            .carousel_objects
            .store(self.carousel.len() as u64, Ordering::Relaxed);
    }
}

/// The session's pacer, and how late its packets leave. A packet is late by
/// the time between when it could have left (the pacer allowed it and the
/// sender was done with the packet before) and when it was let go:
/// oversleeping, a sender thread starved of CPU while it has work, and its
/// own spool reads show; time blocked on a full egress queue does not (that
/// is `egress_queue_full_total`).
struct Pacing {
    pacer: Pacer,
    /// The sender has had packets waiting without a break since this
    /// instant (the end of the last hand-over); `None` after an idle wait.
    ready_since: Option<Instant>,
    /// The latest packet since the last [`Self::record`].
    worst: Option<Duration>,
}

impl Pacing {
    fn new(pacer: Pacer) -> Self {
        Self {
            pacer,
            ready_since: None,
            worst: None,
        }
    }

    /// Waits until the pacer lets a packet of `bytes` leave (flushing the
    /// batch first, so nothing sits in it while we sleep). False when stopped.
    fn wait(&mut self, stop: &AtomicBool, batcher: &mut Batcher, bytes: usize) -> bool {
        let ready = self.ready_since.unwrap_or_else(Instant::now);
        loop {
            let allowed = self.pacer.next_send_at(bytes);
            let now = Instant::now();
            match self.pacer.poll_send(now, bytes) {
                Ok(()) => {
                    let late = now.saturating_duration_since(allowed.max(ready));
                    self.worst = Some(self.worst.map_or(late, |w| w.max(late)));
                    return true;
                }
                Err(at) => {
                    batcher.flush();
                    if stop.load(Ordering::Relaxed) {
                        return false;
                    }
                    std::thread::sleep(at.saturating_duration_since(now));
                }
            }
        }
    }

    /// The packet let go by [`Self::wait`] is with the egress thread (a
    /// full queue may have held the hand-over up; that is not lateness).
    fn handed_over(&mut self) {
        self.ready_since = Some(Instant::now());
    }

    /// Nothing waits to be sent: the time until the next packet is not late.
    fn idle(&mut self) {
        self.ready_since = None;
    }

    /// One observation per burst or FDT, never per packet: its latest packet.
    fn record(&mut self, latency: &LatencyMetrics) {
        if let Some(worst) = self.worst.take() {
            latency.pacer_lateness(worst);
        }
    }
}

fn remove_spool(content: &Content) {
    if let Content::Spool { path, .. } = content {
        let _ = std::fs::remove_file(path);
    }
}

fn md5_of(bytes: &[u8]) -> [u8; 16] {
    use md5::Digest;
    md5::Md5::digest(bytes).into()
}

enum OwnedAction {
    SendFdt(u32, FdtInstance),
    SendObject(u128),
    Forget(u128),
    Close,
}

fn owned(action: CarouselAction<'_>) -> OwnedAction {
    match action {
        CarouselAction::SendFdt { instance_id, fdt } => {
            OwnedAction::SendFdt(instance_id, fdt.clone())
        }
        CarouselAction::SendObject { toi } => OwnedAction::SendObject(toi),
        CarouselAction::Forget { toi } => OwnedAction::Forget(toi),
        CarouselAction::CloseSession => OwnedAction::Close,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gateway::download::config::DEFAULT_FDT_TEMPLATE;
    use crate::protocol::flute::carousel::CarouselConfig;
    use crate::protocol::keys::{Mki, MskId, MtkId};
    use std::net::UdpSocket;
    use std::path::Path;
    use std::sync::mpsc::{SyncSender, sync_channel};

    const KEY_URI: &str = "mbms-keys/1.mikey";

    fn protected(dir: &Path, location: &str) -> ProtectedObject {
        let dcf = vec![9u8; 3000];
        let spool_path = dir.join(location);
        std::fs::write(&spool_path, &dcf).unwrap();
        ProtectedObject {
            content_location: location.into(),
            spool_path,
            transfer_length: dcf.len() as u64,
            content_md5: Some(md5_of(&dcf)),
            key_uri: KEY_URI.into(),
            key_message: Arc::from(&b"mikey"[..]),
            epoch: 0,
            mki: Mki {
                msk_id: MskId(1),
                mtk_id: MtkId(1),
            },
            plaintext_len: 2900,
        }
    }

    fn sender(receiver: SocketAddr) -> (FluteSender, SyncSender<SenderCommand>, Arc<SenderStats>) {
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        let (egress, _thread) = Egress::spawn("sender-test", socket, 64).unwrap();
        let (commands, command_rx) = sync_channel(8);
        let stats = Arc::new(SenderStats::default());
        let config = SenderConfig {
            name: "test".into(),
            tsi: 1,
            destination: receiver,
            max_packet: 1400,
            fec: FecScheme::CompactNoCode,
            symbol_length: None,
            max_source_block_length: 64,
            lifetime: ObjectLifetimeSetting::Repetitions(NonZeroU32::MIN),
            bitrate: 50_000_000,
            fdt_copies: 1,
        };
        let sender = FluteSender::new(
            config,
            Carousel::new(CarouselConfig::default(), Instant::now()).unwrap(),
            FdtTemplate::parse("default", DEFAULT_FDT_TEMPLATE).unwrap(),
            egress,
            command_rx,
            stats.clone(),
            Arc::new(AtomicBool::new(false)),
        )
        .unwrap();
        (sender, commands, stats)
    }

    /// Lateness counts the time a ready packet was held up (here, the
    /// thread away between two packets), not the time the sender was idle.
    #[test]
    fn pacing_lateness_counts_a_held_up_sender_but_not_an_idle_one() {
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        let (egress, _thread) = Egress::spawn("pacing-test", socket, 8).unwrap();
        let mut batcher = Batcher::new(egress);
        let stop = AtomicBool::new(false);
        // 1000 bytes/s with room for 1000 bytes: 100-byte packets never wait.
        let mut pacing = Pacing::new(Pacer::new(8_000, 1_000, Instant::now()).unwrap());
        assert!(pacing.wait(&stop, &mut batcher, 100));
        pacing.handed_over();
        let away = Duration::from_millis(30);
        std::thread::sleep(away);
        assert!(pacing.wait(&stop, &mut batcher, 100));
        pacing.handed_over();
        assert!(pacing.worst.take().unwrap() >= away);

        pacing.idle();
        let idle = Duration::from_millis(300);
        std::thread::sleep(idle);
        assert!(pacing.wait(&stop, &mut batcher, 100));
        assert!(pacing.worst.take().unwrap() < idle);
    }

    /// An object protected under an MTK whose MIKEY object the carousel has
    /// just retired (its `Forget` not yet handed out) brings that MIKEY
    /// object back rather than being refused for naming a missing key.
    #[test]
    fn an_object_arriving_as_its_key_object_retires_brings_the_key_back() {
        let dir = tempfile::tempdir().unwrap();
        let receiver = UdpSocket::bind("127.0.0.1:0").unwrap();
        let (mut sender, commands, stats) = sender(receiver.local_addr().unwrap());
        commands
            .send(SenderCommand::AddObject(protected(dir.path(), "a")))
            .unwrap();
        assert!(sender.step());
        assert_eq!(sender.carousel.len(), 2, "object and its MIKEY object");
        let key_toi = |sender: &FluteSender| {
            sender
                .carousel
                .tois()
                .find(|t| sender.carousel.object(*t).is_some_and(|o| o.is_mikey))
        };
        let first_key_toi = key_toi(&sender).unwrap();
        let mut steps = 0;
        while !sender.carousel.is_empty() {
            assert!(sender.step());
            steps += 1;
            assert!(steps < 1000, "object a never left the carousel");
        }
        // The window: the carousel let go of the MIKEY object, but the
        // sender has not been told yet.
        assert_eq!(
            sender.entries.len(),
            1,
            "the MIKEY object awaits its Forget"
        );

        commands
            .send(SenderCommand::AddObject(protected(dir.path(), "b")))
            .unwrap();
        assert!(sender.step());
        assert_eq!(
            key_toi(&sender),
            Some(first_key_toi),
            "the same MIKEY message under the same TOI"
        );
        while stats.objects_completed.load(Ordering::Relaxed) < 2 {
            assert_eq!(stats.send_failures.load(Ordering::Relaxed), 0, "b refused");
            assert!(sender.step());
            steps += 1;
            assert!(steps < 2000, "object b was never sent: {stats:?}");
        }
        assert_eq!(stats.objects_added.load(Ordering::Relaxed), 2);
        assert_eq!(stats.mikey_objects_added.load(Ordering::Relaxed), 2);
        assert_eq!(stats.object_transmissions.load(Ordering::Relaxed), 2);
        assert_eq!(stats.mikey_transmissions.load(Ordering::Relaxed), 2);
    }
}
