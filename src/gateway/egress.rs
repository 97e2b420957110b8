//! The egress sender: one dedicated OS thread per egress socket, fed by a
//! bounded queue of datagram batches (design §4). Queued producers (the MTK
//! key manager, FLUTE senders) never touch the socket; the thread sends each
//! batch with one GSO system call and hands the buffer back for reuse, so the
//! steady state allocates nothing.
//!
//! The streaming relay is the exception: its ingest workers protect a burst
//! in place in a [`DatagramSlab`] and send it on the same socket themselves
//! ([`Egress::send_slab`]), since a hand-off per burst would cost as much as
//! the send. Both ways count in the same [`EgressStats`].

use crate::runtime::datagram_slab::{DatagramSlab, Sent};
use crate::runtime::log_limit::LogLimiter;
use crate::runtime::metrics::{EgressLabel, EgressTotals, LabelValue};
use crate::runtime::udp::{GSO_MAX_BYTES, GSO_MAX_SEGMENTS, send_segments};
use socket2::SockAddr;
use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::thread::JoinHandle;
use std::time::Instant;

/// First capacity of a batch buffer: a few full-size datagrams.
const NEW_BUFFER_BYTES: usize = 8 * 1024;
/// Sent buffers kept for reuse; beyond this they are freed.
const POOL_BUFFERS: usize = 1024;

/// What a batch carries, for counting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EgressKind {
    Srtp,
    Srtcp,
    Mikey,
    Alc,
}

impl EgressKind {
    pub const ALL: [Self; 4] = [Self::Srtp, Self::Srtcp, Self::Mikey, Self::Alc];
}

/// Equal-size datagrams to one destination (the last may be shorter).
#[derive(Debug)]
pub struct Batch {
    pub dest: SocketAddr,
    pub kind: EgressKind,
    pub segment: usize,
    pub buf: Vec<u8>,
}

impl Batch {
    pub fn datagrams(&self) -> usize {
        self.buf.len().div_ceil(self.segment.max(1))
    }
}

/// Counters of one egress thread.
#[derive(Debug, Default)]
pub struct EgressStats {
    pub packets: [AtomicU64; EgressKind::ALL.len()],
    pub bytes: [AtomicU64; EgressKind::ALL.len()],
    pub send_errors: AtomicU64,
    pub queue_full: AtomicU64,
    /// Batches of this producer queued and not yet sent: its share of the
    /// egress queue, which several sessions may share.
    pub queued: AtomicU64,
}

impl EgressStats {
    pub fn packets(&self, kind: EgressKind) -> u64 {
        self.packets[kind as usize].load(Ordering::Relaxed)
    }

    pub fn bytes(&self, kind: EgressKind) -> u64 {
        self.bytes[kind as usize].load(Ordering::Relaxed)
    }

    /// `datagrams` of `kind`, `bytes` in all, left the socket.
    fn count_sent(&self, kind: EgressKind, datagrams: usize, bytes: usize) {
        self.packets[kind as usize].fetch_add(datagrams as u64, Ordering::Relaxed);
        self.bytes[kind as usize].fetch_add(bytes as u64, Ordering::Relaxed);
    }

    /// A copy of every counter, for the metrics exporter.
    pub fn totals(&self) -> EgressTotals {
        let mut totals = EgressTotals {
            send_errors: self.send_errors.load(Ordering::Relaxed),
            queue_full: self.queue_full.load(Ordering::Relaxed),
            queued: self.queued.load(Ordering::Relaxed),
            ..EgressTotals::default()
        };
        for kind in EgressKind::ALL {
            let at = EgressLabel::from(kind).index();
            totals.packets[at] = self.packets(kind);
            totals.bytes[at] = self.bytes(kind);
        }
        totals
    }
}

/// The series a datagram kind is counted in (`egress_packets_total{kind}`).
impl From<EgressKind> for EgressLabel {
    fn from(kind: EgressKind) -> Self {
        match kind {
            EgressKind::Srtp => Self::Srtp,
            EgressKind::Srtcp => Self::Srtcp,
            EgressKind::Mikey => Self::Mikey,
            EgressKind::Alc => Self::Alc,
        }
    }
}

/// The producer side; cheap to clone. The thread stops when every clone is
/// dropped and the queue is drained. Each clone made with
/// [`Egress::with_own_stats`] counts what it sends separately, so sessions
/// sharing one sender thread keep their own egress counters.
#[derive(Clone)]
pub struct Egress {
    tx: SyncSender<Queued>,
    shared: Arc<Shared>,
    stats: Arc<EgressStats>,
}

/// A batch with the counters it is to be counted in.
struct Queued {
    batch: Batch,
    stats: Arc<EgressStats>,
}

/// State seen by both the producers and the sender thread.
struct Shared {
    socket: UdpSocket,
    pool: std::sync::Mutex<Vec<Vec<u8>>>,
    alive: AtomicBool,
    /// Cleared once the kernel refuses UDP GSO on the socket.
    gso: AtomicBool,
}

impl Egress {
    /// Starts the sender thread for `socket` with a queue of `capacity` batches.
    pub fn spawn(
        name: &str,
        socket: UdpSocket,
        capacity: usize,
    ) -> std::io::Result<(Self, JoinHandle<()>)> {
        let (tx, rx) = sync_channel(capacity);
        let shared = Arc::new(Shared {
            socket,
            pool: Default::default(),
            alive: AtomicBool::new(true),
            gso: AtomicBool::new(true),
        });
        let worker = shared.clone();
        let handle = std::thread::Builder::new()
            .name(format!("egress-{name}"))
            .spawn(move || worker.run(rx))?;
        Ok((
            Self {
                tx,
                shared,
                stats: Default::default(),
            },
            handle,
        ))
    }

    /// A producer on the same thread whose sends are counted in fresh stats.
    pub fn with_own_stats(&self) -> Self {
        Self {
            stats: Default::default(),
            ..self.clone()
        }
    }

    /// What this producer (and its clones) sent.
    pub fn stats(&self) -> &Arc<EgressStats> {
        &self.stats
    }

    /// False once the thread has stopped (every producer dropped, or it failed).
    pub fn is_alive(&self) -> bool {
        self.shared.alive.load(Ordering::Relaxed)
    }

    /// A liveness check that does not keep the thread running (it holds no
    /// producer), for readiness probes.
    pub fn liveness(&self) -> impl Fn() -> bool + Send + Sync + 'static {
        let shared = self.shared.clone();
        move || shared.alive.load(Ordering::Relaxed)
    }

    /// An empty buffer, reused from sent batches when one is free. A new one
    /// starts small and grows to what its batches need: most batches of a
    /// streaming session hold one or two datagrams, not a full GSO send.
    pub fn buffer(&self) -> Vec<u8> {
        self.shared
            .pool
            .lock()
            .ok()
            .and_then(|mut p| p.pop())
            .unwrap_or_else(|| Vec::with_capacity(NEW_BUFFER_BYTES))
    }

    /// Queues a batch, waiting while the queue is full (back-pressure on the
    /// producer). Returns false when the thread is gone.
    pub fn send(&self, batch: Batch) -> bool {
        debug_assert!(batch.datagrams() <= GSO_MAX_SEGMENTS);
        let queued = Queued {
            batch,
            stats: self.stats.clone(),
        };
        // Counted before it is queued, so the thread never takes it below 0.
        self.stats.queued.fetch_add(1, Ordering::Relaxed);
        let sent = match self.tx.try_send(queued) {
            Ok(()) => true,
            Err(TrySendError::Full(queued)) => {
                self.stats.queue_full.fetch_add(1, Ordering::Relaxed);
                self.tx.send(queued).is_ok()
            }
            Err(TrySendError::Disconnected(_)) => false,
        };
        if !sent {
            self.stats.queued.fetch_sub(1, Ordering::Relaxed);
        }
        sent
    }

    /// Sends the routed slots of `slab` now, on the calling thread, counted
    /// in this producer's stats; `routes` gives each route's address and
    /// kind. Returns the last send error (already counted), for the caller
    /// to report.
    pub fn send_slab(
        &self,
        slab: &DatagramSlab,
        dests: &[SockAddr],
        kind: impl Fn(u16) -> EgressKind,
    ) -> Option<std::io::Error> {
        let mut failure = None;
        self.shared.with_gso(|gso| {
            slab.send(&self.shared.socket, dests, gso, |sent| match sent {
                Sent::Ok {
                    route,
                    datagrams,
                    bytes,
                } => self.stats.count_sent(kind(route), datagrams, bytes),
                Sent::Failed { error, .. } => {
                    self.stats.send_errors.fetch_add(1, Ordering::Relaxed);
                    failure = Some(error);
                }
            })
        });
        failure
    }

    /// Queues one datagram.
    pub fn send_one(&self, dest: SocketAddr, kind: EgressKind, bytes: &[u8]) -> bool {
        let mut buf = self.buffer();
        buf.extend_from_slice(bytes);
        self.send(Batch {
            dest,
            kind,
            segment: bytes.len().max(1),
            buf,
        })
    }
}

impl Shared {
    /// Runs `send` with the socket's GSO flag and keeps it off once a send
    /// found the kernel refusing GSO, for every sender on the socket.
    fn with_gso<T>(&self, send: impl FnOnce(&mut bool) -> T) -> T {
        let mut gso = self.gso.load(Ordering::Relaxed);
        let result = send(&mut gso);
        if !gso {
            self.gso.store(false, Ordering::Relaxed);
        }
        result
    }

    fn run(&self, rx: Receiver<Queued>) {
        let mut send_failures = LogLimiter::default();
        while let Ok(Queued { mut batch, stats }) = rx.recv() {
            let result = self.with_gso(|gso| {
                send_segments(&self.socket, batch.dest, &batch.buf, batch.segment, gso)
            });
            match result {
                Ok(()) => stats.count_sent(batch.kind, batch.datagrams(), batch.buf.len()),
                Err(e) => {
                    stats.send_errors.fetch_add(1, Ordering::Relaxed);
                    if let Some(suppressed) = send_failures.allow(Instant::now()) {
                        tracing::warn!(dest = %batch.dest, error = %e, suppressed, "send failed (counted in egress_send_errors_total)");
                    }
                }
            }
            stats.queued.fetch_sub(1, Ordering::Relaxed);
            batch.buf.clear();
            if let Ok(mut pool) = self.pool.lock()
                && pool.len() < POOL_BUFFERS
            {
                pool.push(batch.buf);
            }
        }
        self.alive.store(false, Ordering::Relaxed);
    }
}

/// Packs datagrams into GSO batches: consecutive datagrams of the same size to
/// the same destination share one batch, up to the GSO limits.
pub struct Batcher {
    egress: Egress,
    current: Option<Batch>,
}

impl Batcher {
    pub fn new(egress: Egress) -> Self {
        Self {
            egress,
            current: None,
        }
    }

    /// Appends one datagram, flushing the open batch first when the datagram
    /// cannot join it.
    pub fn push(&mut self, dest: SocketAddr, kind: EgressKind, datagram: &[u8]) {
        let fits = self.current.as_ref().is_some_and(|b| {
            b.dest == dest
                && b.kind == kind
                && b.segment == datagram.len()
                && b.buf.len() % b.segment == 0
                && b.datagrams() < GSO_MAX_SEGMENTS
                && b.buf.len() + datagram.len() <= GSO_MAX_BYTES
        });
        if !fits {
            self.flush();
            self.current = Some(Batch {
                dest,
                kind,
                segment: datagram.len().max(1),
                buf: self.egress.buffer(),
            });
        }
        if let Some(b) = self.current.as_mut() {
            b.buf.extend_from_slice(datagram);
        }
    }

    /// Hands the open batch to the sender thread.
    pub fn flush(&mut self) -> bool {
        match self.current.take() {
            Some(batch) if !batch.buf.is_empty() => self.egress.send(batch),
            _ => true,
        }
    }
}

impl Drop for Batcher {
    fn drop(&mut self) {
        self.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::udp::loopback_egress_socket;

    #[test]
    fn egress_kinds_map_onto_their_stats_slot() {
        for kind in EgressKind::ALL {
            assert_eq!(EgressLabel::from(kind).index(), kind as usize);
        }
    }

    #[test]
    fn batches_of_mixed_sizes_arrive_in_order() {
        let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
        rx.set_read_timeout(Some(std::time::Duration::from_secs(2)))
            .unwrap();
        let (egress, thread) = Egress::spawn("test", loopback_egress_socket(0), 4).unwrap();
        let dest = rx.local_addr().unwrap();
        let sizes = [100usize, 100, 100, 60, 100, 100, 1200, 1200];
        {
            let mut batcher = Batcher::new(egress.clone());
            for (i, size) in sizes.iter().enumerate() {
                batcher.push(dest, EgressKind::Srtp, &vec![i as u8; *size]);
            }
        }
        let mut buf = [0u8; 2048];
        for (i, size) in sizes.iter().enumerate() {
            let n = rx.recv(&mut buf).unwrap();
            assert_eq!(&buf[..n], &vec![i as u8; *size][..], "datagram {i}");
        }
        let stats = egress.stats().clone();
        drop(egress);
        thread.join().unwrap();
        assert_eq!(stats.packets(EgressKind::Srtp), sizes.len() as u64);
        assert_eq!(stats.queued.load(Ordering::Relaxed), 0, "every batch left");
        assert_eq!(
            stats.bytes(EgressKind::Srtp),
            sizes.iter().sum::<usize>() as u64
        );
    }

    /// The relay's own sends: counted per kind in the producer's stats, on
    /// the same socket as the queued batches.
    #[test]
    fn a_slab_sent_directly_is_counted_by_kind() {
        let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
        rx.set_read_timeout(Some(std::time::Duration::from_secs(2)))
            .unwrap();
        rx.set_nonblocking(false).unwrap();
        let ingest = UdpSocket::bind("127.0.0.1:0").unwrap();
        let encoder = UdpSocket::bind("127.0.0.1:0").unwrap();
        for len in [100usize, 100, 40] {
            encoder
                .send_to(&vec![len as u8; len], ingest.local_addr().unwrap())
                .unwrap();
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
        let mut slab = DatagramSlab::new(200);
        assert_eq!(slab.recv(&ingest).unwrap(), 3);
        slab.route(0, 0, 100);
        slab.route(1, 0, 100);
        slab.route(2, 1, 40);
        let (egress, thread) = Egress::spawn("direct", loopback_egress_socket(0), 4).unwrap();
        let dest = SockAddr::from(rx.local_addr().unwrap());
        let kind = |route| {
            if route == 0 {
                EgressKind::Srtp
            } else {
                EgressKind::Srtcp
            }
        };
        assert!(
            egress
                .send_slab(&slab, &[dest.clone(), dest], kind)
                .is_none()
        );
        let mut buf = [0u8; 256];
        for len in [100usize, 100, 40] {
            assert_eq!(rx.recv(&mut buf).unwrap(), len);
        }
        let stats = egress.stats().clone();
        assert_eq!(stats.packets(EgressKind::Srtp), 2);
        assert_eq!(stats.bytes(EgressKind::Srtp), 200);
        assert_eq!(stats.packets(EgressKind::Srtcp), 1);
        assert_eq!(stats.bytes(EgressKind::Srtcp), 40);
        assert_eq!(stats.send_errors.load(Ordering::Relaxed), 0);
        drop(egress);
        thread.join().unwrap();
    }
}
