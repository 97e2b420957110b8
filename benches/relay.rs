//! Relay throughput on loopback, RTP in → SRTP out, against a plain UDP relay of
//! the same packets with the same sockets and batching, measured in the same run.
//!
//! Both relays read a nonblocking ingest socket (`runtime::udp::ingest_socket`)
//! in bursts of 64 after `poll`, and hand GSO batches through a
//! `gateway::egress::Batcher` to an `Egress` sender thread on an
//! `egress_socket`. The gateway path is a real streaming session
//! (`gateway::streaming::start`): classify, sequence continuity, SRTP protect
//! under an MTK drawn from an in-process MSK (no BM-SC, no gRPC). The plain
//! relay, built here, forwards the datagrams untouched.
//!
//! Each path runs two phases:
//! - **closed loop**: the generator keeps at most `WINDOW` packets between
//!   itself and the sink, so it sends as fast as the relay forwards and never
//!   overruns the ingest socket; the delivered rate is the relay's maximum
//!   loss-free rate on this machine (generator, relay and sink share its cores).
//! - **paced**: the generator sends at a fixed rate both relays sustain (half the
//!   slower closed-loop rate), for ingest → egress latency without queueing
//!   behind a full window.
//!
//! Measurements:
//! - packets/s and bytes/s: datagrams (and their bytes, SRTP overhead included
//!   on the gateway path) received by the sink during the measurement window,
//!   over the window's wall time.
//! - CPU per packet: CPU time of the relay's own threads (ingest and egress
//!   sender) over the window, from `/proc/self/task/<tid>/schedstat` (the
//!   scheduler's per-thread run time in ns, the counter `getrusage(RUSAGE_THREAD)`
//!   reports at tick precision), divided by the packets relayed. The generator
//!   and the sink are excluded by construction. Kernel work done on the relay
//!   threads (the recv and the GSO send with its loopback delivery) is included.
//!   `1 s / CPU per packet` is the rate one core would sustain.
//! - latency: the generator writes its send time (ns since the run's epoch,
//!   low 32 bits) into the RTP timestamp field of each packet just before the
//!   send system call; the sink subtracts it from its receive time. The RTP
//!   header stays in clear under SRTP (RFC 3711 §3.1), so both paths are timed
//!   the same way; the 32-bit field wraps every 4.29 s, far above any latency.
//! - loss: packets sent by the generator minus packets received by the sink over
//!   the whole phase, after the relay has drained.
//!
//! `cargo bench --bench relay -- --measurement-time 3 --warm-up-time 1`; without
//! `--bench` (e.g. `cargo test --benches`) it runs a short smoke pass.

use mbms_gateway::gateway::config::{Flow, MtkSettings, SrtpSettings, StreamingSession};
use mbms_gateway::gateway::egress::{Batcher, Egress, EgressKind};
use mbms_gateway::gateway::keys::journal::KeyJournal;
use mbms_gateway::gateway::keys::mtk_keys::LeaseSource;
use mbms_gateway::gateway::streaming::ingest_workers::IngestPool;
use mbms_gateway::gateway::streaming::{self, SessionContext, SessionState, StreamingHandle};
use mbms_gateway::protocol::keys::{KeyDomainId, Msk, MskId, MtkId};
use mbms_gateway::runtime::key_service::{LeaseError, LeaseRecord, MskRecord, MskSet};
use mbms_gateway::runtime::udp::{
    EgressOptions, GSO_MAX_BYTES, IngestOptions, egress_socket, ingest_socket, send_segments,
};
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
/// Datagrams read per socket before polling again, as the gateway's ingest loop.
const BURST: usize = 64;
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
        let on: libc::c_int = 1;
        // SAFETY: a valid socket and a c_int option value that outlives the call.
        let gro = unsafe {
            libc::setsockopt(
                socket.as_raw_fd(),
                libc::SOL_UDP,
                libc::UDP_GRO,
                (&on as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        } == 0;
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

/// Run time on CPU of each of this process's threads named in `names`, from
/// the scheduler's per-thread accounting (ns).
fn threads_cpu_ns<const N: usize>(names: &[&str; N]) -> [u64; N] {
    let mut cpu = [0u64; N];
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return cpu;
    };
    for task in tasks.filter_map(Result::ok) {
        let Ok(comm) = std::fs::read_to_string(task.path().join("comm")) else {
            continue;
        };
        let Some(slot) = names.iter().position(|n| *n == comm.trim_end()) else {
            continue;
        };
        cpu[slot] += std::fs::read_to_string(task.path().join("schedstat"))
            .ok()
            .and_then(|s| s.split_whitespace().next()?.parse::<u64>().ok())
            .unwrap_or(0);
    }
    cpu
}

fn bench_egress(name: &str) -> (Egress, JoinHandle<()>) {
    let socket = egress_socket(
        false,
        &EgressOptions {
            interface: Some(LOCALHOST),
            interface_index: 0,
            ttl: 1,
            dscp: 0,
        },
    )
    .expect("egress socket");
    Egress::spawn(name, socket, EGRESS_QUEUE).expect("egress thread")
}

/// The plain relay: the gateway ingest loop's shape without classify or protect.
struct PlainRelay {
    ingest: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: JoinHandle<()>,
    egress_thread: JoinHandle<()>,
}

impl PlainRelay {
    const THREADS: [&str; 2] = ["relay-plain", "egress-plain"];

    fn start(dest: SocketAddr) -> Self {
        let socket = ingest_socket(&IngestOptions {
            listen: SocketAddr::new(LOCALHOST, 0),
            source: None,
            interface: None,
        })
        .expect("plain ingest socket");
        socket.set_nonblocking(true).expect("nonblocking");
        let ingest = socket.local_addr().expect("plain ingest address");
        let (egress, egress_thread) = bench_egress("plain");
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let stop = stop.clone();
            std::thread::Builder::new()
                .name(Self::THREADS[0].into())
                .spawn(move || plain_relay(&socket, dest, Batcher::new(egress), &stop))
                .expect("plain relay thread")
        };
        Self {
            ingest,
            stop,
            thread,
            egress_thread,
        }
    }

    fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.thread.join();
        let _ = self.egress_thread.join();
    }
}

fn plain_relay(socket: &UdpSocket, dest: SocketAddr, mut batcher: Batcher, stop: &AtomicBool) {
    let mut buf = vec![0u8; 65_536];
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
        for _ in 0..BURST {
            match socket.recv(&mut buf) {
                Ok(n) => batcher.push(dest, EgressKind::Srtp, &buf[..n]),
                Err(_) => break,
            }
        }
        batcher.flush();
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

/// A streaming session keyed from an in-process MSK.
struct GatewayRelay {
    ingest: SocketAddr,
    runtime: tokio::runtime::Runtime,
    handle: StreamingHandle,
    _msks: watch::Sender<Arc<MskSet>>,
    _journal_dir: tempfile::TempDir,
}

impl GatewayRelay {
    const THREADS: [&str; 2] = ["ingest-bench", "egress-gateway"];

    fn start(dest: SocketAddr) -> Self {
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
        let journal = KeyJournal::open(journal_dir.path()).expect("journal");
        let session = StreamingSession {
            name: "bench".into(),
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
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime");
        let (egress, _egress_thread) = bench_egress("gateway");
        let mut handle = runtime.block_on(async {
            streaming::start(
                &session,
                SessionContext {
                    key_domain_id: KeyDomainId([0x09, 0xf1, 0x07]),
                    msks,
                    leases: LocalLeases {
                        next_mtk_id: AtomicU32::new(1),
                        next_counter: AtomicU32::new(1),
                    },
                    journal: Arc::new(Mutex::new(journal)),
                    lease_block: 4,
                    egress,
                    ingest: IngestPool::new(1).expect("ingest worker"),
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
        Self {
            ingest: handle.ingest_addrs()[0],
            runtime,
            handle,
            _msks: msks_tx,
            _journal_dir: journal_dir,
        }
    }

    fn stop(self) {
        let Self {
            runtime, handle, ..
        } = self;
        runtime.block_on(handle.stop());
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
    /// CPU per relayed packet of the ingest thread and of the egress thread.
    cpu_ns_per_packet: [f64; 2],
    sent: u64,
    received: u64,
    latency: Option<Percentiles>,
}

fn run_phase(
    clock: Clock,
    sink: &Sink,
    ingest: SocketAddr,
    relay_threads: &[&str; 2],
    rate: Rate,
    timing: Timing,
) -> PhaseResult {
    let received_before = sink.received.load(Ordering::Relaxed);
    sink.latencies.lock().expect("latencies").clear();
    let generator = Generator::start(clock, ingest, rate, sink.received.clone());
    std::thread::sleep(timing.warm_up);

    let (t0, packets0, bytes0, cpu0) = (
        Instant::now(),
        sink.received.load(Ordering::Relaxed),
        sink.bytes.load(Ordering::Relaxed),
        threads_cpu_ns(relay_threads),
    );
    sink.recording.store(true, Ordering::Relaxed);
    std::thread::sleep(timing.measure);
    sink.recording.store(false, Ordering::Relaxed);
    let (elapsed, packets1, bytes1, cpu1) = (
        t0.elapsed().as_secs_f64(),
        sink.received.load(Ordering::Relaxed),
        sink.bytes.load(Ordering::Relaxed),
        threads_cpu_ns(relay_threads),
    );

    let sent = generator.finish();
    // Let the relay drain: wait until the sink count stops moving.
    let mut last = sink.received.load(Ordering::Relaxed);
    loop {
        std::thread::sleep(Duration::from_millis(100));
        let now = sink.received.load(Ordering::Relaxed);
        if now == last {
            break;
        }
        last = now;
    }
    let packets = packets1 - packets0;
    PhaseResult {
        pps: packets as f64 / elapsed,
        bytes_per_s: (bytes1 - bytes0) as f64 / elapsed,
        cpu_ns_per_packet: [0, 1].map(|i| (cpu1[i] - cpu0[i]) as f64 / packets.max(1) as f64),
        sent,
        received: last - received_before,
        latency: Percentiles::of(std::mem::take(
            &mut *sink.latencies.lock().expect("latencies"),
        )),
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
    let [ingest, egress] = r.cpu_ns_per_packet;
    println!(
        "                        cpu:    [{:.0} ns/packet (ingest {ingest:.0} + egress {egress:.0}) = {}packets/s per core]",
        ingest + egress,
        si(1e9 / (ingest + egress).max(1.0))
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

fn main() {
    let timing = timing_from_args();
    let clock = Clock(Instant::now());
    let sink = Sink::start(clock);
    let gateway = GatewayRelay::start(sink.addr);
    let plain = PlainRelay::start(sink.addr);
    println!(
        "relay on loopback: {PACKET}-byte RTP in, {GEN_BATCH} packets per generator GSO send, \
         closed-loop window {WINDOW} packets; {} CPUs, load average {}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        std::fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    );

    let gw_max = run_phase(
        clock,
        &sink,
        gateway.ingest,
        &GatewayRelay::THREADS,
        Rate::ClosedLoop,
        timing,
    );
    report("relay/gateway_srtp/closed_loop", &gw_max);
    let plain_max = run_phase(
        clock,
        &sink,
        plain.ingest,
        &PlainRelay::THREADS,
        Rate::ClosedLoop,
        timing,
    );
    report("relay/plain_udp/closed_loop", &plain_max);

    let paced = ((gw_max.pps.min(plain_max.pps) / 2.0) as u64 / 10_000 * 10_000).max(10_000);
    let gw_paced = run_phase(
        clock,
        &sink,
        gateway.ingest,
        &GatewayRelay::THREADS,
        Rate::Paced(paced),
        timing,
    );
    report(&format!("relay/gateway_srtp/paced_{paced}pps"), &gw_paced);
    let plain_paced = run_phase(
        clock,
        &sink,
        plain.ingest,
        &PlainRelay::THREADS,
        Rate::Paced(paced),
        timing,
    );
    report(&format!("relay/plain_udp/paced_{paced}pps"), &plain_paced);

    println!(
        "relay/summary  gateway / plain packets/s: {:.2}x (closed loop)  \
         gateway CPU per packet: {:.0} ns vs plain {:.0} ns  \
         (targets: >= 0.80x of plain, >= 400 K packets/s at {PACKET} B on one core)",
        gw_max.pps / plain_max.pps.max(1.0),
        gw_max.cpu_ns_per_packet.iter().sum::<f64>(),
        plain_max.cpu_ns_per_packet.iter().sum::<f64>()
    );
    gateway.stop();
    plain.stop();
}
