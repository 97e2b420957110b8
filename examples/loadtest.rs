//! Load test of the real gateway binary on loopback (not part of `cargo test`):
//! a reference BM-SC in this process, the gateway as a child process, and for
//! T seconds
//! - N streaming sessions × a bit rate, with receivers on every session's
//!   multicast group; latency is from the load generator's send to the
//!   receive of the SRTP packet with the same RTP sequence number (two
//!   loopback hops included);
//! - M download sessions × a bit rate, fed by files renamed into their watch
//!   folders at a fixed object rate, with a download probe (a UE: MSKs from
//!   the BM-SC, MIKEY from the carousel, DCF decrypted, MD5 compared) on
//!   every session; latency is from the rename to the verified object.
//!
//! Reports loss, those latencies, the gateway's CPU and its resident memory.
//!
//! ```text
//! cargo build --release --bins --examples
//! target/release/examples/loadtest --sessions 200 --downloads 20 --seconds 10
//! ```
//!
//! Each kind of load is a [`Workload`]: it adds its sessions to the gateway
//! configuration, starts its receivers and senders, and reports.

#[path = "../benches/common/affinity.rs"]
mod affinity;
use anyhow::{Context, Result, bail};
use clap::Parser;
use mbms_gateway::bmsc::{Bmsc, BmscConfig, GenerateConfig, KeySource};
use mbms_gateway::demo::sample_bytes;
use mbms_gateway::protocol::keys::KeyDomainId;
use mbms_gateway::runtime::key_service::MskClientConfig;
use mbms_gateway::ue::probe::{
    DownloadProbeConfig, DownloadProbeHandle, DownloadReport, ObjectStatus, ProbeKeySource,
    start_download_probe,
};
use md5::Digest;
use socket2::{Domain, Socket, Type};
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream, UdpSocket};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const KEY_DOMAIN: KeyDomainId = KeyDomainId([0x09, 0xf1, 0x07]);
/// RTP header plus 7 MPEG-TS packets, the usual RTP/MP2T datagram.
const RTP_LEN: usize = 12 + 7 * 188;
/// Send times are kept for this many packets per session (a ring indexed by
/// sequence number): far more than any latency at the rates tested.
const RING: usize = 8192;

#[derive(Parser, Debug, Clone)]
struct Args {
    /// Streaming sessions.
    #[arg(long, default_value_t = 20)]
    sessions: usize,
    /// Bit rate of each streaming session (RTP payload and header), Mbit/s.
    #[arg(long, default_value_t = 2.0)]
    mbit: f64,
    /// Download (FLUTE) sessions.
    #[arg(long, default_value_t = 0)]
    downloads: usize,
    /// Bit rate of each download session (its pacer), Mbit/s.
    #[arg(long, default_value_t = 5.0)]
    download_mbit: f64,
    /// Objects per second into each download session.
    #[arg(long, default_value_t = 1.0)]
    objects_per_second: f64,
    /// Times each object is sent (the carousel's `repetitions`).
    #[arg(long, default_value_t = 1)]
    repetitions: u32,
    /// Size of each object in bytes (default: 80 % of the session's rate at
    /// that object rate and repetition count, leaving room for FDTs, MIKEY
    /// and headers).
    #[arg(long)]
    object_bytes: Option<usize>,
    /// Seconds of traffic.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// The gateway binary (default: `mbms-gateway` next to this example's
    /// directory, i.e. the same profile's build).
    #[arg(long)]
    gateway: Option<PathBuf>,
    /// Run the gateway on this CPU only (`sched_setaffinity`), e.g. with the
    /// load generator itself under `taskset -c 0` and the gateway on CPU 1.
    #[arg(long)]
    gateway_cpu: Option<usize>,
    /// The gateway's `[ingest] min_wake_interval` (default: the gateway's).
    #[arg(long)]
    min_wake_interval: Option<String>,
    /// The gateway's `[ingest] workers` (default: the gateway's, one per core).
    #[arg(long)]
    ingest_workers: Option<usize>,
    /// Print the result as a Markdown table row.
    #[arg(long)]
    markdown: bool,
}

/// One kind of load: its sessions in the gateway configuration, its traffic and
/// its report.
trait Workload: Send {
    /// `[[streaming]]` / `[[download]]` tables for the gateway configuration.
    fn config_toml(&self) -> String;
    /// Key Groups the BM-SC must serve.
    fn key_groups(&self) -> Vec<u16>;
    /// Starts receiving (before any traffic); `bmsc` serves the MSKs.
    fn start_receivers(&mut self, bmsc: SocketAddr) -> Result<()>;
    /// Sends for `duration`, then returns.
    fn send(&mut self, duration: Duration) -> Result<()>;
    /// Stops the receivers and summarises.
    fn finish(&mut self) -> LoadReport;
}

#[derive(Debug, Default)]
struct LoadReport {
    /// What was offered, e.g. "200 × 2 Mbit/s streaming".
    load: String,
    /// What `sent` and `received` count ("packets", "objects").
    unit: &'static str,
    sent: u64,
    received: u64,
    /// Latencies in microseconds, sorted.
    latencies_us: Vec<u32>,
}

impl LoadReport {
    fn loss(&self) -> u64 {
        self.sent.saturating_sub(self.received)
    }

    fn percentile_ms(&self, p: f64) -> f64 {
        if self.latencies_us.is_empty() {
            return f64::NAN;
        }
        let at = ((self.latencies_us.len() as f64 - 1.0) * p).round() as usize;
        f64::from(self.latencies_us[at]) / 1000.0
    }
}

/// N RTP streams at a fixed rate into the gateway; receivers on each SRTP
/// destination match packets by RTP sequence number (in clear in SRTP).
struct StreamingLoad {
    sessions: Vec<StreamSession>,
    packets_per_second: f64,
    /// Per session, send time (ns since `epoch`) by `seq % RING`.
    sent_at: Arc<Vec<Box<[AtomicU64]>>>,
    sent: Vec<u64>,
    epoch: Instant,
    stop: Arc<AtomicBool>,
    receiver: Option<JoinHandle<(Vec<u64>, Vec<u32>)>>,
}

struct StreamSession {
    group: Ipv4Addr,
    ingest_port: u16,
    egress_port: u16,
}

/// A UDP port free on 127.0.0.1 and not handed out before by this process
/// (the kernel may give a just-closed port again).
fn free_udp_port() -> Result<u16> {
    static GIVEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    let mut given = GIVEN
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    loop {
        let port = UdpSocket::bind("127.0.0.1:0")?.local_addr()?.port();
        if !given.contains(&port) {
            given.push(port);
            return Ok(port);
        }
    }
}

impl StreamingLoad {
    fn new(sessions: usize, mbit: f64) -> Result<Self> {
        if sessions == 0 || sessions > 250 * 50 {
            bail!("--sessions must be 1..=12500");
        }
        let sessions = (0..sessions)
            .map(|i| {
                Ok(StreamSession {
                    group: Ipv4Addr::new(239, 255, 100 + (i / 250) as u8, (i % 250) as u8 + 1),
                    ingest_port: free_udp_port()?,
                    egress_port: free_udp_port()?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let ring = || (0..RING).map(|_| AtomicU64::new(0)).collect();
        Ok(Self {
            packets_per_second: mbit * 1e6 / (RTP_LEN as f64 * 8.0),
            sent_at: Arc::new(sessions.iter().map(|_| ring()).collect()),
            sent: vec![0; sessions.len()],
            sessions,
            epoch: Instant::now(),
            stop: Arc::new(AtomicBool::new(false)),
            receiver: None,
        })
    }
}

impl Workload for StreamingLoad {
    fn config_toml(&self) -> String {
        let mut text = String::new();
        for (i, s) in self.sessions.iter().enumerate() {
            text.push_str(&format!(
                r#"
[[streaming]]
name = "s{i}"
key_group = {kg}
destination = "{group}"
interface = "127.0.0.1"
ttl = 0
mtk = {{ period = "10s", lead = "2s", resend = "1s" }}
[[streaming.flow]]
ingest = "127.0.0.1:{ingest}"
port = {egress}
"#,
                kg = i + 1,
                group = s.group,
                ingest = s.ingest_port,
                egress = s.egress_port,
            ));
        }
        text
    }

    fn key_groups(&self) -> Vec<u16> {
        (1..=self.sessions.len() as u16).collect()
    }

    fn start_receivers(&mut self, _bmsc: SocketAddr) -> Result<()> {
        let mut sockets = Vec::new();
        for s in &self.sessions {
            let socket = Socket::new(Domain::IPV4, Type::DGRAM, None)?;
            socket.set_reuse_address(true)?;
            socket.set_recv_buffer_size(2 << 20)?;
            socket.bind(&SocketAddr::from((s.group, s.egress_port)).into())?;
            socket.join_multicast_v4(&s.group, &Ipv4Addr::LOCALHOST)?;
            socket.set_nonblocking(true)?;
            sockets.push(UdpSocket::from(socket));
        }
        let (stop, sent_at, epoch) = (self.stop.clone(), self.sent_at.clone(), self.epoch);
        self.receiver = Some(std::thread::spawn(move || {
            receive(&sockets, &stop, &sent_at, epoch)
        }));
        Ok(())
    }

    fn send(&mut self, duration: Duration) -> Result<()> {
        let socket = UdpSocket::bind("127.0.0.1:0")?;
        let dests: Vec<SocketAddr> = self
            .sessions
            .iter()
            .map(|s| SocketAddr::from((Ipv4Addr::LOCALHOST, s.ingest_port)))
            .collect();
        let mut packet = [0u8; RTP_LEN];
        packet[0] = 0x80;
        packet[1] = 33;
        let start = Instant::now();
        let interval = 1.0 / self.packets_per_second;
        // Sessions are spread over one packet interval so the load is even.
        let offset = |i: usize| interval * i as f64 / self.sessions.len() as f64;
        while start.elapsed() < duration {
            let now = start.elapsed().as_secs_f64();
            for (i, dest) in dests.iter().enumerate() {
                let due = ((now - offset(i)) / interval).floor() as i64 + 1;
                while (self.sent[i] as i64) < due {
                    let seq = self.sent[i] as u16;
                    packet[2..4].copy_from_slice(&seq.to_be_bytes());
                    packet[4..8].copy_from_slice(&(self.sent[i] as u32 * 3600).to_be_bytes());
                    packet[8..12].copy_from_slice(&(0x1000_0000 + i as u32).to_be_bytes());
                    let t = self.epoch.elapsed().as_nanos() as u64;
                    self.sent_at[i][usize::from(seq) % RING].store(t, Ordering::Relaxed);
                    socket.send_to(&packet, dest)?;
                    self.sent[i] += 1;
                }
            }
            std::thread::sleep(Duration::from_micros(500));
        }
        Ok(())
    }

    fn finish(&mut self) -> LoadReport {
        std::thread::sleep(Duration::from_millis(500));
        self.stop.store(true, Ordering::Relaxed);
        let (received, mut latencies_us) = self
            .receiver
            .take()
            .map(|t| t.join().expect("receiver thread"))
            .unwrap_or_default();
        latencies_us.sort_unstable();
        LoadReport {
            load: format!(
                "{} × {} Mbit/s streaming",
                self.sessions.len(),
                self.packets_per_second * (RTP_LEN * 8) as f64 / 1e6
            ),
            unit: "packets",
            sent: self.sent.iter().sum(),
            received: received.iter().sum(),
            latencies_us,
        }
    }
}

/// M download sessions, each fed by files renamed into its watch folder at a
/// fixed object rate and received by a download probe acting as a UE.
struct DownloadLoad {
    sessions: Vec<DownloadSessionLoad>,
    first_key_group: u16,
    mbit: f64,
    objects_per_second: f64,
    repetitions: u32,
    object_len: usize,
    probes: Vec<DownloadProbeHandle>,
}

struct DownloadSessionLoad {
    group: Ipv4Addr,
    port: u16,
    folder: PathBuf,
    /// Content-Location, rename time (ms since the Unix epoch), MD5.
    written: Vec<(String, u64, String)>,
}

/// For each written object (Content-Location, rename time in ms, MD5) that
/// the probe verified complete with that MD5: rename → verified, in µs.
fn delivery_latencies_us(report: &DownloadReport, written: &[(String, u64, String)]) -> Vec<u32> {
    written
        .iter()
        .filter_map(|(name, written_ms, md5)| {
            let outcome = report.objects.get(name)?;
            (outcome.status == ObjectStatus::Complete && outcome.md5.as_ref() == Some(md5)).then(
                || {
                    let done = outcome.completed_unix_ms.unwrap_or(*written_ms);
                    (done.saturating_sub(*written_ms) * 1000) as u32
                },
            )
        })
        .collect()
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl DownloadLoad {
    fn new(args: &Args, first_key_group: u16, dir: &Path) -> Result<Self> {
        if args.downloads > 250 {
            bail!("--downloads must be at most 250");
        }
        if args.objects_per_second <= 0.0 || args.download_mbit <= 0.0 {
            bail!("--objects-per-second and --download-mbit must be above 0");
        }
        let repetitions = args.repetitions.max(1);
        let object_len = args.object_bytes.unwrap_or(
            (0.8 * args.download_mbit * 1e6
                / 8.0
                / args.objects_per_second
                / f64::from(repetitions)) as usize,
        );
        let sessions = (0..args.downloads)
            .map(|i| {
                let folder = dir.join("watch").join(format!("d{i}"));
                std::fs::create_dir_all(&folder)?;
                Ok(DownloadSessionLoad {
                    group: Ipv4Addr::new(239, 255, 90, i as u8 + 1),
                    port: free_udp_port()?,
                    folder,
                    written: Vec::new(),
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            sessions,
            first_key_group,
            mbit: args.download_mbit,
            objects_per_second: args.objects_per_second,
            repetitions,
            object_len,
            probes: Vec::new(),
        })
    }

    /// Object `n` of session `i`: distinct bytes, so a mix-up shows in the MD5.
    fn object(&self, i: usize, n: u64) -> Vec<u8> {
        sample_bytes(self.object_len, ((i as u64) << 32) ^ n)
    }
}

impl Workload for DownloadLoad {
    fn config_toml(&self) -> String {
        let mut text = String::new();
        for (i, s) in self.sessions.iter().enumerate() {
            text.push_str(&format!(
                r#"
[[download]]
name = "d{i}"
key_group = {kg}
destination = "{group}"
port = {port}
tsi = {tsi}
interface = "127.0.0.1"
ttl = 0
bitrate = "{kbit}kbit"
push = false
watch = {{ folder = "{folder}", max_object_bytes = {object_len} }}
carousel = {{ repetitions = {repetitions} }}
mtk = {{ period = "10s", lead = "2s", resend = "1s" }}
"#,
                repetitions = self.repetitions,
                kg = self.first_key_group + i as u16,
                group = s.group,
                port = s.port,
                tsi = i + 1,
                kbit = (self.mbit * 1000.0) as u64,
                object_len = self.object_len,
                folder = s.folder.display(),
            ));
        }
        text
    }

    fn key_groups(&self) -> Vec<u16> {
        (0..self.sessions.len() as u16)
            .map(|i| self.first_key_group + i)
            .collect()
    }

    fn start_receivers(&mut self, bmsc: SocketAddr) -> Result<()> {
        let configs: Vec<DownloadProbeConfig> = self
            .sessions
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let key_group = self.first_key_group + i as u16;
                let keys = MskClientConfig::new(
                    format!("http://{bmsc}"),
                    KEY_DOMAIN,
                    vec![key_group],
                    format!("loadtest-ue-{i}"),
                );
                let mut config = DownloadProbeConfig::new(
                    s.group.into(),
                    s.port,
                    KEY_DOMAIN,
                    ProbeKeySource::Bmsc(keys),
                );
                config.interface = Some(Ipv4Addr::LOCALHOST.into());
                config.tsi = Some(i as u16 + 1);
                // The DCF adds its headers (well under 1 MiB) to each object.
                let dcf_len = self.object_len as u64 + (1 << 20);
                config.max_object_len = config.max_object_len.max(dcf_len);
                config
            })
            .collect();
        // Each probe runs its own key client runtime: start them off this one.
        self.probes = std::thread::spawn(move || {
            configs
                .into_iter()
                .map(start_download_probe)
                .collect::<Result<Vec<_>>>()
        })
        .join()
        .expect("probe start-up thread")?;
        // The MIKEY object joins the carousel with the first file it
        // protects; a probe whose MSK comes late opens it once the MSK is in.
        Ok(())
    }

    fn send(&mut self, duration: Duration) -> Result<()> {
        let start = Instant::now();
        let interval = 1.0 / self.objects_per_second;
        let count = self.sessions.len();
        let offset = |i: usize| interval * i as f64 / count as f64;
        while start.elapsed() < duration {
            let now = start.elapsed().as_secs_f64();
            for i in 0..count {
                let due = ((now - offset(i)) / interval).floor() as i64 + 1;
                while (self.sessions[i].written.len() as i64) < due {
                    let n = self.sessions[i].written.len() as u64;
                    let data = self.object(i, n);
                    let name = format!("obj-{n:05}.bin");
                    let session = &mut self.sessions[i];
                    let part = session.folder.join(format!(".{name}.part"));
                    std::fs::write(&part, &data)?;
                    std::fs::rename(&part, session.folder.join(&name))?;
                    let md5 = hex::encode(md5::Md5::digest(&data));
                    session.written.push((name, unix_ms(), md5));
                }
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        Ok(())
    }

    fn finish(&mut self) -> LoadReport {
        // An object takes its size over the session's rate to go out.
        let airtime = self.object_len as f64 * 8.0 / (self.mbit * 1e6);
        let by = Instant::now() + Duration::from_secs_f64(5.0 + 3.0 * airtime);
        let total: usize = self.sessions.iter().map(|s| s.written.len()).sum();
        let verified = |probes: &[DownloadProbeHandle]| -> usize {
            probes
                .iter()
                .zip(&self.sessions)
                .map(|(p, s)| delivery_latencies_us(&p.snapshot(), &s.written).len())
                .sum()
        };
        while Instant::now() < by && verified(&self.probes) < total {
            std::thread::sleep(Duration::from_millis(100));
        }
        let mut latencies_us = Vec::new();
        for (probe, session) in std::mem::take(&mut self.probes)
            .into_iter()
            .zip(&self.sessions)
        {
            latencies_us.extend(delivery_latencies_us(&probe.stop(), &session.written));
        }
        let received = latencies_us.len() as u64;
        latencies_us.sort_unstable();
        LoadReport {
            load: format!(
                "{} × {} Mbit/s download ({} × {} kB objects/s each, sent {}×)",
                self.sessions.len(),
                self.mbit,
                self.objects_per_second,
                self.object_len / 1000,
                self.repetitions,
            ),
            unit: "objects",
            sent: total as u64,
            received,
            latencies_us,
        }
    }
}

/// Receives on every socket until `stop`; per session the packets received,
/// and every latency in microseconds.
fn receive(
    sockets: &[UdpSocket],
    stop: &AtomicBool,
    sent_at: &[Box<[AtomicU64]>],
    epoch: Instant,
) -> (Vec<u64>, Vec<u32>) {
    let mut fds: Vec<libc::pollfd> = sockets
        .iter()
        .map(|s| libc::pollfd {
            fd: s.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    let mut received = vec![0u64; sockets.len()];
    let mut latencies = Vec::with_capacity(1 << 20);
    let mut buf = [0u8; 2048];
    while !stop.load(Ordering::Relaxed) {
        // SAFETY: `fds` is a valid pollfd array for the call's duration.
        let ready = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, 20) };
        if ready <= 0 {
            continue;
        }
        for (i, fd) in fds.iter().enumerate() {
            if fd.revents & libc::POLLIN == 0 {
                continue;
            }
            while let Ok(n) = sockets[i].recv(&mut buf) {
                if n < 12 {
                    continue;
                }
                let now = epoch.elapsed().as_nanos() as u64;
                let seq = u16::from_be_bytes([buf[2], buf[3]]);
                let sent = sent_at[i][usize::from(seq) % RING].load(Ordering::Relaxed);
                received[i] += 1;
                latencies.push((now.saturating_sub(sent) / 1000).min(u64::from(u32::MAX)) as u32);
            }
        }
    }
    (received, latencies)
}

/// CPU time (user + system, clock ticks) of every thread of `pid`, by thread
/// name with digits stripped (ingest-s12 → ingest-s).
fn thread_cpu(pid: u32) -> Vec<(String, u64)> {
    let mut out = Vec::new();
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return out;
    };
    for task in tasks.flatten() {
        let Ok(stat) = std::fs::read_to_string(task.path().join("stat")) else {
            continue;
        };
        // comm is in parentheses and may contain spaces.
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
            continue;
        };
        let name: String = stat[open + 1..close]
            .chars()
            .filter(|c| !c.is_ascii_digit())
            .collect();
        let fields: Vec<&str> = stat[close + 2..].split(' ').collect();
        let ticks = fields
            .get(11)
            .and_then(|u| u.parse::<u64>().ok())
            .unwrap_or(0)
            + fields
                .get(12)
                .and_then(|s| s.parse::<u64>().ok())
                .unwrap_or(0);
        out.push((name, ticks));
    }
    out
}

fn process_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let Some(close) = stat.rfind(')') else {
        return 0;
    };
    let fields: Vec<&str> = stat[close + 2..].split(' ').collect();
    fields
        .get(11)
        .and_then(|u| u.parse::<u64>().ok())
        .unwrap_or(0)
        + fields
            .get(12)
            .and_then(|s| s.parse::<u64>().ok())
            .unwrap_or(0)
}

/// Busy and total jiffies of every CPU, from /proc/stat.
fn cpu_jiffies() -> Vec<(u64, u64)> {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    stat.lines()
        .filter(|l| l.starts_with("cpu") && l.as_bytes().get(3).is_some_and(u8::is_ascii_digit))
        .map(|l| {
            let v: Vec<u64> = l
                .split_whitespace()
                .skip(1)
                .filter_map(|x| x.parse().ok())
                .collect();
            let total: u64 = v.iter().sum();
            let idle = v.get(3).copied().unwrap_or(0) + v.get(4).copied().unwrap_or(0);
            (total - idle, total)
        })
        .collect()
}

fn status_kib(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| {
            l.strip_prefix(field)?
                .trim()
                .strip_suffix("kB")?
                .trim()
                .parse()
                .ok()
        })
        .unwrap_or(0)
}

/// One GET on the admin endpoint: the status and the body.
fn http_get(addr: SocketAddr, path: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: l\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut raw = String::new();
    s.read_to_string(&mut raw).ok()?;
    let status = raw.get(9..12)?.parse().ok()?;
    let body = raw.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    Some((status, body.to_string()))
}

fn http_status(addr: SocketAddr, path: &str) -> Option<u16> {
    http_get(addr, path).map(|(status, _)| status)
}

/// The gateway's own histogram `name`, summed over every session: per upper
/// bound (`le`), the cumulative count, from its `/metrics` scrape.
fn scrape_histogram(admin: SocketAddr, name: &str) -> Vec<(f64, u64)> {
    let Some((200, body)) = http_get(admin, "/metrics") else {
        return Vec::new();
    };
    let mut buckets = std::collections::BTreeMap::<u64, (f64, u64)>::new();
    let prefix = format!("{name}_bucket{{");
    for line in body.lines().filter(|l| l.starts_with(&prefix)) {
        let Some((labels, count)) = line.rsplit_once(' ') else {
            continue;
        };
        let Some(le) = labels
            .split("le=\"")
            .nth(1)
            .and_then(|rest| rest.split('"').next())
        else {
            continue;
        };
        let le = if le == "+Inf" {
            f64::INFINITY
        } else {
            le.parse().unwrap_or(f64::INFINITY)
        };
        let count: f64 = count.parse().unwrap_or(0.0);
        let entry = buckets.entry(le.to_bits()).or_insert((le, 0));
        entry.1 += count as u64;
    }
    let mut out: Vec<(f64, u64)> = buckets.into_values().collect();
    out.sort_by(|a, b| a.0.total_cmp(&b.0));
    out
}

/// The `q` quantile of the observations between two scrapes, interpolated
/// within its bucket as Prometheus' `histogram_quantile` does; seconds.
fn histogram_quantile(q: f64, before: &[(f64, u64)], after: &[(f64, u64)]) -> Option<f64> {
    let delta: Vec<(f64, u64)> = after
        .iter()
        .map(|(le, n)| {
            let was = before.iter().find(|(b, _)| b == le).map_or(0, |(_, c)| *c);
            (*le, n.saturating_sub(was))
        })
        .collect();
    let total = delta.last()?.1;
    if total == 0 {
        return None;
    }
    let rank = q * total as f64;
    let mut lower = (0.0, 0u64);
    for &(le, count) in &delta {
        if count as f64 >= rank {
            if le.is_infinite() {
                return Some(lower.0);
            }
            let within = (rank - lower.1 as f64) / (count - lower.1).max(1) as f64;
            return Some(lower.0 + (le - lower.0) * within);
        }
        lower = (le, count);
    }
    None
}

const GATEWAY_LATENCY: &str = "mbms_gateway_ingest_to_egress_latency_seconds";

fn gateway_binary(args: &Args) -> Result<PathBuf> {
    if let Some(path) = &args.gateway {
        return Ok(path.clone());
    }
    let exe = std::env::current_exe()?;
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .context("the example's directory")?;
    let path = dir.join("mbms-gateway");
    anyhow::ensure!(
        path.exists(),
        "{} not found: build it with `cargo build --release --bins --examples` or pass --gateway",
        path.display()
    );
    Ok(path)
}

// The BM-SC serves from a worker while the main thread blocks on start-up.
#[tokio::main(flavor = "multi_thread", worker_threads = 1)]
async fn main() -> Result<()> {
    let args = Args::parse();
    let binary = gateway_binary(&args)?;
    let dir = std::env::temp_dir().join(format!("mbms-loadtest-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;

    let mut workloads: Vec<Box<dyn Workload>> = Vec::new();
    if args.sessions > 0 {
        workloads.push(Box::new(StreamingLoad::new(args.sessions, args.mbit)?));
    }
    if args.downloads > 0 {
        let first_key_group = args.sessions as u16 + 1;
        workloads.push(Box::new(DownloadLoad::new(&args, first_key_group, &dir)?));
    }
    if workloads.is_empty() {
        bail!("nothing to do: --sessions and --downloads are both 0");
    }
    let key_groups: Vec<u16> = workloads.iter().flat_map(|w| w.key_groups()).collect();

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let bmsc_addr = listener.local_addr()?;
    let bmsc = Bmsc::from_config(&BmscConfig {
        heartbeat_interval_s: 5,
        ..BmscConfig::plaintext(
            bmsc_addr,
            KEY_DOMAIN,
            key_groups,
            KeySource::Generate(GenerateConfig::every(3600, 7200, 60)),
        )
    })?
    .spawn(listener)?;

    let admin = SocketAddr::from((
        Ipv4Addr::LOCALHOST,
        std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port(),
    ));
    let mut config = format!(
        r#"state_dir = "{state}"
instance_id = "loadtest"
[admin]
listen = "{admin}"
[bmsc]
endpoint = "http://{bmsc_addr}"
key_domain_id = "09f107"
"#,
        state = dir.join("gw").display(),
    );
    config.push_str("[ingest]\n");
    if let Some(interval) = &args.min_wake_interval {
        config.push_str(&format!("min_wake_interval = \"{interval}\"\n"));
    }
    if let Some(workers) = args.ingest_workers {
        config.push_str(&format!("workers = {workers}\n"));
    }
    for w in &workloads {
        config.push_str(&w.config_toml());
    }
    let config_path = dir.join("gateway.toml");
    std::fs::write(&config_path, config)?;

    let mut command = Command::new(&binary);
    command
        .args(["run", "--config"])
        .arg(&config_path)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit());
    if let Some(cpu) = args.gateway_cpu {
        use std::os::unix::process::CommandExt;
        // SAFETY: only sched_setaffinity, async-signal-safe, runs in the child.
        unsafe {
            command.pre_exec(move || affinity::set_affinity(0, [cpu]));
        }
    }
    let mut gateway: Child = command
        .spawn()
        .with_context(|| format!("starting {}", binary.display()))?;
    let pid = gateway.id();
    let ready_by = Instant::now() + Duration::from_secs(60);
    while http_status(admin, "/readyz") != Some(200) {
        if Instant::now() > ready_by {
            let _ = gateway.kill();
            bail!("the gateway did not become ready within 60 s");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::task::block_in_place(|| {
        workloads
            .iter_mut()
            .try_for_each(|w| w.start_receivers(bmsc_addr))
    })?;

    let duration = Duration::from_secs(args.seconds);
    let latency_before = scrape_histogram(admin, GATEWAY_LATENCY);
    let (ticks_before, threads_before, cpus_before) =
        (process_ticks(pid), thread_cpu(pid), cpu_jiffies());
    let wall = Instant::now();
    let reports = tokio::task::spawn_blocking(move || -> Result<Vec<LoadReport>> {
        // Each workload sends from its own thread.
        let handles: Vec<_> = workloads
            .into_iter()
            .map(|mut w| {
                std::thread::spawn(move || -> Result<LoadReport> {
                    w.send(duration)?;
                    Ok(w.finish())
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("workload thread"))
            .collect()
    })
    .await??;
    let elapsed = wall.elapsed().as_secs_f64();
    let (ticks_after, threads_after, cpus_after) =
        (process_ticks(pid), thread_cpu(pid), cpu_jiffies());
    let latency_after = scrape_histogram(admin, GATEWAY_LATENCY);
    let rss_mib = status_kib(pid, "VmRSS:") as f64 / 1024.0;
    let hwm_mib = status_kib(pid, "VmHWM:") as f64 / 1024.0;

    // SAFETY: signalling our own child.
    unsafe { libc::kill(pid as i32, libc::SIGTERM) };
    let status = gateway.wait()?;
    bmsc.stop().await?;
    let _ = std::fs::remove_dir_all(&dir);

    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    let cores = (ticks_after - ticks_before) as f64 / hz / elapsed;
    let sum_by_kind = |threads: &[(String, u64)]| {
        let mut by_kind = std::collections::BTreeMap::<String, u64>::new();
        for (name, ticks) in threads {
            *by_kind.entry(name.clone()).or_default() += ticks;
        }
        by_kind
    };
    let before_by_kind = sum_by_kind(&threads_before);
    let by_kind: Vec<(String, u64)> = sum_by_kind(&threads_after)
        .into_iter()
        .map(|(kind, after)| {
            let before = before_by_kind.get(&kind).copied().unwrap_or(0);
            (kind, after.saturating_sub(before))
        })
        .collect();
    let per_core: Vec<String> = cpus_before
        .iter()
        .zip(&cpus_after)
        .map(|((b0, t0), (b1, t1))| {
            format!("{:.0}%", 100.0 * (b1 - b0) as f64 / (t1 - t0).max(1) as f64)
        })
        .collect();

    println!(
        "gateway exit: {status}; {elapsed:.1} s of traffic; machine CPU per core: {}",
        per_core.join(" ")
    );
    println!(
        "gateway CPU: {:.2} cores ({:.0}% of one core); RSS {rss_mib:.1} MiB (peak {hwm_mib:.1} MiB)",
        cores,
        cores * 100.0
    );
    for (kind, ticks) in &by_kind {
        if *ticks > 0 {
            println!(
                "  threads {kind:<16} {:.0}% of one core",
                100.0 * *ticks as f64 / hz / elapsed
            );
        }
    }
    let gateway_ms = |q| {
        histogram_quantile(q, &latency_before, &latency_after)
            .map_or("n/a".to_string(), |s| format!("{:.3} ms", s * 1e3))
    };
    if args.sessions > 0 {
        println!(
            "gateway's own ingest→egress (its {GATEWAY_LATENCY}, kernel receive timestamp to send, per burst): \
             p50 {}, p99 {}, p99.9 {}",
            gateway_ms(0.5),
            gateway_ms(0.99),
            gateway_ms(0.999),
        );
    }
    for r in &reports {
        println!(
            "{}: sent {} {}, received {}, lost {} ({:.4}%), end-to-end latency p50 {:.3} ms, p99 {:.3} ms, p99.9 {:.3} ms",
            r.load,
            r.sent,
            r.unit,
            r.received,
            r.loss(),
            100.0 * r.loss() as f64 / r.sent.max(1) as f64,
            r.percentile_ms(0.5),
            r.percentile_ms(0.99),
            r.percentile_ms(0.999),
        );
        if args.markdown {
            println!(
                "| {} | {} {} | {} | {} | {:.3} | {:.3} | {:.3} | {:.2} | {:.0} |",
                r.load,
                r.sent,
                r.unit,
                r.loss(),
                args.seconds,
                r.percentile_ms(0.5),
                r.percentile_ms(0.99),
                r.percentile_ms(0.999),
                cores,
                rss_mib,
            );
        }
    }
    Ok(())
}
