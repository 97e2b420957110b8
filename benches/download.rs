//! Download path throughput on one core: objects protected as DCF (AES-128-CBC
//! or CTR under an MTK, with the FDT's Content-MD5) and sent with Compact
//! No-Code FEC as 1428-byte ALC packets in GSO batches to a loopback UDP
//! socket. Also the FLUTE sender thread's share alone (the gateway protects
//! on another thread, ahead of sending). Baselines in the same run: (a) our
//! plain ALC send of the same unencrypted objects and (b) the `flute` crate's
//! sender producing packets for the same objects and symbol size, sent the
//! same way. RaptorQ encode throughput is in `benches/fec.rs`.

use std::hint::black_box;
use std::net::{SocketAddr, UdpSocket};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use mbms_gateway::protocol::dcf::{DcfParams, DcfWriter, EncryptionMethod};
use mbms_gateway::protocol::flute::object_sender::{ObjectKind, ObjectSender, ObjectSenderConfig};
use mbms_gateway::protocol::keys::MtkKey;
use mbms_gateway::runtime::udp::send_segments;
use md5::Digest;

const OBJECTS: usize = 4;
const OBJECT_LEN: usize = 4 << 20;
const MAX_PACKET: usize = 1428;
/// Segments per GSO batch.
const BATCH: usize = 32;
/// Plaintext fed to the DCF writer per step, as the protect thread does.
const CHUNK: usize = 256 * 1024;

struct Sink {
    socket: UdpSocket,
    dest: SocketAddr,
    gso: bool,
    batch: Vec<u8>,
    segment: usize,
}

impl Sink {
    fn new() -> (Self, UdpSocket) {
        let receiver = UdpSocket::bind("127.0.0.1:0").unwrap();
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        let dest = receiver.local_addr().unwrap();
        (
            Self {
                socket,
                dest,
                gso: true,
                batch: Vec::with_capacity(BATCH * MAX_PACKET),
                segment: 0,
            },
            receiver,
        )
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
            // Loopback may drop when the unread receiver is full; the send
            // cost is what is measured.
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

fn objects() -> Vec<Vec<u8>> {
    (0..OBJECTS)
        .map(|o| (0..OBJECT_LEN).map(|i| (i * 7 + o) as u8).collect())
        .collect()
}

/// Our packetizer over `object`, into the sink.
fn send_alc(sink: &mut Sink, toi: u128, object: &[u8], packet: &mut [u8]) {
    let config =
        ObjectSenderConfig::new(7, ObjectKind::File { toi }, object.len() as u64, MAX_PACKET);
    let mut sender = ObjectSender::new(&config).unwrap();
    while let Some(request) = sender.next_symbol() {
        let symbol = &object[request.range.start as usize..request.range.end as usize];
        let n = sender.write_packet(symbol, packet).unwrap();
        sink.push(&packet[..n]);
    }
}

/// `object` as a DCF into `dcf`, in the protect thread's chunks, with the
/// FDT's Content-MD5 computed as the protect thread does.
fn protect(dcf: &mut Vec<u8>, key: &MtkKey, method: EncryptionMethod, i: usize, object: &[u8]) {
    let params = DcfParams {
        content_type: "video/mp4".into(),
        content_id: format!("cid:seg-{i}"),
        rights_issuer_url: String::new(),
        textual_headers: Vec::new(),
        method,
        plaintext_len: object.len() as u64,
    };
    let mut writer = DcfWriter::new(params, key, [i as u8; 16]).unwrap();
    dcf.clear();
    dcf.extend_from_slice(writer.header());
    for chunk in object.chunks(CHUNK) {
        writer.encrypt(chunk, dcf).unwrap();
    }
    writer.finish(dcf).unwrap();
    black_box(md5::Md5::digest(&dcf[..]));
}

fn download(c: &mut Criterion) {
    let objects = objects();
    let key = MtkKey::new([7; 16]);
    let (mut sink, _receiver) = Sink::new();
    let mut packet = vec![0u8; MAX_PACKET];
    let mut group = c.benchmark_group("download_send_4x4MiB");
    group.throughput(Throughput::Bytes((OBJECTS * OBJECT_LEN) as u64));
    group.sample_size(20);

    let mut dcf = Vec::with_capacity(OBJECT_LEN + 4096);
    for (name, method) in [
        ("dcf_cbc_protect_and_alc_send", EncryptionMethod::Aes128Cbc),
        ("dcf_ctr_protect_and_alc_send", EncryptionMethod::Aes128Ctr),
    ] {
        group.bench_function(name, |b| {
            b.iter(|| {
                for (i, object) in objects.iter().enumerate() {
                    protect(&mut dcf, &key, method, i, object);
                    send_alc(&mut sink, i as u128 + 1, &dcf, &mut packet);
                }
                sink.flush();
            })
        });
    }

    // The gateway protects on one thread and sends on another: the sender
    // thread's share is the send of DCFs already protected.
    let protected: Vec<Vec<u8>> = objects
        .iter()
        .enumerate()
        .map(|(i, object)| {
            let mut dcf = Vec::new();
            protect(&mut dcf, &key, EncryptionMethod::Aes128Cbc, i, object);
            dcf
        })
        .collect();
    group.bench_function("alc_send_of_protected_dcf", |b| {
        b.iter(|| {
            for (i, dcf) in protected.iter().enumerate() {
                send_alc(&mut sink, i as u128 + 1, dcf, &mut packet);
            }
            sink.flush();
        })
    });

    group.bench_function("plain_alc_send", |b| {
        b.iter(|| {
            for (i, object) in objects.iter().enumerate() {
                send_alc(&mut sink, i as u128 + 1, object, &mut packet);
            }
            sink.flush();
        })
    });

    group.bench_function("flute_crate_sender", |b| {
        use flute::core::UDPEndpoint;
        use flute::sender::{ObjectDesc, Sender, TransferConfig};
        let symbol =
            ObjectSenderConfig::new(7, ObjectKind::File { toi: 1 }, 0, MAX_PACKET).symbol_length;
        let oti = flute::core::Oti::new_no_code(symbol, 1024);
        let endpoint = UDPEndpoint::new(None, "224.0.0.1".to_owned(), 3000);
        let now = std::time::SystemTime::now();
        b.iter(|| {
            let mut sender = Sender::new(endpoint.clone(), 7, &oti, &Default::default());
            for (i, object) in objects.iter().enumerate() {
                let location = url::Url::parse(&format!("http://example.com/seg-{i}")).unwrap();
                let desc = ObjectDesc::create_from_buffer(
                    object.clone(),
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
                sink.push(black_box(&pkt));
            }
            sink.flush();
        })
    });
    group.finish();
}

criterion_group!(benches, download);
criterion_main!(benches);
