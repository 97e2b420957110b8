//! MIKEY MTK message build and open, with the envelope-key derivation (three
//! MIKEY-1 PRF runs) as a same-run baseline: it is most of the cost of both.
//! Throughput is in messages per second.

use criterion::{Criterion, Throughput, black_box, criterion_group, criterion_main};
use mbms_gateway::protocol::keys::{KeyDomainId, Msk, MskId, Mtk, MtkId, MtkKey, MtkSalt};
use mbms_gateway::protocol::mikey::envelope::EnvelopeKeys;
use mbms_gateway::protocol::mikey::{
    MtkMessageParams, MtkReceptionState, Rand, build_mtk_message, open_mtk_message,
};

fn mtk_messages(c: &mut Criterion) {
    let msk = Msk::new([0x11; 16]);
    let mtk = Mtk {
        key: MtkKey::new([0x22; 16]),
        salt: MtkSalt::new([0x33; 14]),
    };
    let params = MtkMessageParams {
        key_domain_id: KeyDomainId([0x32, 0xf4, 0x10]),
        msk_id: MskId::new(1, 1),
        mtk_id: MtkId(7),
        counter: 1000,
        mtk: &mtk,
        rand: [0x44; 16],
        csb_id: 0x1234_5678,
    };
    let mut message = Vec::new();
    build_mtk_message(&msk, &params, &mut message);

    let mut group = c.benchmark_group("mikey_mtk");
    group.throughput(Throughput::Elements(1));
    group.bench_function("envelope_keys_baseline", |b| {
        b.iter(|| {
            EnvelopeKeys::derive(
                black_box(msk.expose()),
                0x1234_5678,
                Rand::from_array(&[0x44; 16]),
            )
        })
    });
    let mut out = Vec::with_capacity(256);
    group.bench_function("build", |b| {
        b.iter(|| {
            out.clear();
            build_mtk_message(black_box(&msk), black_box(&params), &mut out);
        })
    });
    group.bench_function("open", |b| {
        b.iter(|| {
            let mut state = MtkReceptionState::default();
            open_mtk_message(black_box(&msk), &mut state, black_box(&message)).map(|m| m.key_ids)
        })
    });
    group.finish();
}

criterion_group!(benches, mtk_messages);
criterion_main!(benches);
