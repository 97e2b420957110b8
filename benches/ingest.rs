//! Ingest validation: `protocol::ingest::classify`, which reads the RTP
//! header with `rtp-types`, against the crate's own header codec
//! (`RtpHeader::parse`, which the classifier used before and SRTP protect
//! still uses), on the same packets in the same run: a plain 12-byte header
//! and one with two CSRCs and a header extension.
//!
//! The run ends with one summary line: classify's cost per packet against
//! the codec parser's.

use criterion::{Criterion, Throughput, criterion_group};
use mbms_gateway::protocol::codec::Codec;
use mbms_gateway::protocol::ingest::{IngestKind, classify};
use mbms_gateway::protocol::srtp::{RtpExtension, RtpHeader};
use std::hint::black_box;
use std::time::Instant;

const MAX_INGEST: usize = 1400;

/// The packets: (name, bytes), 1328 bytes each.
fn packets() -> [(&'static str, Vec<u8>); 2] {
    let header = |csrcs: &'static [u8], extension| RtpHeader {
        padding: false,
        marker: false,
        payload_type: 33,
        sequence_number: 0x1234,
        timestamp: 90_000,
        ssrc: 0x5eed_0001,
        csrcs,
        extension,
    };
    let mut plain = header(&[], None).to_vec();
    plain.resize(1328, 0x47);
    let mut rich = header(
        &[0, 0, 0, 1, 0, 0, 0, 2],
        Some(RtpExtension {
            profile: 0xbede,
            data: &[0xaa; 8],
        }),
    )
    .to_vec();
    rich.resize(1328, 0x47);
    [("plain_header", plain), ("csrcs_and_extension", rich)]
}

fn validate(c: &mut Criterion) {
    let mut group = c.benchmark_group("ingest_validate");
    group.throughput(Throughput::Elements(1));
    for (name, packet) in packets() {
        group.bench_function(format!("codec_parser/{name}"), |b| {
            b.iter(|| black_box(RtpHeader::parse(black_box(&packet)).unwrap().1))
        });
        group.bench_function(format!("classify_rtp_types/{name}"), |b| {
            b.iter(|| black_box(classify(black_box(&packet), MAX_INGEST).unwrap()))
        });
    }
    group.finish();
}

/// Nanoseconds per call of `f` over many calls: a plain timed loop, for the
/// summary line.
fn per_call_ns(mut f: impl FnMut() -> usize) -> f64 {
    const CALLS: u32 = 2_000_000;
    let start = Instant::now();
    let mut sink = 0usize;
    for _ in 0..CALLS {
        sink = sink.wrapping_add(black_box(f()));
    }
    black_box(sink);
    start.elapsed().as_nanos() as f64 / f64::from(CALLS)
}

fn summary() {
    for (name, packet) in packets() {
        let codec = per_call_ns(|| RtpHeader::parse(black_box(&packet)).unwrap().1);
        let rtp_types = per_call_ns(|| match classify(black_box(&packet), MAX_INGEST) {
            Ok(IngestKind::Rtp {
                ssrc,
                sequence_number,
            }) => ssrc as usize ^ usize::from(sequence_number),
            _ => 0,
        });
        println!(
            "ingest/summary {name}: classify with rtp-types {:.2}x the codec parser ({:.1} vs {:.1} ns per packet)",
            rtp_types / codec,
            rtp_types,
            codec
        );
    }
}

criterion_group!(benches, validate);

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
    summary();
}
