//! SRTP protect throughput at MBMS packet sizes (RTP header included) next to
//! the raw cost of its crypto in the same run: AES-128-CTR over the payload plus
//! HMAC-SHA1 from a pre-keyed state over header ‖ payload ‖ ROC. Throughput is
//! in packets (elements) per second; multiply by the size for bytes per second.
//!
//! Each side runs three ways: the RFC 3711 default transform on every packet,
//! every packet an RFC 4771 RCC packet (ROC ‖ MAC_tr in the tag), and the MBMS
//! profile (RCCm2, one packet in 16 an RCC packet). The run ends with one
//! line of same-run ratios.

use aes::Aes128;
use aes::cipher::{InnerIvInit, KeyInit, StreamCipher};
use criterion::{BatchSize, Criterion, Throughput, criterion_group};
use hmac::{Hmac, Mac};
use mbms_gateway::protocol::codec::Codec;
use mbms_gateway::protocol::keys::{Mki, MskId, Mtk, MtkId, MtkKey, MtkSalt};
use mbms_gateway::protocol::srtp::{
    RccMode, RocTransmission, RtpHeader, SrtpConfig, SrtpReceiver, SrtpSender,
};
use sha1::Sha1;
use std::cell::RefCell;
use std::hint::black_box;
use std::num::NonZeroU16;
use std::time::Instant;

const SIZES: [usize; 2] = [188, 1328];
const HEADER: usize = 12;

fn packet(size: usize) -> Vec<u8> {
    let mut p = RtpHeader {
        padding: false,
        marker: false,
        payload_type: 33,
        sequence_number: 0,
        timestamp: 0,
        ssrc: 0x1234_5678,
        csrcs: &[],
        extension: None,
    }
    .to_vec();
    p.resize(size, 0x47);
    p
}

fn mki() -> [u8; 6] {
    Mki {
        msk_id: MskId::new(1, 2),
        mtk_id: MtkId(3),
    }
    .to_bytes()
}

fn mtk() -> Mtk {
    Mtk {
        key: MtkKey::new([0x2b; 16]),
        salt: MtkSalt::new([0xf0; 14]),
    }
}

/// The ways the packets carry the ROC, by name.
fn transforms() -> [(&'static str, RocTransmission); 3] {
    let rcc = |rate| RocTransmission::Rcc {
        mode: RccMode::Rccm2,
        rate: NonZeroU16::new(rate).unwrap(),
    };
    [
        ("default_transform", RocTransmission::None),
        ("rcc_packet", rcc(1)),
        ("mbms_rccm2_r16", SrtpConfig::mbms().roc),
    ]
}

fn config(roc: RocTransmission) -> SrtpConfig {
    SrtpConfig {
        roc,
        ..SrtpConfig::mbms()
    }
}

fn sender(roc: RocTransmission) -> SrtpSender {
    let mut tx = SrtpSender::new(config(roc)).unwrap();
    tx.add_master_key(&mki(), &mtk()).unwrap();
    tx.set_active_key(&mki()).unwrap();
    tx
}

/// Copies the template into the send buffer with the next SEQ, as the ingest
/// path does with each encoder packet (the baseline pays the same copy).
fn next_packet(buf: &mut [u8], template: &[u8], seq: &mut u16) {
    buf[..template.len()].copy_from_slice(template);
    buf[2..4].copy_from_slice(&seq.to_be_bytes());
    *seq = seq.wrapping_add(1);
}

fn protect(c: &mut Criterion) {
    let mut group = c.benchmark_group("srtp_protect");
    group.throughput(Throughput::Elements(1));
    for size in SIZES {
        let template = packet(size);
        let mut buf = vec![0u8; size + 64];

        for (name, roc) in transforms() {
            let mut tx = sender(roc);
            let mut seq = 0u16;
            group.bench_function(format!("{name}/{size}B"), |b| {
                b.iter(|| {
                    next_packet(&mut buf, &template, &mut seq);
                    black_box(tx.protect(black_box(&mut buf), size).unwrap())
                })
            });
        }

        let cipher = Aes128::new(&[0x11; 16].into());
        let mac = <Hmac<Sha1> as KeyInit>::new_from_slice(&[0x22; 20]).unwrap();
        let mut seq = 0u16;
        let mut roc = 0u32;
        group.bench_function(format!("baseline_ctr_hmac/{size}B"), |b| {
            b.iter(|| {
                next_packet(&mut buf, &template, &mut seq);
                let mut iv = [0x5a; 16];
                iv[12..14].copy_from_slice(&seq.to_be_bytes());
                iv[14..].fill(0);
                let core = ctr::CtrCore::<Aes128, ctr::flavors::Ctr128BE>::inner_iv_init(
                    cipher.clone(),
                    &iv.into(),
                );
                ctr::Ctr128BE::from_core(core).apply_keystream(&mut buf[HEADER..size]);
                let mut m = mac.clone();
                m.update(&buf[..size]);
                m.update(&roc.to_be_bytes());
                let tag = m.finalize().into_bytes();
                buf[size + 6..size + 16].copy_from_slice(&tag[..10]);
                roc = roc.wrapping_add(u32::from(seq == 0));
                black_box(&buf);
            })
        });
    }
    group.finish();
}

fn unprotect(c: &mut Criterion) {
    let mut group = c.benchmark_group("srtp_unprotect");
    group.throughput(Throughput::Elements(1));
    for size in SIZES {
        let template = packet(size);
        for (name, roc) in transforms() {
            let tx = RefCell::new((sender(roc), 0u16));
            let mut rx = SrtpReceiver::new(config(roc)).unwrap();
            rx.add_master_key(&mki(), &mtk()).unwrap();
            group.bench_function(format!("{name}/{size}B"), |b| {
                b.iter_batched_ref(
                    || {
                        let (tx, seq) = &mut *tx.borrow_mut();
                        let mut buf = vec![0u8; size + 16];
                        next_packet(&mut buf, &template, seq);
                        let len = tx.protect(&mut buf, size).unwrap();
                        buf.truncate(len);
                        buf
                    },
                    |buf| black_box(rx.unprotect(buf).unwrap()),
                    BatchSize::SmallInput,
                )
            });
        }
    }
    group.finish();
}

/// Nanoseconds per packet to protect, then to unprotect, `PACKETS` packets
/// of `size` bytes with `roc`: a plain timed loop, for the summary line.
fn per_packet_ns(size: usize, roc: RocTransmission) -> (f64, f64) {
    const PACKETS: u32 = 200_000;
    let template = packet(size);
    let mut tx = sender(roc);
    let mut rx = SrtpReceiver::new(config(roc)).unwrap();
    rx.add_master_key(&mki(), &mtk()).unwrap();
    let mut seq = 0u16;
    let mut packets = vec![vec![0u8; size + 16]; 1024];
    let (mut protect_ns, mut unprotect_ns) = (0u128, 0u128);
    for _ in 0..PACKETS / 1024 {
        let start = Instant::now();
        for buf in &mut packets {
            buf.resize(size + 16, 0);
            next_packet(buf, &template, &mut seq);
            let len = tx.protect(buf, size).unwrap();
            buf.truncate(len);
        }
        protect_ns += start.elapsed().as_nanos();
        let start = Instant::now();
        for buf in &mut packets {
            black_box(rx.unprotect(buf).unwrap());
        }
        unprotect_ns += start.elapsed().as_nanos();
    }
    let n = f64::from(PACKETS / 1024 * 1024);
    (protect_ns as f64 / n, unprotect_ns as f64 / n)
}

/// One line of same-run ratios: what carrying the ROC costs per packet.
fn summary() {
    for size in SIZES {
        let [(_, plain), (_, every), (_, profile)] = transforms();
        let (plain, every, profile) = (
            per_packet_ns(size, plain),
            per_packet_ns(size, every),
            per_packet_ns(size, profile),
        );
        println!(
            "srtp/summary {size}B: RCC packet {:.2}x the default transform to protect \
             ({:.0} vs {:.0} ns), {:.2}x to unprotect ({:.0} vs {:.0} ns); \
             MBMS profile (RCCm2, R = 16) {:.2}x / {:.2}x",
            every.0 / plain.0,
            every.0,
            plain.0,
            every.1 / plain.1,
            every.1,
            plain.1,
            profile.0 / plain.0,
            profile.1 / plain.1,
        );
    }
}

criterion_group!(benches, protect, unprotect);

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
    summary();
}
