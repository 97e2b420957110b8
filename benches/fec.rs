//! FLUTE FEC encode throughput for a 10 MB object at 1400-byte symbols:
//! Raptor and RaptorQ with 25 % repair overhead (source + repair packets,
//! streamed block by block, blocks of up to 1024 symbols) next to the
//! Compact No-Code packetizer of the same object, all through
//! `FecObjectSender` into one reused packet buffer. Throughput is object
//! bytes per second.

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use mbms_gateway::protocol::flute::fec::{FecObjectSender, FecScheme};
use mbms_gateway::protocol::flute::object_sender::{ObjectKind, ObjectSenderConfig};

const OBJECT_LEN: usize = 10 * 1000 * 1000;
const SYMBOL_LEN: u16 = 1400;
const MAX_PACKET: usize = 1500;

fn encode(c: &mut Criterion) {
    let object: Vec<u8> = (0..OBJECT_LEN).map(|i| (i * 7 + i / 997) as u8).collect();
    let mut group = c.benchmark_group("fec_10MB_T1400");
    group.throughput(Throughput::Bytes(OBJECT_LEN as u64));
    group.sample_size(10);
    for (name, scheme) in [
        ("no_code", FecScheme::CompactNoCode),
        (
            "raptor_25pct",
            FecScheme::Raptor {
                repair_overhead: 0.25,
            },
        ),
        (
            "raptorq_25pct",
            FecScheme::RaptorQ {
                repair_overhead: 0.25,
            },
        ),
    ] {
        let mut config = ObjectSenderConfig::new(
            7,
            ObjectKind::File { toi: 42 },
            OBJECT_LEN as u64,
            MAX_PACKET,
        );
        config.symbol_length = SYMBOL_LEN;
        let mut sender = FecObjectSender::new(&config, scheme).unwrap();
        let mut packet = vec![0u8; MAX_PACKET];
        group.bench_function(BenchmarkId::new(name, sender.packet_count()), |b| {
            b.iter(|| {
                sender.rewind();
                while let Some(req) = sender.next_symbol() {
                    let bytes = &object[req.range.start as usize..req.range.end as usize];
                    black_box(sender.write_packet(bytes, &mut packet).unwrap());
                    black_box(&packet);
                }
            })
        });
    }
    group.finish();
}

criterion_group!(benches, encode);
criterion_main!(benches);
