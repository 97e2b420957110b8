//! Relay throughput on loopback, RTP in → SRTP out, against a plain UDP relay of
//! the same packets, measured in the same run.
//!
//! Each path is one relay thread, pinned to the last CPU when the machine has
//! more than one (generator and sink stay off it):
//! - **plain**: `poll`, one `recvmmsg` into a `runtime::datagram_slab`, one
//!   `sendmmsg` of UDP GSO batches, the datagrams untouched: the cheapest
//!   relay these sockets allow.
//! - **gateway**: a real streaming session (`gateway::streaming::start`) on
//!   an ingest pool of one worker: the same receive and send around classify,
//!   sequence continuity and SRTP protect in place, under an MTK drawn from an
//!   in-process MSK (no BM-SC, no gRPC); with the default `min_wake_interval`
//!   and with `0s` (a wake-up per readable socket, as the plain relay).
//! - **scaling**: two sessions on a pool of two workers, each with its own
//!   generator and sink, against one session on one worker.
//!
//! Phases:
//! - **closed loop**: the generator keeps at most `WINDOW` packets between
//!   itself and the sink, so it sends as fast as the relay forwards and never
//!   overruns the ingest socket; the delivered rate is the relay's maximum
//!   loss-free rate on this machine.
//! - **paced**: the generator sends 50 k packets/s, the moderate load where
//!   CPU per packet is compared, and where latency is measured without
//!   queueing behind a full window.
//!
//! Measurements:
//! - packets/s and bytes/s: datagrams (and their bytes, SRTP overhead included
//!   on the gateway path) received by the sinks during the measurement window,
//!   over the window's wall time.
//! - CPU per packet: CPU time of the relay's own threads over the window, from
//!   `/proc/self/task/<tid>/schedstat` (the scheduler's per-thread run time in
//!   ns), divided by the packets relayed. Generators and sinks are excluded by
//!   construction; kernel work on the relay threads (the receive, the GSO send
//!   with its loopback delivery) is included. `1 s / CPU per packet` is the
//!   rate one core would sustain.
//! - latency: the generator writes its send time (ns since the run's epoch,
//!   low 32 bits) into the RTP timestamp field of each packet just before the
//!   send system call; the sink subtracts it from its receive time. The RTP
//!   header stays in clear under SRTP (RFC 3711 §3.1), so every path is timed
//!   the same way.
//! - loss: packets sent minus packets received over the whole phase, after the
//!   relay has drained.
//!
//! `cargo bench --bench relay -- --measurement-time 3 --warm-up-time 1`; without
//! `--bench` (e.g. `cargo test --benches`) it runs a short smoke pass.

#[path = "common/affinity.rs"]
mod affinity;
use affinity::set_affinity;
use mbms_gateway::gateway::config::{Flow, MtkSettings, SrtpSettings, StreamingSession};
use mbms_gateway::gateway::egress::Egress;
use mbms_gateway::gateway::keys::journal::KeyJournal;
use mbms_gateway::gateway::keys::mtk_keys::LeaseSource;
use mbms_gateway::gateway::streaming::ingest_workers::{IngestPool, IngestSettings};
use mbms_gateway::gateway::streaming::{self, SessionContext, SessionState, StreamingHandle};
use mbms_gateway::protocol::keys::{KeyDomainId, Msk, MskId, MtkId};
use mbms_gateway::runtime::datagram_slab::{DatagramSlab, SLOTS};
use mbms_gateway::runtime::key_service::{LeaseError, LeaseRecord, MskRecord, MskSet};
use mbms_gateway::runtime::udp::{
    EgressOptions, GSO_MAX_BYTES, IngestOptions, MAX_EGRESS_DATAGRAM, egress_socket, ingest_socket,
    send_segments, set_int_option,
};
use socket2::SockAddr;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::watch;

/// RTP packet size on the wire at ingest: 12-byte header + 7 MPEG-TS packets.
const PACKET: usize = 1328;
const RTP_HEADER: usize = 12;
const TS_PACKET: usize = 188;
/// Packets per generator GSO send: as many 1328-byte segments as fit.
const GEN_BATCH: usize = GSO_MAX_BYTES / PACKET;
/// Closed-loop window in packets: well inside the ingest socket's receive
/// buffer (8 MiB requested), so the generator cannot overrun it.
const WINDOW: u64 = 2048;
/// The moderate load at which CPU per packet is compared.
const PACED_PPS: u64 = 50_000;
/// Egress queue depth in batches, as the gateway runner.
const EGRESS_QUEUE: usize = 1024;
const LOCALHOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
const SSRC: u32 = 0x5eed_0001;
const KEY_GROUP: u16 = 1;

/// Nanoseconds since the run's epoch, shared by generator and sink.
#[derive(Clone, Copy)]
struct Clock(Instant);

impl Clock {
    fn now_ns(self) -> u64 {
        self.0.elapsed().as_nanos() as u64
    }
}

// ---------------------------------------------------------------- sink

/// Counts relayed datagrams and records their latency while `recording`.
struct Sink {
    addr: SocketAddr,
    received: Arc<AtomicU64>,
    bytes: Arc<AtomicU64>,
    recording: Arc<AtomicBool>,
    latencies: Arc<Mutex<Vec<u32>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Sink {
    fn start(clock: Clock) -> Self {
        let socket = socket2::Socket::new(
            socket2::Domain::IPV4,
            socket2::Type::DGRAM,
            Some(socket2::Protocol::UDP),
        )
        .expect("sink socket");
        socket.set_recv_buffer_size(8 << 20).ok();
        socket
            .bind(&SocketAddr::new(LOCALHOST, 0).into())
            .expect("sink bind");
        let socket: UdpSocket = socket.into();
        // UDP GRO: a GSO batch from the relay arrives whole, with its segment
        // size, so the sink is not the bottleneck.
        let gro = set_int_option(&socket, libc::SOL_UDP, libc::UDP_GRO, 1).is_ok();
        socket
            .set_read_timeout(Some(Duration::from_millis(20)))
            .expect("sink timeout");
        let addr = socket.local_addr().expect("sink address");
        let received = Arc::new(AtomicU64::new(0));
        let bytes = Arc::new(AtomicU64::new(0));
        let recording = Arc::new(AtomicBool::new(false));
        let latencies = Arc::new(Mutex::new(Vec::with_capacity(8 << 20)));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (received, bytes, recording, latencies, stop) = (
                received.clone(),
                bytes.clone(),
                recording.clone(),
                latencies.clone(),
                stop.clone(),
            );
            std::thread::Builder::new()
                .name("bench-sink".into())
                .spawn(move || {
                    let mut buf = vec![0u8; 65_536];
                    while !stop.load(Ordering::Relaxed) {
                        let Some((n, segment)) = recv_coalesced(&socket, &mut buf, gro) else {
                            continue;
                        };
                        let now = clock.now_ns() as u32;
                        let segment = segment.unwrap_or(n).max(1);
                        let count = n.div_ceil(segment);
                        received.fetch_add(count as u64, Ordering::Relaxed);
                        bytes.fetch_add(n as u64, Ordering::Relaxed);
                        if recording.load(Ordering::Relaxed) {
                            let mut lat = latencies.lock().expect("latencies");
                            lat.extend(buf[..n].chunks(segment).filter_map(|p| {
                                let sent = u32::from_be_bytes(p.get(4..8)?.try_into().ok()?);
                                Some(now.wrapping_sub(sent))
                            }));
                        }
                    }
                })
                .expect("sink thread")
        };
        Self {
            addr,
            received,
            bytes,
            recording,
            latencies,
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// One `recvmsg`: the bytes received and, with GRO, the segment size of the
/// coalesced datagrams. `None` on timeout or error.
fn recv_coalesced(socket: &UdpSocket, buf: &mut [u8], gro: bool) -> Option<(usize, Option<usize>)> {
    if !gro {
        return socket.recv(buf).ok().map(|n| (n, None));
    }
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    let mut control = [0u64; 8];
    // SAFETY: an all-zero msghdr is valid; the pointers set below refer to
    // `iov` and `control`, which outlive the call.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = std::mem::size_of_val(&control) as _;
    // SAFETY: `msg` describes live buffers for the call's duration.
    let n = unsafe { libc::recvmsg(socket.as_raw_fd(), &mut msg, 0) };
    if n <= 0 {
        return None;
    }
    let mut segment = None;
    // SAFETY: the kernel filled `control` up to msg_controllen; the CMSG macros
    // walk only within it.
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(&msg);
        while !cmsg.is_null() {
            if (*cmsg).cmsg_level == libc::SOL_UDP && (*cmsg).cmsg_type == libc::UDP_GRO {
                let size = std::ptr::read_unaligned(libc::CMSG_DATA(cmsg) as *const libc::c_int);
                segment = usize::try_from(size).ok();
            }
            cmsg = libc::CMSG_NXTHDR(&msg, cmsg);
        }
    }
    Some((n as usize, segment))
}

// ---------------------------------------------------------------- generator

#[derive(Clone, Copy)]
enum Rate {
    /// At most `WINDOW` packets between generator and sink.
    ClosedLoop,
    /// A fixed rate in packets per second.
    Paced(u64),
}

struct Generator {
    sent: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    thread: JoinHandle<()>,
}

impl Generator {
    fn start(clock: Clock, dest: SocketAddr, rate: Rate, sink_received: Arc<AtomicU64>) -> Self {
        let socket = socket2::Socket::new(
            socket2::Domain::IPV4,
            socket2::Type::DGRAM,
            Some(socket2::Protocol::UDP),
        )
        .expect("generator socket");
        socket.set_send_buffer_size(8 << 20).ok();
        socket
            .bind(&SocketAddr::new(LOCALHOST, 0).into())
            .expect("generator bind");
        let socket: UdpSocket = socket.into();
        let sent = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (sent, stop) = (sent.clone(), stop.clone());
            std::thread::Builder::new()
                .name("bench-generator".into())
                .spawn(move || generate(&socket, dest, clock, rate, &sink_received, &sent, &stop))
                .expect("generator thread")
        };
        Self { sent, stop, thread }
    }

    /// Stops sending; returns the packets sent.
    fn finish(self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.thread.join();
        self.sent.load(Ordering::Relaxed)
    }
}

/// A batch of RTP packets of MPEG-TS payload (PT 33), sequence numbers
/// continuing from `first_seq`; the timestamp field is set at send time.
fn fill_batch(batch: &mut [u8], first_seq: u64) {
    for (i, p) in batch.chunks_exact_mut(PACKET).enumerate() {
        p[0] = 0x80;
        p[1] = 33;
        p[2..4].copy_from_slice(&((first_seq + i as u64) as u16).to_be_bytes());
        p[8..12].copy_from_slice(&SSRC.to_be_bytes());
        for (j, ts) in p[RTP_HEADER..].chunks_exact_mut(TS_PACKET).enumerate() {
            ts.fill(j as u8);
            ts[0] = 0x47;
        }
    }
}

fn stamp(batch: &mut [u8], now: u32) {
    for p in batch.chunks_exact_mut(PACKET) {
        p[4..8].copy_from_slice(&now.to_be_bytes());
    }
}

fn generate(
    socket: &UdpSocket,
    dest: SocketAddr,
    clock: Clock,
    rate: Rate,
    sink_received: &AtomicU64,
    sent: &AtomicU64,
    stop: &AtomicBool,
) {
    // Finer sleeps for pacing (the default slack is 50 µs).
    // SAFETY: PR_SET_TIMERSLACK takes one integer argument.
    unsafe { libc::prctl(libc::PR_SET_TIMERSLACK, 1_000 as libc::c_ulong) };
    let per_send = match rate {
        Rate::ClosedLoop => GEN_BATCH,
        // About one send per 100 µs.
        Rate::Paced(pps) => (pps / 10_000).clamp(1, GEN_BATCH as u64) as usize,
    };
    let mut buf = vec![0u8; per_send * PACKET];
    let mut gso = true;
    let mut seq = 0u64;
    let received_before = sink_received.load(Ordering::Relaxed);
    let start = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        match rate {
            Rate::ClosedLoop => {
                let delivered = sink_received.load(Ordering::Relaxed) - received_before;
                let in_flight = seq.saturating_sub(delivered);
                if in_flight + per_send as u64 > WINDOW {
                    std::thread::sleep(Duration::from_micros(20));
                    continue;
                }
            }
            Rate::Paced(pps) => {
                let due = start + Duration::from_nanos(seq * 1_000_000_000 / pps);
                let now = Instant::now();
                if due > now {
                    std::thread::sleep(due - now);
                }
            }
        }
        fill_batch(&mut buf, seq);
        stamp(&mut buf, clock.now_ns() as u32);
        if send_segments(socket, dest, &buf, PACKET, &mut gso).is_ok() {
            seq += per_send as u64;
            sent.store(seq, Ordering::Relaxed);
        }
    }
}

// ---------------------------------------------------------------- relays

/// Run time on CPU (ns, from the scheduler's per-thread accounting) and
/// wake-ups (voluntary context switches) of this process's threads named in
/// `names`.
fn threads_cpu_ns(names: &[&str]) -> (u64, u64) {
    thread_ids(names)
        .iter()
        .map(|tid| {
            let cpu = std::fs::read_to_string(format!("/proc/self/task/{tid}/schedstat"))
                .ok()
                .and_then(|s| s.split_whitespace().next()?.parse::<u64>().ok())
                .unwrap_or(0);
            let wakes = std::fs::read_to_string(format!("/proc/self/task/{tid}/status"))
                .ok()
                .and_then(|s| {
                    s.lines()
                        .find_map(|l| l.strip_prefix("voluntary_ctxt_switches:"))?
                        .trim()
                        .parse::<u64>()
                        .ok()
                })
                .unwrap_or(0);
            (cpu, wakes)
        })
        .fold((0, 0), |(c, w), (c1, w1)| (c + c1, w + w1))
}

/// Thread IDs of this process's threads named in `names`.
fn thread_ids(names: &[&str]) -> Vec<libc::pid_t> {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return Vec::new();
    };
    tasks
        .filter_map(Result::ok)
        .filter(|task| {
            std::fs::read_to_string(task.path().join("comm"))
                .is_ok_and(|comm| names.contains(&comm.trim_end()))
        })
        .filter_map(|task| task.file_name().to_str()?.parse().ok())
        .collect()
}

/// CPUs of the machine, read before any affinity is set (which narrows
/// `available_parallelism`).
fn cpus() -> usize {
    static CPUS: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *CPUS.get_or_init(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

/// Pins the threads named in `names` to one CPU each, from the last CPU down,
/// when the machine has more CPUs than relay threads (generators and sinks
/// keep the others, see [`keep_off_relay_cpus`]); otherwise lets them run
/// anywhere.
fn pin(names: &[&str]) {
    let cpus = cpus();
    for (i, name) in names.iter().enumerate() {
        for tid in thread_ids(&[name]) {
            if cpus > names.len() {
                let _ = set_affinity(tid, [cpus - 1 - i]);
            } else {
                let _ = set_affinity(tid, 0..cpus);
            }
        }
    }
}

/// Keeps the calling thread (and the generators and sinks it starts) off the
/// CPUs `relay_threads` relay threads are pinned to.
fn keep_off_relay_cpus(relay_threads: usize) {
    let cpus = cpus();
    if cpus > relay_threads {
        let _ = set_affinity(0, 0..cpus - relay_threads);
    } else {
        let _ = set_affinity(0, 0..cpus);
    }
}

fn loopback_egress_socket() -> UdpSocket {
    egress_socket(
        false,
        &EgressOptions {
            interface: Some(LOCALHOST),
            interface_index: 0,
            ttl: 1,
            dscp: 0,
        },
    )
    .expect("egress socket")
}

fn relay_ingest_socket() -> UdpSocket {
    let socket = ingest_socket(&IngestOptions {
        listen: SocketAddr::new(LOCALHOST, 0),
        source: None,
        interface: None,
    })
    .expect("ingest socket");
    socket.set_nonblocking(true).expect("nonblocking");
    socket
}

/// A relay under test: where its generators send, and its threads' names.
trait Relay {
    fn ingest(&self) -> &[SocketAddr];
    fn threads(&self) -> Vec<String>;
    fn stop(self: Box<Self>);
}

/// The plain relay: poll, recvmmsg, sendmmsg, nothing in between.
struct PlainRelay {
    ingest: [SocketAddr; 1],
    stop: Arc<AtomicBool>,
    thread: JoinHandle<()>,
}

impl PlainRelay {
    const THREAD: &str = "relay-plain";

    fn start(dest: SocketAddr) -> Self {
        let socket = relay_ingest_socket();
        let ingest = [socket.local_addr().expect("plain ingest address")];
        let egress = loopback_egress_socket();
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let stop = stop.clone();
            std::thread::Builder::new()
                .name(Self::THREAD.into())
                .spawn(move || plain_relay(&socket, &egress, dest, &stop))
                .expect("plain relay thread")
        };
        Self {
            ingest,
            stop,
            thread,
        }
    }
}

impl Relay for PlainRelay {
    fn ingest(&self) -> &[SocketAddr] {
        &self.ingest
    }

    fn threads(&self) -> Vec<String> {
        vec![Self::THREAD.into()]
    }

    fn stop(self: Box<Self>) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.thread.join();
    }
}

fn plain_relay(socket: &UdpSocket, egress: &UdpSocket, dest: SocketAddr, stop: &AtomicBool) {
    let mut slab = DatagramSlab::new(MAX_EGRESS_DATAGRAM);
    let dests = [SockAddr::from(dest)];
    let mut gso = true;
    let mut fd = libc::pollfd {
        fd: socket.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    while !stop.load(Ordering::Relaxed) {
        // SAFETY: one valid pollfd for the call's duration.
        if unsafe { libc::poll(&mut fd, 1, 20) } <= 0 {
            continue;
        }
        let Ok(n) = slab.recv(socket) else {
            continue;
        };
        for i in 0..n {
            let len = slab.received_len(i);
            slab.route(i, 0, len);
        }
        slab.send(egress, &dests, &mut gso, |_| {});
    }
}

/// Grants consecutive MTK-ID and counter ranges, as a BM-SC with one gateway.
struct LocalLeases {
    next_mtk_id: AtomicU32,
    next_counter: AtomicU32,
}

impl LeaseSource for LocalLeases {
    async fn lease(
        &self,
        msk_id: MskId,
        mtk_ids: u16,
        counters: u32,
    ) -> Result<LeaseRecord, LeaseError> {
        let first_mtk = self
            .next_mtk_id
            .fetch_add(u32::from(mtk_ids), Ordering::Relaxed);
        let first_counter = self.next_counter.fetch_add(counters, Ordering::Relaxed);
        Ok(LeaseRecord {
            msk_id,
            mtk_ids: (
                MtkId(first_mtk as u16),
                MtkId((first_mtk + u32::from(mtk_ids) - 1) as u16),
            ),
            counters: (first_counter, first_counter + counters - 1),
        })
    }
}

/// Streaming sessions keyed from an in-process MSK, one per sink, on an
/// ingest pool of one worker per session.
struct GatewayRelay {
    ingest: Vec<SocketAddr>,
    workers: usize,
    runtime: tokio::runtime::Runtime,
    handles: Vec<StreamingHandle>,
    _pool: IngestPool,
    _msks: watch::Sender<Arc<MskSet>>,
    _journal_dir: tempfile::TempDir,
}

impl GatewayRelay {
    fn start(dests: &[SocketAddr], min_wake_interval: Duration) -> Self {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("clock after 1970")
            .as_secs() as i64;
        let mut set = MskSet::new();
        set.upsert(MskRecord {
            key_domain_id: KeyDomainId([0x09, 0xf1, 0x07]),
            msk_id: MskId::new(KEY_GROUP, 1),
            key: Msk::new([0x4d; 16]),
            validity: (MtkId(1), MtkId(0xffff)),
            not_before: now - 60,
            not_after: now + 3600,
        })
        .expect("MSK accepted");
        let (msks_tx, msks) = watch::channel(Arc::new(set));
        let journal_dir = tempfile::tempdir().expect("journal dir");
        let journal = Arc::new(Mutex::new(
            KeyJournal::open(journal_dir.path()).expect("journal"),
        ));
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime");
        let pool = IngestPool::new(&IngestSettings {
            workers: Some(dests.len()),
            min_wake_interval,
        })
        .expect("ingest workers");
        let (egress, _egress_thread) =
            Egress::spawn("gateway", loopback_egress_socket(), EGRESS_QUEUE)
                .expect("egress thread");
        let mut handles = Vec::new();
        for (i, dest) in dests.iter().enumerate() {
            let session = StreamingSession {
                name: format!("bench-{i}"),
                key_group: KEY_GROUP,
                destination: dest.ip(),
                interface: Some(LOCALHOST),
                interface_index: 0,
                ttl: 1,
                dscp: 0,
                mtk: MtkSettings {
                    period: Duration::from_secs(3600),
                    lead: Duration::from_millis(100),
                    ..MtkSettings::default()
                },
                srtp: SrtpSettings::default(),
                flows: vec![Flow {
                    name: None,
                    ingest: SocketAddr::new(LOCALHOST, 0),
                    ingest_source: None,
                    ingest_interface: None,
                    port: dest.port(),
                    sdp: None,
                }],
            };
            let mut handle = runtime.block_on(async {
                streaming::start(
                    &session,
                    SessionContext {
                        key_domain_id: KeyDomainId([0x09, 0xf1, 0x07]),
                        msks: msks.clone(),
                        // Disjoint ranges, as a BM-SC grants them.
                        leases: LocalLeases {
                            next_mtk_id: AtomicU32::new(1 + 1000 * i as u32),
                            next_counter: AtomicU32::new(1 + 1_000_000 * i as u32),
                        },
                        journal: journal.clone(),
                        lease_block: 4,
                        egress: egress.clone(),
                        ingest: pool.clone(),
                    },
                )
                .expect("session starts")
            });
            runtime.block_on(async {
                tokio::time::timeout(
                    Duration::from_secs(10),
                    handle
                        .state
                        .wait_for(|s| matches!(s, SessionState::OnAir { .. })),
                )
                .await
                .expect("session on air within 10 s")
                .expect("session state");
            });
            handles.push(handle);
        }
        Self {
            ingest: handles.iter().map(|h| h.ingest_addrs()[0]).collect(),
            workers: dests.len(),
            runtime,
            handles,
            _pool: pool,
            _msks: msks_tx,
            _journal_dir: journal_dir,
        }
    }
}

impl Relay for GatewayRelay {
    fn ingest(&self) -> &[SocketAddr] {
        &self.ingest
    }

    /// The ingest workers; the egress thread only sends MIKEY (counted too).
    fn threads(&self) -> Vec<String> {
        (0..self.workers)
            .map(|i| format!("ingest-{i}"))
            .chain(["egress-gateway".into()])
            .collect()
    }

    fn stop(self: Box<Self>) {
        let Self {
            runtime, handles, ..
        } = *self;
        runtime.block_on(async {
            for handle in handles {
                handle.stop().await;
            }
        });
    }
}

// ---------------------------------------------------------------- phases

#[derive(Clone, Copy)]
struct Timing {
    warm_up: Duration,
    measure: Duration,
}

struct Percentiles {
    p50: u32,
    p99: u32,
    p999: u32,
}

impl Percentiles {
    fn of(mut v: Vec<u32>) -> Option<Self> {
        if v.is_empty() {
            return None;
        }
        v.sort_unstable();
        let at = |q: f64| v[((v.len() - 1) as f64 * q).round() as usize];
        Some(Self {
            p50: at(0.50),
            p99: at(0.99),
            p999: at(0.999),
        })
    }
}

struct PhaseResult {
    pps: f64,
    bytes_per_s: f64,
    /// CPU per relayed packet of the relay's threads.
    cpu_ns_per_packet: f64,
    /// Packets relayed per wake-up of the relay's threads.
    packets_per_wake: f64,
    sent: u64,
    received: u64,
    latency: Option<Percentiles>,
}

/// Runs generators into every ingest of `relay` (towards the matching sink)
/// and measures what the sinks receive.
fn run_phase(
    clock: Clock,
    sinks: &[Sink],
    relay: &dyn Relay,
    rate: Rate,
    timing: Timing,
) -> PhaseResult {
    let names = relay.threads();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    pin(&names[..relay.ingest().len()]);
    let received = || -> u64 {
        sinks
            .iter()
            .map(|s| s.received.load(Ordering::Relaxed))
            .sum()
    };
    let bytes = || -> u64 { sinks.iter().map(|s| s.bytes.load(Ordering::Relaxed)).sum() };
    let received_before = received();
    for sink in sinks {
        sink.latencies.lock().expect("latencies").clear();
    }
    let generators: Vec<Generator> = relay
        .ingest()
        .iter()
        .zip(sinks)
        .map(|(ingest, sink)| Generator::start(clock, *ingest, rate, sink.received.clone()))
        .collect();
    std::thread::sleep(timing.warm_up);

    let (t0, packets0, bytes0, cpu0) =
        (Instant::now(), received(), bytes(), threads_cpu_ns(&names));
    for sink in sinks {
        sink.recording.store(true, Ordering::Relaxed);
    }
    std::thread::sleep(timing.measure);
    for sink in sinks {
        sink.recording.store(false, Ordering::Relaxed);
    }
    let (elapsed, packets1, bytes1, cpu1) = (
        t0.elapsed().as_secs_f64(),
        received(),
        bytes(),
        threads_cpu_ns(&names),
    );

    let sent = generators.into_iter().map(Generator::finish).sum();
    // Let the relay drain: wait until the sink count stops moving.
    let mut last = received();
    loop {
        std::thread::sleep(Duration::from_millis(100));
        let now = received();
        if now == last {
            break;
        }
        last = now;
    }
    let packets = packets1 - packets0;
    let latencies = sinks
        .iter()
        .flat_map(|s| std::mem::take(&mut *s.latencies.lock().expect("latencies")))
        .collect();
    PhaseResult {
        pps: packets as f64 / elapsed,
        bytes_per_s: (bytes1 - bytes0) as f64 / elapsed,
        cpu_ns_per_packet: (cpu1.0 - cpu0.0) as f64 / packets.max(1) as f64,
        packets_per_wake: packets as f64 / (cpu1.1 - cpu0.1).max(1) as f64,
        sent,
        received: last - received_before,
        latency: Percentiles::of(latencies),
    }
}

fn si(x: f64) -> String {
    match x {
        x if x >= 1e9 => format!("{:.3} G", x / 1e9),
        x if x >= 1e6 => format!("{:.3} M", x / 1e6),
        x if x >= 1e3 => format!("{:.3} K", x / 1e3),
        x => format!("{x:.1} "),
    }
}

fn micros(ns: u32) -> String {
    format!("{:.1} µs", f64::from(ns) / 1e3)
}

fn report(id: &str, r: &PhaseResult) {
    let lost = r.sent.saturating_sub(r.received);
    println!("{id}");
    println!(
        "                        thrpt:  [{}elem/s  {}B/s]",
        si(r.pps),
        si(r.bytes_per_s)
    );
    println!(
        "                        cpu:    [{:.0} ns/packet = {}packets/s per core; {:.1} packets per wake-up]",
        r.cpu_ns_per_packet,
        si(1e9 / r.cpu_ns_per_packet.max(1.0)),
        r.packets_per_wake
    );
    match &r.latency {
        Some(l) => println!(
            "                        latency ingest→egress: [p50 {}  p99 {}  p99.9 {}]",
            micros(l.p50),
            micros(l.p99),
            micros(l.p999)
        ),
        None => println!("                        latency ingest→egress: [no packets]"),
    }
    println!(
        "                        loss:   [{lost} of {} sent ({:.4} %)]",
        r.sent,
        100.0 * lost as f64 / r.sent.max(1) as f64
    );
}

fn timing_from_args() -> Timing {
    let args: Vec<String> = std::env::args().collect();
    let seconds = |flag: &str, default: f64| {
        args.iter()
            .position(|a| a == flag)
            .and_then(|i| args.get(i + 1))
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(default)
    };
    if args.iter().any(|a| a == "--bench") {
        Timing {
            warm_up: Duration::from_secs_f64(seconds("--warm-up-time", 1.0)),
            measure: Duration::from_secs_f64(seconds("--measurement-time", 3.0)),
        }
    } else {
        // Smoke pass under `cargo test --benches`.
        Timing {
            warm_up: Duration::from_millis(100),
            measure: Duration::from_millis(300),
        }
    }
}

/// The run's settings: timing and which phases to run.
struct Bench {
    clock: Clock,
    timing: Timing,
    /// Runs only phases whose name contains it (the first argument that is
    /// not a flag, as criterion's filter).
    filter: Option<String>,
}

impl Bench {
    /// Starts a relay, runs a phase on it, stops it and reports; `None` when
    /// the filter leaves the phase out.
    fn measure(
        &self,
        id: &str,
        sinks: &[Sink],
        start: impl FnOnce() -> Box<dyn Relay>,
        rate: Rate,
    ) -> Option<PhaseResult> {
        if self
            .filter
            .as_ref()
            .is_some_and(|f| !id.contains(f.as_str()))
        {
            return None;
        }
        let relay = start();
        let result = run_phase(self.clock, sinks, relay.as_ref(), rate, self.timing);
        relay.stop();
        report(id, &result);
        Some(result)
    }
}

fn filter_from_args() -> Option<String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i < args.len() {
        match args[i].as_str() {
            "--measurement-time" | "--warm-up-time" => i += 2,
            a if a.starts_with('-') => i += 1,
            a => return Some(a.to_string()),
        }
    }
    None
}

fn main() {
    let bench = Bench {
        clock: Clock(Instant::now()),
        timing: timing_from_args(),
        filter: filter_from_args(),
    };
    let clock = bench.clock;
    let default_interval = IngestSettings::default().min_wake_interval;
    let _ = cpus();
    keep_off_relay_cpus(1);
    let sinks = [Sink::start(clock)];
    let dest = sinks[0].addr;
    println!(
        "relay on loopback: {PACKET}-byte RTP in, up to {GEN_BATCH} packets per generator GSO send, \
         closed-loop window {WINDOW} packets, {SLOTS} datagrams per relay burst; {} CPUs, load average {}",
        cpus(),
        std::fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    );
    let plain = || Box::new(PlainRelay::start(dest)) as Box<dyn Relay>;
    let gateway =
        |interval| move || Box::new(GatewayRelay::start(&[dest], interval)) as Box<dyn Relay>;
    let interval = format!("{}us", default_interval.as_micros());
    let paced = Rate::Paced(PACED_PPS);

    let plain_max = bench.measure(
        "relay/plain_udp/closed_loop",
        &sinks,
        plain,
        Rate::ClosedLoop,
    );
    let gw_max = bench.measure(
        &format!("relay/gateway_srtp/closed_loop (min_wake_interval {interval})"),
        &sinks,
        gateway(default_interval),
        Rate::ClosedLoop,
    );
    let gw0_max = bench.measure(
        "relay/gateway_srtp/closed_loop (min_wake_interval 0s)",
        &sinks,
        gateway(Duration::ZERO),
        Rate::ClosedLoop,
    );
    let plain_paced = bench.measure(
        &format!("relay/plain_udp/paced_{PACED_PPS}pps"),
        &sinks,
        plain,
        paced,
    );
    let gw_paced = bench.measure(
        &format!("relay/gateway_srtp/paced_{PACED_PPS}pps (min_wake_interval {interval})"),
        &sinks,
        gateway(default_interval),
        paced,
    );
    let gw0_paced = bench.measure(
        &format!("relay/gateway_srtp/paced_{PACED_PPS}pps (min_wake_interval 0s)"),
        &sinks,
        gateway(Duration::ZERO),
        paced,
    );
    // Two workers: nothing pinned, generators and sinks anywhere too.
    keep_off_relay_cpus(2);
    let pair = [Sink::start(clock), Sink::start(clock)];
    let dests = [pair[0].addr, pair[1].addr];
    let two = bench.measure(
        "relay/gateway_srtp/closed_loop_2_sessions_2_workers",
        &pair,
        || Box::new(GatewayRelay::start(&dests, default_interval)),
        Rate::ClosedLoop,
    );

    let k = PACED_PPS / 1000;
    if let (Some(plain_max), Some(plain_paced)) = (&plain_max, &plain_paced) {
        for (max, paced, how) in [
            (&gw_max, &gw_paced, String::new()),
            (
                &gw0_max,
                &gw0_paced,
                ", a wake-up per readable socket (min_wake_interval 0s)".into(),
            ),
        ] {
            if let (Some(max), Some(paced)) = (max, paced) {
                println!(
                    "relay{how}: {:.2}x plain pps, {:.2}x plain cpu/pkt @{k}k ({:.0} vs {:.0} ns)",
                    max.pps / plain_max.pps.max(1.0),
                    paced.cpu_ns_per_packet / plain_paced.cpu_ns_per_packet.max(1.0),
                    paced.cpu_ns_per_packet,
                    plain_paced.cpu_ns_per_packet,
                );
            }
        }
    }
    if let (Some(two), Some(one)) = (&two, &gw_max) {
        println!(
            "relay, 2 sessions on 2 workers: {:.2}x one session's pps ({} CPUs shared with 2 generators and 2 sinks); \
             per-core capacity {:.2}x",
            two.pps / one.pps.max(1.0),
            cpus(),
            2.0 * one.cpu_ns_per_packet / two.cpu_ns_per_packet.max(1.0),
        );
    }
}
