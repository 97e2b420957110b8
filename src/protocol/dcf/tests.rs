//! Writer ↔ reader tests: exact layout of a small object, round trips under
//! arbitrary chunking, and every rejection path.

use aes::Aes128;
use aes::cipher::{BlockEncrypt, KeyInit};
use proptest::prelude::*;

use super::*;
use crate::protocol::codec::DecodeError;
use crate::protocol::keys::{KeyDomainId, MskId, MtkId, MtkKey};

const KEY: [u8; 16] = *b"0123456789abcdef";
const IV: [u8; 16] = [0xa5; 16];

fn key_id() -> MbmsKeyId {
    MbmsKeyId {
        key_domain_id: KeyDomainId([0x00, 0xf1, 0x10]),
        msk_id: MskId::new(0x1234, 0xabcd),
        mtk_id: MtkId(0x0102),
    }
}

fn params(method: EncryptionMethod, plaintext_len: u64) -> DcfParams {
    DcfParams {
        content_type: "text/plain".into(),
        content_id: "cid:x".into(),
        rights_issuer_url: String::new(),
        textual_headers: vec![key_id().textual_header()],
        method,
        plaintext_len,
    }
}

/// A deterministic stream of chunk sizes in 0..=max (zero-length chunks too).
struct Chunks {
    state: u64,
    max: usize,
}

impl Chunks {
    fn new(seed: u64, max: usize) -> Self {
        Self {
            state: seed | 1,
            max,
        }
    }

    fn next_len(&mut self) -> usize {
        // xorshift64
        self.state ^= self.state << 13;
        self.state ^= self.state >> 7;
        self.state ^= self.state << 17;
        (self.state % (self.max as u64 + 1)) as usize
    }

    fn split<'a>(&mut self, mut data: &'a [u8]) -> Vec<&'a [u8]> {
        let mut out = Vec::new();
        while !data.is_empty() {
            let n = self.next_len().min(data.len());
            out.push(&data[..n]);
            data = &data[n..];
        }
        out
    }
}

fn write_dcf(params: DcfParams, plaintext: &[u8], chunks: &mut Chunks) -> Vec<u8> {
    let mut writer = DcfWriter::new(params, &MtkKey::new(KEY), IV).unwrap();
    let mut out = writer.header().to_vec();
    for chunk in chunks.split(plaintext) {
        writer.encrypt(chunk, &mut out).unwrap();
    }
    let total = writer.total_len();
    writer.finish(&mut out).unwrap();
    assert_eq!(out.len() as u64, total, "total_len() is exact");
    out
}

/// Feeds `dcf` to the reader in chunks, as a receiver would.
fn read_dcf(
    dcf: &[u8],
    key: [u8; 16],
    chunks: &mut Chunks,
) -> Result<(DcfHeader, Vec<u8>), DcfReadError> {
    let mut buf = Vec::new();
    let mut pieces = chunks.split(dcf).into_iter();
    let (header, header_len) = loop {
        match DcfHeader::parse(&buf)? {
            HeaderParse::Complete { header, header_len } => break (header, header_len),
            HeaderParse::NeedMore { at_least } => {
                assert!(at_least > buf.len());
                match pieces.next() {
                    Some(piece) => buf.extend_from_slice(piece),
                    None => panic!("object ended inside the header"),
                }
            }
        }
    };
    let mut reader = DcfReader::new(header.clone(), &MtkKey::new(key));
    let mut plaintext = Vec::new();
    assert_eq!(
        reader.decrypt(&buf[header_len..], &mut plaintext),
        buf.len() - header_len
    );
    for piece in pieces {
        assert_eq!(reader.decrypt(piece, &mut plaintext), piece.len());
    }
    reader.finish(&mut plaintext)?;
    Ok((header, plaintext))
}

fn payload(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 31 % 251) as u8).collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn round_trip_under_any_chunking(
        cbc in any::<bool>(),
        len in prop::sample::select(vec![0usize, 1, 15, 16, 17, 4096, 1 << 20]),
        write_seed in any::<u64>(),
        read_seed in any::<u64>(),
        max_chunk in prop::sample::select(vec![1usize, 7, 16, 33, 1000, 70_000]),
    ) {
        let method = if cbc { EncryptionMethod::Aes128Cbc } else { EncryptionMethod::Aes128Ctr };
        let plaintext = payload(len);
        let dcf = write_dcf(params(method, len as u64), &plaintext, &mut Chunks::new(write_seed, max_chunk));
        let (header, decrypted) = read_dcf(&dcf, KEY, &mut Chunks::new(read_seed, max_chunk)).unwrap();
        prop_assert!(decrypted == plaintext);
        prop_assert_eq!(header.method(), method);
        prop_assert_eq!(header.plaintext_len(), len as u64);
        prop_assert_eq!(header.key_id(), Some(key_id()));
        prop_assert_eq!(header.content_type(), "text/plain");
        prop_assert_eq!(header.content_id(), "cid:x");
        prop_assert_eq!(header.iv(), &IV);
        let padding = if cbc { 16 - len % 16 } else { 0 };
        prop_assert_eq!(header.encrypted_data_len(), (16 + len + padding) as u64);
    }

    #[test]
    fn random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
        if let Ok(HeaderParse::Complete { header, header_len }) = DcfHeader::parse(&bytes) {
            let mut reader = DcfReader::new(header, &MtkKey::new(KEY));
            let mut out = Vec::new();
            reader.decrypt(&bytes[header_len..], &mut out);
            let _ = reader.finish(&mut out);
        }
    }

    /// A valid header cut anywhere and followed by random bytes: reaches the
    /// deeper boxes that purely random input never gets to.
    #[test]
    fn valid_prefix_then_random_bytes_never_panic(
        cut in 0usize..171,
        tail in prop::collection::vec(any::<u8>(), 0..120),
    ) {
        let writer = DcfWriter::new(params(EncryptionMethod::Aes128Cbc, 20), &MtkKey::new(KEY), IV).unwrap();
        let mut bytes = writer.header()[..cut].to_vec();
        bytes.extend_from_slice(&tail);
        if let Ok(HeaderParse::Complete { header, header_len }) = DcfHeader::parse(&bytes) {
            let mut reader = DcfReader::new(header, &MtkKey::new(KEY));
            let mut out = Vec::new();
            reader.decrypt(&bytes[header_len..], &mut out);
            let _ = reader.finish(&mut out);
        }
    }

    /// Valid objects with one byte changed: every field gets hit, and the
    /// reader either rejects or decrypts, never panics.
    #[test]
    fn corrupted_objects_never_panic(
        cbc in any::<bool>(),
        len in 0usize..80,
        at in any::<prop::sample::Index>(),
        xor in 1u8..=255,
    ) {
        let method = if cbc { EncryptionMethod::Aes128Cbc } else { EncryptionMethod::Aes128Ctr };
        let mut dcf = write_dcf(params(method, len as u64), &payload(len), &mut Chunks::new(1, 64));
        let i = at.index(dcf.len());
        dcf[i] ^= xor;
        if let Ok(HeaderParse::Complete { header, header_len }) = DcfHeader::parse(&dcf) {
            let mut reader = DcfReader::new(header, &MtkKey::new(KEY));
            let mut out = Vec::new();
            reader.decrypt(&dcf[header_len..], &mut out);
            let _ = reader.finish(&mut out);
        }
    }
}

/// Hand-assembled bytes of a 5-byte CBC object, box by box.
#[test]
fn tiny_object_exact_layout() {
    let mut writer = DcfWriter::new(
        params(EncryptionMethod::Aes128Cbc, 5),
        &MtkKey::new(KEY),
        IV,
    )
    .unwrap();
    let layout = *writer.layout();

    let textual = b"MBMS-Key-ID:00f1101234abcd0102\0";
    assert_eq!(textual.len(), 31);
    let mut expected = Vec::new();
    // ftyp @0, 20 bytes.
    expected.extend_from_slice(b"\0\0\0\x14ftypodcf\0\0\0\x02odcf");
    // odrm @20: largesize 20 + odhe 87 + odda 60 = 167, v0, flags 0.
    expected.extend_from_slice(b"\0\0\0\x01odrm\0\0\0\0\0\0\0\xa7\0\0\0\0");
    // odhe @40: 12 + 1 + 10 + ohdr 64 = 87.
    expected.extend_from_slice(b"\0\0\0\x57odhe\0\0\0\0\x0atext/plain");
    // ohdr @63: 12 + 16 + 5 + 0 + 31 = 64; CBC(1), RFC 2630(1), PlaintextLength 5.
    expected.extend_from_slice(b"\0\0\0\x40ohdr\0\0\0\0\x01\x01\0\0\0\0\0\0\0\x05");
    expected.extend_from_slice(b"\0\x05\0\0\0\x1fcid:x");
    expected.extend_from_slice(textual);
    // odda @127: largesize 20 + 8 + 32 = 60; EncryptedDataLength 32; IV.
    expected.extend_from_slice(b"\0\0\0\x01odda\0\0\0\0\0\0\0\x3c\0\0\0\0");
    expected.extend_from_slice(&32u64.to_be_bytes());
    expected.extend_from_slice(&IV);
    assert_eq!(writer.header(), expected.as_slice());

    assert_eq!(
        layout,
        DcfLayout {
            ftyp_len: 20,
            odrm_offset: 20,
            odrm_size: 167,
            odhe_offset: 40,
            odhe_size: 87,
            ohdr_offset: 63,
            ohdr_size: 64,
            odda_offset: 127,
            odda_size: 60,
            encrypted_data_len: 32,
            iv_offset: 155,
            ciphertext_offset: 171,
            total_len: 187,
        }
    );

    // Ciphertext: one block, "hello" + eleven 0x0b, XOR IV, AES-128 (FIPS 197
    // block function directly, not the streaming mode under test).
    let mut block = [0x0bu8; 16];
    block[..5].copy_from_slice(b"hello");
    for (b, v) in block.iter_mut().zip(IV) {
        *b ^= v;
    }
    let mut block = block.into();
    Aes128::new(&KEY.into()).encrypt_block(&mut block);

    let mut out = Vec::new();
    writer.encrypt(b"hel", &mut out).unwrap();
    writer.encrypt(b"lo", &mut out).unwrap();
    assert!(out.is_empty(), "an incomplete block is held back");
    writer.finish(&mut out).unwrap();
    assert_eq!(out, block.as_slice());
}

/// AES-128 in CTR mode counts over all 128 bits of the IV (Bento4 16-byte
/// counter): the second keystream block uses IV + 1 with carry.
#[test]
fn ctr_counter_is_128_bit_big_endian() {
    let iv = [0xffu8; 16];
    let mut writer = DcfWriter::new(
        params(EncryptionMethod::Aes128Ctr, 32),
        &MtkKey::new(KEY),
        iv,
    )
    .unwrap();
    let mut out = Vec::new();
    writer.encrypt(&[0u8; 32], &mut out).unwrap();
    writer.finish(&mut out).unwrap();
    let aes = Aes128::new(&KEY.into());
    let mut first = iv.into();
    aes.encrypt_block(&mut first);
    let mut second = [0u8; 16].into();
    aes.encrypt_block(&mut second);
    assert_eq!(&out[..16], first.as_slice());
    assert_eq!(&out[16..], second.as_slice());
}

#[test]
fn need_more_asks_for_what_is_missing() {
    let dcf = write_dcf(
        params(EncryptionMethod::Aes128Cbc, 40),
        &payload(40),
        &mut Chunks::new(3, 99),
    );
    let header_len = 171;
    for len in 0..header_len {
        match DcfHeader::parse(&dcf[..len]).unwrap() {
            HeaderParse::NeedMore { at_least } => {
                assert!(
                    at_least > len && at_least <= header_len,
                    "{len} -> {at_least}"
                );
            }
            HeaderParse::Complete { .. } => panic!("complete at {len}"),
        }
    }
    for len in [header_len, dcf.len()] {
        assert!(matches!(
            DcfHeader::parse(&dcf[..len]).unwrap(),
            HeaderParse::Complete {
                header_len: 171,
                ..
            }
        ));
    }
}

#[test]
fn wrong_key_fails_cbc_padding_or_length() {
    for len in [0usize, 5, 16, 100, 4097] {
        let dcf = write_dcf(
            params(EncryptionMethod::Aes128Cbc, len as u64),
            &payload(len),
            &mut Chunks::new(5, 500),
        );
        let mut wrong = KEY;
        wrong[0] ^= 1;
        let err = read_dcf(&dcf, wrong, &mut Chunks::new(6, 500)).unwrap_err();
        assert!(
            matches!(
                err,
                DcfReadError::BadPadding | DcfReadError::PlaintextLength { .. }
            ),
            "{len}: {err}"
        );
    }
}

#[test]
fn truncated_ciphertext_is_detected() {
    for method in [EncryptionMethod::Aes128Cbc, EncryptionMethod::Aes128Ctr] {
        let dcf = write_dcf(params(method, 100), &payload(100), &mut Chunks::new(7, 30));
        for cut in [1usize, 15, 16, 17, 100] {
            let err = read_dcf(&dcf[..dcf.len() - cut], KEY, &mut Chunks::new(8, 30)).unwrap_err();
            assert!(
                matches!(err, DcfReadError::Truncated { .. }),
                "{method:?} cut {cut}: {err}"
            );
        }
    }
}

#[test]
fn bytes_after_the_ciphertext_are_left_to_the_caller() {
    let mut dcf = write_dcf(
        params(EncryptionMethod::Aes128Cbc, 20),
        &payload(20),
        &mut Chunks::new(9, 30),
    );
    dcf.extend_from_slice(b"\0\0\0\x08free");
    let HeaderParse::Complete { header, header_len } = DcfHeader::parse(&dcf).unwrap() else {
        panic!("header incomplete");
    };
    let mut reader = DcfReader::new(header, &MtkKey::new(KEY));
    let mut out = Vec::new();
    assert_eq!(reader.decrypt(&dcf[header_len..], &mut out), 32);
    reader.finish(&mut out).unwrap();
    assert_eq!(out, payload(20));
}

#[test]
fn writer_enforces_declared_length() {
    let key = MtkKey::new(KEY);
    let mut writer = DcfWriter::new(params(EncryptionMethod::Aes128Cbc, 10), &key, IV).unwrap();
    let mut out = Vec::new();
    writer.encrypt(&[0; 6], &mut out).unwrap();
    assert_eq!(
        writer.encrypt(&[0; 5], &mut out),
        Err(DcfWriteError::InputLongerThanDeclared {
            declared: 10,
            offered: 11
        })
    );
    assert_eq!(writer.fed(), 6, "a refused chunk is not consumed");
    assert_eq!(
        writer.finish(&mut out),
        Err(DcfWriteError::InputShorterThanDeclared {
            declared: 10,
            fed: 6
        })
    );
}

#[test]
fn writer_refuses_unencodable_params() {
    let key = MtkKey::new(KEY);
    let mut p = params(EncryptionMethod::Aes128Cbc, 1);
    p.content_type = "x".repeat(256);
    assert_eq!(
        DcfWriter::new(p, &key, IV).unwrap_err(),
        DcfWriteError::ContentTypeTooLong { len: 256 }
    );
    let mut p = params(EncryptionMethod::Aes128Cbc, 1);
    p.content_id = "x".repeat(65536);
    assert_eq!(
        DcfWriter::new(p, &key, IV).unwrap_err(),
        DcfWriteError::FieldTooLong {
            field: "ContentID",
            len: 65536
        }
    );
    let mut p = params(EncryptionMethod::Aes128Cbc, 1);
    p.textual_headers.push(("Bad:Name".into(), "v".into()));
    assert!(matches!(
        DcfWriter::new(p, &key, IV).unwrap_err(),
        DcfWriteError::TextualHeader(TextualHeaderError::BadName { index: 1 })
    ));
    for method in [EncryptionMethod::Aes128Cbc, EncryptionMethod::Aes128Ctr] {
        assert!(matches!(
            DcfWriter::new(params(method, u64::MAX - 20), &key, IV).unwrap_err(),
            DcfWriteError::TooLarge { .. }
        ));
    }
}

/// A 5 GB object: odrm and odda sizes need their 64-bit largesize, and the
/// header alone round-trips through the parser.
#[test]
fn objects_over_4_gb() {
    let len = 5u64 << 30;
    let writer = DcfWriter::new(
        params(EncryptionMethod::Aes128Cbc, len),
        &MtkKey::new(KEY),
        IV,
    )
    .unwrap();
    let layout = *writer.layout();
    assert_eq!(layout.encrypted_data_len, 16 + len + 16);
    assert_eq!(layout.total_len, layout.ciphertext_offset + len + 16);
    let header = writer.header();
    assert_eq!(&header[28..36], &layout.odrm_size.to_be_bytes());
    assert!(layout.odrm_size > u64::from(u32::MAX));
    let HeaderParse::Complete { header, header_len } = DcfHeader::parse(header).unwrap() else {
        panic!("header incomplete");
    };
    assert_eq!(header_len as u64, layout.ciphertext_offset);
    assert_eq!(header.plaintext_len(), len);
    assert_eq!(header.ciphertext_len(), len + 16);
}

/// Rewrites one header field of a valid object and expects `check` to match.
fn parse_with(edit: impl FnOnce(&mut Vec<u8>, &DcfLayout)) -> Result<HeaderParse, DcfReadError> {
    let writer = DcfWriter::new(
        params(EncryptionMethod::Aes128Cbc, 20),
        &MtkKey::new(KEY),
        IV,
    )
    .unwrap();
    let layout = *writer.layout();
    let mut header = writer.header().to_vec();
    edit(&mut header, &layout);
    DcfHeader::parse(&header)
}

#[test]
fn header_rejections() {
    let method_at = |l: &DcfLayout| l.ohdr_offset as usize + 12;
    assert_eq!(
        parse_with(|h, l| h[method_at(l)] = METHOD_NULL),
        Err(DcfReadError::UnsupportedMethod { method: 0 })
    );
    assert_eq!(
        parse_with(|h, l| h[method_at(l) + 1] = PADDING_NONE),
        Err(DcfReadError::PaddingMismatch {
            method: 1,
            padding: 0
        })
    );
    // PlaintextLength 21 still pads to the same 32 bytes: consistent.
    assert!(matches!(
        parse_with(|h, l| h[method_at(l) + 9] = 21),
        Ok(HeaderParse::Complete { .. })
    ));
    // PlaintextLength 32 with 32 bytes of ciphertext: CBC needs 48.
    assert_eq!(
        parse_with(|h, l| h[method_at(l) + 9] = 32),
        Err(DcfReadError::EncryptedLength {
            plaintext_len: 32,
            encrypted_data_len: 48,
            expected_ciphertext_len: 48,
        })
    );
    // Major brand 'isom' with 'odcf' still compatible: accepted.
    assert!(matches!(
        parse_with(|h, _| h[8..12].copy_from_slice(b"isom")),
        Ok(HeaderParse::Complete { .. })
    ));
    assert_eq!(
        parse_with(|h, _| {
            h[8..12].copy_from_slice(b"isom");
            h[16..20].copy_from_slice(b"mp42");
        }),
        Err(DcfReadError::NotDcf {
            major_brand: FourCc(*b"isom")
        })
    );
    assert_eq!(
        parse_with(|h, l| h[l.odhe_offset as usize + 4..][..4].copy_from_slice(b"free")),
        Err(DcfReadError::UnexpectedBox {
            expected: FourCc::ODHE,
            found: FourCc(*b"free")
        })
    );
    // odda box size one larger than its EncryptedDataLength implies.
    assert!(matches!(
        parse_with(|h, l| h[l.odda_offset as usize + 15] += 1),
        Err(DcfReadError::ContentObjectSize { .. })
    ));
    // odrm one byte too small for its odda.
    assert_eq!(
        parse_with(|h, _| h[35] -= 1),
        Err(DcfReadError::ChildOverrunsParent {
            child: FourCc::ODDA,
            parent: FourCc::ODRM
        })
    );
    // A malformed key-id value.
    assert!(matches!(
        parse_with(|h, l| h[l.ohdr_offset as usize + 12 + 16 + 5 + 12] = b'x'),
        Err(DcfReadError::KeyId(KeyIdError::NotHex { position: 0 }))
    ));
    // Version 1 of ohdr.
    assert_eq!(
        parse_with(|h, l| h[l.ohdr_offset as usize + 8] = 1),
        Err(DcfReadError::Malformed(DecodeError::Unsupported {
            what: "ohdr version",
            value: 1
        }))
    );
    // An odrm size near 2^64 must not overflow the end computation.
    assert!(matches!(
        parse_with(|h, _| h[28..36].copy_from_slice(&u64::MAX.to_be_bytes())),
        Ok(HeaderParse::Complete { .. })
    ));
}

/// PlaintextLength 21 over a 20-byte object pads to the same 32 bytes, so only
/// the padding found at the end can reveal the lie.
#[test]
fn plaintext_length_lie_is_detected_at_finish() {
    let mut dcf = write_dcf(
        params(EncryptionMethod::Aes128Cbc, 20),
        &payload(20),
        &mut Chunks::new(11, 50),
    );
    let writer = DcfWriter::new(
        params(EncryptionMethod::Aes128Cbc, 20),
        &MtkKey::new(KEY),
        IV,
    )
    .unwrap();
    dcf[writer.layout().ohdr_offset as usize + 12 + 9] = 21;
    assert_eq!(
        read_dcf(&dcf, KEY, &mut Chunks::new(12, 50)).unwrap_err(),
        DcfReadError::PlaintextLength {
            declared: 21,
            actual: 20
        }
    );
}
