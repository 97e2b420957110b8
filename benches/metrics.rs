//! Cost of the per-packet metric calls against the plain atomics the egress
//! thread uses for its own counters, and of one scrape render.

use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use mbms_gateway::runtime::metrics::{self, LatencyMetrics, SessionMetrics};

fn per_packet(c: &mut Criterion) {
    let exporter = metrics::install().unwrap();
    let session = SessionMetrics::new("bench");
    let input = session.input("video");
    let latency = LatencyMetrics::new("bench");
    let (packets, bytes) = (AtomicU64::new(0), AtomicU64::new(0));

    let mut group = c.benchmark_group("metrics_per_packet");
    group.bench_function("baseline_two_relaxed_atomic_adds", |b| {
        b.iter(|| {
            packets.fetch_add(1, Ordering::Relaxed);
            bytes.fetch_add(black_box(1316), Ordering::Relaxed);
        })
    });
    group.bench_function("input_received", |b| {
        b.iter(|| input.received(black_box(1316)))
    });
    group.bench_function("ingest_to_egress_histogram", |b| {
        b.iter(|| latency.ingest_to_egress(black_box(Duration::from_micros(40))));
        // Drain samples as the admin endpoint's upkeep does.
        exporter.run_upkeep();
    });
    group.finish();

    // A scrape with 16 sessions of 2 inputs each.
    let sessions: Vec<_> = (0..16)
        .map(|i| {
            let s = SessionMetrics::new(&format!("s{i}"));
            let inputs = [s.input("video"), s.input("audio")];
            (s, inputs)
        })
        .collect();
    black_box(&sessions);
    c.bench_function("metrics_render_16_sessions", |b| {
        b.iter(|| black_box(exporter.render().len()))
    });
}

criterion_group!(benches, per_packet);
criterion_main!(benches);
