//! The synthetic encoder's per-packet work and the probe's payload check,
//! against a plain copy of the same bytes as the same-run baseline.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use mbms_gateway::runtime::synthetic::{
    SYNTHETIC_RTP_LEN, SyntheticPacket, build_synthetic_rtp, verify_synthetic_payload,
};
use std::hint::black_box;

fn synthetic(c: &mut Criterion) {
    let mut group = c.benchmark_group("synthetic_mp2t");
    group.throughput(Throughput::Bytes(SYNTHETIC_RTP_LEN as u64));
    let mut packet = SyntheticPacket {
        ssrc: 0x1234_5678,
        sequence_number: 0,
        timestamp: 0,
        payload_type: 33,
        counter: 0,
    };
    let mut buf = [0u8; SYNTHETIC_RTP_LEN];
    let source = [0x47u8; SYNTHETIC_RTP_LEN];
    group.bench_function("baseline_copy", |b| {
        b.iter(|| {
            buf.copy_from_slice(black_box(&source));
            black_box(&buf);
        })
    });
    group.bench_function("build", |b| {
        b.iter(|| {
            packet.counter = packet.counter.wrapping_add(1);
            black_box(build_synthetic_rtp(black_box(&packet), &mut buf))
        })
    });
    build_synthetic_rtp(&packet, &mut buf);
    group.bench_function("verify", |b| {
        b.iter(|| black_box(verify_synthetic_payload(black_box(&buf[12..])).unwrap()))
    });
    group.finish();
}

criterion_group!(benches, synthetic);
criterion_main!(benches);
