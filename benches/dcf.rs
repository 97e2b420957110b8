//! DCF encryption and decryption of a 10 MB object fed in 64 KiB chunks (as a
//! file reader would), each next to raw AES-128 of the same 10 MB in the same
//! run: the difference is the cost of the container, the chunking and the
//! output copies. Raw runs in place in one call; the `_out_of_place` baselines
//! write to a second buffer, the memory traffic any streaming reader that
//! leaves its input intact must pay.

use aes::Aes128Dec;
use aes::Aes128Enc;
use aes::cipher::consts::U16;
use aes::cipher::inout::InOutBuf;
use aes::cipher::{
    BlockDecryptMut, BlockEncryptMut, InnerIvInit, KeyInit, KeyIvInit, StreamCipher,
};
use criterion::{Criterion, Throughput, black_box, criterion_group, criterion_main};
use mbms_gateway::protocol::dcf::{
    DcfHeader, DcfParams, DcfReader, DcfWriter, EncryptionMethod, HeaderParse, MbmsKeyId,
};
use mbms_gateway::protocol::keys::{KeyDomainId, MskId, MtkId, MtkKey};

const LEN: usize = 10 * 1000 * 1000;
const CHUNK: usize = 64 * 1024;
const KEY: [u8; 16] = [0x2b; 16];
const IV: [u8; 16] = [0x17; 16];

fn params(method: EncryptionMethod) -> DcfParams {
    let key_id = MbmsKeyId {
        key_domain_id: KeyDomainId([0x00, 0xf1, 0x10]),
        msk_id: MskId::new(1, 2),
        mtk_id: MtkId(3),
    };
    DcfParams {
        content_type: "video/mp4".into(),
        content_id: "cid:segment-1@example.com".into(),
        rights_issuer_url: String::new(),
        textual_headers: vec![key_id.textual_header()],
        method,
        plaintext_len: LEN as u64,
    }
}

fn write_dcf(method: EncryptionMethod, plaintext: &[u8], out: &mut Vec<u8>) {
    out.clear();
    let mut writer = DcfWriter::new(params(method), &MtkKey::new(KEY), IV).unwrap();
    out.extend_from_slice(writer.header());
    for chunk in plaintext.chunks(CHUNK) {
        writer.encrypt(chunk, out).unwrap();
    }
    writer.finish(out).unwrap();
}

fn read_dcf(dcf: &[u8], out: &mut Vec<u8>) {
    out.clear();
    let HeaderParse::Complete { header, header_len } = DcfHeader::parse(dcf).unwrap() else {
        panic!("incomplete header");
    };
    let mut reader = DcfReader::new(header, &MtkKey::new(KEY));
    for chunk in dcf[header_len..].chunks(CHUNK) {
        reader.decrypt(chunk, out);
    }
    reader.finish(out).unwrap();
}

fn blocks(buf: &mut [u8]) -> InOutBuf<'_, '_, aes::Block> {
    InOutBuf::from(buf).into_chunks::<U16>().0
}

fn bench(c: &mut Criterion) {
    let plaintext: Vec<u8> = (0..LEN).map(|i| (i * 7) as u8).collect();
    let mut scratch = plaintext.clone();
    let mut out = Vec::with_capacity(LEN + 4096);

    let mut g = c.benchmark_group("dcf_10MB");
    g.throughput(Throughput::Bytes(LEN as u64));
    g.sample_size(20);

    g.bench_function("raw_aes128_cbc_encrypt", |b| {
        b.iter(|| {
            let mut enc = cbc::Encryptor::inner_iv_init(Aes128Enc::new(&KEY.into()), &IV.into());
            enc.encrypt_blocks_inout_mut(blocks(&mut scratch));
            black_box(&scratch);
        })
    });
    g.bench_function("dcf_cbc_encrypt_64k_chunks", |b| {
        b.iter(|| {
            write_dcf(EncryptionMethod::Aes128Cbc, &plaintext, &mut out);
            black_box(&out);
        })
    });

    write_dcf(EncryptionMethod::Aes128Cbc, &plaintext, &mut out);
    let dcf_cbc = out.clone();
    let mut decrypted = Vec::with_capacity(LEN + 16);
    g.bench_function("raw_aes128_cbc_decrypt", |b| {
        b.iter(|| {
            let mut dec = cbc::Decryptor::inner_iv_init(Aes128Dec::new(&KEY.into()), &IV.into());
            dec.decrypt_blocks_inout_mut(blocks(&mut scratch));
            black_box(&scratch);
        })
    });
    let ciphertext = &dcf_cbc[dcf_cbc.len() - LEN - 16..dcf_cbc.len() - 16];
    g.bench_function("raw_aes128_cbc_decrypt_out_of_place", |b| {
        b.iter(|| {
            let mut dec = cbc::Decryptor::inner_iv_init(Aes128Dec::new(&KEY.into()), &IV.into());
            let buf = InOutBuf::new(ciphertext, &mut scratch).unwrap();
            dec.decrypt_blocks_inout_mut(buf.into_chunks::<U16>().0);
            black_box(&scratch);
        })
    });
    g.bench_function("dcf_cbc_decrypt_64k_chunks", |b| {
        b.iter(|| {
            read_dcf(&dcf_cbc, &mut decrypted);
            black_box(&decrypted);
        })
    });

    g.bench_function("raw_aes128_ctr", |b| {
        b.iter(|| {
            let mut ctr = ctr::Ctr128BE::<Aes128Enc>::new(&KEY.into(), &IV.into());
            ctr.apply_keystream(&mut scratch);
            black_box(&scratch);
        })
    });
    g.bench_function("raw_aes128_ctr_out_of_place", |b| {
        b.iter(|| {
            let mut ctr = ctr::Ctr128BE::<Aes128Enc>::new(&KEY.into(), &IV.into());
            ctr.apply_keystream_b2b(&plaintext, &mut scratch).unwrap();
            black_box(&scratch);
        })
    });
    g.bench_function("dcf_ctr_encrypt_64k_chunks", |b| {
        b.iter(|| {
            write_dcf(EncryptionMethod::Aes128Ctr, &plaintext, &mut out);
            black_box(&out);
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
