//! Scheduling cost per transmission: the carousel's `poll` for one object
//! (or FDT) decision with 10, 100 and 1000 objects on air, and the pacer's
//! batch decision (`take_batch` + `next_send_at`), each against the cost of
//! the bare loop they sit in (a `BTreeMap` round-robin step and an `Instant`
//! addition).

use std::collections::BTreeMap;
use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use mbms_gateway::protocol::flute::carousel::{
    Carousel, CarouselConfig, CarouselObject, ObjectLifetime,
};
use mbms_gateway::protocol::pacer::Pacer;

fn object(i: usize) -> CarouselObject {
    CarouselObject {
        content_location: format!("http://example.com/seg{i}.m4s"),
        content_type: Some("video/mp4".into()),
        transfer_length: 1_000_000,
        content_length: Some(1_000_000),
        content_md5: None,
        fec_oti: None,
        decryption_key_uri: None,
        is_mikey: false,
        lifetime: ObjectLifetime::UntilRemoved,
    }
}

fn carousel_poll(c: &mut Criterion) {
    let mut group = c.benchmark_group("carousel_poll");
    for n in [10usize, 100, 1000] {
        let now = Instant::now();
        let mut carousel = Carousel::new(CarouselConfig::default(), now).unwrap();
        for i in 0..n {
            carousel.add(object(i)).unwrap();
        }
        group.bench_function(BenchmarkId::new("poll", n), |b| {
            b.iter(|| black_box(carousel.poll(now, 3_900_000_000).is_some()))
        });
        let map: BTreeMap<u64, u64> = (0..n as u64).map(|i| (i, i)).collect();
        let mut cursor = 0u64;
        group.bench_function(BenchmarkId::new("btreemap_step_baseline", n), |b| {
            b.iter(|| {
                cursor = match map.range(cursor + 1..).next() {
                    Some((k, _)) => *k,
                    None => 0,
                };
                black_box(cursor)
            })
        });
    }
    group.finish();
}

fn pacer_batch(c: &mut Criterion) {
    let mut group = c.benchmark_group("pacer");
    let start = Instant::now();
    let mut pacer = Pacer::new(1_000_000_000, 49 * 1316, start).unwrap();
    let mut now = start;
    group.bench_function("take_batch_and_next_send_at", |b| {
        b.iter(|| {
            let n = pacer.take_batch(now, 1316, 49);
            now = pacer.next_send_at(1316).max(now);
            black_box(n)
        })
    });
    let mut t = start;
    group.bench_function("instant_add_baseline", |b| {
        b.iter(|| {
            t += black_box(Duration::from_nanos(10_528));
            black_box(t)
        })
    });
    group.finish();
}

criterion_group!(benches, carousel_poll, pacer_batch);
criterion_main!(benches);
