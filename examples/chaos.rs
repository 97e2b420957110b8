//! The fault campaign: the gateway binary under streaming and download load,
//! killed with SIGKILL at random moments and restarted, its BM-SC restarted,
//! then replaced by one that answers garbage, then gone while the MSKs
//! expire. Everything the gateway sends is captured on loopback by this
//! program's own receivers and checked afterwards, as a UE would see it:
//!
//! - no MIKEY MTK message counter and no RAND appears in two different
//!   messages, and no (MSK, MTK ID) names two different MTKs;
//! - no (MTK, SSRC, packet index) protects two different SRTP packets;
//! - every object the push endpoint acknowledged (201) arrives, decrypts
//!   under the MTK its FDT entry names and equals what was pushed (objects
//!   lost in a kill are pushed again, as a packager does once `/readyz` is
//!   200 again);
//! - while the BM-SC answers garbage the gateway rejects every answer and
//!   keeps sending under the MSKs it holds; after they expire it sends
//!   nothing under them.
//!
//! ```sh
//! scripts/chaos                        # 100 kills, prints a JSON summary
//! cargo run --release --example chaos -- --gateway target/release/mbms-gateway --kills 20
//! ```
//!
//! Exits 0 only if every check holds.

use anyhow::{Context, Result, bail, ensure};
use mbms_gateway::bmsc::{Bmsc, BmscConfig, KeySource, RunningBmsc};
use mbms_gateway::demo::encoder::{EncoderConfig, start_encoder};
use mbms_gateway::protocol::codec::Codec;
use mbms_gateway::protocol::dcf::{DcfHeader, DcfReader, HeaderParse};
use mbms_gateway::protocol::flute::receiver::{FluteReceiver, ReceiverEvent};
use mbms_gateway::protocol::keys::{KeyDomainId, Msk, MskId, Mtk};
use mbms_gateway::protocol::mikey::{
    Message, MtkReceptionState, Payload, open_mtk_message, peek_mtk_key_ids,
};
use mbms_gateway::protocol::profile::MIKEY_UDP_PORT;
use mbms_gateway::protocol::srtp::SrtpConfig;
use mbms_gateway::runtime::key_service::proto::key_service_server::{KeyService, KeyServiceServer};
use mbms_gateway::runtime::key_service::proto::{self, msk_event::Event};
use mbms_gateway::runtime::udp::{IngestOptions, ingest_socket};
use rand::{Rng, SeedableRng};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

const KEY_DOMAIN: KeyDomainId = KeyDomainId([0x09, 0xf1, 0x07]);
const STREAM_MSK: MskId = MskId::new(1, 1);
const DOWNLOAD_MSK: MskId = MskId::new(2, 1);
const STREAM_KEY: [u8; 16] = [0x5a; 16];
const DOWNLOAD_KEY: [u8; 16] = [0xa5; 16];
const GROUP: Ipv4Addr = Ipv4Addr::new(239, 255, 66, 1);
const FLUTE_GROUP: Ipv4Addr = Ipv4Addr::new(239, 255, 66, 2);
const TSI: u64 = 7;

struct Options {
    gateway: PathBuf,
    kills: usize,
    seed: u64,
}

fn options() -> Result<Options> {
    let mut args = std::env::args().skip(1);
    let mut options = Options {
        gateway: PathBuf::from("target/release/mbms-gateway"),
        kills: 100,
        seed: 1,
    };
    while let Some(arg) = args.next() {
        let mut value = || args.next().with_context(|| format!("{arg} needs a value"));
        match arg.as_str() {
            "--gateway" => options.gateway = value()?.into(),
            "--kills" => options.kills = value()?.parse().context("--kills")?,
            "--seed" => options.seed = value()?.parse().context("--seed")?,
            other => bail!("unknown argument {other}"),
        }
    }
    Ok(options)
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

fn free_port() -> Result<u16> {
    Ok(UdpSocket::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn free_tcp_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// Datagrams with their arrival times.
type Captured = Vec<(Instant, Vec<u8>)>;

/// Datagrams of one group:port with their arrival times.
struct Capture {
    packets: Arc<Mutex<Captured>>,
    stop: Arc<AtomicBool>,
}

impl Capture {
    fn start(group: Ipv4Addr, port: u16) -> Result<Self> {
        let socket = ingest_socket(&IngestOptions {
            listen: SocketAddr::new(group.into(), port),
            source: None,
            interface: Some(IpAddr::V4(Ipv4Addr::LOCALHOST)),
        })?;
        socket.set_read_timeout(Some(Duration::from_millis(50)))?;
        let packets = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (into, stopping) = (packets.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 65536];
            while !stopping.load(Ordering::Relaxed) {
                if let Ok(n) = socket.recv(&mut buf) {
                    into.lock()
                        .unwrap()
                        .push((Instant::now(), buf[..n].to_vec()));
                }
            }
        });
        Ok(Self { packets, stop })
    }

    fn snapshot(&self) -> Captured {
        self.packets.lock().unwrap().clone()
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// A BM-SC that answers every call with garbage: MSKs of the wrong size and
/// Key Domain, leases whose ranges run backwards. Its watch streams end
/// when `stopped` turns true.
struct Garbage {
    stopped: tokio::sync::watch::Receiver<bool>,
}

fn garbage_msk(i: u32) -> proto::Msk {
    proto::Msk {
        key_domain_id: if i.is_multiple_of(2) {
            vec![1, 2, 3]
        } else {
            KEY_DOMAIN.0.to_vec()
        },
        msk_id: STREAM_MSK.0,
        key: vec![0xee; 15],
        seq_l: 9,
        seq_u: 3,
        not_before_unix: unix_now() + 100,
        not_after_unix: unix_now(),
    }
}

#[tonic::async_trait]
impl KeyService for Garbage {
    type WatchMsksStream = ReceiverStream<Result<proto::MskEvent, Status>>;

    async fn watch_msks(
        &self,
        _: Request<proto::WatchMsksRequest>,
    ) -> Result<Response<Self::WatchMsksStream>, Status> {
        let (tx, rx) = tokio::sync::mpsc::channel(16);
        let stopped = self.stopped.clone();
        tokio::spawn(async move {
            for i in 0..u32::MAX {
                if *stopped.borrow() {
                    return;
                }
                let event = if i % 3 == 2 {
                    Event::SnapshotComplete(proto::SnapshotComplete {})
                } else {
                    Event::MskAdded(garbage_msk(i))
                };
                let message = proto::MskEvent { event: Some(event) };
                if tx.send(Ok(message)).await.is_err() {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    async fn get_current_msk(
        &self,
        _: Request<proto::GetCurrentMskRequest>,
    ) -> Result<Response<proto::Msk>, Status> {
        Ok(Response::new(garbage_msk(1)))
    }

    async fn lease_mtk_ids(
        &self,
        request: Request<proto::LeaseRequest>,
    ) -> Result<Response<proto::Lease>, Status> {
        let r = request.into_inner();
        Ok(Response::new(proto::Lease {
            key_domain_id: r.key_domain_id,
            msk_id: r.msk_id,
            first_mtk_id: 9,
            last_mtk_id: 2,
            first_counter: 100,
            last_counter: 1,
        }))
    }
}

/// The BM-SC on one fixed address: the reference one (from a key file, with
/// its lease book in a state directory), the garbage one, or none.
struct BmscSlot {
    listen: SocketAddr,
    config: BmscConfig,
    running: Option<RunningBmsc>,
    garbage: Option<(
        tokio::sync::watch::Sender<bool>,
        tokio::task::JoinHandle<()>,
    )>,
}

impl BmscSlot {
    async fn start_real(&mut self) -> Result<()> {
        self.stop().await;
        let listener = bind_retrying(self.listen).await?;
        self.running = Some(Bmsc::from_config(&self.config)?.spawn(listener)?);
        Ok(())
    }

    async fn start_garbage(&mut self) -> Result<()> {
        self.stop().await;
        let listener = bind_retrying(self.listen).await?;
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let mut shutdown = stopped.clone();
        let server = tonic::transport::Server::builder()
            .add_service(KeyServiceServer::new(Garbage { stopped }))
            .serve_with_incoming_shutdown(
                tokio_stream::wrappers::TcpListenerStream::new(listener),
                async move {
                    let _ = shutdown.wait_for(|stop| *stop).await;
                },
            );
        self.garbage = Some((
            stop,
            tokio::spawn(async move {
                let _ = server.await;
            }),
        ));
        Ok(())
    }

    async fn stop(&mut self) {
        if let Some(running) = self.running.take() {
            let _ = running.stop().await;
        }
        if let Some((stop, server)) = self.garbage.take() {
            // Its streams end and its connections are told to go away
            // (GOAWAY), so the gateway reconnects to whatever comes next.
            let _ = stop.send(true);
            let _ = tokio::time::timeout(Duration::from_secs(5), server).await;
        }
    }
}

async fn bind_retrying(addr: SocketAddr) -> Result<tokio::net::TcpListener> {
    for _ in 0..100 {
        if let Ok(listener) = tokio::net::TcpListener::bind(addr).await {
            return Ok(listener);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    bail!("BM-SC address {addr} stays taken")
}

/// Writes the key file: the two MSKs, valid from a minute ago to `not_after`.
fn write_keys(path: &Path, not_after: i64) -> Result<()> {
    let entry = |id: MskId, key: [u8; 16]| {
        format!(
            "[[msk]]\nmsk_id = {}\nkey = \"{}\"\nseq_l = 1\nseq_u = 65535\nnot_before = {}\nnot_after = {not_after}\n",
            id.0,
            hex::encode(key),
            unix_now() - 60
        )
    };
    std::fs::write(
        path,
        format!(
            "key_domain_id = \"{}\"\n{}{}",
            hex::encode(KEY_DOMAIN.0),
            entry(STREAM_MSK, STREAM_KEY),
            entry(DOWNLOAD_MSK, DOWNLOAD_KEY)
        ),
    )?;
    Ok(())
}

struct Ports {
    bmsc: SocketAddr,
    ingest: u16,
    srtp: u16,
    flute: u16,
    push: u16,
    admin: u16,
}

fn gateway_config(dir: &Path, ports: &Ports) -> String {
    format!(
        r#"state_dir = "{state}"
instance_id = "chaos"
lease_block = 64
[admin]
listen = "127.0.0.1:{admin}"
[bmsc]
endpoint = "http://{bmsc}"
key_domain_id = "{domain}"
backoff_initial_ms = 100
backoff_max_ms = 500
stream_idle_timeout_s = 3
request_timeout_s = 2
[push]
listen = "127.0.0.1:{push}"
[[streaming]]
name = "tv"
key_group = 1
destination = "{group}"
interface = "127.0.0.1"
ttl = 0
mtk = {{ period = "2s", lead = "500ms", resend = "300ms" }}
[[streaming.flow]]
ingest = "127.0.0.1:{ingest}"
port = {srtp}
[[download]]
name = "files"
key_group = 2
destination = "{flute_group}"
port = {flute}
tsi = {TSI}
interface = "127.0.0.1"
ttl = 0
bitrate = "20Mbit"
push = true
carousel = {{ repetitions = 2, fdt_interval = "300ms", fdt_lifetime = "10s" }}
mtk = {{ period = "3s", lead = "1s", resend = "500ms" }}
"#,
        state = dir.join("gateway").display(),
        admin = ports.admin,
        bmsc = ports.bmsc,
        domain = hex::encode(KEY_DOMAIN.0),
        push = ports.push,
        group = GROUP,
        ingest = ports.ingest,
        srtp = ports.srtp,
        flute_group = FLUTE_GROUP,
        flute = ports.flute,
    )
}

fn spawn_gateway(binary: &Path, config: &Path, log: &Path) -> Result<Child> {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)?;
    Command::new(binary)
        .args(["run", "--config"])
        .arg(config)
        .env(
            "RUST_LOG",
            std::env::var("CHAOS_GATEWAY_LOG").unwrap_or_else(|_| "warn".into()),
        )
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .with_context(|| format!("starting {}", binary.display()))
}

/// One HTTP/1.1 request on loopback; the status code, or `None` when the
/// endpoint is not there.
fn http(port: u16, method: &str, path: &str, body: &[u8]) -> Option<u16> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: chaos\r\nConnection: close\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).ok()?;
    stream.write_all(body).ok()?;
    let mut reply = String::new();
    stream.read_to_string(&mut reply).ok()?;
    reply.split_whitespace().nth(1)?.parse().ok()
}

/// The text of one metric sample on the admin endpoint.
fn scrape(port: u16, metric: &str) -> Option<f64> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: chaos\r\nConnection: close\r\n\r\n")
        .ok()?;
    let mut text = String::new();
    stream.read_to_string(&mut text).ok()?;
    text.lines()
        .find(|l| l.starts_with(metric))
        .and_then(|l| l.split_whitespace().last()?.parse().ok())
}

fn object_bytes(n: usize) -> Vec<u8> {
    mbms_gateway::demo::sample_bytes(20_000 + n * 997, n as u64)
}

/// The whole summary; `violations` lists every failed check.
#[derive(Debug, Default, Serialize)]
struct Summary {
    gateway_kills: usize,
    gateway_restarts: usize,
    bmsc_restarts: usize,
    mikey_messages_captured: usize,
    mikey_messages_distinct: usize,
    srtp_packets_checked: usize,
    flute_packets_captured: usize,
    objects_acknowledged: usize,
    objects_delivered: usize,
    pushes_repeated: usize,
    garbage_answers_rejected: f64,
    srtp_packets_during_garbage: usize,
    srtp_packets_after_expiry: usize,
    mikey_messages_after_expiry: usize,
    reuses: Reuses,
    violations: Vec<String>,
}

#[derive(Debug, Default, Serialize)]
struct Reuses {
    mikey_counter: usize,
    mikey_rand: usize,
    mtk_id: usize,
    srtp_index: usize,
}

/// A MIKEY MTK message as captured: its key IDs, RAND and MTK.
struct Announced {
    msk: MskId,
    mtk_id: u16,
    counter: u32,
    rand: Vec<u8>,
    mtk: Mtk,
}

fn open(message: &[u8]) -> Option<Announced> {
    let ids = peek_mtk_key_ids(message).ok()?;
    let key = match ids.msk_id {
        STREAM_MSK => STREAM_KEY,
        DOWNLOAD_MSK => DOWNLOAD_KEY,
        _ => return None,
    };
    let opened =
        open_mtk_message(&Msk::new(key), &mut MtkReceptionState::default(), message).ok()?;
    let rand = Message::decode(message)
        .ok()?
        .payloads
        .iter()
        .find_map(|p| match p {
            Payload::Rand(r) => Some(r.bytes().to_vec()),
            _ => None,
        })?;
    Some(Announced {
        msk: ids.msk_id,
        mtk_id: ids.mtk_id.0,
        counter: ids.counter,
        rand,
        mtk: opened.mtk,
    })
}

/// The MIKEY checks over every distinct message: counters and RANDs unique
/// per MSK, one MTK per (MSK, MTK ID).
fn check_mikey(messages: &[Vec<u8>], summary: &mut Summary) {
    let distinct: BTreeSet<&Vec<u8>> = messages.iter().collect();
    summary.mikey_messages_captured = messages.len();
    summary.mikey_messages_distinct = distinct.len();
    let mut counters: BTreeMap<(u32, u32), usize> = BTreeMap::new();
    let mut rands: BTreeMap<Vec<u8>, usize> = BTreeMap::new();
    let mut mtks: BTreeMap<(u32, u16), BTreeSet<Vec<u8>>> = BTreeMap::new();
    for message in distinct {
        let Some(a) = open(message) else {
            summary
                .violations
                .push("a captured MIKEY message did not open".into());
            continue;
        };
        *counters.entry((a.msk.0, a.counter)).or_default() += 1;
        *rands.entry(a.rand).or_default() += 1;
        let material = [a.mtk.key.expose().as_slice(), a.mtk.salt.expose()].concat();
        mtks.entry((a.msk.0, a.mtk_id))
            .or_default()
            .insert(material);
    }
    summary.reuses.mikey_counter = counters.values().filter(|&&n| n > 1).count();
    summary.reuses.mikey_rand = rands.values().filter(|&&n| n > 1).count();
    summary.reuses.mtk_id = mtks.values().filter(|keys| keys.len() > 1).count();
}

/// The SRTP check: per (MKI, SSRC) the packet index extended from the SEQ
/// (RFC 3550 A.1); one index must never carry two different packets.
fn check_srtp(packets: &[(Instant, Vec<u8>)], summary: &mut Summary) {
    let config = SrtpConfig::mbms();
    let mut highest: HashMap<(Vec<u8>, u32), u64> = HashMap::new();
    let mut seen: HashMap<(Vec<u8>, u32, u64), &[u8]> = HashMap::new();
    for (_, packet) in packets {
        let (Some(mki), Some(seq), Some(ssrc)) =
            (config.mki_of(packet), packet.get(2..4), packet.get(8..12))
        else {
            continue;
        };
        let seq = u16::from_be_bytes([seq[0], seq[1]]);
        let ssrc = u32::from_be_bytes(ssrc.try_into().unwrap());
        let stream = (mki.to_vec(), ssrc);
        let index = match highest.get(&stream) {
            None => (1 << 16) + u64::from(seq),
            Some(&h) => h.saturating_add_signed(i64::from(seq.wrapping_sub(h as u16) as i16)),
        };
        let h = highest.entry(stream).or_insert(index);
        *h = (*h).max(index);
        summary.srtp_packets_checked += 1;
        match seen.insert((mki.to_vec(), ssrc, index), packet) {
            Some(earlier) if earlier != packet.as_slice() => summary.reuses.srtp_index += 1,
            _ => {}
        }
    }
}

/// The objects that arrived whole and decrypted to what was pushed: the
/// FLUTE packets of each gateway run (between a start and the next kill) go
/// through a fresh receiver, as a UE tuned in for that run.
fn delivered(
    runs: &[(Instant, Instant)],
    flute: &[(Instant, Vec<u8>)],
    pushed: &BTreeMap<String, Vec<u8>>,
    mikey: &mut Vec<Vec<u8>>,
) -> BTreeSet<String> {
    let mut verified = BTreeSet::new();
    for (start, end) in runs {
        let mut receiver = FluteReceiver::new(Some(TSI), 64 << 20);
        let mut events = Vec::new();
        for (_, packet) in flute.iter().filter(|(t, _)| t >= start && t <= end) {
            let _ = receiver.receive(packet, &mut events);
        }
        let mut keys: HashMap<String, Mtk> = HashMap::new();
        let mut objects = Vec::new();
        for event in events {
            if let ReceiverEvent::Object { file, data } = event {
                if file.content_type.as_deref() == Some("application/mikey") {
                    if let Some(a) = open(&data) {
                        keys.insert(file.content_location.clone(), a.mtk);
                    }
                    mikey.push(data);
                } else {
                    objects.push((file, data));
                }
            }
        }
        for (file, data) in objects {
            let (Some(uri), Some(expected)) =
                (&file.decryption_key_uri, pushed.get(&file.content_location))
            else {
                continue;
            };
            let Some(mtk) = keys.get(uri) else { continue };
            let Ok(HeaderParse::Complete { header, header_len }) = DcfHeader::parse(&data) else {
                continue;
            };
            let mut reader = DcfReader::new(header, &mtk.key);
            let mut plain = Vec::new();
            reader.decrypt(&data[header_len..], &mut plain);
            if reader.finish(&mut plain).is_ok() && plain == *expected {
                verified.insert(file.content_location.clone());
            }
        }
    }
    verified
}

fn main() -> Result<()> {
    let options = options()?;
    ensure!(
        options.gateway.exists(),
        "{} is not built (cargo build --release)",
        options.gateway.display()
    );
    let runtime = tokio::runtime::Runtime::new()?;
    let summary = runtime.block_on(campaign(&options))?;
    println!("{}", serde_json::to_string_pretty(&summary)?);
    if summary.violations.is_empty() {
        Ok(())
    } else {
        bail!("{} check(s) failed", summary.violations.len())
    }
}

async fn campaign(options: &Options) -> Result<Summary> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(options.seed);
    let dir = std::env::temp_dir().join(format!("mbms-chaos-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let keys = dir.join("keys.toml");
    write_keys(&keys, unix_now() + 24 * 3600)?;
    let bmsc_addr: SocketAddr = format!("127.0.0.1:{}", free_tcp_port()?).parse()?;
    let mut bmsc = BmscSlot {
        listen: bmsc_addr,
        config: BmscConfig {
            state_dir: Some(dir.join("bmsc")),
            ..BmscConfig::plaintext(
                bmsc_addr,
                KEY_DOMAIN,
                vec![1, 2],
                KeySource::File { path: keys.clone() },
            )
        },
        running: None,
        garbage: None,
    };
    bmsc.start_real().await?;
    let ports = Ports {
        bmsc: bmsc_addr,
        ingest: free_port()?,
        srtp: free_port()?,
        flute: free_port()?,
        push: free_tcp_port()?,
        admin: free_tcp_port()?,
    };
    let config = dir.join("gateway.toml");
    std::fs::write(&config, gateway_config(&dir, &ports))?;
    let log = dir.join("gateway.log");

    let srtp = Capture::start(GROUP, ports.srtp)?;
    let udp_mikey = Capture::start(GROUP, MIKEY_UDP_PORT)?;
    let flute = Capture::start(FLUTE_GROUP, ports.flute)?;
    let mut encoder_config =
        EncoderConfig::new(SocketAddr::from((Ipv4Addr::LOCALHOST, ports.ingest)), 400);
    encoder_config.interface = Some(IpAddr::V4(Ipv4Addr::LOCALHOST));
    let encoder = start_encoder(encoder_config)?;

    let mut summary = Summary::default();
    let mut gateway = spawn_gateway(&options.gateway, &config, &log)?;
    let mut runs = Vec::new();
    let mut started = Instant::now();
    let mut pushed: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    let push = |name: &str, bytes: &[u8]| {
        http(
            ports.push,
            "PUT",
            &format!("/sessions/files/objects/{name}"),
            bytes,
        )
    };

    // Phase 1: kill -9 at random moments, pushing objects between kills.
    for kill in 0..options.kills {
        let wait = Duration::from_millis(rng.random_range(300..1500));
        let until = Instant::now() + wait;
        while Instant::now() < until {
            if rng.random_bool(0.15) {
                let name = format!("obj-{}.bin", pushed.len());
                let bytes = object_bytes(pushed.len());
                if push(&name, &bytes) == Some(201) {
                    pushed.insert(name, bytes);
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        gateway.kill()?;
        gateway.wait()?;
        runs.push((started, Instant::now()));
        summary.gateway_kills += 1;
        if kill % 20 == 19 {
            bmsc.start_real().await?;
            summary.bmsc_restarts += 1;
        }
        gateway = spawn_gateway(&options.gateway, &config, &log)?;
        started = Instant::now();
        summary.gateway_restarts += 1;
    }

    // Phase 2: every acknowledged object arrives; what a kill lost is pushed
    // again, as a packager does once the gateway is ready.
    let mut delivered_set = BTreeSet::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    while Instant::now() < deadline {
        tokio::time::sleep(Duration::from_secs(3)).await;
        let mut all_runs = runs.clone();
        all_runs.push((started, Instant::now()));
        delivered_set = delivered(&all_runs, &flute.snapshot(), &pushed, &mut Vec::new());
        let missing: Vec<String> = pushed
            .keys()
            .filter(|k| !delivered_set.contains(*k))
            .cloned()
            .collect();
        if missing.is_empty() {
            break;
        }
        for name in missing.iter().take(8) {
            if push(name, &pushed[name]) == Some(201) {
                summary.pushes_repeated += 1;
            }
        }
    }

    // Phase 3: a BM-SC that answers garbage: every answer rejected, the
    // sessions go on under the MSKs the gateway holds.
    let rejected_before =
        scrape(ports.admin, "mbms_gateway_bmsc_rejected_answers_total").unwrap_or(0.0);
    bmsc.start_garbage().await?;
    let garbage_from = Instant::now();
    tokio::time::sleep(Duration::from_secs(6)).await;
    let garbage_to = Instant::now();
    summary.garbage_answers_rejected =
        scrape(ports.admin, "mbms_gateway_bmsc_rejected_answers_total").unwrap_or(0.0)
            - rejected_before;
    summary.srtp_packets_during_garbage = srtp
        .snapshot()
        .iter()
        .filter(|(t, _)| *t > garbage_from + Duration::from_secs(1) && *t < garbage_to)
        .count();

    // Phase 4: the BM-SC shortens the MSKs' lifetime, then goes away: once
    // they expire the gateway sends nothing under them.
    let expiry = unix_now() + 6;
    write_keys(&keys, expiry)?;
    bmsc.start_real().await?;
    summary.bmsc_restarts += 1;
    tokio::time::sleep(Duration::from_secs(2)).await;
    bmsc.stop().await;
    while unix_now() < expiry + 1 {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let expired_at = Instant::now() + Duration::from_millis(500);
    tokio::time::sleep(Duration::from_secs(4)).await;
    gateway.kill()?;
    gateway.wait()?;
    runs.push((started, Instant::now()));
    encoder.stop();

    let srtp = srtp.snapshot();
    let udp_mikey = udp_mikey.snapshot();
    let flute = flute.snapshot();
    summary.srtp_packets_after_expiry = srtp.iter().filter(|(t, _)| *t > expired_at).count();
    summary.mikey_messages_after_expiry = udp_mikey.iter().filter(|(t, _)| *t > expired_at).count();
    summary.flute_packets_captured = flute.len();
    let mut mikey: Vec<Vec<u8>> = udp_mikey.into_iter().map(|(_, m)| m).collect();
    delivered_set.extend(delivered(&runs, &flute, &pushed, &mut mikey));
    check_mikey(&mikey, &mut summary);
    check_srtp(&srtp, &mut summary);
    summary.objects_acknowledged = pushed.len();
    summary.objects_delivered = delivered_set.len();

    let reuses = &summary.reuses;
    let mut violations = Vec::new();
    for (what, n) in [
        ("MIKEY counters used twice", reuses.mikey_counter),
        ("RANDs used twice", reuses.mikey_rand),
        ("MTK IDs naming two MTKs", reuses.mtk_id),
        ("SRTP indexes protecting two packets", reuses.srtp_index),
        (
            "SRTP packets after the MSK expired",
            summary.srtp_packets_after_expiry,
        ),
        (
            "MIKEY messages after the MSK expired",
            summary.mikey_messages_after_expiry,
        ),
    ] {
        if n > 0 {
            violations.push(format!("{what}: {n}"));
        }
    }
    if summary.objects_delivered < summary.objects_acknowledged {
        violations.push(format!(
            "{} of {} acknowledged objects never arrived",
            summary.objects_acknowledged - summary.objects_delivered,
            summary.objects_acknowledged
        ));
    }
    if summary.garbage_answers_rejected < 1.0 {
        violations.push("the garbage BM-SC's answers were not rejected".into());
    }
    if summary.srtp_packets_during_garbage == 0 {
        violations.push("nothing was sent while the BM-SC answered garbage".into());
    }
    if summary.srtp_packets_checked == 0 || summary.mikey_messages_distinct == 0 {
        violations.push("nothing was captured".into());
    }
    summary.violations.extend(violations);
    if summary.violations.is_empty() {
        let _ = std::fs::remove_dir_all(&dir);
    } else {
        eprintln!("kept for a look: {}", dir.display());
    }
    Ok(summary)
}
