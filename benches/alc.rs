//! ALC packetization of a 10 MB object with Compact No-Code FEC into one
//! reused packet buffer (header copy + Payload ID + symbol copy per packet),
//! against a plain copy of the same bytes in the same symbol sizes.

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use mbms_gateway::protocol::flute::object_sender::{ObjectKind, ObjectSender, ObjectSenderConfig};

const OBJECT_LEN: usize = 10 * 1024 * 1024;

fn packetize(c: &mut Criterion) {
    let object: Vec<u8> = (0..OBJECT_LEN).map(|i| (i * 7) as u8).collect();
    let mut group = c.benchmark_group("alc_no_code_10MB");
    group.throughput(Throughput::Bytes(OBJECT_LEN as u64));
    // 1428: 1500-byte MTU with IPv4/UDP and headroom; 9000: jumbo frames.
    for max_packet in [1428usize, 9000] {
        let config = ObjectSenderConfig::new(
            7,
            ObjectKind::File { toi: 42 },
            OBJECT_LEN as u64,
            max_packet,
        );
        let symbol = usize::from(config.symbol_length);
        let mut sender = ObjectSender::new(&config).unwrap();
        let mut packet = vec![0u8; max_packet];

        group.bench_function(BenchmarkId::new("packetize", symbol), |b| {
            b.iter(|| {
                sender.rewind();
                while let Some(req) = sender.next_symbol() {
                    let bytes = &object[req.range.start as usize..req.range.end as usize];
                    black_box(sender.write_packet(bytes, &mut packet).unwrap());
                    black_box(&packet);
                }
            })
        });

        group.bench_function(BenchmarkId::new("memcpy_baseline", symbol), |b| {
            b.iter(|| {
                for chunk in object.chunks(symbol) {
                    packet[..chunk.len()].copy_from_slice(chunk);
                    black_box(&packet);
                }
            })
        });
    }
    group.finish();
}

criterion_group!(benches, packetize);
criterion_main!(benches);
