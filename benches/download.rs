//! Download path throughput, stage by stage and as the gateway runs them.
//!
//! Eight 4 MiB objects per session. The stages alone, each on one thread:
//! DCF encryption (AES-128-CBC, AES-128-CTR) of in-memory objects, the
//! Content-MD5 of the DCF bytes, the spool write, and the FLUTE send (spool
//! read, Compact No-Code ALC packets of 1428 bytes, GSO batches to a loopback
//! UDP socket). Then the pipeline as the gateway runs it: the session's protect
//! worker (`protect_file`: source file to spool, with the source read and
//! encryption, the digest and the spool write on three threads) hands each
//! object to the session's
//! FLUTE sender thread, which sends it while the next is protected; one
//! session, then two sessions at once. Baselines in the same run: our plain ALC
//! send of unencrypted objects and the `flute` crate's sender.
//!
//! The run ends with one summary line per configuration: the pipeline against
//! its slowest stage, two sessions against one, and two sessions on a CPU each
//! against one session on one CPU (how sessions spread over cores when one
//! session alone no longer fills the machine).

use std::fs::File;
use std::hint::black_box;
use std::io::Write;
use std::net::{SocketAddr, UdpSocket};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

#[path = "common/affinity.rs"]
mod affinity;
use affinity::set_affinity;
use criterion::{BatchSize, Criterion, Throughput, criterion_group};
use mbms_gateway::gateway::download::protect::{
    ProtectRequest, ProtectedObject, ProtectionKey, protect_file,
};
use mbms_gateway::gateway::download::read_ahead::ReadAhead;
use mbms_gateway::protocol::dcf::{DcfParams, DcfWriter, EncryptionMethod};
use mbms_gateway::protocol::flute::object_sender::{ObjectKind, ObjectSender, ObjectSenderConfig};
use mbms_gateway::protocol::keys::{KeyDomainId, Mki, MskId, MtkId, MtkKey};
use mbms_gateway::runtime::udp::send_segments;
use md5::Digest;

const OBJECTS: usize = 8;
const OBJECT_LEN: usize = 4 << 20;
const BYTES: u64 = (OBJECTS * OBJECT_LEN) as u64;
const MAX_PACKET: usize = 1428;
/// Segments per GSO batch.
const BATCH: usize = 32;
/// Plaintext per step, as the protect worker reads it.
const CHUNK: usize = mbms_gateway::gateway::download::protect::CHUNK;

struct Sink {
    socket: UdpSocket,
    dest: SocketAddr,
    gso: bool,
    batch: Vec<u8>,
    segment: usize,
    _receiver: UdpSocket,
}

impl Sink {
    fn new() -> Self {
        let receiver = UdpSocket::bind("127.0.0.1:0").unwrap();
        Self {
            socket: UdpSocket::bind("127.0.0.1:0").unwrap(),
            dest: receiver.local_addr().unwrap(),
            gso: true,
            batch: Vec::with_capacity(BATCH * MAX_PACKET),
            segment: 0,
            _receiver: receiver,
        }
    }

    /// Appends one datagram; a batch leaves when full or when the size changes.
    fn push(&mut self, packet: &[u8]) {
        if self.segment != packet.len() || self.batch.len() >= BATCH * self.segment {
            self.flush();
            self.segment = packet.len();
        }
        self.batch.extend_from_slice(packet);
    }

    fn flush(&mut self) {
        if !self.batch.is_empty() {
            // Loopback drops what the unread receiver has no room for; the
            // send cost is what is measured.
            let _ = send_segments(
                &self.socket,
                self.dest,
                &self.batch,
                self.segment,
                &mut self.gso,
            );
            self.batch.clear();
        }
    }
}

/// Where the packetizer takes its symbols from.
trait Symbols {
    fn len(&self) -> u64;
    fn bytes(&mut self, range: Range<u64>) -> &[u8];
}

impl Symbols for &[u8] {
    fn len(&self) -> u64 {
        <[u8]>::len(self) as u64
    }

    fn bytes(&mut self, range: Range<u64>) -> &[u8] {
        &self[range.start as usize..range.end as usize]
    }
}

/// A spooled object read as the FLUTE sender reads it, through its
/// read-ahead window.
struct Spooled<'a> {
    file: File,
    len: u64,
    toi: u128,
    read_ahead: &'a mut ReadAhead,
}

impl<'a> Spooled<'a> {
    fn open(path: &Path, len: u64, toi: u128, read_ahead: &'a mut ReadAhead) -> Self {
        Self {
            file: File::open(path).unwrap(),
            len,
            toi,
            read_ahead,
        }
    }
}

impl Symbols for Spooled<'_> {
    fn len(&self) -> u64 {
        self.len
    }

    fn bytes(&mut self, range: Range<u64>) -> &[u8] {
        self.read_ahead.bytes(&self.file, self.toi, range).unwrap()
    }
}

/// Our packetizer over `object`, into the sink.
fn send_alc(sink: &mut Sink, toi: u128, mut object: impl Symbols, packet: &mut [u8]) {
    let config = ObjectSenderConfig::new(7, ObjectKind::File { toi }, object.len(), MAX_PACKET);
    let mut sender = ObjectSender::new(&config).unwrap();
    while let Some(request) = sender.next_symbol() {
        let n = sender
            .write_packet(object.bytes(request.range), packet)
            .unwrap();
        sink.push(&packet[..n]);
    }
}

fn plaintext(o: usize) -> Vec<u8> {
    (0..OBJECT_LEN).map(|i| (i * 7 + o) as u8).collect()
}

fn key() -> ProtectionKey {
    let mki = Mki {
        msk_id: MskId(1),
        mtk_id: MtkId(2),
    };
    let message = Arc::from(&b"mikey"[..]);
    ProtectionKey::new(
        KeyDomainId([1, 2, 3]),
        mki,
        MtkKey::new([7; 16]),
        message,
        0,
    )
}

#[derive(Clone, Copy)]
struct Config {
    name: &'static str,
    method: EncryptionMethod,
    content_md5: bool,
}

const CONFIGS: [Config; 4] = [
    Config {
        name: "cbc+md5",
        method: EncryptionMethod::Aes128Cbc,
        content_md5: true,
    },
    Config {
        name: "cbc",
        method: EncryptionMethod::Aes128Cbc,
        content_md5: false,
    },
    Config {
        name: "ctr+md5",
        method: EncryptionMethod::Aes128Ctr,
        content_md5: true,
    },
    Config {
        name: "ctr",
        method: EncryptionMethod::Aes128Ctr,
        content_md5: false,
    },
];

/// Source files on disk (page cache) and their spool, per session.
struct Session {
    dir: tempfile::TempDir,
    sources: Vec<PathBuf>,
}

impl Session {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let sources = (0..OBJECTS)
            .map(|o| {
                let path = dir.path().join(format!("seg-{o}.mp4"));
                std::fs::write(&path, plaintext(o)).unwrap();
                path
            })
            .collect();
        Self { dir, sources }
    }

    /// Every object through the gateway's protect worker and FLUTE sender,
    /// the sender one object behind.
    fn run(&self, config: Config, key: &ProtectionKey) {
        let (objects, to_send) = mpsc::sync_channel::<ProtectedObject>(1);
        std::thread::scope(|scope| {
            scope.spawn(move || {
                let mut sink = Sink::new();
                let mut packet = vec![0u8; MAX_PACKET];
                let mut read_ahead = ReadAhead::default();
                for (i, object) in to_send.into_iter().enumerate() {
                    let (path, len, toi) =
                        (&object.spool_path, object.transfer_length, i as u128 + 1);
                    let spooled = Spooled::open(path, len, toi, &mut read_ahead);
                    send_alc(&mut sink, toi, spooled, &mut packet);
                    std::fs::remove_file(&object.spool_path).unwrap();
                }
                sink.flush();
            });
            for (o, source) in self.sources.iter().enumerate() {
                let request = ProtectRequest {
                    source,
                    content_location: &format!("seg-{o}.mp4"),
                    content_type: "video/mp4",
                    method: config.method,
                    content_md5: config.content_md5,
                    max_size: u64::MAX,
                    spool_path: self.dir.path().join(format!("{o}.dcf")),
                };
                objects.send(protect_file(request, key).unwrap()).unwrap();
            }
            drop(objects);
        });
    }
}

/// The stages alone, each over the same bytes, on the calling thread.
struct Stages {
    objects: Vec<Vec<u8>>,
    /// The CBC DCFs, for the digest and the sends.
    dcfs: Vec<Vec<u8>>,
    spool: tempfile::TempDir,
    sink: Sink,
    packet: Vec<u8>,
    cipher: Vec<u8>,
    read_ahead: ReadAhead,
}

impl Stages {
    fn new() -> Self {
        let objects: Vec<Vec<u8>> = (0..OBJECTS).map(plaintext).collect();
        let mut stages = Self {
            dcfs: Vec::new(),
            objects,
            spool: tempfile::tempdir().unwrap(),
            sink: Sink::new(),
            packet: vec![0u8; MAX_PACKET],
            cipher: Vec::with_capacity(CHUNK + 16),
            read_ahead: ReadAhead::default(),
        };
        stages.dcfs = (0..OBJECTS)
            .map(|o| {
                let mut dcf = Vec::new();
                let mut writer = writer(EncryptionMethod::Aes128Cbc, o);
                dcf.extend_from_slice(writer.header());
                for chunk in stages.objects[o].chunks(CHUNK) {
                    writer.encrypt(chunk, &mut dcf).unwrap();
                }
                writer.finish(&mut dcf).unwrap();
                dcf
            })
            .collect();
        for (o, dcf) in stages.dcfs.iter().enumerate() {
            std::fs::write(stages.spooled(o), dcf).unwrap();
        }
        stages
    }

    fn spooled(&self, o: usize) -> PathBuf {
        self.spool.path().join(format!("{o}.dcf"))
    }

    fn encrypt(&mut self, method: EncryptionMethod) {
        for (o, object) in self.objects.iter().enumerate() {
            let mut writer = writer(method, o);
            for chunk in object.chunks(CHUNK) {
                self.cipher.clear();
                writer.encrypt(chunk, &mut self.cipher).unwrap();
                black_box(&self.cipher);
            }
            writer.finish(&mut self.cipher).unwrap();
        }
    }

    fn md5(&self) {
        for dcf in &self.dcfs {
            let mut md5 = md5::Md5::new();
            for chunk in dcf.chunks(CHUNK) {
                md5.update(chunk);
            }
            black_box(md5.finalize());
        }
    }

    fn spool_write(&self) {
        for dcf in &self.dcfs {
            let path = self.spool.path().join("written.dcf");
            let mut file = File::create(&path).unwrap();
            for chunk in dcf.chunks(CHUNK) {
                file.write_all(chunk).unwrap();
            }
            drop(file);
            std::fs::remove_file(&path).unwrap();
        }
    }

    fn flute_send(&mut self) {
        for o in 0..OBJECTS {
            let (len, toi) = (self.dcfs[o].len() as u64, o as u128 + 1);
            let spooled = Spooled::open(&self.spooled(o), len, toi, &mut self.read_ahead);
            send_alc(&mut self.sink, toi, spooled, &mut self.packet);
        }
        self.sink.flush();
    }

    fn plain_alc_send(&mut self) {
        for (o, object) in self.objects.iter().enumerate() {
            let toi = o as u128 + 1;
            send_alc(&mut self.sink, toi, object.as_slice(), &mut self.packet);
        }
        self.sink.flush();
    }

    /// The `flute` crate takes each object by value: `objects` are copies
    /// made outside the timed part.
    fn flute_crate_send(&mut self, objects: Vec<Vec<u8>>) {
        use flute::core::UDPEndpoint;
        use flute::sender::{ObjectDesc, Sender, TransferConfig};
        let symbol =
            ObjectSenderConfig::new(7, ObjectKind::File { toi: 1 }, 0, MAX_PACKET).symbol_length;
        let oti = flute::core::Oti::new_no_code(symbol, 1024);
        let endpoint = UDPEndpoint::new(None, "224.0.0.1".to_owned(), 3000);
        let now = std::time::SystemTime::now();
        let mut sender = Sender::new(endpoint, 7, &oti, &Default::default());
        for (o, object) in objects.into_iter().enumerate() {
            let location = url::Url::parse(&format!("http://example.com/seg-{o}")).unwrap();
            let desc = ObjectDesc::create_from_buffer(
                object,
                "video/mp4",
                &location,
                false,
                TransferConfig::default(),
            )
            .unwrap();
            sender.add_object(0, desc).unwrap();
        }
        sender.publish(now).unwrap();
        while let Some(pkt) = sender.read(now) {
            self.sink.push(black_box(&pkt));
        }
        self.sink.flush();
    }
}

fn writer(method: EncryptionMethod, o: usize) -> DcfWriter {
    let params = DcfParams {
        content_type: "video/mp4".into(),
        content_id: format!("cid:seg-{o}"),
        rights_issuer_url: String::new(),
        textual_headers: Vec::new(),
        method,
        plaintext_len: OBJECT_LEN as u64,
    };
    DcfWriter::new(params, &key().key, [o as u8; 16]).unwrap()
}

/// How the sessions' threads are placed.
#[derive(Clone, Copy, PartialEq)]
enum Cores {
    /// Anywhere, as the gateway runs them.
    Shared,
    /// Session `i` and all its threads on CPU `i` only.
    OnePerSession,
}

fn sessions(config: Config, sessions: &[Session], key: &ProtectionKey, cores: Cores) {
    std::thread::scope(|scope| {
        for (i, session) in sessions.iter().enumerate() {
            scope.spawn(move || {
                if cores == Cores::OnePerSession {
                    set_affinity(0, [i]).expect("CPU affinity");
                }
                session.run(config, key)
            });
        }
    });
}

fn download(c: &mut Criterion) {
    let mut stages = Stages::new();
    let mut group = c.benchmark_group("download_stage_8x4MiB");
    group.throughput(Throughput::Bytes(BYTES));
    group.sample_size(10);
    group.bench_function("encrypt_cbc", |b| {
        b.iter(|| stages.encrypt(EncryptionMethod::Aes128Cbc))
    });
    group.bench_function("encrypt_ctr", |b| {
        b.iter(|| stages.encrypt(EncryptionMethod::Aes128Ctr))
    });
    group.bench_function("md5", |b| b.iter(|| stages.md5()));
    group.bench_function("spool_write", |b| b.iter(|| stages.spool_write()));
    group.bench_function("flute_send", |b| b.iter(|| stages.flute_send()));
    group.bench_function("plain_alc_send", |b| b.iter(|| stages.plain_alc_send()));
    let copies = stages.objects.clone();
    group.bench_function("flute_crate_send", |b| {
        b.iter_batched(
            || copies.clone(),
            |objects| stages.flute_crate_send(objects),
            BatchSize::LargeInput,
        )
    });
    group.finish();

    let key = key();
    let pair = [Session::new(), Session::new()];
    for (count, name) in [
        (1, "download_pipeline_1_session"),
        (2, "download_pipeline_2_sessions"),
    ] {
        let mut group = c.benchmark_group(name);
        group.throughput(Throughput::Bytes(BYTES * count as u64));
        group.sample_size(10);
        for config in CONFIGS {
            group.bench_function(config.name, |b| {
                b.iter(|| sessions(config, &pair[..count], &key, Cores::Shared))
            });
        }
        group.finish();
    }
}

/// Bytes per second of `bytes` processed by `f`: the best of several runs
/// after a warm-up, for the summary lines.
fn rate(bytes: u64, mut f: impl FnMut()) -> f64 {
    f();
    let best = (0..7)
        .map(|_| {
            let start = Instant::now();
            f();
            start.elapsed()
        })
        .min()
        .unwrap_or(Duration::MAX);
    bytes as f64 / best.as_secs_f64()
}

/// The summary lines, for the configurations named on the command line (all
/// when none is).
fn summary(only: &[String]) {
    let mut stages = Stages::new();
    let cbc = rate(BYTES, || stages.encrypt(EncryptionMethod::Aes128Cbc));
    let ctr = rate(BYTES, || stages.encrypt(EncryptionMethod::Aes128Ctr));
    let md5 = rate(BYTES, || stages.md5());
    let spool = rate(BYTES, || stages.spool_write());
    let send = rate(BYTES, || stages.flute_send());
    let mib = |r: f64| r / f64::from(1 << 20);
    println!(
        "download/stages: encrypt cbc {:.0} MiB/s, ctr {:.0} MiB/s, md5 {:.0} MiB/s, spool write {:.0} MiB/s, flute send {:.0} MiB/s",
        mib(cbc),
        mib(ctr),
        mib(md5),
        mib(spool),
        mib(send)
    );
    let key = key();
    let pair = [Session::new(), Session::new()];
    for config in CONFIGS {
        if !only.is_empty() && !only.iter().any(|name| name == config.name) {
            continue;
        }
        let encrypt = if config.method == EncryptionMethod::Aes128Cbc {
            ("encrypt", cbc)
        } else {
            ("encrypt", ctr)
        };
        let (slowest, slowest_rate) = [
            encrypt,
            ("md5", md5),
            ("spool write", spool),
            ("flute send", send),
        ]
        .into_iter()
        .filter(|(name, _)| config.content_md5 || *name != "md5")
        .min_by(|a, b| a.1.total_cmp(&b.1))
        .unwrap();
        let run = |count: usize, cores| {
            rate(BYTES * count as u64, || {
                sessions(config, &pair[..count], &key, cores)
            })
        };
        let one = run(1, Cores::Shared);
        let two = run(2, Cores::Shared);
        let one_core = run(1, Cores::OnePerSession);
        let two_cores = run(2, Cores::OnePerSession);
        println!(
            "download {}: {:.2}x slowest stage ({slowest}), 1 session ({:.0} vs {:.0} MiB/s); {:.2}x with 2 sessions ({:.0} MiB/s); {:.2}x with 2 sessions on a core each ({:.0} vs {:.0} MiB/s)",
            config.name,
            one / slowest_rate,
            mib(one),
            mib(slowest_rate),
            two / one,
            mib(two),
            two_cores / one_core,
            mib(two_cores),
            mib(one_core)
        );
    }
}

criterion_group!(benches, download);

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--summary-only") {
        let configs: Vec<String> = args.into_iter().filter(|a| !a.starts_with("--")).collect();
        summary(&configs);
    } else {
        benches();
        Criterion::default().configure_from_args().final_summary();
        summary(&[]);
    }
}
